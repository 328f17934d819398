//! The browser side as the integration tests drive it: anonymous or authorized connections on the
//! comet-server URL with their serverInfo frame read (any API version, uuid and upgrade headers), the
//! JWTs a tenant's backend mints for them, subscriptions that are known to be registered by the hub
//! before anything is published, and the hub's own counters to wait on (no sleeps).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::anyhow;
use halley::ids::{DevId, PipeName};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::frames::{json, pin};
use crate::wait::{eventually, WAIT};
use crate::ws::WsClient;
use crate::{Tenant, TestServer};

/// Seconds since the Unix epoch, to check a frame's `message_send_time` against.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The uuid a connection sends in its URL (32 characters, as the JS API does), made from `tag`.
pub fn uuid_of(tag: &str) -> String {
    let mut u = tag.to_string();
    while u.len() < 32 {
        u.push('0');
    }
    u.truncate(32);
    u
}

/// The comet-server connect URL, with the API version and uuid chosen by the test.
pub fn url(
    server: &TestServer,
    dev_id: u64,
    user_id: u64,
    key: &str,
    version: &str,
    uuid: &str,
) -> String {
    url_at(server.http_addr(), dev_id, user_id, key, version, uuid)
}

/// [`url`] for a server known by its HTTP address (a [`crate::process::ServerProcess`]).
pub fn url_at(
    http: SocketAddr,
    dev_id: u64,
    user_id: u64,
    key: &str,
    version: &str,
    uuid: &str,
) -> String {
    format!(
        "ws://{http}/ws/sesion={key}&myid={user_id}&devid={dev_id}&v={version}&uuid={uuid}&api=js"
    )
}

/// An HS256 JWT of `claims` signed with `secret`.
pub fn hs256(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("JWT")
}

/// A valid browser JWT of `tenant` for `user` (HS256 with key + dev_id, an hour to live).
pub fn jwt(tenant: &Tenant, user: u64) -> String {
    hs256(
        &format!("{}{}", tenant.key, tenant.dev_id),
        json!({"user_id": user, "exp": unix_now() + 3600}),
    )
}

/// A browser connection and its first frame (serverInfo), read.
pub struct Browser {
    pub ws: WsClient,
    pub hello: String,
    pub uuid: String,
}

impl Browser {
    /// Connects as `user_id` with `key` (anonymous: 0 and ""), API 4.08, uuid from `tag`.
    pub async fn connect(
        server: &TestServer,
        dev_id: u64,
        user_id: u64,
        key: &str,
        tag: &str,
    ) -> Browser {
        Self::connect_version(server, dev_id, user_id, key, tag, "4.08").await
    }

    pub async fn connect_version(
        server: &TestServer,
        dev_id: u64,
        user_id: u64,
        key: &str,
        tag: &str,
        version: &str,
    ) -> Browser {
        Self::connect_full(server, dev_id, user_id, key, tag, version, &[]).await
    }

    /// With extra upgrade headers (User-Agent, Origin, Accept-Language...).
    pub async fn connect_full(
        server: &TestServer,
        dev_id: u64,
        user_id: u64,
        key: &str,
        tag: &str,
        version: &str,
        headers: &[(&str, &str)],
    ) -> Browser {
        let uuid = uuid_of(tag);
        let mut ws = WsClient::connect_with_headers(
            &url(server, dev_id, user_id, key, version, &uuid),
            headers,
        )
        .await
        .expect("WebSocket connect");
        let hello = ws.recv_text(WAIT).await.expect("the serverInfo frame");
        assert!(hello.contains(r#""event":"serverInfo""#), "{hello}");
        Browser { ws, hello, uuid }
    }

    /// [`Browser::connect`] to a server known by its HTTP address (a
    /// [`crate::process::ServerProcess`]).
    pub async fn connect_at(
        http: SocketAddr,
        dev_id: u64,
        user_id: u64,
        key: &str,
        tag: &str,
    ) -> Browser {
        let uuid = uuid_of(tag);
        let mut ws = WsClient::connect(&url_at(http, dev_id, user_id, key, "4.08", &uuid))
            .await
            .expect("WebSocket connect");
        let hello = ws.recv_text(WAIT).await.expect("the serverInfo frame");
        assert!(hello.contains(r#""event":"serverInfo""#), "{hello}");
        Browser { ws, hello, uuid }
    }

    pub fn authorized(&self) -> bool {
        json(&self.hello)["authorized"] == Value::Bool(true)
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send_text(text).await.expect("send a command");
    }

    /// Replaces the subscription set and waits until the server has applied it (see [`Browser::sync`]).
    /// Returns the frames that arrived meanwhile.
    pub async fn subscribe(&mut self, pipes: &[&str]) -> Vec<String> {
        self.send(&format!("subscription\n{}", pipes.join("\n")))
            .await;
        self.sync().await
    }

    /// The next text frame.
    pub async fn recv(&mut self) -> String {
        self.ws.recv_text(WAIT).await.expect("a frame")
    }

    /// The next frame, `message_send_time` pinned (see [`pin`]), checked against `expected`.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        expected: &'a str,
    ) -> impl std::future::Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let got = self.recv().await;
            assert_eq!(pin(&got), expected, "frame received (checked at {caller})");
        }
    }

    /// Commands are handled in order, so once the answer to a `user_status` probe is back, every command
    /// sent before it has been applied. Returns the other frames that arrived before the answer.
    pub async fn sync(&mut self) -> Vec<String> {
        const PROBE: &str = "user_status_987654321";
        self.send("user_status\n987654321").await;
        let mut others = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame.contains(&format!(r#""event":"{PROBE}""#)) {
                return others;
            }
            others.push(frame);
        }
    }

    /// Nothing arrived before the probe: no frame is pending for this connection.
    #[track_caller]
    pub fn expect_nothing(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let others = self.sync().await;
            assert!(
                others.is_empty(),
                "unexpected frames (checked at {caller}): {others:?}"
            );
        }
    }

    pub async fn close(self) {
        self.ws.close().await.expect("clean close");
    }
}

/// A browser connection (`user_id` 0 and key "" for anonymous), its serverInfo frame read and returned.
pub async fn browser(
    server: &TestServer,
    dev_id: u64,
    user_id: u64,
    key: &str,
) -> (WsClient, Value) {
    let mut ws = WsClient::connect(&server.ws_url(dev_id, user_id, key))
        .await
        .expect("WebSocket connect");
    let hello = ws.recv_json(WAIT).await.expect("serverInfo frame");
    assert_eq!(hello["event"], "serverInfo", "{hello}");
    assert_eq!(hello["pipe"], "sys", "{hello}");
    (ws, hello)
}

/// An anonymous browser connection, its serverInfo frame read.
pub async fn anonymous(server: &TestServer, dev_id: u64) -> WsClient {
    browser(server, dev_id, 0, "").await.0
}

/// Live subscribers of `pipe` for `dev_id`, as the hub counts them.
pub fn subscribers(server: &TestServer, dev_id: u64, pipe: &str) -> usize {
    let pipe = PipeName::parse_subscription(pipe).expect("valid pipe name");
    server
        .ctx()
        .hub
        .registry()
        .subscribers(DevId(dev_id), &pipe)
}

/// Waits (bounded) until exactly `n` connections of `dev_id` are subscribed to `pipe`.
pub async fn wait_subscribers(server: &TestServer, dev_id: u64, pipe: &str, n: usize) {
    eventually(WAIT, || async {
        match subscribers(server, dev_id, pipe) {
            got if got == n => Ok(()),
            got => Err(anyhow!(
                "{got} subscribers of {pipe} for dev {dev_id}, want {n}"
            )),
        }
    })
    .await
    .unwrap();
}

/// Sends `subscription\n<pipes>` (the protocol has no acknowledgement).
pub async fn send_subscription(ws: &mut WsClient, pipes: &[&str]) {
    ws.send_text(&format!("subscription\n{}", pipes.join("\n")))
        .await
        .expect("send subscription");
}

/// Sends `subscription\n<pipes>` and waits until the hub has registered the connection on each pipe;
/// `already[i]` is how many connections of this dev were on `pipes[i]` before.
pub async fn subscribe(
    server: &TestServer,
    ws: &mut WsClient,
    dev_id: u64,
    pipes: &[&str],
    already: &[usize],
) {
    send_subscription(ws, pipes).await;
    for (pipe, n) in pipes.iter().zip(already) {
        wait_subscribers(server, dev_id, pipe, n + 1).await;
    }
}

/// One anonymous subscriber of `pipe`, returned once the hub has registered it (so a publish reaches
/// it). `already` is how many connections of this dev were subscribed to the pipe before.
pub async fn subscriber(server: &TestServer, dev_id: u64, pipe: &str, already: usize) -> WsClient {
    let mut ws = anonymous(server, dev_id).await;
    subscribe(server, &mut ws, dev_id, &[pipe], &[already]).await;
    ws
}

/// WebSocket connections of the tenant, as the hub counts them.
pub fn ws_connections(server: &TestServer, dev_id: u64) -> i64 {
    server
        .ctx()
        .stats
        .tenant(DevId(dev_id))
        .websocket_connections
        .load(Ordering::SeqCst)
}

/// Waits until the tenant has exactly `n` open WebSocket connections on the server. The count drops
/// only after a closed connection has been fully cleaned up (unsubscribed, unlinked from its user,
/// offline event and users_time written), so this awaits the end of that work.
pub async fn wait_ws_connections(server: &TestServer, dev_id: u64, n: i64) {
    eventually(WAIT, || async {
        match ws_connections(server, dev_id) {
            got if got == n => Ok(()),
            got => Err(anyhow!(
                "{got} WebSocket connections of dev {dev_id}, want {n}"
            )),
        }
    })
    .await
    .unwrap();
}
