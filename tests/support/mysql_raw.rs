//! A minimal raw MySQL protocol client for what real drivers cannot do: two packets in one write,
//! garbage, truncated handshakes, connecting from another loopback address, counting packets. It logs
//! in with `mysql_native_password` (the server's own `scramble`), sends COM_QUERY / COM_INIT_DB and reads
//! OK, ERR, EOF and whole text result sets. Every read and write is bounded by [`WAIT`] (or less).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::wait::WAIT;
use crate::{Tenant, TestServer};

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
    Eof,
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

/// One packet: 3-byte length, sequence id, payload.
pub fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// HandshakeResponse41 for `mysql_native_password` (LONG_PASSWORD, PROTOCOL_41, SECURE_CONNECTION,
/// PLUGIN_AUTH, plus CONNECT_WITH_DB when a database is named).
pub fn handshake_response(user: &str, auth: &[u8], db: Option<&str>) -> Vec<u8> {
    let caps: u32 = 1 | 0x0200 | 0x8000 | 0x8_0000 | if db.is_some() { 8 } else { 0 };
    let mut p = caps.to_le_bytes().to_vec();
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

/// An ERR packet's `(code, message)`; an error unless it is one, with its SQLSTATE marker.
pub fn parse_err(p: &[u8]) -> anyhow::Result<(u16, String)> {
    if p.first() != Some(&0xFF) || p.len() < 9 {
        bail!("not an ERR packet: {p:?}");
    }
    if p[3] != b'#' {
        bail!("ERR without SQLSTATE marker: {p:?}");
    }
    Ok((
        u16::from_le_bytes([p[1], p[2]]),
        String::from_utf8_lossy(&p[9..]).into_owned(),
    ))
}

/// The first 120 bytes of `s` (on a character boundary), for error messages.
fn cut(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub struct RawMysql {
    stream: TcpStream,
    buf: Vec<u8>,
    pub salt: [u8; 20],
    pub greeting: Vec<u8>,
    /// When the TCP connection was established.
    pub connected_at: Instant,
}

impl RawMysql {
    /// Opens a TCP connection to `addr` (from `from`, a loopback address, when given) and reads the
    /// greeting.
    pub async fn connect_from(addr: SocketAddr, from: Option<IpAddr>) -> anyhow::Result<RawMysql> {
        let connected_at = Instant::now();
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
        Self::over_at(stream, connected_at).await
    }

    /// Reads the greeting on a connection already made (one that sent a PROXY protocol header first).
    pub async fn over(stream: TcpStream) -> anyhow::Result<RawMysql> {
        Self::over_at(stream, Instant::now()).await
    }

    async fn over_at(stream: TcpStream, connected_at: Instant) -> anyhow::Result<RawMysql> {
        let mut m = RawMysql {
            stream,
            buf: Vec::new(),
            salt: [0; 20],
            greeting: Vec::new(),
            connected_at,
        };
        let (seq, g) = m
            .packet()
            .await?
            .ok_or_else(|| anyhow!("closed before the greeting"))?;
        if seq != 0 {
            bail!("greeting with sequence id {seq}");
        }
        m.salt = greeting_salt(&g)?;
        m.greeting = g;
        Ok(m)
    }

    /// Connects to the server's CometQL port and reads the greeting.
    pub async fn connect(server: &TestServer) -> anyhow::Result<RawMysql> {
        Self::connect_from(server.cometql_addr(), None).await
    }

    /// The socket, right after the greeting (for a client that goes on in TLS); an error if the server sent
    /// more than the greeting.
    pub fn into_tcp(self) -> anyhow::Result<TcpStream> {
        if !self.buf.is_empty() {
            bail!(
                "the server sent {} bytes after the greeting",
                self.buf.len()
            );
        }
        Ok(self.stream)
    }

    /// Sends the handshake response; `Ok(Err((code, message)))` when the server refuses the login.
    pub async fn handshake(
        mut self,
        user: &str,
        key: &str,
        db: Option<&str>,
    ) -> anyhow::Result<Result<RawMysql, (u16, String)>> {
        let scramble = halley::mysql::auth::scramble(&self.salt, key.as_bytes());
        self.send(1, &handshake_response(user, &scramble, db))
            .await?;
        let (seq, p) = self
            .packet()
            .await?
            .ok_or_else(|| anyhow!("closed instead of a login reply"))?;
        match p.first() {
            Some(0x00) if seq == 2 => Ok(Ok(self)),
            Some(0x00) => bail!("login OK with sequence id {seq}, want 2"),
            Some(0xFF) => Ok(Err(parse_err(&p)?)),
            _ => bail!("unexpected login reply {p:?}"),
        }
    }

    /// Logs in to `CometQL_v1` at `addr` as `user` with `key`; panics unless the server accepts.
    pub async fn login_at(addr: SocketAddr, user: &str, key: &str) -> RawMysql {
        Self::connect_from(addr, None)
            .await
            .expect("connect")
            .handshake(user, key, Some("CometQL_v1"))
            .await
            .expect("login reply")
            .unwrap_or_else(|e| panic!("login of {user} refused: {e:?}"))
    }

    /// Logs in as the tenant (user = dev_id, password = key) to `CometQL_v1`; panics unless accepted.
    pub async fn login(server: &TestServer, tenant: &Tenant) -> RawMysql {
        Self::login_at(
            server.cometql_addr(),
            &tenant.dev_id.to_string(),
            &tenant.key,
        )
        .await
    }

    /// The next packet, `Ok(None)` when the server closed the connection (FIN or reset) between
    /// packets; an error on timeout ([`WAIT`]) or when it closed in the middle of one.
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

    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.try_write(bytes).await.context("write")
    }

    /// A write that may fail because the server already closed (hostile input tests).
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// One packet with sequence id `seq`.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> anyhow::Result<()> {
        self.write(&frame(seq, payload)).await
    }

    /// COM_QUERY packet bytes (sequence id 0).
    pub fn com_query(sql: &str) -> Vec<u8> {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        frame(0, &p)
    }

    /// Reads one complete reply (OK, ERR, EOF or a whole text result set).
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        let (_, first) = self
            .packet()
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
            _ if is_eof(&first) => Ok(Reply::Eof),
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
                Ok(Reply::Rows { columns, rows })
            }
        }
    }

    /// COM_QUERY and its reply; panics when none comes.
    pub async fn query(&mut self, sql: &str) -> Reply {
        self.write(&Self::com_query(sql)).await.expect("send query");
        self.reply()
            .await
            .unwrap_or_else(|e| panic!("reply to {}: {e:#}", cut(sql)))
    }

    /// COM_INIT_DB (what `USE db` sends) and its reply.
    pub async fn init_db(&mut self, db: &str) -> Reply {
        let mut p = vec![0x02];
        p.extend_from_slice(db.as_bytes());
        self.send(0, &p).await.expect("send init_db");
        self.reply().await.expect("reply to COM_INIT_DB")
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
