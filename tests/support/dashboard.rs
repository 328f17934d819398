//! The dashboard as its page uses it: a deliberately small HTTP/1.1 client (one request per connection,
//! `Connection: close`, from a chosen loopback address) and a `Browser` tab that keeps the session cookie
//! and anti-CSRF token the way the page does, over plain HTTP or HTTPS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::wait::WAIT;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` code of a JSON error answer.
    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

/// Sends one request from `from` (a loopback address, so tests can be several clients).
pub async fn send(
    addr: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    send_tls(addr, from, None, method, path, headers, body).await
}

/// `send`, in TLS with `tls` (HTTPS to `localhost`, the name the test certificate carries).
pub async fn send_tls(
    addr: SocketAddr,
    from: IpAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    match tls {
        None => exchange(stream, addr, method, path, headers, body).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let connect = tokio_rustls::TlsConnector::from(config).connect(name, stream);
            let stream = tokio::time::timeout(WAIT, connect)
                .await
                .expect("TLS handshake in time")
                .expect("TLS handshake");
            exchange(stream, addr, method, path, headers, body).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("answer in time");
    // A TLS peer that closes without close_notify ends the stream with UnexpectedEof: the answer is whole.
    if let Err(e) = read {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "read answer: {e}"
        );
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// A browser tab on the dashboard: it sends the cookie back and echoes the anti-CSRF token like the page.
#[derive(Clone)]
pub struct Browser {
    pub addr: SocketAddr,
    pub from: IpAddr,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    /// Set: the tab talks HTTPS (its page is `https://`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            from: "127.0.0.1".parse().unwrap(),
            cookie: None,
            csrf: None,
            tls: None,
        }
    }

    /// A tab on the HTTPS port, trusting `tls`'s roots.
    pub fn https(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Browser {
        Browser {
            tls: Some(tls),
            ..Browser::new(addr)
        }
    }

    pub fn origin(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Sends with the page's headers (Origin, JSON, cookie, CSRF token) plus `extra`, keeping any new cookie.
    pub async fn call_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let origin = self.origin();
        let mut headers: Vec<(&str, &str)> = vec![("Origin", &origin)];
        let cookie;
        if let Some(c) = &self.cookie {
            cookie = format!("halley_session={c}");
            headers.push(("Cookie", &cookie));
        }
        if let Some(t) = &self.csrf {
            headers.push(("X-Halley-CSRF", t));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        // `extra` wins over the defaults of the same name.
        headers.retain(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)));
        headers.extend_from_slice(extra);
        headers.retain(|(_, v)| !v.is_empty());
        let text = body.map(|b| b.to_string());
        let path = format!("/api/dashboard/v1{path}");
        let resp = send_tls(
            self.addr,
            self.from,
            self.tls.clone(),
            method,
            &path,
            &headers,
            text.as_deref(),
        )
        .await;
        if let Some(set) = resp.header("set-cookie") {
            let value = set
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("halley_session=");
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        if resp.status < 300 && resp.body.contains("csrf_token") {
            self.csrf = resp.json()["csrf_token"].as_str().map(str::to_owned);
        }
        resp
    }

    pub async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn sign_up(&mut self, email: &str, password: &str) -> Resp {
        let body = serde_json::json!({"email": email, "password": password});
        self.call("POST", "/signup", Some(body)).await
    }

    pub async fn log_in(&mut self, email: &str, password: &str) -> Resp {
        let body = serde_json::json!({"email": email, "password": password});
        self.call("POST", "/login", Some(body)).await
    }

    /// A logged-in owner: signs up and returns (dev_id, first key id, first key).
    pub async fn new_tenant(addr: SocketAddr, email: &str) -> (Browser, u64, i64, String) {
        let mut b = Browser::new(addr);
        let r = b.sign_up(email, "correct horse battery").await;
        assert_eq!(r.status, 201, "{}", r.body);
        let dev_id = r.json()["dev_id"].as_u64().unwrap();
        let keys = b.call("GET", "/keys", None).await.json();
        let id = keys["keys"][0]["id"].as_i64().unwrap();
        let key = b
            .call("GET", &format!("/keys/{id}/secret"), None)
            .await
            .json()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        (b, dev_id, id, key)
    }
}
