//! Helpers shared by the `limits_*` and `isolation_*` integration tests: a raw MySQL client (fast, and able
//! to connect from another loopback address or stop half-way through a handshake), browser connections
//! whose subscriptions are known to be registered, and the registry's counters.
//! Not a test target itself (a `mod.rs` in a sub-folder is not autodiscovered by cargo).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use halley::ids::{DevId, PipeName};
use halley_tests::wait::eventually;
use halley_tests::ws::WsClient;
use halley_tests::{Tenant, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Every single wait in these tests is bounded by this (or less).
pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------
// Raw MySQL protocol client.

/// What the server answered to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
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
}

impl Reply {
    pub fn rows(&self) -> &[Vec<String>] {
        match self {
            Reply::Rows { rows, .. } => rows,
            other => panic!("expected rows, got {other:?}"),
        }
    }

    pub fn assert_ok(&self) {
        assert!(
            matches!(self, Reply::Ok { .. }),
            "expected OK, got {self:?}"
        );
    }

    pub fn err(&self) -> (u16, &str) {
        match self {
            Reply::Err { code, message } => (*code, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

pub struct Mysql {
    stream: TcpStream,
    buf: Vec<u8>,
    salt: [u8; 20],
}

pub fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// HandshakeResponse41 for `mysql_native_password` (LONG_PASSWORD, PROTOCOL_41, SECURE_CONNECTION,
/// PLUGIN_AUTH, plus CONNECT_WITH_DB when a database is named).
fn handshake_response(user: &str, auth: &[u8], db: Option<&str>) -> Vec<u8> {
    let caps: u32 = 1 | 0x0200 | 0x8000 | 0x8_0000 | if db.is_some() { 8 } else { 0 };
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
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
    let mut salt = [0u8; 20];
    salt[..8].copy_from_slice(g.get(p1..p1 + 8).context("short greeting")?);
    salt[8..].copy_from_slice(g.get(p2..p2 + 12).context("short greeting")?);
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
    Ok(bytes
        .iter()
        .enumerate()
        .fold(0u64, |v, (i, x)| v | u64::from(*x) << (8 * i)))
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

fn parse_err(p: &[u8]) -> anyhow::Result<(u16, String)> {
    if p.first() != Some(&0xFF) || p.len() < 9 || p[3] != b'#' {
        bail!("not an ERR packet: {p:?}");
    }
    Ok((
        u16::from_le_bytes([p[1], p[2]]),
        String::from_utf8_lossy(&p[9..]).into_owned(),
    ))
}

impl Mysql {
    /// Opens a TCP connection to the CometQL port (from `from`, a loopback address, when given) and
    /// reads the greeting.
    pub async fn connect_from(addr: SocketAddr, from: Option<IpAddr>) -> anyhow::Result<Mysql> {
        let connect = async {
            match from {
                None => TcpStream::connect(addr).await,
                Some(ip) => {
                    let socket = TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(ip, 0))?;
                    socket.connect(addr).await
                }
            }
        };
        let stream = tokio::time::timeout(WAIT, connect)
            .await
            .map_err(|_| anyhow!("CometQL connect timed out"))?
            .context("CometQL connect")?;
        let mut m = Mysql {
            stream,
            buf: Vec::new(),
            salt: [0; 20],
        };
        let (seq, g) = m
            .packet(WAIT)
            .await?
            .ok_or_else(|| anyhow!("closed before the greeting"))?;
        if seq != 0 {
            bail!("greeting with sequence id {seq}");
        }
        m.salt = greeting_salt(&g)?;
        Ok(m)
    }

    pub async fn connect(server: &TestServer) -> anyhow::Result<Mysql> {
        Self::connect_from(server.cometql_addr(), None).await
    }

    /// Sends the handshake response; `Ok(Err((code, message)))` when the server refuses the login.
    pub async fn handshake(
        mut self,
        user: &str,
        key: &str,
        db: Option<&str>,
    ) -> anyhow::Result<Result<Mysql, (u16, String)>> {
        let scramble = halley::mysql::auth::scramble(&self.salt, key.as_bytes());
        self.write(&frame(1, &handshake_response(user, &scramble, db)))
            .await?;
        let (_, p) = self
            .packet(WAIT)
            .await?
            .ok_or_else(|| anyhow!("closed instead of a login reply"))?;
        match p.first() {
            Some(0x00) => Ok(Ok(self)),
            Some(0xFF) => Ok(Err(parse_err(&p)?)),
            _ => bail!("unexpected login reply {p:?}"),
        }
    }

    /// Logs in to `CometQL_v1`; panics unless the server accepts.
    pub async fn login(server: &TestServer, tenant: &Tenant) -> Mysql {
        Self::connect(server)
            .await
            .expect("connect")
            .handshake(&tenant.dev_id.to_string(), &tenant.key, Some("CometQL_v1"))
            .await
            .expect("login reply")
            .unwrap_or_else(|e| panic!("login of dev {} refused: {e:?}", tenant.dev_id))
    }

    /// The next packet, `None` when the server closed the connection between packets.
    pub async fn packet(&mut self, limit: Duration) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
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
                bail!("connection closed inside a packet");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .map_err(|_| anyhow!("write blocked"))?
            .context("write")
    }

    /// Reads one complete reply (OK, ERR or a whole text result set).
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        let (_, first) = self
            .packet(WAIT)
            .await?
            .ok_or_else(|| anyhow!("connection closed instead of a reply"))?;
        match first.first() {
            Some(0x00) => {
                let mut pos = 1;
                let affected_rows = lenenc_int(&first, &mut pos)?;
                let insert_id = lenenc_int(&first, &mut pos)?;
                Ok(Reply::Ok {
                    affected_rows,
                    insert_id,
                })
            }
            Some(0xFF) => {
                let (code, message) = parse_err(&first)?;
                Ok(Reply::Err { code, message })
            }
            _ => {
                let mut pos = 0;
                let count = lenenc_int(&first, &mut pos)? as usize;
                let mut columns = Vec::with_capacity(count);
                for _ in 0..count {
                    let (_, def) = self.packet(WAIT).await?.context("closed in columns")?;
                    let mut pos = 0;
                    for _ in 0..4 {
                        lenenc_str(&def, &mut pos)?;
                    }
                    columns.push(lenenc_str(&def, &mut pos)?);
                }
                let (_, eof) = self.packet(WAIT).await?.context("closed before EOF")?;
                if !is_eof(&eof) {
                    bail!("expected EOF after the columns, got {eof:?}");
                }
                let mut rows = Vec::new();
                loop {
                    let (_, row) = self.packet(WAIT).await?.context("closed in rows")?;
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
                Ok(Reply::Rows { columns, rows })
            }
        }
    }

    /// COM_QUERY and its reply.
    pub async fn query(&mut self, sql: &str) -> Reply {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        self.write(&frame(0, &p)).await.expect("send query");
        self.reply()
            .await
            .unwrap_or_else(|e| panic!("reply to {}: {e:#}", cut(sql)))
    }

    /// COM_INIT_DB (what `USE db` sends) and its reply.
    pub async fn init_db(&mut self, db: &str) -> Reply {
        let mut p = vec![0x02];
        p.extend_from_slice(db.as_bytes());
        self.write(&frame(0, &p)).await.expect("send init_db");
        self.reply().await.expect("reply to COM_INIT_DB")
    }

    /// Waits until the server closes the connection, discarding anything it sends first.
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

fn cut(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A CometQL string literal: single quotes, quotes doubled (the server reads NO_BACKSLASH_ESCAPES first).
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn insert_sql(pipe: &str, event: &str, message: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ({}, {}, {})",
        q(pipe),
        q(event),
        q(message)
    )
}

/// One INSERT with a row per message.
pub fn multi_insert_sql<'a>(
    pipe: &str,
    event: &str,
    messages: impl IntoIterator<Item = &'a str>,
) -> String {
    let rows: Vec<String> = messages
        .into_iter()
        .map(|m| format!("({}, {}, {})", q(pipe), q(event), q(m)))
        .collect();
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES {}",
        rows.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------------
// Browser side.

/// A browser connection, its serverInfo frame read and returned.
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
    (ws, hello)
}

/// An anonymous browser connection.
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

/// Sends `subscription\n<pipes>` and waits until the hub has registered the connection on each pipe;
/// `already[i]` is how many connections of this dev were on `pipes[i]` before.
pub async fn subscribe(
    server: &TestServer,
    ws: &mut WsClient,
    dev_id: u64,
    pipes: &[&str],
    already: &[usize],
) {
    ws.send_text(&format!("subscription\n{}", pipes.join("\n")))
        .await
        .expect("send subscription");
    for (pipe, n) in pipes.iter().zip(already) {
        wait_subscribers(server, dev_id, pipe, n + 1).await;
    }
}

/// WebSocket connections of the tenant, as the hub counts them.
pub fn ws_connections(server: &TestServer, dev_id: u64) -> i64 {
    server
        .ctx()
        .hub
        .registry()
        .tenant(DevId(dev_id))
        .websocket_connections
        .load(Ordering::Relaxed)
}

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

/// The tenant's `rate_limited` counter.
pub fn rate_limited(server: &TestServer, dev_id: u64) -> u64 {
    server
        .ctx()
        .hub
        .registry()
        .tenant(DevId(dev_id))
        .rate_limited
        .load(Ordering::Relaxed)
}

/// Refusals counted by the limiters, all limits together.
pub fn refusals(server: &TestServer) -> u64 {
    server.ctx().limits.refusals.load(Ordering::Relaxed)
}

/// The next text frame as JSON.
pub async fn next_json(ws: &mut WsClient) -> Value {
    ws.recv_json(WAIT).await.expect("a frame")
}

/// The `data` of the next frame, which must be a pipe message on `pipe`.
pub async fn next_message(ws: &mut WsClient, pipe: &str) -> String {
    let v = next_json(ws).await;
    assert_eq!(v["pipe"], pipe, "expected a message on {pipe}, got {v}");
    v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data is not a string: {v}"))
        .to_owned()
}

/// The browser's error frame (`pipe: sys, event: error`): its `data.error` text.
pub fn error_text(v: &Value) -> &str {
    assert_eq!(v["pipe"], "sys", "not an error frame: {v}");
    assert_eq!(v["event"], "error", "not an error frame: {v}");
    v["data"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error frame without data.error: {v}"))
}
