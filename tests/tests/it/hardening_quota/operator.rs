//! The operator's side of the quotas: the dashboard's usage answer shows what is in use against each
//! quota, and `halley tenant limits` stores a tenant's own quotas.

use std::process::Stdio;

use halley::ids::DevId;
use halley::storage::QuotaRow;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};

use super::{insert, msg100};
use halley_tests::dashboard::Browser;
use halley_tests::limits::{assert_quota, no_override, reload_quotas};

async fn dashboard_overview_shows_storage_usage(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.history_bytes_per_tenant = 10_000;
        c.limits.queued_messages_per_tenant = 50;
    })
    .await;
    let (mut owner, dev_id, _, key) =
        Browser::new_tenant(server.http_addr(), "o@example.com").await;
    let tenant = Tenant {
        dev_id,
        key,
        app_key: String::new(),
    };
    let mut q = RawMysql::login(&server, &tenant).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('hist', 10)")
        .await
        .assert_ok();
    q.query(&insert("hist", &msg100("a"))).await.assert_ok();
    q.query(&insert("hist", "twelve bytes")).await.assert_ok();
    q.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'queued')")
        .await
        .assert_ok();
    q.query("INSERT INTO users_data (id, data) VALUES (7, 'x')")
        .await
        .assert_ok();
    let usage = owner.call("GET", "/usage", None).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let storage = &usage.json()["storage"];
    let pair = |used: i64, limit: i64| serde_json::json!({"used": used, "limit": limit});
    assert_eq!(storage["history_bytes"], pair(112, 10_000), "{storage}");
    assert_eq!(storage["history_rows"], pair(2, 100_000), "{storage}");
    assert_eq!(storage["queued_messages"], pair(1, 50), "{storage}");
    assert_eq!(
        storage["queued_messages_per_user_limit"], 10_000,
        "{storage}"
    );
    assert_eq!(storage["users_data"], pair(1, 100_000), "{storage}");
    assert_eq!(storage["revoked_tokens"], pair(0, 100_000), "{storage}");
    server.stop().await;
}

/// `halley tenant limits` stores a tenant's quotas; a running server applies them at its next reload.
async fn cli_sets_quota_overrides(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.history_rows_per_tenant = 2).await;
    let a = server.tenant("a@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    qa.query("INSERT INTO pipes_settings (name, length) VALUES ('hist', 100)")
        .await
        .assert_ok();
    qa.query(&insert("hist", "1")).await.assert_ok();
    qa.query(&insert("hist", "2")).await.assert_ok();
    let rows2 = "Quota exceeded: history rows per tenant (limit 2)";
    assert_quota(&qa.query(&insert("hist", "3")).await, rows2);

    let config = server.config();
    let out = tokio::process::Command::new(halley_tests::process::halley_bin())
        .args(["tenant", "limits", "--dev-id", &a.dev_id.to_string()])
        .args(["--history-rows", "3", "--queued-per-user", "7"])
        .env_clear()
        .env("HALLEY_DATA_DIR", &config.data_dir)
        .env("HALLEY_DATABASE_URL", config.database_url())
        .env("HALLEY_LOG", "warn")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("halley exits in time")
        .expect("run halley");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("limits of dev_id"), "{stdout}");
    let stored = server
        .ctx()
        .storage
        .tenant_quotas()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.dev_id == DevId(a.dev_id))
        .expect("a quota row for the tenant");
    assert_eq!(
        stored,
        QuotaRow {
            history_rows: Some(3),
            queued_per_user: Some(7),
            ..no_override(a.dev_id)
        }
    );
    reload_quotas(&server).await;
    qa.query(&insert("hist", "3")).await.assert_ok();
    assert_quota(
        &qa.query(&insert("hist", "4")).await,
        "Quota exceeded: history rows per tenant (limit 3)",
    );

    // A negative quota is refused by the command line, and nothing is stored.
    let bad = tokio::process::Command::new(halley_tests::process::halley_bin())
        .args(["tenant", "limits", "--dev-id", &a.dev_id.to_string()])
        .args(["--history-rows", "-1"])
        .env_clear()
        .env("HALLEY_DATA_DIR", &config.data_dir)
        .env("HALLEY_DATABASE_URL", config.database_url())
        .stdin(Stdio::null())
        .output();
    let bad = tokio::time::timeout(WAIT, bad).await.unwrap().unwrap();
    assert!(!bad.status.success());
    reload_quotas(&server).await;
    assert_eq!(
        server.ctx().quotas.for_tenant(DevId(a.dev_id)).history_rows,
        3
    );
    server.stop().await;
}

on_both_backends!(
    dashboard_overview_shows_storage_usage,
    cli_sets_quota_overrides,
);
