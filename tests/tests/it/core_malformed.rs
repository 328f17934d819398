//! Hostile and malformed input on both ports. Each gets its clear answer (an ERR packet, an error
//! frame, a close code) and the server keeps serving everyone else: after each one, a subscriber that
//! was connected all along still receives a publish. Also: two MySQL packets in one TCP write keep the
//! session in sync.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use halley_tests::browser::{anonymous, subscriber};
use halley_tests::clients::{self, Client};
use halley_tests::cometql::{insert_literal_sql, login, quote};
use halley_tests::frames::expect_pipe_frame;
use halley_tests::mysql_raw::{frame, handshake_response, parse_err, RawMysql, Reply};
use halley_tests::wait::WAIT;
use halley_tests::ws::raw::{upgrade_request, RawWs, UpgradeResponse};
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const WATCHED: &str = "watched";

/// A subscriber connected before the hostile input and a CometQL session to publish with: after each
/// hostile step, a publish must still reach the subscriber.
struct Bystander {
    ws: WsClient,
    publisher: RawMysql,
    published: usize,
}

impl Bystander {
    async fn new(server: &TestServer, tenant: &Tenant) -> Bystander {
        Bystander {
            ws: subscriber(server, tenant.dev_id, WATCHED, 0).await,
            publisher: RawMysql::login(server, tenant).await,
            published: 0,
        }
    }

    async fn still_served(&mut self, after: &str) {
        self.published += 1;
        let message = format!("still here {} after {after}", self.published);
        let reply = self
            .publisher
            .query(&insert_literal_sql(WATCHED, "msg", &quote(&message)))
            .await;
        assert_eq!(
            reply,
            Reply::Ok {
                affected_rows: 0,
                insert_id: 0
            },
            "publish after {after}"
        );
        expect_pipe_frame(&mut self.ws, WATCHED, "msg", &message).await;
    }
}

async fn two_packets_in_one_write_stay_in_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("sync@example.com").await;
    let mut ws = subscriber(&server, tenant.dev_id, "sync", 0).await;
    let mut raw = RawMysql::login(&server, &tenant).await;

    // Two COM_QUERY packets in a single write.
    let mut bytes = RawMysql::com_query(&insert_literal_sql("sync", "e", "'first'"));
    bytes.extend(RawMysql::com_query(
        "SELECT * FROM pipes WHERE name = 'sync'",
    ));
    raw.write(&bytes).await.expect("write");
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Ok {
            affected_rows: 0,
            insert_id: 0
        }
    );
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Rows {
            columns: vec!["name".into(), "users".into()],
            rows: vec![vec!["sync".into(), "1".into()]],
        }
    );
    expect_pipe_frame(&mut ws, "sync", "e", "first").await;

    // Three in one write, with an error in the middle and a ping at the end.
    let mut bytes = RawMysql::com_query("SELECT DATABASE()");
    bytes.extend(RawMysql::com_query("SELECT * FROM nope WHERE name = 'x'"));
    bytes.extend(frame(0, &[0x0E]));
    raw.write(&bytes).await.expect("write");
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Rows {
            columns: vec!["DATABASE()".into()],
            rows: vec![vec!["CometQL_v1".into()]],
        }
    );
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Err {
            code: 15,
            message: "Table doesn't exist".into()
        }
    );
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Ok {
            affected_rows: 0,
            insert_id: 0
        }
    );

    // One packet split over two writes also works, and the session is still in sync.
    let bytes = RawMysql::com_query(&insert_literal_sql("sync", "e", "'second'"));
    let (a, b) = bytes.split_at(7);
    raw.write(a).await.expect("write");
    raw.write(b).await.expect("write");
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Ok {
            affected_rows: 0,
            insert_id: 0
        }
    );
    expect_pipe_frame(&mut ws, "sync", "e", "second").await;
    server.stop().await;
}

/// Reads whatever the server sends until it closes; returns the packets (ERR ones decoded).
async fn answers_until_closed(raw: &mut RawMysql, limit: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut packets = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match raw.packet_within(left).await {
            Ok(Some((_, p))) => packets.push(p),
            Ok(None) => return packets,
            // The server may also drop the connection in the middle of nothing we can frame.
            Err(e) if e.to_string().contains("inside a packet") => return packets,
            Err(e) => panic!("the server neither answered nor closed: {e:#}"),
        }
    }
}

async fn malformed_cometql_input(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.cometql.handshake_timeout_secs = 1;
        c.limits.failed_logins_per_ip_per_min = 10_000;
    })
    .await;
    let tenant = server.tenant("hostile@example.com").await;
    let mut bystander = Bystander::new(&server, &tenant).await;
    let user = tenant.dev_id.to_string();

    // 1. An HTTP request on the CometQL port: a handshake error, then the connection is closed.
    let mut raw = RawMysql::connect(&server).await.expect("greeting");
    raw.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let answers = answers_until_closed(&mut raw, WAIT).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    let (code, message) = parse_err(&answers[0]).unwrap();
    assert_eq!((code, message.as_str()), (1043, "Bad handshake"));
    drop(raw);
    bystander.still_served("an HTTP request").await;

    // 2. Random bytes instead of a handshake response: an ERR or a close, never a hang.
    // (At once: a round that the server leaves to its handshake timeout takes 1 s.)
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let rounds = (0..8).map(|round| {
        let garbage: Vec<u8> = (0..rng.gen_range(1..2048)).map(|_| rng.gen()).collect();
        let server = &server;
        async move {
            let mut raw = RawMysql::connect(server).await.expect("greeting");
            let _ = raw.try_write(&garbage).await;
            let answers = answers_until_closed(&mut raw, WAIT).await;
            assert!(answers.len() <= 1, "round {round}: {answers:?}");
            for a in &answers {
                let (code, _) = parse_err(a)
                    .unwrap_or_else(|e| panic!("round {round}: not an ERR packet: {e:#}"));
                assert_ne!(code, 0, "round {round}");
            }
        }
    });
    join_all(rounds).await;
    bystander.still_served("random handshake bytes").await;

    // 3. A truncated handshake response: closed by the handshake timeout (1 s here).
    // A client that connects and says nothing at all is closed the same way.
    let truncated = async {
        let mut raw = RawMysql::connect(&server).await.expect("greeting");
        let scramble = halley::mysql::auth::scramble(&raw.salt, tenant.key.as_bytes());
        let whole = frame(1, &handshake_response(&user, &scramble, Some("CometQL_v1")));
        raw.write(&whole[..whole.len() / 2]).await.expect("write");
        raw
    };
    for (what, mut raw) in [
        ("truncated", truncated.await),
        (
            "silent",
            RawMysql::connect(&server).await.expect("greeting"),
        ),
    ] {
        // Measured from the connect, when the server's handshake clock starts (give or take).
        let started = raw.connected_at;
        let answers = answers_until_closed(&mut raw, WAIT).await;
        let took = started.elapsed();
        assert!(answers.is_empty(), "{what}: {answers:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{what}: closed after {took:?}, want about 1 s (the handshake timeout)"
        );
    }
    bystander.still_served("a truncated handshake").await;

    // 4. Unknown command bytes: a clear ERR each, and the session stays usable.
    let mut raw = RawMysql::login(&server, &tenant).await;
    for code in [0x1Fu8, 0xDE, 0x1B, 0x1A] {
        raw.send(0, &[code, 0xAD, 0xBE]).await.expect("send");
        assert_eq!(
            raw.reply().await.unwrap(),
            Reply::Err {
                code: 2,
                message: format!("Command 0x{code:02x} is not supported")
            }
        );
    }
    raw.send(0, &[]).await.expect("send");
    assert_eq!(
        raw.reply().await.unwrap(),
        Reply::Err {
            code: 2,
            message: "Empty command packet".into()
        }
    );
    // COM_STMT_PREPARE: a clear error too, not the reference's bare EOF.
    raw.send(0, b"\x16SELECT * FROM pipes WHERE name = ?")
        .await
        .expect("send");
    match raw.reply().await.unwrap() {
        Reply::Err { code: 2, message } => {
            assert!(message.contains("COM_STMT_PREPARE"), "{message}")
        }
        other => panic!("prepare answered {other:?}"),
    }
    // A query that is not UTF-8.
    raw.send(0, b"\x03SELECT * FROM pipes WHERE name = '\xff\xfe'")
        .await
        .expect("send");
    match raw.reply().await.unwrap() {
        Reply::Err { code, message } => assert!(code > 0 && !message.is_empty()),
        other => panic!("a non-UTF-8 query answered {other:?}"),
    }
    assert_eq!(
        raw.query("SELECT * FROM pipes WHERE name = 'watched'")
            .await,
        Reply::Rows {
            columns: vec!["name".into(), "users".into()],
            rows: vec![vec!["watched".into(), "1".into()]],
        }
    );
    drop(raw);
    bystander.still_served("unknown command bytes").await;

    // 5. An oversized packet (over max_packet_bytes, 1 MiB): ERROR 11, then the connection closes.
    let mut raw = RawMysql::login(&server, &tenant).await;
    let max = server.ctx().config.cometql.max_packet_bytes;
    let mut payload = vec![0x03];
    payload.extend(insert_literal_sql(WATCHED, "msg", "'").as_bytes());
    payload.resize(max + 1, b'x');
    let _ = raw.try_write(&frame(0, &payload)).await;
    let answers = answers_until_closed(&mut raw, WAIT).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        parse_err(&answers[0]).unwrap(),
        (11, "Data is too long".to_owned())
    );
    drop(raw);
    // Garbage framing after login (a length of 16 MiB): the same.
    let mut raw = RawMysql::login(&server, &tenant).await;
    let _ = raw.try_write(b"\xff\xff\xff\x00garbage").await;
    let answers = answers_until_closed(&mut raw, WAIT).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(parse_err(&answers[0]).unwrap().0, 11);
    drop(raw);
    bystander.still_served("an oversized packet").await;

    // A real client is still served normally.
    let resp = clients::run(
        Client::Php,
        &login(&server, &tenant)
            .request()
            .sql(insert_literal_sql(WATCHED, "msg", "'from php'")),
    )
    .await
    .unwrap();
    assert_eq!(resp.step(0).unwrap().ok().unwrap(), (0, 0));
    expect_pipe_frame(&mut bystander.ws, WATCHED, "msg", "from php").await;
    server.stop().await;
}

/// The error frame of a refused connect URL: the reference's pre-4.0 shape, `data` as JSON text.
fn check_url_error(frame: &Value, code: u64, text: &str) {
    assert_eq!(frame["pipe"], "sys", "{frame}");
    assert_eq!(frame["event"], "error", "{frame}");
    let data: Value = serde_json::from_str(
        frame["data"]
            .as_str()
            .unwrap_or_else(|| panic!("data is not text: {frame}")),
    )
    .expect("data is JSON text");
    assert_eq!(data["error_code"], code, "{frame}");
    assert_eq!(
        data["error"],
        format!("Error code {code}({text})"),
        "{frame}"
    );
    assert_eq!(
        data["info"], "Closed due to error. See last message.",
        "{frame}"
    );
}

/// An anonymous connection of `dev` on the comet-server URL, upgraded by hand (for frames a
/// well-behaved client would never send); also returns the upgrade answer.
async fn raw_anonymous(host: &str, dev: u64, uuid: &str) -> (RawWs, UpgradeResponse) {
    RawWs::connect(
        host,
        &upgrade_request(
            host,
            &format!("/ws/sesion=&myid=0&devid={dev}&v=4.08&uuid={uuid}&api=js"),
            &[],
        ),
    )
    .await
    .unwrap()
}

async fn malformed_websocket_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("ws@example.com").await;
    let mut bystander = Bystander::new(&server, &tenant).await;
    let host = server.http_addr().to_string();
    let dev = tenant.dev_id;
    let uuid = "0123456789abcdef0123456789abcdef";

    // URLs with a missing part: the upgrade completes, one error frame, then the close.
    let cases = [
        (
            format!("/ws/myid=0&devid={dev}&v=4.08&uuid={uuid}&api=js"),
            401,
            "Invalid request, session ID not found",
        ),
        (
            format!("/ws/sesion=&devid={dev}&v=4.08&uuid={uuid}&api=js"),
            401,
            "Invalid request, the user ID can not be found",
        ),
        (
            format!("/ws/sesion=&myid=0&v=4.08&uuid={uuid}&api=js"),
            406,
            "Invalid request, no public key found [1]",
        ),
        (
            format!("/ws/sesion=&myid=0&devid={dev}&uuid={uuid}&api=js"),
            418,
            "Invalid request Not assigned client api version",
        ),
        (
            format!("/comet-server/ws/sesion=&myid=0&devid={dev}&v=&uuid={uuid}"),
            418,
            "Invalid request Not assigned client api version",
        ),
    ];
    for (path, code, text) in &cases {
        let mut ws = WsClient::connect(&format!("ws://{host}{path}"))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:#}"));
        let frame = ws.recv_json(WAIT).await.unwrap();
        check_url_error(&frame, *code, text);
        let closed = ws.expect_closed(WAIT).await.unwrap();
        assert_eq!(
            closed.as_ref().map(|c| c.0),
            Some(1008),
            "{path}: {closed:?}"
        );
        bystander.still_served(&format!("URL {path}")).await;
    }

    // An unknown dev_id: an error frame naming it, then the close.
    let mut ws = WsClient::connect(&server.ws_url(987_654, 0, ""))
        .await
        .unwrap();
    let frame = ws.recv_json(WAIT).await.unwrap();
    assert_eq!(frame["pipe"], "sys", "{frame}");
    assert_eq!(frame["event"], "error", "{frame}");
    let error = frame["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("dev_id"), "{frame}");
    let closed = ws.expect_closed(WAIT).await.unwrap();
    assert_eq!(closed.as_ref().map(|c| c.0), Some(1008), "{closed:?}");
    bystander.still_served("an unknown dev_id").await;

    // A message over the 64 KiB limit: closed with 1009.
    let mut ws = anonymous(&server, dev).await;
    ws.send_text(&format!("subscription\n{}", "a".repeat(70 * 1024)))
        .await
        .unwrap();
    let closed = ws.expect_closed(WAIT).await.unwrap();
    assert_eq!(closed.as_ref().map(|c| c.0), Some(1009), "{closed:?}");
    bystander.still_served("an oversized frame").await;

    // The same with a hand-made frame whose header alone announces 1 MiB.
    let (mut raw, resp) = raw_anonymous(&host, dev, uuid).await;
    assert_eq!(resp.status, 101);
    let hello = raw.read_frame(WAIT).await.unwrap().expect("serverInfo");
    assert!(hello.text().unwrap_or_default().contains("serverInfo"));
    let mut header = vec![0x81, 0x80 | 127];
    header.extend((1u64 << 20).to_be_bytes());
    header.extend([1, 2, 3, 4]);
    raw.send_bytes(&header).await.unwrap();
    let frames = raw.read_until_closed(WAIT).await.unwrap();
    let close = frames.last().and_then(|f| f.close());
    assert_eq!(close.map(|c| c.0), Some(1009), "{frames:?}");
    bystander.still_served("an oversized frame header").await;

    // An unknown command: closed.
    let mut ws = anonymous(&server, dev).await;
    ws.send_text("no_such_command\nwhatever").await.unwrap();
    let closed = ws.expect_closed(WAIT).await.unwrap();
    assert_eq!(closed.as_ref().map(|c| c.0), Some(1008), "{closed:?}");
    bystander.still_served("an unknown command").await;

    // Not WebSocket framing at all after the upgrade (unmasked, reserved bits): a protocol error close.
    let (mut raw, _) = raw_anonymous(&host, dev, uuid).await;
    raw.read_frame(WAIT).await.unwrap().expect("serverInfo");
    raw.send_bytes(b"\xf1\x05hello").await.unwrap();
    let frames = raw.read_until_closed(WAIT).await.unwrap();
    let close = frames.last().and_then(|f| f.close());
    assert_eq!(close.map(|c| c.0), Some(1002), "{frames:?}");
    bystander.still_served("garbage frames").await;

    server.stop().await;
}

on_both_backends!(
    two_packets_in_one_write_stay_in_sync,
    malformed_cometql_input,
    malformed_websocket_input,
);
