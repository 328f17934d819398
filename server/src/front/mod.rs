//! The front doors: I/O only. Each reads a request in its protocol (decoded by the protocol floor: `mysql`,
//! `cometql`, `browser`), calls `commands`, and writes the answer. None holds a storage handle.
//!
//! - `listen`: the accept loop and the accept-time limits every connection of both ports passes first.
//! - `tls`: the certificate both ports use (reloaded in place) and the handshake under its limits.
//! - `cometql`: port 3300, MySQL connection loops and the handler that runs CometQL through `commands`.
//! - `websocket`: browser connections on the comet-server URL forms, from the upgrade to the teardown.
//! - `http`: the one router on the HTTP port (the SDK, `/info`, `/metrics`, the dashboard and its API).
pub mod cometql;
pub mod http;
pub(crate) mod listen;
pub mod tls;
pub(crate) mod websocket;
