//! Helpers shared by the `core_*` integration tests: WebSocket subscribers that are known to be
//! subscribed before anything is published, the exact pipe-frame check, and a minimal raw MySQL client
//! for what real drivers cannot do (two packets in one write, garbage, truncated handshakes).
//! Not a test target itself (a `mod.rs` in a sub-folder is not autodiscovered by cargo).
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use halley::ids::{DevId, PipeName};
use halley_tests::clients::Login;
use halley_tests::wait::eventually;
use halley_tests::ws::WsClient;
use halley_tests::{Tenant, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every single wait in these tests is bounded by this (or less).
pub const WAIT: Duration = Duration::from_secs(10);

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// How the tenant's backend logs in: user = dev_id, password = key, database CometQL_v1.
pub fn login(server: &TestServer, tenant: &Tenant) -> Login {
    Login::new(
        server.cometql_port(),
        tenant.dev_id.to_string(),
        tenant.key.clone(),
    )
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

/// An anonymous browser connection of `dev_id` (comet-server URL), its serverInfo frame read.
pub async fn connect(server: &TestServer, dev_id: u64) -> WsClient {
    let mut ws = WsClient::connect(&server.ws_url(dev_id, 0, ""))
        .await
        .expect("WebSocket connect");
    let hello = ws.recv_json(WAIT).await.expect("serverInfo frame");
    assert_eq!(hello["event"], "serverInfo", "{hello}");
    assert_eq!(hello["pipe"], "sys", "{hello}");
    ws
}

/// Sends `subscription\n<pipe>` (no acknowledgement exists in the protocol).
pub async fn subscribe(ws: &mut WsClient, pipe: &str) {
    ws.send_text(&format!("subscription\n{pipe}"))
        .await
        .expect("send subscription");
}

/// One subscriber of `pipe`, returned once the hub has registered it (so a publish reaches it).
/// `already` is how many connections of this dev were subscribed to the pipe before.
pub async fn subscriber(server: &TestServer, dev_id: u64, pipe: &str, already: usize) -> WsClient {
    let mut ws = connect(server, dev_id).await;
    subscribe(&mut ws, pipe).await;
    wait_subscribers(server, dev_id, pipe, already + 1).await;
    ws
}

/// Checks a CometQL-published pipe frame key by key and value by value; returns its message_send_time.
/// The keys must be exactly these four, in this (alphabetical) order, as the reference sends them.
pub fn check_pipe_frame(text: &str, pipe: &str, event: &str, data: &str) -> i64 {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["data", "event", "message_send_time", "pipe"],
        "frame keys: {text}"
    );
    // Alphabetical order in the text itself (serde_json's map does not keep the order).
    let positions: Vec<usize> = [
        "\"data\":",
        "\"event\":",
        "\"message_send_time\":",
        "\"pipe\":",
    ]
    .iter()
    .map(|k| {
        text.find(k)
            .unwrap_or_else(|| panic!("{k} missing: {text}"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys are not in alphabetical order: {text}"
    );
    assert_eq!(obj["pipe"], pipe, "pipe of {text}");
    assert_eq!(obj["event"], event, "event of {text}");
    let got = obj["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data is not a string: {text}"));
    if got != data {
        let at = got
            .bytes()
            .zip(data.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(data.len()));
        panic!(
            "data differs at byte {at} (got {} bytes, want {}): got {:?}... want {:?}...",
            got.len(),
            data.len(),
            &got[floor(got, at.saturating_sub(20))..floor(got, (at + 40).min(got.len()))],
            &data[floor(data, at.saturating_sub(20))..floor(data, (at + 40).min(data.len()))],
        );
    }
    let t = obj["message_send_time"]
        .as_i64()
        .unwrap_or_else(|| panic!("message_send_time is not an integer: {text}"));
    let now = unix_now();
    assert!(
        (now - 10..=now + 1).contains(&t),
        "message_send_time {t} is not within seconds of now ({now}): {text}"
    );
    t
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The next text frame of `ws`, checked as a pipe frame carrying `data`.
pub async fn expect_pipe_frame(ws: &mut WsClient, pipe: &str, event: &str, data: &str) -> i64 {
    let text = ws.recv_text(WAIT).await.expect("a pipe frame");
    check_pipe_frame(&text, pipe, event, data)
}

/// A CometQL string literal the way a PHP developer writes one by hand: single quotes, quotes doubled.
pub fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn insert_sql(pipe: &str, event: &str, message_literal: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', '{event}', {message_literal})"
    )
}

// ---------------------------------------------------------------------------------------------------
// Raw MySQL protocol client.

/// What the server answered to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawReply {
    Ok {
        affected_rows: u64,
        insert_id: u64,
    },
    Err {
        code: u16,
        message: String,
    },
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Eof,
}

pub struct RawMysql {
    stream: TcpStream,
    buf: Vec<u8>,
    pub salt: [u8; 20],
    pub greeting: Vec<u8>,
    /// When the TCP connection was established.
    pub connected_at: std::time::Instant,
}

/// Client capabilities of the handshake response: LONG_PASSWORD, PROTOCOL_41, SECURE_CONNECTION,
/// PLUGIN_AUTH, plus CONNECT_WITH_DB when a database is named.
fn client_caps(with_db: bool) -> u32 {
    1 | 0x0200 | 0x8000 | 0x8_0000 | if with_db { 8 } else { 0 }
}

pub fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// HandshakeResponse41 for `mysql_native_password`.
pub fn handshake_response(user: &str, auth: &[u8], db: Option<&str>) -> Vec<u8> {
    let mut p = client_caps(db.is_some()).to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45); // utf8mb4_general_ci
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    if let Some(db) = db {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(b"mysql_native_password\0");
    p
}

fn greeting_salt(g: &[u8]) -> anyhow::Result<[u8; 20]> {
    if g.first() != Some(&10) {
        bail!("not a protocol-10 greeting: {g:?}");
    }
    let v_end = g.iter().position(|&b| b == 0).context("no version end")?;
    let p1 = v_end + 1 + 4;
    let p2 = p1 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    let part1 = g.get(p1..p1 + 8).context("short greeting")?;
    let part2 = g.get(p2..p2 + 12).context("short greeting")?;
    let mut salt = [0u8; 20];
    salt[..8].copy_from_slice(part1);
    salt[8..].copy_from_slice(part2);
    Ok(salt)
}

fn lenenc_int(b: &[u8], pos: &mut usize) -> anyhow::Result<u64> {
    let first = *b.get(*pos).context("truncated length")?;
    *pos += 1;
    let n = match first {
        0..=250 => return Ok(u64::from(first)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => bail!("bad length-encoded integer 0x{first:02x}"),
    };
    let bytes = b.get(*pos..*pos + n).context("truncated length")?;
    *pos += n;
    let mut v = 0u64;
    for (i, x) in bytes.iter().enumerate() {
        v |= u64::from(*x) << (8 * i);
    }
    Ok(v)
}

fn lenenc_str(b: &[u8], pos: &mut usize) -> anyhow::Result<String> {
    let len = lenenc_int(b, pos)? as usize;
    let s = b.get(*pos..*pos + len).context("truncated string")?;
    *pos += len;
    Ok(String::from_utf8_lossy(s).into_owned())
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xFE) && p.len() < 9
}

pub fn parse_err(p: &[u8]) -> anyhow::Result<(u16, String)> {
    if p.first() != Some(&0xFF) || p.len() < 9 {
        bail!("not an ERR packet: {p:?}");
    }
    let code = u16::from_le_bytes([p[1], p[2]]);
    if p[3] != b'#' {
        bail!("ERR without SQLSTATE marker: {p:?}");
    }
    Ok((code, String::from_utf8_lossy(&p[9..]).into_owned()))
}

impl RawMysql {
    /// Connects and reads the greeting.
    pub async fn connect(server: &TestServer) -> RawMysql {
        let connected_at = std::time::Instant::now();
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(server.cometql_addr()))
            .await
            .expect("CometQL connect in time")
            .expect("CometQL connect");
        let mut raw = RawMysql {
            stream,
            buf: Vec::new(),
            salt: [0; 20],
            greeting: Vec::new(),
            connected_at,
        };
        let (seq, g) = raw.packet().await.expect("read").expect("a greeting");
        assert_eq!(seq, 0, "greeting sequence id");
        raw.salt = greeting_salt(&g).expect("greeting");
        raw.greeting = g;
        raw
    }

    /// Connects and logs in as `user` with `key` (mysql_native_password); panics unless it gets the OK.
    pub async fn login(server: &TestServer, user: &str, key: &str) -> RawMysql {
        let mut raw = Self::connect(server).await;
        let scramble = halley::mysql::auth::scramble(&raw.salt, key.as_bytes());
        raw.send(1, &handshake_response(user, &scramble, Some("CometQL_v1")))
            .await;
        let (seq, ok) = raw.packet().await.unwrap().expect("a login reply");
        assert_eq!(seq, 2, "login OK sequence id");
        assert_eq!(ok.first(), Some(&0x00), "login refused: {ok:?}");
        raw
    }

    /// The next packet, `Ok(None)` when the server closed the connection (FIN or reset) between
    /// packets; an error on timeout or when it closed in the middle of one.
    pub async fn packet(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        self.packet_within(WAIT).await
    }

    pub async fn packet_within(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], 0]) as usize;
                if self.buf.len() >= 4 + len {
                    let seq = self.buf[3];
                    let payload = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Ok(Some((seq, payload)));
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let n = match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => bail!("no complete packet from the server within {limit:?}"),
                Ok(Err(_)) => 0,
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!(
                    "connection closed inside a packet ({} bytes pending)",
                    self.buf.len()
                );
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Writes that may fail because the server already closed (hostile input tests).
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    pub async fn send(&mut self, seq: u8, payload: &[u8]) {
        self.write(&frame(seq, payload)).await;
    }

    /// COM_QUERY packet bytes (sequence id 0).
    pub fn com_query(sql: &str) -> Vec<u8> {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        frame(0, &p)
    }

    /// Reads one complete reply (OK, ERR, EOF or a whole text result set).
    pub async fn reply(&mut self) -> anyhow::Result<RawReply> {
        let (_, first) = self
            .packet()
            .await?
            .ok_or_else(|| anyhow!("connection closed instead of a reply"))?;
        match first.first() {
            Some(0x00) => {
                let mut pos = 1;
                let affected_rows = lenenc_int(&first, &mut pos)?;
                let insert_id = lenenc_int(&first, &mut pos)?;
                Ok(RawReply::Ok {
                    affected_rows,
                    insert_id,
                })
            }
            Some(0xFF) => {
                let (code, message) = parse_err(&first)?;
                Ok(RawReply::Err { code, message })
            }
            _ if is_eof(&first) => Ok(RawReply::Eof),
            _ => {
                let mut pos = 0;
                let count = lenenc_int(&first, &mut pos)? as usize;
                let mut columns = Vec::with_capacity(count);
                for _ in 0..count {
                    let (_, def) = self.packet().await?.context("closed in column defs")?;
                    let mut pos = 0;
                    for _ in 0..4 {
                        lenenc_str(&def, &mut pos)?; // catalog, schema, table, org_table
                    }
                    columns.push(lenenc_str(&def, &mut pos)?);
                }
                let (_, eof) = self.packet().await?.context("closed before EOF")?;
                if !is_eof(&eof) {
                    bail!("expected EOF after the column definitions, got {eof:?}");
                }
                let mut rows = Vec::new();
                loop {
                    let (_, row) = self.packet().await?.context("closed in rows")?;
                    if is_eof(&row) {
                        break;
                    }
                    let mut pos = 0;
                    let mut values = Vec::with_capacity(count);
                    for _ in 0..count {
                        values.push(lenenc_str(&row, &mut pos)?);
                    }
                    rows.push(values);
                }
                Ok(RawReply::Rows { columns, rows })
            }
        }
    }

    pub async fn query(&mut self, sql: &str) -> RawReply {
        self.write(&Self::com_query(sql)).await;
        self.reply().await.expect("a reply")
    }

    /// Waits until the server closes the connection, discarding whatever it sends before.
    pub async fn expect_closed(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => bail!("the connection is still open after {limit:?}"),
                Ok(Err(_)) | Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => continue,
            }
        }
    }
}
