//! Delivery to browsers. `protocol` is pure (frames, URL, commands); `outgoing` turns domain events into
//! frames encoded once; `session` is one connection's state; `websocket` owns the socket.

pub mod outgoing;
pub mod protocol;
mod session;
pub mod websocket;
