//! Helpers shared by the `compat_*` integration tests (issue 3: comet-server compatibility, table by table
//! and command by command): CometQL through PHP mysqli, browser connections on the comet-server URL,
//! snapshot-pinned frames, and event-driven synchronisation (no sleeps).
//! Not a test target itself (a `mod.rs` in a sub-folder is not autodiscovered by cargo).
#![allow(dead_code, unused_imports)] // each test target uses a different part

pub use halley_tests::browser::{unix_now, wait_ws_connections};
use halley_tests::clients::{self, Client, Login, StepResult};
pub use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{Tenant, TestServer};
use serde_json::Value;

/// The uuid a connection sends in its URL (32 characters, as the JS API does).
pub fn uuid_of(tag: &str) -> String {
    let mut u = tag.to_string();
    while u.len() < 32 {
        u.push('0');
    }
    u.truncate(32);
    u
}

// ---------------------------------------------------------------------------------------------------
// CometQL through PHP mysqli (the client most users run).

/// A tenant's CometQL backend: user = dev_id, password = key, database CometQL_v1.
pub struct Cql {
    pub login: Login,
}

impl Cql {
    pub fn new(server: &TestServer, tenant: &Tenant) -> Cql {
        Cql {
            login: Login::new(
                server.cometql_port(),
                tenant.dev_id.to_string(),
                tenant.key.clone(),
            ),
        }
    }

    /// Runs the statements in order on one PHP mysqli connection; one result per statement.
    pub async fn run<S: Into<String>>(
        &self,
        statements: impl IntoIterator<Item = S>,
    ) -> Vec<StepResult> {
        self.run_with(Client::Php, statements).await
    }

    pub async fn run_with<S: Into<String>>(
        &self,
        client: Client,
        statements: impl IntoIterator<Item = S>,
    ) -> Vec<StepResult> {
        let mut req = self.login.request();
        for s in statements {
            req = req.sql(s);
        }
        let resp = clients::run(client, &req)
            .await
            .unwrap_or_else(|e| panic!("{client} driver: {e:#}"));
        resp.connected()
            .unwrap_or_else(|e| panic!("{client} login: {e:#}"))
            .to_vec()
    }

    /// One statement.
    pub async fn one(&self, statement: impl Into<String>) -> StepResult {
        self.run([statement.into()]).await.remove(0)
    }
}

/// The OK packet's `(affected_rows, insert_id)`.
#[track_caller]
pub fn ok(r: &StepResult) -> (u64, u64) {
    r.ok().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The ERR packet's `(code, message)`.
#[track_caller]
pub fn err(r: &StepResult) -> (i64, String) {
    let e = r.error().unwrap_or_else(|e| panic!("{e:#}"));
    (e.code, e.message.clone())
}

#[track_caller]
pub fn assert_err(r: &StepResult, code: i64, message: &str) {
    assert_eq!(err(r), (code, message.to_string()));
}

/// Column names of a result set.
#[track_caller]
pub fn columns(r: &StepResult) -> Vec<String> {
    r.columns().unwrap_or_else(|e| panic!("{e:#}")).to_vec()
}

/// Rows of a result set; CometQL never sends NULL, so a NULL cell fails the test.
#[track_caller]
pub fn rows(r: &StepResult) -> Vec<Vec<String>> {
    r.rows()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| c.clone().expect("CometQL never sends NULL"))
                .collect()
        })
        .collect()
}

/// Rows as `&str`s, for comparing with literals.
pub fn strs(rows: &[Vec<String>]) -> Vec<Vec<&str>> {
    rows.iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}

pub fn publish_sql(pipe: &str, event: &str, message: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', '{event}', '{}')",
        message.replace('\'', "''")
    )
}

// ---------------------------------------------------------------------------------------------------
// Browser connections.

/// The comet-server connect URL, with the API version and uuid chosen by the test.
pub fn url(
    server: &TestServer,
    dev_id: u64,
    user_id: u64,
    key: &str,
    version: &str,
    uuid: &str,
) -> String {
    format!(
        "ws://{}/ws/sesion={key}&myid={user_id}&devid={dev_id}&v={version}&uuid={uuid}&api=js",
        server.http_addr()
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

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The frame text with every `"message_send_time":<n>` replaced by `"message_send_time":T`, after
/// checking that `<n>` is within seconds of now (queued and history frames carry the original time,
/// which is within the test's own lifetime too).
#[track_caller]
pub fn pin(text: &str) -> String {
    const KEY: &str = "\"message_send_time\":";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        rest = &rest[at + KEY.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let t: i64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("message_send_time is not a number: {text}"));
        let now = unix_now();
        assert!(
            (now - 60..=now + 1).contains(&t),
            "message_send_time {t} is not within a minute of now ({now}): {text}"
        );
        out.push('T');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A JSON string literal (with quotes) of `s`, as the server writes it (serde_json escapes the same way
/// for the characters the tests use).
pub fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The serverInfo frame, pinned.
pub fn server_info(authorized: bool, data: &str) -> String {
    format!(
        r#"{{"authorized":{authorized},"data":{},"event":"serverInfo","message_send_time":T,"pipe":"sys","server":"{}"}}"#,
        js(data),
        halley::commands::server_version()
    )
}
