//! Private-message recovery (issue 14, docs/websocket.md "Private messages: ids and recovery"): a
//! connection that puts `msg_after` in its URL gets `id` in its `msg` frames; reconnecting with the id of
//! the last message it processed it gets what it missed from the user's window, then the queue. Several
//! devices of one user each get every message; at least once on the wire, exactly once after the SDK's
//! dedupe by id. Legacy connections keep byte-identical frames and the old drain. Real server, real
//! sockets, private messages sent over CometQL.

use std::collections::{HashMap, HashSet};

use halley::ids::DevId;
use halley::storage::LimitRow;
use halley_tests::browser::{url, uuid_of, wait_ws_connections, Browser};
use halley_tests::frames::{json, pin};
use halley_tests::limits::set_tenant_limits;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use serde_json::Value;

const USER: u64 = 80;
const KEY: &str = "h80";

async fn server(backend: Backend, tweak: impl FnOnce(&mut halley::config::Config)) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 100_000;
        c.limits.publish_burst = 100_000;
        c.limits.new_connections_per_ip_per_sec = 10_000;
        c.limits.new_connections_per_ip_burst = 10_000;
        tweak(c);
    })
    .await
}

async fn setup(server: &TestServer, name: &str) -> (Tenant, RawMysql) {
    let tenant = server.tenant(name).await;
    let mut q = RawMysql::login(server, &tenant).await;
    q.query(&format!(
        "INSERT INTO users_auth (id, hash) VALUES ({USER}, '{KEY}')"
    ))
    .await
    .assert_ok();
    (tenant, q)
}

async fn send(q: &mut RawMysql, text: &str) {
    q.query(&format!(
        "INSERT INTO users_messages (id, event, message) VALUES ({USER}, 'e', '{text}')"
    ))
    .await
    .assert_ok();
}

/// The user's connection: with `msg_after` when `after` is given (`Some("")`: ids, no last id yet), a
/// legacy one otherwise. On a socket that is reset (RST) rather than closed when it is dropped.
async fn open(server: &TestServer, tenant: &Tenant, after: Option<&str>, tag: &str) -> Browser {
    let uuid = uuid_of(tag);
    let mut u = url(server, tenant.dev_id, USER, KEY, "4.08", &uuid);
    if let Some(after) = after {
        u.push_str(&format!("&msg_after={after}"));
    }
    let socket = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .expect("TCP connect");
    socket.set_zero_linger().expect("SO_LINGER 0");
    let mut ws = WsClient::over(socket, &u).await.expect("WebSocket upgrade");
    let hello = ws.recv_text(WAIT).await.expect("the serverInfo frame");
    assert!(hello.contains(r#""authorized":true"#), "{hello}");
    Browser { ws, hello, uuid }
}

/// A device as the SDK runs it: the id of the last message processed, and the ids seen (the dedupe).
struct Device {
    /// The connection, `None` once it was reset.
    conn: Option<Browser>,
    last: String,
    seen: HashSet<String>,
    /// The texts handed to the page, each once, in order.
    texts: Vec<String>,
    /// Every id with the text it came with, to check one message keeps one id everywhere.
    ids: HashMap<String, String>,
    /// `msg_recovery` signals received.
    signals: Vec<Value>,
}

impl Device {
    fn new(b: Browser) -> Device {
        Device {
            conn: Some(b),
            last: String::new(),
            seen: HashSet::new(),
            texts: Vec::new(),
            ids: HashMap::new(),
            signals: Vec::new(),
        }
    }

    fn b(&mut self) -> &mut Browser {
        self.conn.as_mut().expect("connected")
    }

    /// Drops the connection abruptly: the socket is reset, whatever it holds unread is lost.
    fn reset(&mut self) {
        self.conn = None;
    }

    /// Takes one frame in; `true` when it was a message not seen before.
    fn take(&mut self, frame: &str) -> bool {
        let v = json(frame);
        assert_eq!(v["pipe"], "msg", "{frame}");
        if v["event"] == "msg_recovery" {
            self.signals.push(v["data"].clone());
            return false;
        }
        let id = v["id"].as_str().expect("an id").to_string();
        let text = v["data"].as_str().expect("a text").to_string();
        assert_eq!(
            self.ids.entry(id.clone()).or_insert(text.clone()),
            &text,
            "one id, one message"
        );
        if !self.seen.insert(id.clone()) {
            return false;
        }
        self.last = id;
        self.texts.push(text);
        true
    }

    /// Reads until `n` distinct messages were processed.
    async fn until(&mut self, n: usize) {
        while self.texts.len() < n {
            let frame = self.b().recv().await;
            self.take(&frame);
        }
    }

    /// Whatever is pending, then checks that none of it was new.
    async fn nothing_new(&mut self) {
        for frame in self.b().sync().await {
            assert!(!self.take(&frame), "a message after the end: {frame}");
        }
    }

    async fn reconnect(&mut self, server: &TestServer, tenant: &Tenant, tag: &str) {
        let last = self.last.clone();
        self.conn = Some(open(server, tenant, Some(&last), tag).await);
    }
}

fn texts(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// 50 messages while the user is offline, then two devices come back at once, each with its last id,
/// while 10 more are sent live: each device gets all 60, exactly once after dedupe, in order. The first to
/// drain empties the queue; the other gets the same messages (same ids) from the window.
async fn offline_messages_reach_every_device_once(backend: Backend) {
    let server = server(backend, |_| {}).await;
    let (tenant, mut q) = setup(&server, "devices@example.com").await;
    let mut a = Device::new(open(&server, &tenant, Some(""), "device-a").await);
    let mut b = Device::new(open(&server, &tenant, Some(""), "device-b").await);
    let mut legacy = open(&server, &tenant, None, "legacy").await;
    send(&mut q, "m0").await;
    let first = a.b().recv().await;
    let id0 = json(&first)["id"].as_str().expect("an id").to_string();
    assert_eq!(
        pin(&first),
        format!(r#"{{"data":"m0","event":"e","id":"{id0}","pipe":"msg"}}"#),
        "the id in its alphabetical place"
    );
    assert!(a.take(&first));
    b.until(1).await;
    assert_eq!(b.last, id0, "one id for every connection");
    legacy
        .expect(r#"{"data":"m0","event":"e","pipe":"msg"}"#)
        .await;
    a.reset();
    b.reset();
    drop(legacy);
    wait_ws_connections(&server, tenant.dev_id, 0).await;

    for i in 1..=50 {
        send(&mut q, &format!("q{i}")).await;
    }
    let (ba, bb) = tokio::join!(
        open(&server, &tenant, Some(&id0), "device-a"),
        open(&server, &tenant, Some(&id0), "device-b"),
    );
    (a.conn, b.conn) = (Some(ba), Some(bb));
    let mut live = RawMysql::login(&server, &tenant).await;
    let sender = tokio::spawn(async move {
        for i in 1..=10 {
            send(&mut live, &format!("l{i}")).await;
        }
    });
    a.until(61).await;
    b.until(61).await;
    sender.await.unwrap();
    a.nothing_new().await;
    b.nothing_new().await;
    let mut want = vec!["m0".to_string()];
    want.extend(texts("q", 1..=50));
    want.extend(texts("l", 1..=10));
    assert_eq!(a.texts, want);
    assert_eq!(b.texts, want);
    assert_eq!(a.ids, b.ids, "the same ids on both devices");
    assert!(a.signals.is_empty() && b.signals.is_empty());

    // The queue was drained once: a legacy connection now gets nothing.
    let mut legacy = open(&server, &tenant, None, "legacy").await;
    legacy.expect_nothing().await;
    server.stop().await;
}

/// Messages written to a socket that is then reset, unread, come again when the connection is back with
/// the last id it processed.
async fn a_reset_connection_gets_the_unread_messages_again(backend: Backend) {
    let server = server(backend, |_| {}).await;
    let (tenant, mut q) = setup(&server, "reset@example.com").await;
    let mut a = Device::new(open(&server, &tenant, Some(""), "reset").await);
    for i in 1..=6 {
        send(&mut q, &format!("m{i}")).await;
    }
    a.until(3).await;
    // m4..m6 were written (the sends returned once they were): the socket dies with them unread.
    a.reset();
    wait_ws_connections(&server, tenant.dev_id, 0).await;
    send(&mut q, "m7").await;
    a.reconnect(&server, &tenant, "reset").await;
    a.until(7).await;
    a.nothing_new().await;
    assert_eq!(a.texts, texts("m", 1..=7));
    server.stop().await;
}

/// Without `msg_after`: the frames and the drain of old, byte for byte; a device with ids still gets from
/// the window what the legacy connection drained.
async fn legacy_connections_keep_their_frames_and_drain(backend: Backend) {
    let server = server(backend, |_| {}).await;
    let (tenant, mut q) = setup(&server, "legacy@example.com").await;
    let mut a = Device::new(open(&server, &tenant, Some(""), "ids").await);
    send(&mut q, "m0").await;
    a.until(1).await;
    a.reset();
    wait_ws_connections(&server, tenant.dev_id, 0).await;
    for i in 1..=3 {
        send(&mut q, &format!("q{i}")).await;
    }
    let mut legacy = open(&server, &tenant, None, "legacy").await;
    for i in 1..=3 {
        legacy
            .expect(&format!(
                r#"{{"data":"q{i}","event":"e","fromQueue":true,"message_send_time":T,"pipe":"msg"}}"#
            ))
            .await;
    }
    send(&mut q, "l1").await;
    legacy
        .expect(r#"{"data":"l1","event":"e","pipe":"msg"}"#)
        .await;
    legacy.expect_nothing().await;
    a.reconnect(&server, &tenant, "ids").await;
    let replayed = a.b().recv().await;
    let id = json(&replayed)["id"].as_str().expect("an id").to_string();
    assert_eq!(
        pin(&replayed),
        format!(
            r#"{{"data":"q1","event":"e","fromQueue":true,"id":"{id}","message_send_time":T,"pipe":"msg"}}"#
        ),
        "as it was drained, with its id"
    );
    a.take(&replayed);
    a.until(5).await;
    a.nothing_new().await;
    assert_eq!(a.texts, ["m0", "q1", "q2", "q3", "l1"]);
    server.stop().await;
}

/// An id the node cannot resume after (unknown, older than the window, from before a restart): nothing
/// from the window, the `msg_recovery` signal, and the queue as usual.
async fn an_unknown_id_replays_nothing(backend: Backend) {
    const SIGNAL: &str = r#"{"data":{"recovered":false},"event":"msg_recovery","pipe":"msg"}"#;
    let mut server = server(backend, |c| c.recovery.window_messages = 3).await;
    let (tenant, mut q) = setup(&server, "unknown@example.com").await;
    let mut a = Device::new(open(&server, &tenant, Some(""), "unknown").await);
    for i in 1..=6 {
        send(&mut q, &format!("m{i}")).await;
    }
    a.until(6).await;
    let ids: Vec<String> = {
        let mut by_text: Vec<(String, String)> =
            a.ids.iter().map(|(i, t)| (t.clone(), i.clone())).collect();
        by_text.sort();
        by_text.into_iter().map(|(_, i)| i).collect()
    };
    a.reset();
    wait_ws_connections(&server, tenant.dev_id, 0).await;
    send(&mut q, "q1").await;

    // A well-formed id no message had.
    let mut b = open(
        &server,
        &tenant,
        Some("01890a5d-ac96-774b-bcce-b302099a8057"),
        "unknown",
    )
    .await;
    b.expect(SIGNAL).await;
    let queued = b.recv().await;
    assert!(
        pin(&queued).starts_with(r#"{"data":"q1","event":"e","fromQueue":true,"id":""#),
        "{queued}"
    );
    b.expect_nothing().await;
    drop(b);
    wait_ws_connections(&server, tenant.dev_id, 0).await;

    // The window keeps 3 (m5, m6, q1; m4 just before them): m2 is too old, m4 is not.
    let mut b = open(&server, &tenant, Some(&ids[1]), "old").await;
    b.expect(SIGNAL).await;
    b.expect_nothing().await;
    drop(b);
    wait_ws_connections(&server, tenant.dev_id, 0).await;
    let mut c = Device::new(open(&server, &tenant, Some(&ids[3]), "recent").await);
    c.until(3).await;
    assert_eq!(c.texts, ["m5", "m6", "q1"]);
    c.nothing_new().await;
    assert!(c.signals.is_empty());
    c.reset();
    wait_ws_connections(&server, tenant.dev_id, 0).await;

    // A restart: the windows are gone; only the queue survives.
    drop(q);
    server.restart().await;
    let mut q = RawMysql::login(&server, &tenant).await;
    send(&mut q, "q2").await;
    let mut b = open(&server, &tenant, Some(&ids[5]), "restart").await;
    b.expect(SIGNAL).await;
    let queued = b.recv().await;
    assert!(pin(&queued).starts_with(r#"{"data":"q2","#), "{queued}");
    b.expect_nothing().await;
    server.stop().await;
}

/// A tenant's own window (`halley tenant limits --window-messages`) bounds its users' private windows
/// too, and their bytes count in the tenant's share (on `/metrics` as `halley_private_window_bytes`).
async fn a_tenant_window_bounds_private_windows(backend: Backend) {
    const SIGNAL: &str = r#"{"data":{"recovered":false},"event":"msg_recovery","pipe":"msg"}"#;
    let server = server(backend, |_| {}).await;
    let (tenant, mut q) = setup(&server, "tenantwin@example.com").await;
    set_tenant_limits(
        &server,
        LimitRow {
            dev_id: DevId(tenant.dev_id),
            publishes_per_sec: None,
            publish_burst: None,
            websocket_connections: None,
            queue_ttl_secs: None,
            window_messages: Some(2),
            window_secs: None,
        },
    )
    .await;
    let mut a = Device::new(open(&server, &tenant, Some(""), "tw").await);
    for i in 1..=5 {
        send(&mut q, &format!("m{i}")).await;
    }
    a.until(5).await;
    let id_of = |d: &Device, text: &str| {
        d.ids
            .iter()
            .find(|(_, t)| t.as_str() == text)
            .map(|(i, _)| i.clone())
            .expect("seen")
    };
    let (m2, m3) = (id_of(&a, "m2"), id_of(&a, "m3"));
    assert!(server.ctx().hub.registry().private_window_bytes() > 0);
    assert_eq!(
        server
            .ctx()
            .hub
            .registry()
            .tenant_window_bytes(DevId(tenant.dev_id)),
        server.ctx().hub.registry().private_window_bytes(),
        "counted in the tenant's share"
    );
    a.reset();
    wait_ws_connections(&server, tenant.dev_id, 0).await;

    // Two kept (m4, m5; m3 just before them): after m2 cannot be honoured, after m3 can.
    let mut b = open(&server, &tenant, Some(&m2), "tw-old").await;
    b.expect(SIGNAL).await;
    b.expect_nothing().await;
    drop(b);
    wait_ws_connections(&server, tenant.dev_id, 0).await;
    let mut c = Device::new(open(&server, &tenant, Some(&m3), "tw-recent").await);
    c.until(2).await;
    assert_eq!(c.texts, ["m4", "m5"]);
    c.nothing_new().await;
    assert!(c.signals.is_empty());
    server.stop().await;
}

on_both_backends!(
    a_tenant_window_bounds_private_windows,
    offline_messages_reach_every_device_once,
    a_reset_connection_gets_the_unread_messages_again,
    legacy_connections_keep_their_frames_and_drain,
    an_unknown_id_replays_nothing,
);
