//! The `halley` binary as an operator runs it: `tenant create` / `tenant list` in a fresh data
//! directory, `serve` (its `halley listening:` line, `/info`, a CometQL login, a WebSocket), a clean
//! stop on SIGTERM (exit 0, open WebSockets closed with 1001), a second `serve` on the same data
//! directory reusing the generated master key, and clear messages for bad configuration.
//! Blocking std I/O with a timeout on every read and every wait.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_halley");
const WAIT: Duration = Duration::from_secs(10);
const UUID: &str = "0123456789abcdef0123456789abcdef";

/// `halley` with a clean environment (no HALLEY_* inherited) and `data_dir` as its data directory.
fn halley(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for var in halley::config::ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.env("HALLEY_DATA_DIR", data_dir)
        .env("HALLEY_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs to completion, killed (and failed) after 10 s.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn halley");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_exit(&mut child, WAIT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("halley did not exit within {WAIT:?}")
    });
    Output {
        status,
        stdout: stdout.recv_timeout(WAIT).unwrap_or_default(),
        stderr: stderr.recv_timeout(WAIT).unwrap_or_default(),
    }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// The exit status, or `None` if still running after `limit` (polled: std has no timed wait).
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

fn create_tenant(data: &Path, email: &str) -> (u64, String, String) {
    let mut cmd = halley(data);
    cmd.args(["tenant", "create", "--email", email]);
    let out = run(cmd);
    assert!(out.status.success(), "tenant create: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let dev_id = lines[0]
        .strip_prefix("dev_id=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("first line: {:?}", lines[0]));
    let key = lines[1]
        .strip_prefix("key=")
        .unwrap_or_else(|| panic!("second line: {:?}", lines[1]))
        .to_owned();
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
    let app_key = lines[2]
        .strip_prefix("app_key=")
        .unwrap_or_else(|| panic!("third line: {:?}", lines[2]))
        .to_owned();
    assert_eq!(app_key.len(), 20, "{app_key}");
    assert!(
        app_key
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{app_key}"
    );
    (dev_id, key, app_key)
}

#[test]
fn tenant_create_and_list() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (dev_id, key, app_key) = create_tenant(dir.path(), "a@example.com");
    assert_eq!(dev_id, 1);
    let (dev_id2, key2, app_key2) = create_tenant(dir.path(), "b@example.com");
    assert_eq!(dev_id2, 2);
    assert_ne!(key, key2);
    assert_ne!(app_key, app_key2);

    let mut cmd = halley(dir.path());
    cmd.args(["tenant", "list"]);
    let out = run(cmd);
    assert!(out.status.success(), "tenant list: {}", out.stderr);
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(
        lines[0],
        ["dev_id", "email", "active_keys", "created_at", "app_key"],
        "{}",
        out.stdout
    );
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[1][..3], ["1", "a@example.com", "1"], "{}", out.stdout);
    assert_eq!(lines[2][..3], ["2", "b@example.com", "1"], "{}", out.stdout);
    // The public app key is listed (the operator hands it out with the dev_id).
    assert_eq!(lines[1][4], app_key, "{}", out.stdout);
    assert_eq!(lines[2][4], app_key2, "{}", out.stdout);
    // The secret key is never listed.
    assert!(!out.stdout.contains(&key), "tenant list prints a key");

    // The generated master key is private to its owner.
    let mode = std::fs::metadata(dir.path().join("master.key"))
        .expect("master.key in the data directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "master.key mode {mode:o}");
}

/// A running `halley serve`, killed if the test fails half-way.
struct Served {
    child: Child,
    http: SocketAddr,
    cometql: SocketAddr,
    /// The second line of standard output, the dashboard's address.
    dashboard: String,
    stderr: Option<mpsc::Receiver<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Served {
    let mut cmd = halley(data);
    cmd.arg("serve")
        .env("HALLEY_HTTP_ADDR", "127.0.0.1:0")
        .env("HALLEY_COMETQL_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn halley serve");
    let stderr = drain(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(stdout);
        let (mut line, mut dashboard) = (String::new(), String::new());
        let _ = out.read_line(&mut line);
        let _ = out.read_line(&mut dashboard);
        let _ = tx.send((line, dashboard));
    });
    let (line, dashboard) = match rx.recv_timeout(WAIT) {
        Ok(lines) => lines,
        Err(_) => {
            let _ = child.kill();
            panic!("no `halley listening` and `dashboard:` lines within {WAIT:?}");
        }
    };
    // `halley listening: http+ws 127.0.0.1:P cometql 127.0.0.1:Q`
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() != 6
        || words[..3] != ["halley", "listening:", "http+ws"]
        || words[4] != "cometql"
    {
        let _ = child.kill();
        let err = stderr.recv_timeout(WAIT).unwrap_or_default();
        panic!("unexpected first line {line:?}; stderr: {err}");
    }
    Served {
        http: words[3].parse().expect("HTTP address"),
        cometql: words[5].parse().expect("CometQL address"),
        dashboard: dashboard.trim_end().to_owned(),
        child,
        stderr: Some(stderr),
    }
}

impl Served {
    /// SIGTERM, then the exit status within `limit`.
    fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration, String) {
        let started = Instant::now();
        sigterm(&self.child);
        let status = wait_exit(&mut self.child, limit)
            .unwrap_or_else(|| panic!("halley still running {limit:?} after SIGTERM"));
        let stderr = self
            .stderr
            .take()
            .and_then(|rx| rx.recv_timeout(WAIT).ok())
            .unwrap_or_default();
        (status, started.elapsed(), stderr)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// `GET path` over HTTP/1.1 with `Connection: close`: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("HTTP response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

fn read_packet(s: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("packet header");
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).expect("packet payload");
    payload
}

/// Logs in over CometQL with mysql_native_password; returns the first byte of the answer
/// (0x00 OK, 0xFF ERR) and the whole packet.
fn cometql_login(addr: SocketAddr, user: &str, key: &str) -> Vec<u8> {
    let mut s = connect(addr);
    let g = read_packet(&mut s);
    assert_eq!(g[0], 10, "protocol 10 greeting");
    let v_end = g.iter().position(|&b| b == 0).unwrap();
    let version = String::from_utf8_lossy(&g[1..v_end]).into_owned();
    assert!(version.starts_with("5.7.99-Halley"), "{version}");
    let p1 = v_end + 1 + 4;
    let p2 = p1 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    let mut salt = [0u8; 20];
    salt[..8].copy_from_slice(&g[p1..p1 + 8]);
    salt[8..].copy_from_slice(&g[p2..p2 + 12]);
    let scramble = halley::mysql::auth::scramble(&salt, key.as_bytes());
    let caps: u32 = 1 | 0x0200 | 0x8000 | 0x8_0000;
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(20);
    p.extend_from_slice(&scramble);
    p.extend_from_slice(b"mysql_native_password\0");
    let mut packet = (p.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(1);
    packet.extend_from_slice(&p);
    s.write_all(&packet).unwrap();
    read_packet(&mut s)
}

/// A WebSocket on the comet-server URL, its upgrade answered 101.
fn websocket(addr: SocketAddr, dev_id: u64, user_id: u64, user_key: &str) -> TcpStream {
    let mut s = connect(addr);
    write!(
        s,
        "GET /ws/sesion={user_key}&myid={user_id}&devid={dev_id}&v=4.08&uuid={UUID}&api=js HTTP/1.1\r\n\
         Host: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    // Byte by byte up to the end of the head, so that no frame is swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("upgrade response");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// One server frame: (opcode, payload). Server frames are never masked.
fn ws_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    s.read_exact(&mut payload).expect("frame payload");
    (h[0] & 0x0F, payload)
}

fn server_info(s: &mut TcpStream) -> serde_json::Value {
    let (op, payload) = ws_frame(s);
    assert_eq!(op, 1, "a text frame");
    let v: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(v["event"], "serverInfo", "{v}");
    v
}

/// A browser user's JWT as the reference's backends make them: HS256, key = secret key + dev_id.
fn jwt(key: &str, dev_id: u64, user_id: u64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"user_id": user_id, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(format!("{key}{dev_id}").as_bytes()),
    )
    .unwrap()
}

#[test]
fn serve_stops_cleanly_on_sigterm_and_restarts_on_the_same_data() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (dev_id, key, _) = create_tenant(dir.path(), "a@example.com");
    let master_key = std::fs::read(dir.path().join("master.key")).expect("master.key");

    let mut server = serve(dir.path());
    assert_eq!(
        http_get(server.http, "/info"),
        (200, r#"{"node":"halley","status":"ok"}"#.to_owned())
    );
    // The start-up log names the dashboard, after the line scripts parse.
    assert_eq!(
        server.dashboard,
        format!("dashboard: http://{}/", server.http)
    );
    assert_eq!(http_get(server.http, "/").0, 200, "no dashboard page at /");
    let ok = cometql_login(server.cometql, &dev_id.to_string(), &key);
    assert_eq!(ok[0], 0x00, "login refused: {ok:?}");
    let err = cometql_login(server.cometql, &dev_id.to_string(), "not-the-key");
    assert_eq!(err[0], 0xFF, "a wrong key logged in");
    assert_eq!(&err[9..], b"Authentication failure");

    let mut ws = websocket(server.http, dev_id, 0, "");
    let hello = server_info(&mut ws);
    assert_eq!(hello["authorized"], false, "{hello}");

    let (status, took, stderr) = server.terminate(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr: {stderr}"
    );
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    // The open WebSocket got a close frame with 1001 (going away).
    let (op, payload) = ws_frame(&mut ws);
    assert_eq!(op, 8, "a close frame, got opcode {op}: {payload:?}");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        1001,
        "close reason {:?}",
        String::from_utf8_lossy(&payload[2..])
    );
    drop(server);

    // Second start on the same data: same master key, so the sealed key still opens (a JWT signed with
    // it authorizes a browser) and the same key logs in.
    let mut server = serve(dir.path());
    assert_eq!(
        std::fs::read(dir.path().join("master.key")).unwrap(),
        master_key,
        "the master key was regenerated"
    );
    let ok = cometql_login(server.cometql, &dev_id.to_string(), &key);
    assert_eq!(ok[0], 0x00, "login refused after a restart: {ok:?}");
    let mut ws = websocket(server.http, dev_id, 5, &jwt(&key, dev_id, 5));
    let hello = server_info(&mut ws);
    assert_eq!(hello["authorized"], true, "{hello}");
    let (status, _, stderr) = server.terminate(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr: {stderr}"
    );
}

#[test]
fn bad_configuration_is_named() {
    let dir = tempfile::tempdir().expect("temporary directory");

    // A config file that does not parse: exit 2 before serving, naming the file.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "http_addr = \"127.0.0.1:0\"\nno_such_key = 1\n").unwrap();
    let mut cmd = halley(dir.path());
    cmd.arg("--config").arg(&bad);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("halley: config file") && out.stderr.contains("bad.toml"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no_such_key"), "{}", out.stderr);
    assert_eq!(out.stdout, "");

    // A config file that is not there.
    let mut cmd = halley(dir.path());
    cmd.arg("--config").arg(dir.path().join("missing.toml"));
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("cannot read config file") && out.stderr.contains("missing.toml"),
        "{}",
        out.stderr
    );

    // An invalid address in the environment names the variable and the value.
    let mut cmd = halley(dir.path());
    cmd.env("HALLEY_HTTP_ADDR", "not-an-address");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("HALLEY_HTTP_ADDR") && out.stderr.contains("not-an-address"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");

    // `config check` accepts a good file and prints the effective values.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "http_addr = \"127.0.0.1:18087\"\n").unwrap();
    let mut cmd = halley(dir.path());
    cmd.arg("--config").arg(&good).args(["config", "check"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("http_addr = 127.0.0.1:18087"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("configuration OK"), "{}", out.stdout);
}

/// Whether the tenant requires TLS, as `halley` stored it in the data directory.
fn stored_require_tls(data: &Path, dev_id: u64) -> bool {
    let config = halley::config::Config {
        data_dir: data.to_owned(),
        ..halley::config::Config::default()
    };
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let tenants = halley::app::open_tenants(&config).await.expect("open");
            let stored = tenants
                .require_tls(halley::ids::DevId(dev_id))
                .await
                .expect("read require_tls");
            tenants.storage().close().await;
            stored
        })
}

/// `tenant limits --require-tls true|false` stores the setting; leaving the option out keeps it (unlike the
/// numeric limits, which fall back to the default); anything but true/false is a usage error.
#[test]
fn tenant_limits_require_tls() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (dev_id, _, _) = create_tenant(dir.path(), "tls@example.com");
    let limits = |extra: &[&str]| {
        let mut cmd = halley(dir.path());
        cmd.args(["tenant", "limits", "--dev-id", &dev_id.to_string()])
            .args(extra);
        run(cmd)
    };
    assert!(!stored_require_tls(dir.path(), dev_id));
    let out = limits(&["--require-tls", "true"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(stored_require_tls(dir.path(), dev_id));
    let out = limits(&["--publish-burst", "50"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(stored_require_tls(dir.path(), dev_id), "left as it was");
    let out = limits(&["--require-tls", "yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--require-tls"), "{}", out.stderr);
    assert!(stored_require_tls(dir.path(), dev_id));
    let out = limits(&["--require-tls", "false"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!stored_require_tls(dir.path(), dev_id));
}
