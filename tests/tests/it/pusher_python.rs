//! A second, independent Pusher client pair: PyPI `pysher` subscribes (public, private and presence
//! channels, signed by pysher with the secret) and PyPI `pusher` triggers and reads the channels' state
//! (tests/clients/pusher/pysher_pair.py).

use std::time::Duration;

use serde_json::{json, Value};

use halley_tests::clients::clients_dir;
use halley_tests::{on_both_backends, Backend, TestServer};

async fn pysher_and_the_python_library(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("py@example.com").await;
    let addr = server.http_addr();
    let request = json!({
        "host": addr.ip().to_string(),
        "port": addr.port(),
        "app_id": tenant.dev_id,
        "key": tenant.app_key,
        "secret": tenant.key,
        "channels": ["orders", "private-orders", "presence-room"],
    });
    let python = std::env::var("HALLEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(clients_dir().join("pusher/pysher_pair.py"));
    let done = halley_tests::clients::run_process(
        cmd,
        request.to_string().as_bytes(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "pysher_pair.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&done.stderr)
    );
    let got: Value = serde_json::from_str(stdout.trim()).unwrap();
    let event = |channel: &str| json!({"channel": channel, "event": "shipped", "data": {"id": 7}});
    assert_eq!(
        got["received"],
        json!([
            event("orders"),
            event("presence-room"),
            event("private-orders")
        ])
    );
    assert_eq!(
        got["info"],
        json!({"channels": {"presence-room": {"user_count": 1}}})
    );
    assert_eq!(got["users"], json!({"users": [{"id": "py-1"}]}));
    server.stop().await;
}

on_both_backends!(pysher_and_the_python_library);
