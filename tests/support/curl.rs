//! The native HTTP publish API (docs/http-api.md) driven by the real `curl`, as its users call it.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::{Tenant, TestServer};

const CURL: &str = "/usr/bin/curl";
pub const WAIT: Duration = Duration::from_secs(20);

/// What curl got: the status, the response head and the body as JSON (`Null` when it is not JSON).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        self.body["error"]["message"].as_str().expect("a message")
    }
}

/// Runs curl with `args`, `body` on its standard input (`--data-binary @-`), and reads its answer.
pub async fn curl(args: &[&str], body: Option<&[u8]>) -> Answer {
    let mut cmd = tokio::process::Command::new(CURL);
    // `Expect:` off: curl would wait for a 100 Continue before sending a large body.
    cmd.args(["-sS", "-i", "-H", "Expect:"]).args(args);
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run curl");
    let mut stdin = child.stdin.take().expect("curl's stdin");
    if let Some(body) = body {
        // A server that refuses early may close before reading it all: not an error here.
        let _ = stdin.write_all(body).await;
    }
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("curl finished in time")
        .expect("curl's output");
    let text = String::from_utf8(out.stdout).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "no HTTP answer: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Answer {
        status,
        head: head.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

pub fn url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.http_addr())
}

/// POSTs `body` to `path` as `dev_id` with `key`.
pub async fn post_as(
    server: &TestServer,
    path: &str,
    dev_id: u64,
    key: &str,
    body: &Value,
) -> Answer {
    let auth = format!("Authorization: Bearer {key}");
    let dev = format!("X-Dev-Id: {dev_id}");
    let url = url(server, path);
    let args = [
        "-X",
        "POST",
        &url,
        "-H",
        &auth,
        "-H",
        &dev,
        "-H",
        "Content-Type: application/json",
    ];
    curl(&args, Some(body.to_string().as_bytes())).await
}

pub async fn publish(server: &TestServer, t: &Tenant, body: &Value) -> Answer {
    post_as(server, "/api/v1/publish", t.dev_id, &t.key, body).await
}

pub async fn to_users(server: &TestServer, t: &Tenant, body: &Value) -> Answer {
    post_as(server, "/api/v1/users_messages", t.dev_id, &t.key, body).await
}
