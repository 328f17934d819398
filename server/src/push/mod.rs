//! Delivery to browsers. `protocol` is pure (frames, URL, commands); `outgoing` turns domain events into
//! frames encoded once; `session` is one connection's state and commands; `websocket` sets a connection up and tears it down;
//! `conn_loop` owns its socket in between, spending each command from the connection's `budget`.

mod budget;
mod conn_loop;
pub mod outgoing;
pub mod protocol;
mod session;
pub mod websocket;
