//! Halley: a hosted, multi-tenant Comet (WebSocket push) server, drop-in compatible with comet-server.
//!
//! Three floors, imports only ever running down or along one (`tests/floors.rs` checks it):
//! - protocols, pure (bytes or text in, typed values out): [`mysql`], [`cometql`], [`browser`], [`pusher`]
//!   (the Pusher Channels protocol), [`proxy`] (what a balancer says about the client);
//! - the domain, every rule for every front door: [`ids`], [`commands`], [`tenant`], [`hub`], [`cluster`]
//!   (the hub's broker on Redis, for several nodes), [`storage`], [`stats`], [`usage`];
//! - the front doors, I/O only: [`front`] (`listen`, `cometql`, `websocket`, `http`).
//!
//! [`config`] (with [`cidr`], its networks) is read by all; [`app`] wires the floors together. The publish path through them, step by
//! step, is in README.md ("The publish path").

#![warn(unreachable_pub)]

pub mod cidr;
pub mod config;

// The protocol floor: pure codecs, bytes or text in, typed values out.
pub mod browser;
pub mod cometql;
pub mod mysql;
pub mod proxy;
pub mod pusher;

// The domain floor: every rule, for every front door.
pub mod cluster;
pub mod commands;
pub mod hub;
pub mod ids;
pub mod stats;
pub mod storage;
pub mod tenant;
pub mod usage;

// The front doors: I/O only.
pub mod front;

pub mod app;
pub mod logging;
