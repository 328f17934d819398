//! The smallest MySQL client that logs in with mysql_native_password and runs a query: enough to see a key
//! work, stop working, and a live session being closed when its key is revoked.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::WAIT;

pub struct MySql {
    stream: TcpStream,
}

async fn read_packet(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .expect("packet in time")
        .ok()?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some((head[3], body))
}

async fn write_packet(stream: &mut TcpStream, seq: u8, body: &[u8]) {
    let len = (body.len() as u32).to_le_bytes();
    let mut out = vec![len[0], len[1], len[2], seq];
    out.extend_from_slice(body);
    stream.write_all(&out).await.unwrap();
}

/// The salt of a v10 greeting: 8 bytes after the version string and the connection id, then 12 more.
fn greeting_salt(g: &[u8]) -> [u8; 20] {
    let nul = g[1..].iter().position(|&b| b == 0).unwrap() + 1;
    let p = nul + 1 + 4;
    let mut salt = [0u8; 20];
    salt[..8].copy_from_slice(&g[p..p + 8]);
    let part2 = p + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    salt[8..].copy_from_slice(&g[part2..part2 + 12]);
    salt
}

impl MySql {
    /// Logs in as `user` with `password`; Err(error code) when refused.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<MySql, u16> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let (_, greeting) = read_packet(&mut stream).await.expect("greeting");
        let salt = greeting_salt(&greeting);
        let caps: u32 = 0x1 | 0x200 | 0x8000 | 0x80000;
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0u8; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        let auth = halley::mysql::auth::scramble(&salt, password.as_bytes());
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        p.extend_from_slice(b"mysql_native_password\0");
        write_packet(&mut stream, 1, &p).await;
        let (_, reply) = read_packet(&mut stream).await.expect("login answer");
        match reply[0] {
            0x00 => Ok(MySql { stream }),
            0xff => Err(u16::from_le_bytes([reply[1], reply[2]])),
            other => panic!("unexpected login answer 0x{other:02x}"),
        }
    }

    /// Runs a statement; Ok on an OK packet, Err(code) on an error.
    pub async fn query(&mut self, sql: &str) -> Result<(), u16> {
        let mut body = vec![0x03];
        body.extend_from_slice(sql.as_bytes());
        write_packet(&mut self.stream, 0, &body).await;
        let (_, reply) = read_packet(&mut self.stream).await.expect("query answer");
        match reply[0] {
            0x00 => Ok(()),
            0xff => Err(u16::from_le_bytes([reply[1], reply[2]])),
            _ => Ok(()), // a result set
        }
    }

    /// True once the server has closed the session (EOF, possibly after an error packet).
    pub async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
