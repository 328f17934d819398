//! The browser-side protocol of comet-server, pure: bytes or text in, typed values out, no I/O.
//!
//! What a connection's task does with it, in order:
//!
//! ```text
//! is_ws_path(path)                       -> route the upgrade here
//! handshake::check(request)              -> the client's key, or the RFC 6455 rule it broke (4xx)
//! wsframe::accept_key(key)               -> Sec-WebSocket-Accept (the first protocol asked, if any, echoed)
//! parse_connect_url(path_and_query)      -> ConnectParams, or UrlError:
//!     send frames::url_error(err, now), then close (the reference still upgrades first)
//! ApiEra::from_version(params.api_version) -> the connection's era, fixed for its life
//! send frames::server_info(..).encode(era)
//! loop: read into a BytesMut, then `while let Some(m) = decoder.decode(&mut buf)?`:
//!     Incoming::Text(t)   -> parse_command(&t): Command, or CommandError:
//!                            send err.frame(now).encode(era); close if err.closes_connection()
//!     Incoming::Binary(b) -> the same, on the bytes as text
//!     Incoming::Ping(p)   -> send wsframe::encode_pong(&p)
//!     Incoming::Close(c)  -> send wsframe::encode_close(c or 1000, ""), close (the code echoed)
//!     Err(e)              -> send wsframe::encode_close(e.close_code(), ..), close
//! outbox: SharedFrame::bytes(era) of each publish (encoded once per era, shared by all)
//! ```

pub(crate) mod command;
pub mod frames;
pub(crate) mod handshake;
pub(crate) mod json;
pub mod names;
pub mod url;
pub mod wsframe;

pub use command::{
    parse_command, parse_command_with, Command, CommandError, CommandLimits, Positioned,
    Subscription, Subscription2,
};
pub use frames::{ApiEra, Frame, SharedFrame};
pub use url::{is_ws_path, parse_connect_url, ConnectParams, UrlError};
pub use wsframe::{FrameDecoder, Incoming, WsError};
