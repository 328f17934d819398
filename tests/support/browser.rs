//! The browser side as the integration tests drive it: anonymous or authorized connections on the
//! comet-server URL with their serverInfo frame read, subscriptions that are known to be registered by
//! the hub before anything is published, and the hub's own counters to wait on (no sleeps).

use std::sync::atomic::Ordering;

use anyhow::anyhow;
use halley::ids::{DevId, PipeName};
use serde_json::Value;

use crate::wait::{eventually, WAIT};
use crate::ws::WsClient;
use crate::TestServer;

/// Seconds since the Unix epoch, to check a frame's `message_send_time` against.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A browser connection (`user_id` 0 and key "" for anonymous), its serverInfo frame read and returned.
pub async fn browser(
    server: &TestServer,
    dev_id: u64,
    user_id: u64,
    key: &str,
) -> (WsClient, Value) {
    let mut ws = WsClient::connect(&server.ws_url(dev_id, user_id, key))
        .await
        .expect("WebSocket connect");
    let hello = ws.recv_json(WAIT).await.expect("serverInfo frame");
    assert_eq!(hello["event"], "serverInfo", "{hello}");
    assert_eq!(hello["pipe"], "sys", "{hello}");
    (ws, hello)
}

/// An anonymous browser connection, its serverInfo frame read.
pub async fn anonymous(server: &TestServer, dev_id: u64) -> WsClient {
    browser(server, dev_id, 0, "").await.0
}

/// Live subscribers of `pipe` for `dev_id`, as the hub counts them.
pub fn subscribers(server: &TestServer, dev_id: u64, pipe: &str) -> usize {
    let pipe = PipeName::parse_subscription(pipe).expect("valid pipe name");
    server
        .ctx()
        .hub
        .registry()
        .subscribers(DevId(dev_id), &pipe)
}

/// Waits (bounded) until exactly `n` connections of `dev_id` are subscribed to `pipe`.
pub async fn wait_subscribers(server: &TestServer, dev_id: u64, pipe: &str, n: usize) {
    eventually(WAIT, || async {
        match subscribers(server, dev_id, pipe) {
            got if got == n => Ok(()),
            got => Err(anyhow!(
                "{got} subscribers of {pipe} for dev {dev_id}, want {n}"
            )),
        }
    })
    .await
    .unwrap();
}

/// Sends `subscription\n<pipes>` (the protocol has no acknowledgement).
pub async fn send_subscription(ws: &mut WsClient, pipes: &[&str]) {
    ws.send_text(&format!("subscription\n{}", pipes.join("\n")))
        .await
        .expect("send subscription");
}

/// Sends `subscription\n<pipes>` and waits until the hub has registered the connection on each pipe;
/// `already[i]` is how many connections of this dev were on `pipes[i]` before.
pub async fn subscribe(
    server: &TestServer,
    ws: &mut WsClient,
    dev_id: u64,
    pipes: &[&str],
    already: &[usize],
) {
    send_subscription(ws, pipes).await;
    for (pipe, n) in pipes.iter().zip(already) {
        wait_subscribers(server, dev_id, pipe, n + 1).await;
    }
}

/// One anonymous subscriber of `pipe`, returned once the hub has registered it (so a publish reaches
/// it). `already` is how many connections of this dev were subscribed to the pipe before.
pub async fn subscriber(server: &TestServer, dev_id: u64, pipe: &str, already: usize) -> WsClient {
    let mut ws = anonymous(server, dev_id).await;
    subscribe(server, &mut ws, dev_id, &[pipe], &[already]).await;
    ws
}

/// WebSocket connections of the tenant, as the hub counts them.
pub fn ws_connections(server: &TestServer, dev_id: u64) -> i64 {
    server
        .ctx()
        .stats
        .tenant(DevId(dev_id))
        .websocket_connections
        .load(Ordering::SeqCst)
}

/// Waits until the tenant has exactly `n` open WebSocket connections on the server. The count drops
/// only after a closed connection has been fully cleaned up (unsubscribed, unlinked from its user,
/// offline event and users_time written), so this awaits the end of that work.
pub async fn wait_ws_connections(server: &TestServer, dev_id: u64, n: i64) {
    eventually(WAIT, || async {
        match ws_connections(server, dev_id) {
            got if got == n => Ok(()),
            got => Err(anyhow!(
                "{got} WebSocket connections of dev {dev_id}, want {n}"
            )),
        }
    })
    .await
    .unwrap();
}
