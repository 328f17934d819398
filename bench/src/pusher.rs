//! The Pusher protocol as the load tool speaks it, to Halley's `/app/{key}` and to Sockudo and Soketi alike:
//! the WebSocket path and subscribe frame, and the HTTP API's signed requests (auth_key, auth_timestamp,
//! auth_version=1.0, body_md5, auth_signature = HMAC-SHA256 of `METHOD\npath\nsorted query`). Pure: the
//! signing is written here, not borrowed from the server under test, so that a bug on one side cannot hide
//! the same bug on the other.

use std::io;
use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::http_client::HttpConn;

/// What a subscriber waits for after `pusher:subscribe`: the server's word that the channel is joined.
pub const SUBSCRIBED: &[u8] = b"pusher_internal:subscription_succeeded";

/// One Pusher app on a server: its id, public key and secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
}

/// The WebSocket path a pusher-js client (protocol 7) opens.
pub fn ws_path(app_key: &str) -> String {
    format!("/app/{app_key}?protocol=7&client=halley-load&version=8.4.0&flash=false")
}

/// `pusher:subscribe` for a public channel (no auth).
pub fn subscribe_frame(channel: &str) -> String {
    format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#)
}

/// The body of `POST /apps/{id}/events` to one channel. `data` is sent as a JSON string as is: the
/// benchmark payload has no characters that need escaping.
pub fn event_body(channel: &str, event: &str, data: &str) -> String {
    format!(r#"{{"name":"{event}","channels":["{channel}"],"data":"{data}"}}"#)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signed query string for a request: the auth parameters, `body_md5` when there is a body, `params`
/// (already URL-safe), sorted by key, then `auth_signature`.
pub fn signed_query(
    method: &str,
    path: &str,
    body: &[u8],
    app: &App,
    timestamp: u64,
    params: &[(&str, &str)],
) -> String {
    let mut all: Vec<(String, String)> = vec![
        ("auth_key".into(), app.key.clone()),
        ("auth_timestamp".into(), timestamp.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        all.push(("body_md5".into(), hex(&Md5::digest(body))));
    }
    all.extend(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    all.sort();
    let query = all
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}\n{path}\n{query}");
    // An HMAC key may be any length: new_from_slice cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(app.secret.as_bytes()).expect("any key length");
    mac.update(to_sign.as_bytes());
    format!(
        "{query}&auth_signature={}",
        hex(&mac.finalize().into_bytes())
    )
}

/// `"subscription_count": N` in a channel-info answer.
pub fn subscription_count_in(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let key = "\"subscription_count\"";
    let rest = text[text.find(key)? + key.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A backend's kept-alive connection to a server's HTTP API.
pub struct ApiConn {
    http: HttpConn,
    app: App,
}

fn unix_seconds() -> u64 {
    crate::payload::now_us() / 1_000_000
}

impl ApiConn {
    pub async fn connect(addr: SocketAddr, app: App) -> io::Result<ApiConn> {
        Ok(ApiConn {
            http: HttpConn::connect(addr).await?,
            app,
        })
    }

    /// `POST /apps/{id}/events`: one event to one channel.
    pub async fn trigger(&mut self, channel: &str, event: &str, data: &str) -> io::Result<()> {
        let path = format!("/apps/{}/events", self.app.id);
        let body = event_body(channel, event, data);
        let query = signed_query(
            "POST",
            &path,
            body.as_bytes(),
            &self.app,
            unix_seconds(),
            &[],
        );
        let (status, answer) = self
            .http
            .request_json("POST", &format!("{path}?{query}"), body.as_bytes())
            .await?;
        match status {
            200..=202 => Ok(()),
            s => Err(io::Error::other(format!(
                "POST {path} answered {s}: {}",
                String::from_utf8_lossy(&answer)
            ))),
        }
    }

    /// `GET /apps/{id}/channels/{channel}?info=subscription_count`: the channel's subscriptions.
    pub async fn subscription_count(&mut self, channel: &str) -> io::Result<u64> {
        let path = format!("/apps/{}/channels/{channel}", self.app.id);
        let query = signed_query(
            "GET",
            &path,
            b"",
            &self.app,
            unix_seconds(),
            &[("info", "subscription_count")],
        );
        let (status, answer) = self
            .http
            .request_json("GET", &format!("{path}?{query}"), b"")
            .await?;
        let text = String::from_utf8_lossy(&answer);
        match status {
            200 => subscription_count_in(&answer)
                // An unoccupied channel may be answered without the count.
                .or_else(|| text.contains("\"occupied\":false").then_some(0))
                .ok_or_else(|| io::Error::other(format!("no subscription_count in {text}"))),
            s => Err(io::Error::other(format!("GET {path} answered {s}: {text}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher's documented worked example (HTTP API reference, "Worked authentication example").
    #[test]
    fn the_documented_worked_example() {
        let app = App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            signed_query(
                "POST",
                "/apps/3/events",
                body.as_bytes(),
                &app,
                1353088179,
                &[]
            ),
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn extra_parameters_are_sorted_in_and_a_get_has_no_body_md5() {
        let app = App {
            id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
        };
        let q = signed_query("GET", "/apps/1/channels/c", b"", &app, 7, &[("info", "x")]);
        assert!(
            q.starts_with("auth_key=k&auth_timestamp=7&auth_version=1.0&info=x&auth_signature="),
            "{q}"
        );
    }

    #[test]
    fn frames_and_channel_info() {
        assert_eq!(
            subscribe_frame("fan"),
            r#"{"event":"pusher:subscribe","data":{"channel":"fan"}}"#
        );
        assert_eq!(
            event_body("fan", "ev", "bench:1:2:"),
            r#"{"name":"ev","channels":["fan"],"data":"bench:1:2:"}"#
        );
        assert_eq!(
            subscription_count_in(br#"{"occupied":true,"subscription_count": 10000}"#),
            Some(10000)
        );
        assert_eq!(subscription_count_in(br#"{"occupied":false}"#), None);
    }
}
