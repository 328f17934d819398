//! docs/compatibility.md §3 and §5, slow consumers: each connection has a bounded outbox
//! (`websocket.outbox_frames`); a client that stops reading is cut off once its outbox overflows (close code 1008
//! with the reason, counted in `slow_consumers_dropped`), and it never slows the others: during a 10,000-message
//! burst two normal subscribers receive every message, in order, exactly as they do when no client is stalled. A
//! client that stops reading with room left in its outbox is dropped once its socket takes nothing for
//! `write_timeout`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use halley_tests::browser::{anonymous, subscribe, subscribers, wait_subscribers};
use halley_tests::cometql::{insert_sql, multi_insert_sql};
use halley_tests::frames::next_message;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::ws::raw::{
    decode_frame, encode_frame, upgrade_request, RawFrame, OP_CLOSE, OP_TEXT,
};
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

const OUTBOX: usize = 64;
const BURST: usize = 10_000;
/// Rows per INSERT: fewer than the outbox holds, as a PHP backend looping over INSERTs would publish.
const ROWS: usize = 10;
/// How far the publisher may run ahead of the normal subscribers' reading. With `LAG + ROWS` under the
/// outbox size, a subscriber that keeps reading can never overflow, however the machine schedules the
/// server's tasks: only a client that stops reading can.
const LAG: usize = 40;
const PIPE: &str = "firehose";
/// Seconds a socket that accepts nothing is given before the server drops it.
const WRITE_TIMEOUT: u64 = 3;

/// The message `i` of burst `tag`: ~800 bytes, so that the burst (~9 MB) is more than a stalled socket's
/// kernel buffers hold (at most 4 MB for sending here, and the client's tiny receive buffer).
fn message(tag: &str, i: usize) -> String {
    format!("{tag}-{i:05}-{}", "p".repeat(800))
}

/// A raw WebSocket client with a tiny receive buffer that reads nothing unless asked.
struct Stalled {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Stalled {
    async fn subscribe(server: &TestServer, dev_id: u64, already: usize) -> Stalled {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut stream = tokio::time::timeout(WAIT, socket.connect(server.http_addr()))
            .await
            .expect("connect in time")
            .expect("connect");
        let host = server.http_addr().to_string();
        let path = format!(
            "/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid=0123456789abcdef0123456789abcdef&api=js"
        );
        stream
            .write_all(&upgrade_request(&host, &path, &[]))
            .await
            .expect("send upgrade");
        let mut pending = Vec::new();
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("upgrade answered in time")
                .expect("read");
            assert!(n > 0, "closed during the upgrade");
            pending.extend_from_slice(&chunk[..n]);
        };
        assert!(
            pending.starts_with(b"HTTP/1.1 101"),
            "{:?}",
            String::from_utf8_lossy(&pending)
        );
        pending.drain(..head_end);
        let sub = encode_frame(
            true,
            OP_TEXT,
            format!("subscription\n{PIPE}").as_bytes(),
            Some([1, 2, 3, 4]),
        );
        stream.write_all(&sub).await.expect("send subscription");
        wait_subscribers(server, dev_id, PIPE, already + 1).await;
        Stalled { stream, pending }
    }

    /// Starts reading again: every frame the server still sends, up to its close (or the end of the
    /// connection), within `limit`. `cut_ok`: the connection may end inside a frame (a socket write
    /// that timed out half-way), which then is not returned.
    async fn read_all(mut self, limit: Duration, cut_ok: bool) -> anyhow::Result<Vec<RawFrame>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            while let Some((frame, used)) = decode_frame(&self.pending)? {
                self.pending.drain(..used);
                let close = frame.opcode == OP_CLOSE;
                frames.push(frame);
                if close {
                    return Ok(frames);
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => bail!("still open after {limit:?} ({} frames read)", frames.len()),
                Ok(Err(_)) | Ok(Ok(0)) => {
                    if !self.pending.is_empty() && !cut_ok {
                        bail!("connection ended inside a frame");
                    }
                    return Ok(frames);
                }
                Ok(Ok(n)) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

type Reader = (
    tokio::task::JoinHandle<anyhow::Result<Vec<String>>>,
    watch::Receiver<usize>,
);

/// Reads `BURST` messages of `PIPE` in a task of its own, reporting how many it has read; returns their
/// texts in arrival order.
fn collect(mut ws: WsClient) -> Reader {
    let (progress, watched) = watch::channel(0);
    let task = tokio::spawn(async move {
        let mut got = Vec::with_capacity(BURST);
        while got.len() < BURST {
            let v = ws
                .recv_json(WAIT)
                .await
                .with_context(|| format!("after {} messages", got.len()))?;
            if v["pipe"] != PIPE {
                bail!("unexpected frame after {} messages: {v}", got.len());
            }
            got.push(v["data"].as_str().context("data")?.to_owned());
            progress.send_replace(got.len());
        }
        ws.close().await.ok();
        Ok(got)
    });
    (task, watched)
}

/// Publishes `BURST` messages with multi-row INSERTs over one CometQL session, never more than `LAG` ahead
/// of the slowest of `readers`.
async fn burst(
    server: &TestServer,
    tenant: &Tenant,
    tag: &str,
    readers: &mut [watch::Receiver<usize>],
) {
    let mut cql = RawMysql::login(server, tenant).await;
    for start in (0..BURST).step_by(ROWS) {
        let behind = start.saturating_sub(LAG);
        for r in readers.iter_mut() {
            // A reader that ended (an error) shows in its task's result.
            let _ = tokio::time::timeout(WAIT, r.wait_for(|&n| n >= behind))
                .await
                .unwrap_or_else(|_| panic!("a normal subscriber is stuck before message {behind}"));
        }
        let messages: Vec<String> = (start..start + ROWS).map(|i| message(tag, i)).collect();
        cql.query(&multi_insert_sql(
            PIPE,
            "ev",
            messages.iter().map(String::as_str),
        ))
        .await
        .assert_ok();
    }
}

fn slow_dropped(server: &TestServer) -> u64 {
    server
        .ctx()
        .stats
        .slow_consumers_dropped
        .load(Ordering::Relaxed)
}

fn assert_complete(got: &[String], tag: &str, who: &str) {
    assert_eq!(got.len(), BURST, "{who} received {} of {BURST}", got.len());
    for (i, m) in got.iter().enumerate() {
        assert_eq!(
            m,
            &message(tag, i),
            "{who}: message {i} out of order or altered"
        );
    }
}

/// The frames a stalled client got: serverInfo, then a gap-free prefix of the burst, then the close.
fn check_stalled(frames: &[RawFrame], tag: &str) -> (usize, Option<(u16, String)>) {
    let texts: Vec<&str> = frames.iter().filter_map(RawFrame::text).collect();
    assert!(
        texts.first().is_some_and(|t| t.contains("serverInfo")),
        "first frame: {:?}",
        texts.first()
    );
    let messages: Vec<String> = texts[1..]
        .iter()
        .map(|t| {
            let v: serde_json::Value = serde_json::from_str(t).expect("JSON frame");
            v["data"].as_str().expect("data").to_owned()
        })
        .collect();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(
            m,
            &message(tag, i),
            "the stalled client's frames are a prefix of the burst"
        );
    }
    assert!(
        messages.len() < BURST,
        "the stalled client was not cut off: it received all {BURST}"
    );
    (messages.len(), frames.last().and_then(RawFrame::close))
}

async fn slow_consumer_is_cut_off_and_slows_no_one(backend: Backend) {
    const { assert!(LAG + ROWS < OUTBOX) };
    let server = TestServer::start_with(backend, |c| {
        c.websocket.outbox_frames = OUTBOX;
        c.websocket.write_timeout_secs = WRITE_TIMEOUT;
        c.limits.publishes_per_sec = 1_000_000;
        c.limits.publish_burst = 1_000_000;
    })
    .await;
    let t = server.tenant("a@example.com").await;

    // 1. The baseline: two normal subscribers, nobody stalled.
    let mut normal = Vec::new();
    for i in 0..2 {
        let mut ws = anonymous(&server, t.dev_id).await;
        subscribe(&server, &mut ws, t.dev_id, &[PIPE], &[i]).await;
        normal.push(ws);
    }
    let (readers, mut progress): (Vec<_>, Vec<_>) = normal.into_iter().map(collect).unzip();
    burst(&server, &t, "base", &mut progress).await;
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.await.expect("reader task").expect("baseline burst");
        assert_complete(&got, "base", &format!("normal subscriber {i} (baseline)"));
    }
    wait_subscribers(&server, t.dev_id, PIPE, 0).await;
    assert_eq!(slow_dropped(&server), 0, "no slow consumer in the baseline");

    // 2. The same with two stalled clients: one resumes reading once it has been cut off (and reads the
    // 1008 close), the other never reads again (dropped when its socket write times out).
    let mut normal = Vec::new();
    for i in 0..2 {
        let mut ws = anonymous(&server, t.dev_id).await;
        subscribe(&server, &mut ws, t.dev_id, &[PIPE], &[i]).await;
        normal.push(ws);
    }
    let resumes = Stalled::subscribe(&server, t.dev_id, 2).await;
    let never = Stalled::subscribe(&server, t.dev_id, 3).await;
    let (readers, mut progress): (Vec<_>, Vec<_>) = normal.into_iter().map(collect).unzip();
    let publisher = burst(&server, &t, "live", &mut progress);
    let resumer = async {
        eventually(Duration::from_secs(30), || async {
            match slow_dropped(&server) {
                n if n >= 2 => Ok(()),
                n => Err(anyhow!("{n} slow consumers dropped so far, want both")),
            }
        })
        .await
        .expect("the stalled clients overflow their outboxes during the burst");
        resumes.read_all(WAIT, false).await
    };
    let ((), resumed) = tokio::join!(publisher, resumer);
    for (i, r) in readers.into_iter().enumerate() {
        let got = r
            .await
            .expect("reader task")
            .expect("burst with stalled clients");
        assert_complete(
            &got,
            "live",
            &format!("normal subscriber {i} (with stalled clients)"),
        );
    }

    // The one that read again: a gap-free prefix, then close 1008 with the reason.
    let (n, close) = check_stalled(&resumed.expect("frames of the resumed client"), "live");
    assert_eq!(
        close,
        Some((1008, "slow consumer: outbox overflow".to_string())),
        "after {n} messages"
    );

    // The one that never reads: off the pipe and disconnected within the write timeout.
    eventually(Duration::from_secs(WRITE_TIMEOUT + 5), || async {
        match subscribers(&server, t.dev_id, PIPE) {
            0 => Ok(()),
            n => Err(anyhow!("{n} connections still subscribed")),
        }
    })
    .await
    .expect("every connection of the burst is gone");
    let frames = never
        .read_all(WAIT, true)
        .await
        .expect("the connection ends");
    let (n, close) = check_stalled(&frames, "live");
    assert!(
        close.as_ref().is_none_or(|c| c.0 == 1008),
        "after {n} messages: {close:?}"
    );
    assert_eq!(
        slow_dropped(&server),
        2,
        "each stalled connection counted once"
    );
    assert_eq!(server.ctx().stats.total_websocket_connections(), 0);

    // The tenant is served as before.
    let mut ws = anonymous(&server, t.dev_id).await;
    subscribe(&server, &mut ws, t.dev_id, &[PIPE], &[0]).await;
    RawMysql::login(&server, &t)
        .await
        .query(&insert_sql(PIPE, "ev", "after"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut ws, PIPE).await, "after");
    server.stop().await;
}

/// A client that stops reading while its outbox still has room: no overflow, so no 1008, but once its socket
/// has taken nothing for `write_timeout` the server gives up on it and frees what was queued.
async fn a_stalled_socket_is_dropped_after_the_write_timeout(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.websocket.outbox_frames = 2 * BURST;
        c.websocket.write_timeout_secs = WRITE_TIMEOUT;
        c.limits.publishes_per_sec = 1_000_000;
        c.limits.publish_burst = 1_000_000;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let stalled = Stalled::subscribe(&server, t.dev_id, 0).await;
    burst(&server, &t, "held", &mut []).await;
    eventually(Duration::from_secs(WRITE_TIMEOUT + 10), || async {
        match subscribers(&server, t.dev_id, PIPE) {
            0 => Ok(()),
            n => Err(anyhow!("{n} connections still subscribed")),
        }
    })
    .await
    .expect("the stalled connection is dropped once its writes time out");
    assert_eq!(server.ctx().stats.total_websocket_connections(), 0);
    assert_eq!(slow_dropped(&server), 0, "not an overflow");
    let frames = stalled
        .read_all(WAIT, true)
        .await
        .expect("the connection ends");
    let (n, close) = check_stalled(&frames, "held");
    assert!(
        close.is_none(),
        "after {n} messages, no close frame: {close:?}"
    );
    server.stop().await;
}

on_both_backends!(slow_consumer_is_cut_off_and_slows_no_one);
on_both_backends!(a_stalled_socket_is_dropped_after_the_write_timeout);
