//! Who may create tenants, through the dashboard API on the real server, against SQLite and PostgreSQL:
//! `[dashboard] signup = "closed"` refuses sign-up with 403 `signup_closed` (only `halley tenant create`
//! makes tenants), and a sign-up whose first key cannot be stored leaves no tenant behind.

use halley::config::Signup;
use halley_tests::dashboard::Browser;
use halley_tests::{on_both_backends, Backend, TestServer};
use sqlx::{Connection, Executor};

const PASSWORD: &str = "correct horse battery";

on_both_backends!(
    closed_signup_is_refused_and_creates_nothing,
    open_signup_is_the_default,
    failed_first_key_leaves_no_tenant,
);

async fn tenant_emails(server: &TestServer) -> Vec<String> {
    let tenants = server.ctx().storage.list_tenants().await.expect("tenants");
    tenants.into_iter().map(|t| t.email).collect()
}

async fn closed_signup_is_refused_and_creates_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.dashboard.signup = Signup::Closed).await;
    let mut b = Browser::new(server.http_addr());

    let status = b.call("GET", "/signup", None).await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.json()["signup"], "closed");
    let shown = status.json()["message"].as_str().unwrap().to_owned();
    assert!(shown.contains("halley tenant create"), "{shown}");

    let r = b.sign_up("closed@example.com", PASSWORD).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.code(), "signup_closed");
    assert_eq!(r.json()["message"].as_str(), Some(shown.as_str()));
    assert!(
        r.header("set-cookie").is_none(),
        "no session for a refused sign-up"
    );
    assert!(tenant_emails(&server).await.is_empty());

    // Refusals cost nothing and count against nobody: far past the sign-up throttle, still 403, never 429.
    for i in 0..30 {
        let r = b.sign_up(&format!("c{i}@example.com"), PASSWORD).await;
        assert_eq!((r.status, r.code()), (403, "signup_closed".to_owned()));
    }

    // The operator's way still makes tenants.
    let t = server.tenant("operator@example.com").await;
    assert!(t.dev_id > 0);
    assert_eq!(tenant_emails(&server).await, ["operator@example.com"]);
    server.stop().await;
}

async fn open_signup_is_the_default(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut b = Browser::new(server.http_addr());
    let status = b.call("GET", "/signup", None).await;
    assert_eq!(status.json(), serde_json::json!({"signup": "open"}));
    let r = b.sign_up("open@example.com", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(tenant_emails(&server).await, ["open@example.com"]);
    server.stop().await;
}

/// Makes every insert into tenant_keys fail inside the database (a trigger), or stops doing so.
async fn refuse_key_inserts(server: &TestServer, backend: Backend, refuse: bool) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&server.config().database_url())
        .await
        .expect("second connection to the server's database");
    let statements: &[&str] = match (backend, refuse) {
        (Backend::Sqlite, true) => &["CREATE TRIGGER refuse_keys BEFORE INSERT ON tenant_keys \
              BEGIN SELECT RAISE(ABORT, 'key inserts refused by the test'); END"],
        (Backend::Sqlite, false) => &["DROP TRIGGER refuse_keys"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION refuse_keys() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'key inserts refused by the test'; END $$",
            "CREATE TRIGGER refuse_keys BEFORE INSERT ON tenant_keys \
             FOR EACH ROW EXECUTE FUNCTION refuse_keys()",
        ],
        (Backend::Postgres, false) => &["DROP TRIGGER refuse_keys ON tenant_keys"],
    };
    for s in statements {
        conn.execute(*s).await.expect(s);
    }
    conn.close().await.expect("close");
}

async fn failed_first_key_leaves_no_tenant(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut b = Browser::new(server.http_addr());
    refuse_key_inserts(&server, backend, true).await;

    let r = b.sign_up("half@example.com", PASSWORD).await;
    assert_eq!(
        (r.status, r.code()),
        (500, "internal".to_owned()),
        "{}",
        r.body
    );
    assert!(
        tenant_emails(&server).await.is_empty(),
        "a tenant without its key was left behind"
    );
    let login = b.log_in("half@example.com", PASSWORD).await;
    assert_eq!(login.status, 401, "{}", login.body);

    // Once keys can be stored again, the same email signs up (it was never taken) and gets its key.
    refuse_key_inserts(&server, backend, false).await;
    let r = b.sign_up("half@example.com", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let keys = b.call("GET", "/keys", None).await.json();
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    assert_eq!(tenant_emails(&server).await, ["half@example.com"]);
    server.stop().await;
}
