//! Connections naming tenants that do not exist leave nothing behind: each gets its error frame and close,
//! and the server's per-tenant state (counters, /metrics series) does not grow with the dev_ids a client
//! makes up.

use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, TestServer};

async fn unknown_dev_ids_leave_no_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenants_before = server.ctx().stats.tenants().len();
    for dev_id in 900_000..900_025u64 {
        let mut ws = WsClient::connect(&server.ws_url(dev_id, 0, ""))
            .await
            .expect("the upgrade completes, as in the reference");
        let frame = ws.recv_json(WAIT).await.expect("an error frame");
        assert_eq!(frame["event"], "error", "{frame}");
        assert_eq!(frame["pipe"], "sys", "{frame}");
        ws.expect_closed(WAIT).await.expect("then the close");
    }
    assert_eq!(
        server.ctx().stats.tenants().len(),
        tenants_before,
        "made-up dev_ids must not create per-tenant state"
    );
    server.stop().await;
}

on_both_backends!(unknown_dev_ids_leave_no_state);
