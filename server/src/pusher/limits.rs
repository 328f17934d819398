//! The Pusher protocol's documented limits, as constants with their reason. Pusher's clients and server
//! libraries are written against these numbers (Laravel's broadcaster splits channel lists at 100, Echo
//! users know the 10 KB event limit), so a server that speaks the protocol refuses past the same points.

/// Bytes of one event's `data` (Pusher: "the data content of an event is limited to 10 KB"), whether it
/// comes from the HTTP API or from a client event.
pub const EVENT_DATA_MAX: usize = 10 * 1024;

/// Channels one HTTP API event may name (Pusher: "a maximum of 100 channels per event").
pub const CHANNELS_PER_EVENT_MAX: usize = 100;

/// Events in one `batch_events` request (Pusher: "a maximum of 10 events per batch").
pub const EVENTS_PER_BATCH_MAX: usize = 10;

/// Characters of a channel name (Pusher: "channel names ... a maximum of 200 characters").
pub const CHANNEL_NAME_MAX: usize = 200;

/// Characters of an event name (Pusher: "event name, maximum 200 characters").
pub const EVENT_NAME_MAX: usize = 200;

/// Characters of a presence member's or a signed-in user's id. Pusher documents user ids only as strings;
/// 128 bounds what one member costs every other member's list (and what a hostile `channel_data` may
/// make the hub store) far above any real id.
pub const USER_ID_MAX: usize = 128;

/// Bytes of a presence member's `user_info` (Pusher: "user_info ... limited to 1 KB").
pub const USER_INFO_MAX: usize = 1024;

/// Bytes of one client frame. The largest legal frame is a client event with [`EVENT_DATA_MAX`] of data
/// given as a JSON string, in which escaping may double it, plus its names: 32 KiB covers that, and a
/// frame past it is refused before it is parsed.
pub const CLIENT_FRAME_MAX: usize = 32 * 1024;

/// The protocol version this server speaks (`?protocol=7`, what pusher-js and every current client send).
pub const PROTOCOL_VERSION: u32 = 7;

/// The oldest version accepted: 5 and 6 differ from 7 only in what this server never sends them (6 is what
/// pysher still asks for), so their clients are served the same frames, as Pusher serves them.
pub const PROTOCOL_MIN: u32 = 5;

/// Seconds an HTTP API request's `auth_timestamp` may be away from the server's clock (Pusher: 600).
pub const API_TIMESTAMP_WINDOW_SECS: i64 = 600;
