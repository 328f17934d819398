//! CometQL over TLS with the users' real clients (issue 13): PHP mysqli (unverified, and verified against
//! the test CA by host name `localhost` and by 127.0.0.1), PDO with `PDO::MYSQL_ATTR_SSL_CA`, the `mariadb`
//! CLI with `--ssl-verify-server-cert`, PyMySQL and Node mysql2 with the CA each publish, and a WebSocket
//! subscriber receives the frame byte for byte. Each login is proven to be TLS twice over: the tenant
//! requires TLS (a plaintext login would get ERROR 3159) and the server's handshake counter grows.
//! A renewed certificate is picked up by new sessions while an open one keeps working (by the file watcher,
//! and by SIGHUP to the real binary), verifying drivers refuse a certificate for another name, and the per-tenant
//! "require TLS" setting refuses plaintext only once the key is proven, set by the operator's storage
//! write (the CLI's path) or by the dashboard, on both backends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use halley::ids::DevId;
use halley_tests::browser::subscriber;
use halley_tests::clients::{self, mariadb_query, Client, Login, Response};
use halley_tests::cometql::{insert_literal_sql, login};
use halley_tests::dashboard::Browser;
use halley_tests::frames::check_pipe_frame;
use halley_tests::mysql_raw::{frame, handshake_response, parse_err, RawMysql};
use halley_tests::process::ServerProcess;
use halley_tests::tls::TestCerts;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

mod flood;

/// MySQL's ER_SECURE_TRANSPORT_REQUIRED, with Halley's reason.
const INSECURE: (i64, &str) = (
    3159,
    "Connections using insecure transport are prohibited: this tenant requires TLS (require_tls); \
     connect with SSL",
);

async fn tls_server(backend: Backend, certs: &TestCerts) -> TestServer {
    TestServer::start_with(backend, |c| {
        certs.configure(c);
        c.tls.reload_check_secs = 1;
    })
    .await
}

fn handshakes(server: &TestServer) -> u64 {
    server.ctx().stats.tls_handshakes.load(Ordering::Relaxed)
}

async fn require_tls(server: &TestServer, tenant: &Tenant, require: bool) {
    let ctx = server.ctx();
    ctx.tenants
        .set_require_tls(DevId(tenant.dev_id), require, &ctx.limits)
        .await
        .expect("store require_tls");
}

/// The comet-server frame for `hi` published to `pipe`, byte for byte.
fn expect_hi_frame(text: &str, pipe: &str) {
    let t = check_pipe_frame(text, pipe, "msg", "hi");
    assert_eq!(
        text,
        format!(r#"{{"data":"hi","event":"msg","message_send_time":{t},"pipe":"{pipe}"}}"#)
    );
}

async fn run(client: Client, req: &clients::Request, label: &str) -> Response {
    clients::run(client, req)
        .await
        .unwrap_or_else(|e| panic!("{label} driver: {e:#}"))
}

/// How one case publishes: a driver with its login, or the CLI.
enum Via {
    Driver(Client, Login),
    /// PHP's PDO (the `params` step opens a PDO connection with the same TLS options; mysqli connects first).
    Pdo(Login),
    Cli(Login),
}

async fn real_clients_publish_over_tls(backend: Backend) {
    let certs = TestCerts::new();
    let server = tls_server(backend, &certs).await;
    let tenant = server.tenant("tls@example.com").await;
    require_tls(&server, &tenant, true).await;
    let base = login(&server, &tenant);
    let ca = certs.ca_file();
    // mysqli and PDO take host `localhost` for the Unix socket (mysqlnd), so PHP verifies the certificate by
    // its IP address entry; the host name is verified by PyMySQL, mysql2 (only with `verifyIdentity`: with
    // just `ca` it checks the chain, not the name) and the CLI (with --protocol=TCP).
    let cases = [
        (
            "php-mysqli MYSQLI_CLIENT_SSL (unverified)",
            Via::Driver(Client::Php, base.clone().tls_unverified()),
        ),
        (
            "php-mysqli ssl_set CA, 127.0.0.1 verified",
            Via::Driver(Client::Php, base.clone().tls_verified(&ca)),
        ),
        (
            "php-pdo MYSQL_ATTR_SSL_CA, 127.0.0.1 verified",
            Via::Pdo(base.clone().tls_verified(&ca)),
        ),
        (
            "python-pymysql ssl ca, host localhost verified",
            Via::Driver(
                Client::Python,
                base.clone().host("localhost").tls_verified(&ca),
            ),
        ),
        (
            "node-mysql2 ssl ca + verifyIdentity, host localhost verified",
            Via::Driver(
                Client::Node,
                base.clone().host("localhost").tls_verified(&ca),
            ),
        ),
        (
            "mariadb --ssl --ssl-ca --ssl-verify-server-cert, host localhost",
            Via::Cli(base.clone().host("localhost").tls_verified(&ca)),
        ),
    ];
    for (i, (label, via)) in cases.into_iter().enumerate() {
        let pipe = format!("tls_{i}");
        let mut ws = subscriber(&server, tenant.dev_id, &pipe, 0).await;
        let before = handshakes(&server);
        let sql = insert_literal_sql(&pipe, "msg", "'hi'");
        let expected_handshakes = match via {
            Via::Driver(client, login) => {
                let resp = run(client, &login.request().sql(sql), label).await;
                assert_eq!(resp.step(0).unwrap().ok().unwrap(), (0, 0), "{label}");
                1
            }
            Via::Pdo(login) => {
                let resp = run(
                    Client::Php,
                    &login
                        .request()
                        .params(insert_sql_params(), &[&pipe, "msg", "hi"]),
                    label,
                )
                .await;
                assert_eq!(resp.step(0).unwrap().ok().unwrap(), (0, 0), "{label}");
                // mysqli's connection, then PDO's.
                2
            }
            Via::Cli(login) => {
                let out = mariadb_query(&login, &sql).await.unwrap();
                assert!(out.success(), "{label}: {out:?}");
                1
            }
        };
        expect_hi_frame(&ws.recv_text(WAIT).await.expect(label), &pipe);
        assert!(
            handshakes(&server) >= before + expected_handshakes,
            "{label}: {} TLS handshakes, want {expected_handshakes} more than {before}",
            handshakes(&server)
        );
        ws.close().await.unwrap();
    }
    server.stop().await;
}

fn insert_sql_params() -> &'static str {
    "INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)"
}

/// A CometQL client that asks for TLS (SSLRequest) and logs in inside it, on a raw socket.
struct TlsCometql {
    stream: TlsStream<TcpStream>,
    /// The certificate the server presented.
    peer: Vec<u8>,
}

/// SSLRequest: PROTOCOL_41 | SECURE_CONNECTION | SSL | PLUGIN_AUTH | LONG_PASSWORD, max packet, charset.
fn ssl_request() -> Vec<u8> {
    let caps: u32 = 1 | 0x0200 | 0x8000 | 0x0800 | 0x8_0000;
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p
}

async fn read_packet(s: &mut TlsStream<TcpStream>) -> anyhow::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut head)).await??;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut payload = vec![0; len];
    tokio::time::timeout(WAIT, s.read_exact(&mut payload)).await??;
    Ok((head[3], payload))
}

impl TlsCometql {
    /// Connects, switches to TLS checking the certificate for `name` against the test CA, and logs in
    /// as `tenant`; `Ok(Err(..))` when the login is refused.
    async fn login(
        server: &TestServer,
        certs: &TestCerts,
        name: &str,
        tenant: &Tenant,
    ) -> anyhow::Result<Result<TlsCometql, (u16, String)>> {
        Self::login_at(server.cometql_addr(), certs, name, tenant).await
    }

    async fn login_at(
        addr: SocketAddr,
        certs: &TestCerts,
        name: &str,
        tenant: &Tenant,
    ) -> anyhow::Result<Result<TlsCometql, (u16, String)>> {
        let raw = RawMysql::connect_from(addr, None).await?;
        let salt = raw.salt;
        let mut tcp = raw.into_tcp()?;
        tcp.write_all(&frame(1, &ssl_request())).await?;
        let connector = tokio_rustls::TlsConnector::from(certs.client_config());
        let name = ServerName::try_from(name.to_owned())?;
        let mut stream = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await??;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let scramble = halley::mysql::auth::scramble(&salt, tenant.key.as_bytes());
        let resp = handshake_response(&tenant.dev_id.to_string(), &scramble, Some("CometQL_v1"));
        stream.write_all(&frame(2, &resp)).await?;
        let (seq, p) = read_packet(&mut stream).await?;
        anyhow::ensure!(seq == 3, "login reply with sequence id {seq}");
        match p.first() {
            Some(0x00) => Ok(Ok(TlsCometql { stream, peer })),
            Some(0xFF) => Ok(Err(parse_err(&p)?)),
            _ => anyhow::bail!("unexpected login reply {p:?}"),
        }
    }

    /// Runs a statement that answers OK (an INSERT); the error otherwise.
    async fn exec(&mut self, sql: &str) -> anyhow::Result<()> {
        self.stream.write_all(&RawMysql::com_query(sql)).await?;
        let (_, p) = read_packet(&mut self.stream).await?;
        match p.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => anyhow::bail!("{:?}", parse_err(&p)?),
            _ => anyhow::bail!("unexpected reply {p:?}"),
        }
    }
}

fn current_cert(certs: &TestCerts) -> Vec<u8> {
    CertificateDer::from_pem_file(certs.cert_file())
        .expect("cert.pem")
        .to_vec()
}

/// A renewal replaces the files while a TLS session is open: new sessions get the new certificate (within
/// the watcher's check interval, 1 s here), the open one keeps publishing, and real clients still verify.
async fn a_renewed_certificate_reaches_new_sessions_and_open_ones_keep_working(backend: Backend) {
    let certs = TestCerts::new();
    let server = tls_server(backend, &certs).await;
    let tenant = server.tenant("renew@example.com").await;
    let first = current_cert(&certs);
    let mut open = TlsCometql::login(&server, &certs, "localhost", &tenant)
        .await
        .unwrap()
        .expect("TLS login");
    assert_eq!(open.peer, first, "the configured certificate");
    let reloads = server.ctx().stats.tls_reloads.load(Ordering::Relaxed);

    let renewed = certs.issue(&["localhost", "127.0.0.1"], "Halley renewed server");
    assert_ne!(renewed, first);
    let seen = eventually(Duration::from_secs(15), || async {
        let s = TlsCometql::login(&server, &certs, "localhost", &tenant)
            .await?
            .map_err(|e| anyhow::anyhow!("login refused: {e:?}"))?;
        anyhow::ensure!(s.peer == renewed, "still the old certificate");
        Ok(s)
    })
    .await
    .expect("a new session gets the renewed certificate");
    assert!(server.ctx().stats.tls_reloads.load(Ordering::Relaxed) > reloads);
    drop(seen);

    // The session opened before the renewal is untouched: it still publishes.
    let mut ws = subscriber(&server, tenant.dev_id, "renewed", 0).await;
    open.exec(&insert_literal_sql("renewed", "msg", "'hi'"))
        .await
        .expect("the open session still works");
    expect_hi_frame(&ws.recv_text(WAIT).await.unwrap(), "renewed");

    // A verifying real client accepts the renewed certificate (same CA).
    let login = login(&server, &tenant).tls_verified(&certs.ca_file());
    let resp = run(
        Client::Php,
        &login
            .request()
            .sql(insert_literal_sql("renewed", "msg", "'hi'")),
        "php after renewal",
    )
    .await;
    assert_eq!(resp.step(0).unwrap().ok().unwrap(), (0, 0));
    expect_hi_frame(&ws.recv_text(WAIT).await.unwrap(), "renewed");
    server.stop().await;
}

/// SIGHUP to the real binary reloads the certificate (the file watcher is set to check only hourly, so the
/// signal is what does it); a session opened before keeps working.
async fn sighup_reloads_the_certificate_in_the_real_binary(backend: Backend) {
    let certs = TestCerts::new();
    let toml = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nreload_check_secs = 3600\n",
        certs.cert_file().display().to_string(),
        certs.key_file().display().to_string()
    );
    let mut server = ServerProcess::start(backend, &toml)
        .await
        .expect("start halley");
    let tenant = server.tenant("hup@example.com").await.unwrap();
    let addr = server.cometql_addr();
    let first = current_cert(&certs);
    let mut open = TlsCometql::login_at(addr, &certs, "localhost", &tenant)
        .await
        .unwrap()
        .expect("TLS login");
    assert_eq!(open.peer, first);

    let renewed = certs.issue(&["localhost", "127.0.0.1"], "Halley after SIGHUP");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    eventually(Duration::from_secs(15), || async {
        let s = TlsCometql::login_at(addr, &certs, "localhost", &tenant)
            .await?
            .map_err(|e| anyhow::anyhow!("login refused: {e:?}"))?;
        anyhow::ensure!(s.peer == renewed, "still the old certificate");
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; server log: {}", server.log()));
    assert!(server.alive(), "SIGHUP must not stop the server");
    open.exec(&insert_literal_sql("after_hup", "msg", "'hi'"))
        .await
        .expect("the session opened before SIGHUP still works");
    server.stop().await;
}

/// The outcome of a plaintext login with `login`, by PHP mysqli.
async fn php_plain_connect_error(login: &Login) -> Option<(i64, String)> {
    let resp = run(Client::Php, &login.request().sql("SHOW TABLES"), "php").await;
    resp.connect_error()
        .ok()
        .map(|e| (e.code, e.message.clone()))
}

fn insecure() -> Option<(i64, String)> {
    Some((INSECURE.0, INSECURE.1.to_owned()))
}

/// Require TLS as the operator sets it (stored, then loaded as the once-a-minute reload and
/// `halley tenant limits --require-tls` do): plaintext with the right key is refused with 3159, with a
/// wrong key it stays `Authentication failure` (no oracle), over TLS it is accepted; other tenants are
/// unaffected; turning it off lets plaintext in again; COM_CHANGE_USER to such a tenant over plaintext is
/// refused too.
async fn require_tls_refuses_plaintext_after_the_key_check(backend: Backend) {
    let certs = TestCerts::new();
    let server = tls_server(backend, &certs).await;
    let strict = server.tenant("strict@example.com").await;
    let relaxed = server.tenant("relaxed@example.com").await;
    let ctx = server.ctx();
    ctx.storage
        .set_tenant_require_tls(DevId(strict.dev_id), true)
        .await
        .unwrap();
    ctx.limits.load_overrides(&ctx.storage).await.unwrap();
    assert!(ctx.tenants.require_tls(DevId(strict.dev_id)).await.unwrap());

    let plain = login(&server, &strict);
    assert_eq!(php_plain_connect_error(&plain).await, insecure());
    let out = mariadb_query(&plain, "SHOW TABLES").await.unwrap();
    assert_eq!(
        out.error(),
        Some((3159, INSECURE.1.to_owned())),
        "mariadb CLI: {out:?}"
    );
    let raw = RawMysql::connect(&server)
        .await
        .unwrap()
        .handshake(&strict.dev_id.to_string(), &strict.key, Some("CometQL_v1"))
        .await
        .unwrap();
    assert_eq!(
        raw.err().map(|(c, m)| (i64::from(c), m)),
        Some((INSECURE.0, INSECURE.1.to_owned()))
    );

    // A wrong key learns nothing about the setting.
    let wrong = Login::new(
        server.cometql_port(),
        strict.dev_id.to_string(),
        &relaxed.key,
    );
    assert_eq!(
        php_plain_connect_error(&wrong).await,
        Some((16, "Authentication failure".to_owned()))
    );

    // Over TLS: accepted (raw client and a real one).
    TlsCometql::login(&server, &certs, "localhost", &strict)
        .await
        .unwrap()
        .expect("TLS login of a require-TLS tenant");
    let resp = run(
        Client::Python,
        &plain
            .clone()
            .tls_verified(&certs.ca_file())
            .request()
            .ping(),
        "python",
    )
    .await;
    resp.step(0).unwrap().ok().unwrap();

    // Another tenant still logs in in plaintext, but cannot change user to the strict one over it.
    let relaxed_login = login(&server, &relaxed);
    assert_eq!(php_plain_connect_error(&relaxed_login).await, None);
    let resp = run(
        Client::Php,
        &relaxed_login.request().change_user(
            strict.dev_id.to_string(),
            &strict.key,
            Some("CometQL_v1"),
        ),
        "php change_user",
    )
    .await;
    let e = resp.step(0).unwrap().error().expect("change_user refused");
    assert_eq!((e.code, e.message.as_str()), INSECURE);

    // Off again (stored, reloaded): plaintext is accepted.
    ctx.storage
        .set_tenant_require_tls(DevId(strict.dev_id), false)
        .await
        .unwrap();
    ctx.limits.load_overrides(&ctx.storage).await.unwrap();
    assert_eq!(php_plain_connect_error(&plain).await, None);
    server.stop().await;
}

/// The dashboard's setting: GET/PUT `/security`; the change applies to the next login at once.
async fn dashboard_toggles_require_tls(backend: Backend) {
    let certs = TestCerts::new();
    let server = tls_server(backend, &certs).await;
    let (mut b, dev_id, _, key) = Browser::new_tenant(server.http_addr(), "dash@example.com").await;
    let tenant = Tenant {
        dev_id,
        key,
        app_key: String::new(),
    };
    let got = b.call("GET", "/security", None).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(
        got.json(),
        serde_json::json!({"require_tls": false, "tls_offered": true})
    );
    let plain = login(&server, &tenant);
    assert_eq!(php_plain_connect_error(&plain).await, None);

    let put = b
        .call(
            "PUT",
            "/security",
            Some(serde_json::json!({"require_tls": true})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["require_tls"], true);
    assert_eq!(
        b.call("GET", "/security", None).await.json()["require_tls"],
        true
    );
    assert_eq!(php_plain_connect_error(&plain).await, insecure());
    TlsCometql::login(&server, &certs, "localhost", &tenant)
        .await
        .unwrap()
        .expect("TLS login");

    let bad = b
        .call(
            "PUT",
            "/security",
            Some(serde_json::json!({"require_tls": "yes"})),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let off = b
        .call(
            "PUT",
            "/security",
            Some(serde_json::json!({"require_tls": false})),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(php_plain_connect_error(&plain).await, None);
    server.stop().await;
}

/// Without a certificate the dashboard says TLS is not offered (the page then warns before locking the
/// tenant out).
async fn dashboard_says_when_tls_is_not_offered(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut b, _, _, _) = Browser::new_tenant(server.http_addr(), "notls@example.com").await;
    assert_eq!(
        b.call("GET", "/security", None).await.json(),
        serde_json::json!({"require_tls": false, "tls_offered": false})
    );
    server.stop().await;
}

/// The verifying cases above prove something only if the drivers do verify: against a certificate for
/// another name, each verifying driver refuses to log in, while an unverified one still connects.
async fn verifying_clients_refuse_a_certificate_for_another_name(backend: Backend) {
    let certs = TestCerts::new();
    certs.issue(&["example.test"], "Not this server");
    let server = tls_server(backend, &certs).await;
    let tenant = server.tenant("verify@example.com").await;
    let base = login(&server, &tenant);
    let ca = certs.ca_file();
    for (client, login) in [
        (Client::Php, base.clone().tls_verified(&ca)),
        (
            Client::Python,
            base.clone().host("localhost").tls_verified(&ca),
        ),
        (
            Client::Node,
            base.clone().host("localhost").tls_verified(&ca),
        ),
    ] {
        let resp = run(client, &login.request().ping(), client.name()).await;
        assert!(
            resp.connect_error().is_ok(),
            "{client} accepted a certificate for example.test: {resp:?}"
        );
    }
    let out = mariadb_query(
        &base.clone().host("localhost").tls_verified(&ca),
        "SHOW TABLES",
    )
    .await
    .unwrap();
    assert!(!out.success(), "mariadb CLI: {out:?}");
    let resp = run(
        Client::Php,
        &base.tls_unverified().request().ping(),
        "php unverified",
    )
    .await;
    resp.step(0)
        .unwrap()
        .ok()
        .expect("unverified TLS still connects");
    server.stop().await;
}

on_both_backends!(
    real_clients_publish_over_tls,
    verifying_clients_refuse_a_certificate_for_another_name,
    a_renewed_certificate_reaches_new_sessions_and_open_ones_keep_working,
    sighup_reloads_the_certificate_in_the_real_binary,
    require_tls_refuses_plaintext_after_the_key_check,
    dashboard_toggles_require_tls,
    dashboard_says_when_tls_is_not_offered,
);
