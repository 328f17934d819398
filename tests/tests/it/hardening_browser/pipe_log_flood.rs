//! Review High 1: a `pipe_log` flood by sockets that do not read, measured on the real binary in its own
//! process (`/proc/<pid>/status`).

use std::net::SocketAddr;
use std::time::Duration;

use halley_tests::mysql_raw::RawMysql;
use halley_tests::process::ServerProcess;
use halley_tests::wait::WAIT;
use halley_tests::ws::raw::{encode_frame, upgrade_request, RawWs, OP_CLOSE, OP_TEXT};
use halley_tests::Backend;
use serde_json::Value;

const BIG_PIPE: &str = "web_big";
const BIG_KEEP: usize = 99;
const BIG_MESSAGE: usize = 60 * 1024;
const FLOODERS: usize = 3;

fn big_message(i: usize) -> String {
    let head = format!("big{i:03}-");
    format!("{head}{}", "y".repeat(BIG_MESSAGE - head.len()))
}

/// `count` masked `pipe_log` frames of the big pipe.
fn pipe_logs(count: usize) -> Vec<u8> {
    let command = format!("pipe_log\n{BIG_PIPE}\nm");
    (0..count)
        .flat_map(|_| encode_frame(true, OP_TEXT, command.as_bytes(), Some([1, 2, 3, 4])))
        .collect()
}

/// What one flooding socket received: history entries (checked in order against the pipe's messages)
/// and whether it ended with the server's close frame.
#[derive(Debug, Default)]
struct Flooded {
    entries: usize,
    wrong: Vec<String>,
    closed: Option<(u16, String)>,
    ended: Option<String>,
}

impl Flooded {
    fn take(&mut self, text: &str) {
        if text.len() < BIG_MESSAGE {
            return; // serverInfo, a budget refusal
        }
        let v: Value = serde_json::from_str(text).unwrap_or_default();
        let want = big_message(self.entries % BIG_KEEP);
        if v["pipe"] != BIG_PIPE || v["data"].as_str() != Some(want.as_str()) {
            self.wrong.push(text.chars().take(80).collect());
        }
        self.entries += 1;
    }
}

/// Sends the upgrade request followed by as many `pipe_log` commands as fit in 14 KiB, reads a trickle,
/// sends as many again, then a close frame, and reads everything up to the server's close.
async fn flood_pipe_log(addr: SocketAddr, dev_id: u64) -> Flooded {
    let path = format!("/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid=abc&api=js");
    let mut request = upgrade_request(&addr.to_string(), &path, &[]);
    let batch = pipe_logs(1).len();
    let count = (14 * 1024 - request.len()) / batch;
    request.extend(pipe_logs(count));
    let mut out = Flooded::default();
    let (mut ws, response) = RawWs::connect(&addr.to_string(), &request)
        .await
        .expect("upgrade");
    assert_eq!(response.status, 101, "{}", response.head);
    // A trickle: the client takes a little now and then, which keeps its connection alive.
    for _ in 0..40 {
        match ws.read_frame(WAIT).await {
            Ok(Some(f)) => out.take(f.text().unwrap_or("")),
            Ok(None) => {
                out.ended = Some("ended without a close frame".into());
                return out;
            }
            Err(e) => {
                out.ended = Some(format!("{e:#}"));
                return out;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More later, then a close once the answers are read.
    let mut more = pipe_logs(count);
    more.extend(encode_frame(
        true,
        OP_CLOSE,
        &1000u16.to_be_bytes(),
        Some([5, 6, 7, 8]),
    ));
    if let Err(e) = ws.send_bytes(&more).await {
        out.ended = Some(format!("{e:#}"));
        return out;
    }
    loop {
        match ws.read_frame(Duration::from_secs(60)).await {
            Ok(Some(f)) if f.opcode == OP_CLOSE => {
                out.closed = f.close();
                return out;
            }
            Ok(Some(f)) => out.take(f.text().unwrap_or("")),
            Ok(None) => {
                out.ended = Some("ended without a close frame".into());
                return out;
            }
            Err(e) => {
                out.ended = Some(format!("{e:#}"));
                return out;
            }
        }
    }
}

/// A public history pipe of 99 messages of 60 KiB, and sockets that send hundreds of `pipe_log` commands
/// with their upgrade request (and more later) but read only a trickle at first. Before the fix each
/// socket ran every command it had sent at once and queued the answers of its read burst (50 x 99 x
/// 60 KiB, ~300 MB); now it runs commands only while its unread answers stay under 256 KiB, and encodes
/// history entries from the cached rows only as the client takes them.
pub(super) async fn a_pipe_log_flood_holds_little_memory(backend: Backend) {
    // A command budget large enough that the budget's close never ends the flood: the refusals of the
    // storage-read budget are what a flooder gets (after its burst of 50, one more a second: this is
    // about memory, not about how much a flooder may read).
    let server = ServerProcess::start(
        backend,
        "[websocket]\ncommands_per_sec = 1000\ncommand_burst = 100000\nstorage_reads_per_sec = 1\n",
    )
    .await
    .expect("halley");
    let t = server.tenant("pipelog@example.com").await.expect("tenant");
    let mut m = RawMysql::login_at(server.cometql_addr(), &t.dev_id.to_string(), &t.key).await;
    m.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES ('{BIG_PIPE}', {BIG_KEEP})"
    ))
    .await
    .assert_ok();
    for i in 0..BIG_KEEP {
        m.query(&format!(
            "INSERT INTO pipes_messages (name, event, message) VALUES ('{BIG_PIPE}', 'e', '{}')",
            big_message(i)
        ))
        .await
        .assert_ok();
    }
    // A reader that reads: the whole history, in order (this also caches it, as any reader would).
    let (mut reader, _) = RawWs::connect(
        &server.http_addr().to_string(),
        &[
            upgrade_request(
                &server.http_addr().to_string(),
                &format!(
                    "/ws/sesion=&myid=0&devid={}&v=4.08&uuid=abc&api=js",
                    t.dev_id
                ),
                &[],
            ),
            pipe_logs(1),
        ]
        .concat(),
    )
    .await
    .expect("reader");
    let mut read = Flooded::default();
    while read.entries < BIG_KEEP {
        let f = reader.read_frame(WAIT).await.unwrap().expect("a frame");
        read.take(f.text().unwrap_or(""));
    }
    assert!(read.wrong.is_empty(), "{:?}", read.wrong);
    let before = server.memory();

    let floods: Vec<_> = (0..FLOODERS)
        .map(|_| tokio::spawn(flood_pipe_log(server.http_addr(), t.dev_id)))
        .collect();
    let mut results = Vec::new();
    for f in floods {
        results.push(f.await.expect("flooder"));
    }
    let after = server.memory();
    let grew_kib = after.rss_kib.saturating_sub(before.rss_kib);
    let peak_kib = after.hwm_kib.saturating_sub(before.hwm_kib);
    let entries: Vec<usize> = results.iter().map(|r| r.entries).collect();
    eprintln!(
        "{backend:?}: before {before:?}, after {after:?}: RSS +{grew_kib} KiB, peak +{peak_kib} KiB; \
         entries per socket {entries:?}"
    );
    const BOUND_KIB: u64 = 24 * 1024;
    assert!(
        grew_kib < BOUND_KIB && peak_kib < BOUND_KIB,
        "{FLOODERS} pipe_log floods grew the server by {grew_kib} KiB (peak +{peak_kib} KiB), bound {BOUND_KIB} KiB"
    );
    // Each socket still got every answer it was allowed, whole and in order, then its close echoed.
    let read_burst = server.config().websocket.storage_read_burst as usize;
    for r in &results {
        assert!(r.wrong.is_empty(), "{:?}", r.wrong);
        assert_eq!(r.ended, None, "{r:?}");
        assert_eq!(r.closed, Some((1000, String::new())), "{r:?}");
        assert!(
            r.entries % BIG_KEEP == 0 && r.entries >= read_burst * BIG_KEEP,
            "{} entries",
            r.entries
        );
    }
    drop(reader);
    server.stop().await;
}
