//! Secrets never reach the logs (docs/compatibility.md §1): the real `halley` binary, at `HALLEY_LOG=debug`, creates
//! a tenant and serves while a tenant's backend logs in with its key through the `mariadb` client (and once with a
//! wrong key), stores a users_auth hash, and browsers connect with that hash and with a JWT. Then it is stopped with
//! SIGTERM, and nothing it wrote (stdout and stderr, every process) may contain the key, the wrong key, the hash,
//! the JWT or the master key file's content. The tenant's key is printed once, by design, on `tenant create`'s
//! stdout; its log output (stderr) must not contain it either.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rand::distributions::Alphanumeric;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_halley");
const WAIT: Duration = Duration::from_secs(15);

/// `halley` at debug level on `data_dir`, listening on ephemeral loopback ports, no inherited HALLEY_*.
fn halley(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for var in halley::config::ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.env("HALLEY_DATA_DIR", data_dir)
        .env("HALLEY_LOG", "debug")
        .env("HALLEY_HTTP_ADDR", "127.0.0.1:0")
        .env("HALLEY_COMETQL_ADDR", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Copies a pipe into `sink` until it ends, on a task.
fn capture<R: AsyncRead + Unpin + Send + 'static>(
    mut pipe: R,
    sink: Arc<Mutex<Vec<u8>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock().expect("sink").extend_from_slice(&chunk[..n]);
        }
    })
}

fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

async fn mariadb(port: u16, user: &str, password: &str, sql: &str) -> std::process::Output {
    let cli = std::env::var("HALLEY_TEST_MARIADB_CLI").unwrap_or_else(|_| "mariadb".into());
    let run = Command::new(cli)
        .args([
            "--skip-ssl",
            "--connect-timeout=10",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            user,
            &format!("--password={password}"),
            "-D",
            "CometQL_v1",
            "-N",
            "-B",
            "-e",
            sql,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    timeout(WAIT, run)
        .await
        .expect("mariadb finished in time")
        .expect("the mariadb client runs (tests/run.sh installs it)")
}

/// Opens a browser connection with `key` and returns the serverInfo frame's text.
async fn server_info(http: &str, dev_id: &str, user_id: u64, key: &str) -> String {
    let mut s = timeout(WAIT, TcpStream::connect(http))
        .await
        .expect("connect in time")
        .expect("connect");
    let request = format!(
        "GET /ws/sesion={key}&myid={user_id}&devid={dev_id}&v=4.08&uuid=0123456789abcdef0123456789abcdef&api=js HTTP/1.1\r\n\
         Host: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("send upgrade");
    let mut buf = Vec::new();
    let text = timeout(WAIT, async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed before serverInfo: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(
                buf.starts_with(b"HTTP/1.1 101"),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            let frame = &buf[end + 4..];
            // One unmasked text frame from the server: 0x81, then a 7-bit or 16-bit length.
            let (len, start) = match frame.get(1) {
                Some(126) if frame.len() >= 4 => {
                    (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4)
                }
                Some(&n) if n < 126 => (usize::from(n), 2),
                _ => continue,
            };
            if frame.len() >= start + len {
                assert_eq!(frame[0], 0x81, "a text frame");
                return String::from_utf8_lossy(&frame[start..start + len]).into_owned();
            }
        }
    })
    .await
    .expect("serverInfo in time");
    // A close frame (masked, as a client must), then the socket goes.
    let _ = s
        .write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])
        .await;
    text
}

fn assert_clean(what: &str, output: &[u8], secrets: &[(&str, &str)]) {
    let text = String::from_utf8_lossy(output);
    for (name, secret) in secrets {
        assert!(!secret.is_empty(), "{name} is empty");
        if let Some(at) = text.find(secret) {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!(
                "the {name} appears in {what}: {:?}",
                &text[line_start..line_end]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log() {
    let dir = tempfile::tempdir().expect("temporary directory");

    // tenant create: the key on stdout (its one purpose), nowhere in the log.
    let created = timeout(
        WAIT,
        halley(dir.path())
            .args(["tenant", "create", "--email", "secrets@example.com"])
            .output(),
    )
    .await
    .expect("tenant create in time")
    .expect("tenant create runs");
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8_lossy(&created.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {stdout:?}"))
            .trim()
            .to_owned()
    };
    let dev_id = field("dev_id=");
    let key = field("key=");
    assert!(key.len() >= 48, "{key}");
    let master = std::fs::read_to_string(dir.path().join("master.key"))
        .expect("the generated master key")
        .trim()
        .to_owned();
    assert!(master.len() >= 32, "master key file content: {master:?}");

    // serve, every line of output captured.
    let mut child = halley(dir.path())
        .arg("serve")
        .spawn()
        .expect("spawn serve");
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let err_task = capture(child.stderr.take().expect("stderr"), err.clone());
    let (addrs_tx, addrs_rx) = oneshot::channel();
    let out_task = {
        let out = out.clone();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::spawn(async move {
            let mut addrs_tx = Some(addrs_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("halley listening: http+ws ") {
                    if let Some((http, cql)) = rest.split_once(" cometql ") {
                        if let Some(tx) = addrs_tx.take() {
                            let _ = tx.send((http.to_owned(), cql.to_owned()));
                        }
                    }
                }
                let mut out = out.lock().expect("stdout sink");
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        })
    };
    let (http, cometql) = timeout(WAIT, addrs_rx)
        .await
        .expect("halley listening in time")
        .expect("the listening line");
    let cql_port: u16 = cometql
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("CometQL port");

    // The backend logs in with the key (storing a users_auth hash), and once with a wrong key.
    let hash = random(32);
    let wrong = random(key.len());
    let stored = mariadb(
        cql_port,
        &dev_id,
        &key,
        &format!("INSERT INTO users_auth (id, hash) VALUES (5, '{hash}')"),
    )
    .await;
    assert!(stored.status.success(), "{stored:?}");
    let refused = mariadb(cql_port, &dev_id, &wrong, "SHOW STATUS").await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Authentication failure"),
        "{refused:?}"
    );

    // Browsers log in with the hash and with a JWT.
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let jwt = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"user_id": 6, "exp": exp}),
        &EncodingKey::from_secret(format!("{key}{dev_id}").as_bytes()),
    )
    .expect("JWT");
    let by_hash = server_info(&http, &dev_id, 5, &hash).await;
    assert!(by_hash.contains("\"authorized\":true"), "{by_hash}");
    let by_jwt = server_info(&http, &dev_id, 6, &jwt).await;
    assert!(by_jwt.contains("\"authorized\":true"), "{by_jwt}");

    // Stop it (SIGTERM to the process started here, by its id) and collect everything it wrote.
    let pid = child.id().expect("serve is running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = timeout(WAIT, child.wait())
        .await
        .expect("halley stops within 15 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    timeout(WAIT, async {
        let _ = out_task.await;
        let _ = err_task.await;
    })
    .await
    .expect("output pipes closed");

    let out = out.lock().expect("stdout").clone();
    let err = err.lock().expect("stderr").clone();
    let log = String::from_utf8_lossy(&err);
    // The log is really at debug level and saw the traffic: otherwise "no secret" would prove nothing.
    assert!(log.contains("Halley is serving"), "{log}");
    assert!(log.contains("DEBUG"), "no debug lines: {log}");
    assert!(
        log.contains("WebSocket closed"),
        "the browsers' connections are not in the log: {log}"
    );

    let secrets = [
        ("tenant key", key.as_str()),
        ("wrong key", wrong.as_str()),
        ("users_auth hash", hash.as_str()),
        ("JWT", jwt.as_str()),
        // The JWT's signature alone, should a log cut the token into parts.
        ("JWT signature", jwt.rsplit('.').next().unwrap_or_default()),
        ("master key", master.as_str()),
    ];
    assert_clean("serve's stdout", &out, &secrets);
    assert_clean("serve's stderr", &err, &secrets);
    assert_clean("tenant create's stderr", &created.stderr, &secrets);
    let create_stdout_without_key = stdout.replace(&format!("key={key}"), "");
    assert_clean(
        "tenant create's stdout (besides its key= line)",
        create_stdout_without_key.as_bytes(),
        &secrets,
    );
}
