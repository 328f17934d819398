//! Halley: a hosted, multi-tenant Comet (WebSocket push) server, drop-in compatible with comet-server.
//!
//! # The publish path, in the order data flows
//! 1. [`mysql`] reads a COM_QUERY from a tenant's authenticated session (the tenant was fixed at login by
//!    [`tenant`]).
//! 2. [`cometql::parse`] turns the text into a [`cometql::Statement`].
//! 3. [`commands`] picks the table's command and validates values into typed ones ([`ids::PipeName`], ...).
//! 4. `commands/pipes_messages.rs` builds the frame with [`push::outgoing`], **encoded once**, and calls
//!    [`hub::Hub::publish`].
//! 5. [`hub`] (through [`broker`]) finds the pipe's subscribers and pushes the same bytes into each
//!    connection's bounded outbox.
//! 6. [`push::websocket`]: each connection's task drains its outbox into its socket.
//!
//! The answer travels back as a [`commands::Outcome`] and [`mysql`] writes the OK packet.
//!
//! # Modules
//! - [`config`]: the one typed configuration (defaults → file → `HALLEY_*`).
//! - [`ids`]: domain newtypes.
//! - [`mysql`]: MySQL wire protocol, server side: pure codec plus one connection loop. No CometQL knowledge.
//! - [`cometql`]: the language, pure: `&str` → `Statement`.
//! - [`commands`]: what each statement does, one file per table; shared by every front door.
//! - [`tenant`]: credentials, keys sealed at rest, per-tenant limits and storage quotas.
//! - [`hub`], [`broker`]: who is listening; how a publish reaches them.
//! - [`push`]: browsers: pure protocol, outgoing frames, per-connection session and socket loop.
//! - [`http`]: the one router on the HTTP port, also serving the dashboard (`dashboard/`, embedded) and its
//!   JSON API `/api/dashboard/v1`, and the accept loop with the limits every connection of both ports
//!   passes first (`http::admission`) and `/metrics` in Prometheus text format.
//! - [`stats`]: every live figure of the node (per-tenant counters, refusals, slow consumers, open sockets)
//!   in one handle, read by `/metrics`, SHOW STATUS, the dashboard and [`usage`].
//! - [`storage`]: all SQL (sqlx; PostgreSQL and SQLite), and the running totals of what each tenant stores.
//! - [`usage`]: per-tenant message counts flushed from [`stats`] into storage.
//! - [`app`]: composition root; [`logging`]: process plumbing for the binary.

pub mod config;

// The protocol floor: pure codecs, bytes or text in, typed values out.
pub mod browser;
pub mod cometql;
pub mod mysql;

// The domain floor: every rule, for every front door.
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
