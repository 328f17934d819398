//! The Pusher Channels protocol (version 7), pure: text in, typed values out, no I/O. What Laravel Echo,
//! pusher-js, pysher and the `pusher` server libraries speak; the WebSocket door `/app/{key}` and the HTTP
//! API `/apps/{id}/...` are built on it.
//!
//! What a connection's task does with it, in order:
//!
//! ```text
//! is_pusher_path(path) -> parse_connect(path, query): Connect, or an ErrorCode (4001, 4005-4008):
//!     send ServerFrame::Error, then close with the code
//! SocketId::generate(rng)
//! send ServerFrame::ConnectionEstablished { socket_id, activity_timeout }
//! loop: parse_client_frame(text) -> ClientFrame, or FrameError:
//!     send ServerFrame::Error { code: err.code(), .. }; close if err.closes()
//!   Ping                  -> send Pong
//!   Subscribe(s)          -> where s.channel.needs_signature(): sign::check_channel_auth(s.auth, key,
//!                            secrets, socket_id, channel, s.channel_data); a user channel: the connection
//!                            is signed in as channel.user(); then SubscriptionSucceeded (members on
//!                            presence), MemberAdded to the others, CacheMiss on an empty cache- channel
//!   Signin(s)             -> sign::check_signin_auth(..); SigninSuccess, or Error 4009 and close
//!   ClientEvent(e)        -> where e.channel.allows_client_events() and the connection is subscribed:
//!                            Event { user_id on presence } to the others
//! ```
//!
//! The HTTP API checks each request with [`api_auth::verify`], within the documented [`limits`].

pub mod api_auth;
pub mod channel;
pub mod client;
pub mod connect;
pub mod error;
pub mod limits;
pub mod server;
pub mod sign;
pub mod socket_id;

pub use channel::{Channel, ChannelKind};
pub use client::{parse_client_frame, ClientEvent, ClientFrame, Member, Signin, Subscribe};
pub use connect::{is_pusher_path, parse_connect, Connect};
pub use error::{ChannelError, ErrorCode, EventError, FrameError, Reconnect};
pub use server::{MemberInfo, ServerFrame};
pub use socket_id::SocketId;
