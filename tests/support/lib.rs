//! Test support for Halley's integration tests (the one test binary `tests/tests/it`): the real server
//! booted in-process on port 0 ([`server`]), the users' real MySQL clients ([`clients`]), CometQL as a
//! tenant's backend writes it ([`cometql`]), the HTTP publish API through curl ([`curl`]), a raw MySQL protocol client ([`mysql_raw`]), WebSocket clients
//! ([`ws`]), browser connections known to be subscribed ([`browser`]) and the frames they receive
//! ([`frames`]), the dashboard's HTTP API as its page calls it ([`dashboard`]), limits and quotas as the
//! operator sets them ([`limits`]), the binary in its own process for tests that measure the server's
//! memory ([`process`]), certificates and TLS clients ([`tls`]), a throw-away PostgreSQL database per test ([`pg`]), several nodes on one PostgreSQL and one Redis, in process ([`cluster`]) or as real processes ([`nodes`]), one server or a cluster as the place a test runs ([`deploy`]), the Pusher protocol's real clients ([`pusher`]) and raw ([`pusher_raw`]) and bounded waiting ([`wait`]).
//! Every wait here is bounded: a missing answer fails the test instead of hanging CI.

pub mod browser;
pub mod clients;
pub mod cluster;
pub mod cometql;
pub mod curl;
pub mod dashboard;
pub mod deploy;
pub mod frames;
pub mod limits;
pub mod mysql_raw;
pub mod nodes;
pub mod pg;
pub mod process;
pub mod pusher;
pub mod pusher_raw;
pub mod server;
pub mod tls;
pub mod wait;
pub mod ws;

pub use server::{Backend, Tenant, TestServer};
