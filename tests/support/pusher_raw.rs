//! The Pusher protocol spoken raw from a test: HTTP API requests signed with the protocol floor's own signer
//! (the real libraries' signing is checked by `pusher_clients`), and a WebSocket connection on `/app/{key}`
//! read frame by frame.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use halley::pusher::api_auth::{sign, ApiRequest};

use crate::dashboard::{send, Resp};
use crate::wait::WAIT;
use crate::ws::WsClient;
use crate::{Tenant, TestServer};

/// The address API requests come from.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn now() -> i64 {
    halley::tenant::unix_now()
}

/// A signed API request: `app_id` in the path, signed with `key` and `secret` at `timestamp`.
#[allow(clippy::too_many_arguments)]
pub async fn api_at(
    server: &TestServer,
    method: &str,
    app_id: &str,
    rest: &str,
    body: &str,
    key: &str,
    secret: &str,
    timestamp: i64,
) -> Resp {
    let path = format!("/apps/{app_id}{rest}");
    let (path_only, params) = path.split_once('?').unwrap_or((&path, ""));
    let params: Vec<(&str, &str)> = params
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let req = ApiRequest {
        method,
        path: path_only,
        query: "",
        body: body.as_bytes(),
    };
    let query = sign(&req, key, secret, timestamp, &params);
    let headers = [("content-type", "application/json")];
    let body = (!body.is_empty()).then_some(body);
    send(
        server.http_addr(),
        LOCAL,
        method,
        &format!("{path_only}?{query}"),
        &headers,
        body,
    )
    .await
}

pub async fn api(server: &TestServer, t: &Tenant, method: &str, rest: &str, body: &str) -> Resp {
    api_at(
        server,
        method,
        &t.dev_id.to_string(),
        rest,
        body,
        &t.app_key,
        &t.key,
        now(),
    )
    .await
}

pub fn event(channels: &[String], data: &str) -> String {
    json!({"name": "e", "channels": channels, "data": data}).to_string()
}

pub async fn connect(server: &TestServer, app_key: &str) -> (WsClient, String) {
    let url = format!(
        "ws://{}/app/{app_key}?protocol=7&client=js&version=8.4.0",
        server.http_addr()
    );
    let mut ws = WsClient::connect(&url).await.unwrap();
    let hello = ws.recv_json(WAIT).await.unwrap();
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    let socket_id = data(&hello)["socket_id"].as_str().unwrap().to_owned();
    (ws, socket_id)
}

/// A frame's `data`, parsed when it is a string (as pusher-js does).
pub fn data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    }
}

pub async fn send_json(ws: &mut WsClient, v: Value) {
    ws.send_text(&v.to_string()).await.unwrap();
}

pub async fn next(ws: &mut WsClient) -> Value {
    ws.recv_json(WAIT).await.unwrap()
}
