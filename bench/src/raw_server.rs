//! The raw baseline: the least a server can do to serve the same clients. It accepts the comet-server
//! WebSocket URL, answers the upgrade and a hello frame, records `subscription` commands, and on each
//! publish encodes one frame and writes it straight to every subscriber's socket from the publishing task
//! (one `write` per subscriber, no per-connection queue or task wake-up unless a socket is full).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::raw_control::{parse_request, Request};
use crate::wsproto::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

struct Sock {
    stream: TcpStream,
    /// Bytes a full socket could not take yet; a flusher task owns writing while it is non-empty.
    pending: Mutex<BytesMut>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sock {
    /// Writes now if the socket takes it; queues the rest behind a flusher otherwise.
    fn send(self: &Arc<Sock>, bytes: &[u8]) {
        let mut pending = lock(&self.pending);
        if !pending.is_empty() {
            pending.extend_from_slice(bytes);
            return;
        }
        let written = match self.stream.try_write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => return,
        };
        if written < bytes.len() {
            pending.extend_from_slice(&bytes[written..]);
            tokio::spawn(flush(self.clone()));
        }
    }
}

async fn flush(sock: Arc<Sock>) {
    loop {
        if sock.stream.writable().await.is_err() {
            return;
        }
        let mut pending = lock(&sock.pending);
        match sock.stream.try_write(&pending) {
            Ok(n) => pending.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                pending.clear();
                return;
            }
        }
        if pending.is_empty() {
            return;
        }
    }
}

#[derive(Default)]
struct Registry {
    next: AtomicU64,
    pipes: Mutex<HashMap<String, HashMap<u64, Arc<Sock>>>>,
}

impl Registry {
    fn subscribe(&self, id: u64, pipes: &[String], sock: &Arc<Sock>) {
        let mut map = lock(&self.pipes);
        for p in pipes {
            map.entry(p.clone()).or_default().insert(id, sock.clone());
        }
    }

    fn unsubscribe(&self, id: u64, pipes: &[String]) {
        let mut map = lock(&self.pipes);
        for p in pipes {
            if let Some(subs) = map.get_mut(p) {
                subs.remove(&id);
                if subs.is_empty() {
                    map.remove(p);
                }
            }
        }
    }

    fn publish(&self, pipe: &str, frame: &[u8]) -> usize {
        let map = lock(&self.pipes);
        let Some(subs) = map.get(pipe) else { return 0 };
        for sock in subs.values() {
            sock.send(frame);
        }
        subs.len()
    }

    fn count(&self, pipes: &[&str]) -> usize {
        let map = lock(&self.pipes);
        pipes
            .iter()
            .filter_map(|p| map.get(*p))
            .map(HashMap::len)
            .sum()
    }
}

fn unix_now() -> u64 {
    crate::payload::now_us() / 1_000_000
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The same JSON shape Halley sends for a CometQL publish, so that both write the same bytes.
pub fn message_frame(pipe: &str, event: &str, payload: &str, now: u64) -> Vec<u8> {
    let mut json = String::with_capacity(payload.len() + 96);
    json.push_str("{\"data\":");
    json_str(&mut json, payload);
    json.push_str(",\"event\":");
    json_str(&mut json, event);
    json.push_str(&format!(",\"message_send_time\":{now},\"pipe\":"));
    json_str(&mut json, pipe);
    json.push('}');
    wsproto::encode_frame(OP_TEXT, json.as_bytes(), None)
}

pub async fn run(http: SocketAddr, control: SocketAddr) -> anyhow::Result<()> {
    let ws = TcpListener::bind(http).await?;
    let ctl = TcpListener::bind(control).await?;
    let registry = Arc::new(Registry::default());
    println!("raw listening: http+ws {http} control {control}");
    let r = registry.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws.accept().await {
            tokio::spawn(serve_ws(stream, r.clone()));
        }
    });
    let r = registry.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = ctl.accept().await {
            tokio::spawn(serve_control(stream, r.clone()));
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

async fn serve_control(stream: TcpStream, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let answer = match parse_request(&line) {
            Some(Request::Publish {
                pipe,
                event,
                payload,
            }) => {
                let frame = message_frame(pipe, event, payload, unix_now());
                format!("ok {}\n", registry.publish(pipe, &frame))
            }
            Some(Request::Count(pipes)) => format!("{}\n", registry.count(&pipes)),
            None => "error\n".to_owned(),
        };
        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn serve_ws(mut stream: TcpStream, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1024);
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(h) = wsproto::parse_request_head(&buf).ok()? {
                return Some(h);
            }
            if stream.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    })
    .await;
    let Ok(Some(head)) = head else { return };
    let Some(key) = head.key else { return };
    buf.advance(head.len);
    let hello = format!(
        "{{\"authorized\":false,\"data\":\"\",\"event\":\"serverInfo\",\"message_send_time\":{},\
         \"pipe\":\"sys\",\"server\":\"halley-load raw baseline\"}}",
        unix_now()
    );
    let mut answer = wsproto::switching_protocols(&key).into_bytes();
    answer.extend(wsproto::encode_frame(OP_TEXT, hello.as_bytes(), None));
    if stream.write_all(&answer).await.is_err() {
        return;
    }
    let id = registry.next.fetch_add(1, Ordering::Relaxed);
    let sock = Arc::new(Sock {
        stream,
        pending: Mutex::new(BytesMut::new()),
    });
    let mut pipes: Vec<String> = Vec::new();
    'conn: loop {
        while let Ok(Some(h)) = wsproto::parse_frame(&buf) {
            let mut frame = buf.split_to(h.total());
            let mut payload = frame.split_off(h.header_len);
            if let Some(m) = h.mask {
                wsproto::unmask(&mut payload, m);
            }
            match h.opcode {
                OP_TEXT | OP_BINARY => {
                    let text = String::from_utf8_lossy(&payload);
                    if let Some(list) = text.strip_prefix("subscription\n") {
                        registry.unsubscribe(id, &pipes);
                        pipes = list
                            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                            .filter(|p| p.len() >= 2)
                            .map(str::to_owned)
                            .collect();
                        registry.subscribe(id, &pipes, &sock);
                    }
                }
                OP_PING => sock.send(&wsproto::encode_frame(OP_PONG, &payload, None)),
                OP_CLOSE => break 'conn,
                _ => {}
            }
        }
        if wsproto::parse_frame(&buf).is_err() || sock.stream.readable().await.is_err() {
            break;
        }
        buf.reserve(1024);
        match sock.stream.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    registry.unsubscribe(id, &pipes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of the load tool against the raw server, end to end on loopback: upgrade, greeting,
    /// subscription, count, publish, delivery, payload.
    #[tokio::test]
    async fn a_subscriber_receives_what_the_control_port_publishes() {
        use crate::raw_control::RawControl;
        use crate::wsclient::WsConn;
        let http = crate::child::free_addr().unwrap();
        let control = crate::child::free_addr().unwrap();
        let server = tokio::spawn(run(http, control));
        let mut conn = None;
        for _ in 0..100 {
            match WsConn::connect(
                http,
                None,
                "/ws/sesion=&myid=0&devid=1&v=4.08&uuid=x&api=js",
                1,
                None,
            )
            .await
            {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let mut conn = conn.expect("the raw server accepts connections");
        let hello = conn.next_text(Duration::from_secs(5)).await.unwrap();
        assert!(std::str::from_utf8(&hello).unwrap().contains("serverInfo"));
        conn.send_text("subscription\nchat").await.unwrap();
        let mut ctl = RawControl::connect(control).await.unwrap();
        for _ in 0..100 {
            if ctl.count(&["chat".to_owned()]).await.unwrap() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let body = crate::payload::encode(7, crate::payload::now_us(), 64);
        ctl.publish("chat", "ev", &body).await.unwrap();
        let got = conn.next_text(Duration::from_secs(5)).await.unwrap();
        assert_eq!(crate::payload::parse(&got).map(|(seq, _)| seq), Some(7));
        server.abort();
    }

    #[test]
    fn message_frame_has_halleys_shape() {
        let f = message_frame("chat", "ev", "bench:1:2:", 1_795_000_000);
        let head = wsproto::parse_frame(&f).unwrap().unwrap();
        assert_eq!(
            &f[head.header_len..],
            br#"{"data":"bench:1:2:","event":"ev","message_send_time":1795000000,"pipe":"chat"}"#
        );
    }
}
