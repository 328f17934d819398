//! The Pusher protocol on a cluster (docs/pusher.md, "Several nodes"): a Laravel app behind a load
//! balancer over several nodes behaves as on one. Real clients (pusher-js, laravel-echo and the npm
//! `pusher` library, tests/clients/pusher/agent.mjs), one agent per node: each agent's clients connect to
//! its node and its HTTP API calls go there. Events named the Laravel way, private and presence
//! channels (members counted once cluster-wide), whispers, `toOthers()`, `sendToUser`,
//! `terminateUserConnections`, channel info, cache channels, a killed node's members, and Redis down.

use std::time::Duration;

use serde_json::{json, Value};

use halley_tests::cluster::{wait_ready, RedisProcess, TestCluster};
use halley_tests::nodes::ProcessCluster;
use halley_tests::pusher::Agent;
use halley_tests::pusher_raw::{api, connect, event, next, send_json};
use halley_tests::wait::WAIT;
use halley_tests::{Tenant, TestServer};

/// A killed node's presence is swept within its lease and a sweep period (10 s + 5 s), and more on a
/// busy machine.
const SWEPT_WITHIN: Duration = Duration::from_secs(40);

fn ev<'a>(id: &'a str, kind: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["id"] == id && e["ev"] == kind
}

async fn agents(cluster: &TestCluster, t: &Tenant) -> Vec<Agent> {
    let mut out = Vec::new();
    for node in &cluster.nodes {
        out.push(Agent::start(node, t).await.unwrap());
    }
    out
}

async fn enable_client_events(node: &TestServer, t: &Tenant) {
    node.ctx()
        .tenants
        .set_client_events(halley::ids::DevId(t.dev_id), true, &node.ctx().limits)
        .await
        .unwrap();
}

/// Events published through node A's HTTP API reach pusher-js on B and C: named the Laravel way
/// (`App\Events\OrderShipped`, `order.shipped`) on a public channel, on a private channel, and with
/// `toOthers()` (the socket id of a connection on another node) leaving that connection out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn laravel_events_private_channels_and_to_others_cross_nodes() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("px@example.com").await;
    let mut a = agents(&cluster, &t).await;
    let socket_b = a[1].connect("b", "2").await.unwrap();
    a[2].connect("c", "3").await.unwrap();
    for (i, id) in [(1, "b"), (2, "c")] {
        a[i].subscribe(id, "orders").await.unwrap();
        a[i].subscribe(id, "private-orders.1").await.unwrap();
    }
    for name in ["App\\Events\\OrderShipped", "order.shipped"] {
        a[0].trigger(&["orders"], name, json!({"id": 7}))
            .await
            .unwrap();
        for (i, id) in [(1, "b"), (2, "c")] {
            let got = a[i]
                .expect(|e| e["id"] == id && e["ev"] == "event" && e["event"] == name)
                .await
                .unwrap();
            assert_eq!(
                (got["channel"].clone(), got["data"].clone()),
                (json!("orders"), json!({"id": 7}))
            );
        }
    }

    let (status, body) = a[0]
        .http(json!({"op": "trigger", "channels": ["private-orders.1"], "event": "paid", "data": {"n": 1}, "socket_id": socket_b}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    a[0].trigger(&["private-orders.1"], "paid", json!({"n": 2}))
        .await
        .unwrap();
    let first_c = a[2]
        .expect(|e| e["id"] == "c" && e["event"] == "paid")
        .await
        .unwrap();
    assert_eq!(first_c["data"], json!({"n": 1}));
    let first_b = a[1]
        .expect(|e| e["id"] == "b" && e["event"] == "paid")
        .await
        .unwrap();
    assert_eq!(first_b["data"], json!({"n": 2}), "b was left out of n=1");
    a[2].expect(|e| e["id"] == "c" && e["event"] == "paid")
        .await
        .unwrap();
    cluster.stop().await;
}

/// Presence across nodes with Echo: `here` lists every node's users, a user with connections on two
/// nodes joins once and leaves once; the channel's users and user count answer the same on every node.
/// Whispers cross nodes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_members_and_whispers_are_cluster_wide() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("pp@example.com").await;
    for node in &cluster.nodes {
        enable_client_events(node, &t).await;
    }
    let mut a = agents(&cluster, &t).await;
    a[0].connect("a", "1").await.unwrap();
    a[1].connect("b1", "2").await.unwrap();
    a[2].connect("b2", "2").await.unwrap();

    a[0].send(json!({"op": "echo", "id": "a", "kind": "join", "channel": "room", "event": ".ping", "whisper": "typing"}))
        .await
        .unwrap();
    let here = a[0].expect(ev("a", "here")).await.unwrap();
    assert_eq!(here["users"], json!(["User 1"]));
    a[1].send(
        json!({"op": "echo", "id": "b1", "kind": "join", "channel": "room", "whisper": "typing"}),
    )
    .await
    .unwrap();
    let here = a[1].expect(ev("b1", "here")).await.unwrap();
    let mut users: Vec<String> = serde_json::from_value(here["users"].clone()).unwrap();
    users.sort();
    assert_eq!(users, ["User 1", "User 2"]);
    let joining = a[0].expect(ev("a", "joining")).await.unwrap();
    assert_eq!(joining["user"], "User 2");
    // The same user on a third node: a member already, nobody is told.
    a[2].send(json!({"op": "echo", "id": "b2", "kind": "join", "channel": "room"}))
        .await
        .unwrap();
    let here = a[2].expect(ev("b2", "here")).await.unwrap();
    assert_eq!(here["users"].as_array().map(Vec::len), Some(2), "{here}");

    for (i, agent) in a.iter_mut().enumerate() {
        let (status, body) = agent
            .http(json!({"op": "get", "path": "/channels/presence-room/users"}))
            .await
            .unwrap();
        assert_eq!(status, 200, "node {i}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"users": [{"id": "1"}, {"id": "2"}]}), "node {i}");
        let (status, body) = agent
            .http(json!({"op": "get", "path": "/channels/presence-room", "params": {"info": "user_count,subscription_count"}}))
            .await
            .unwrap();
        assert_eq!(status, 200, "node {i}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"occupied": true, "user_count": 2, "subscription_count": 3}),
            "node {i}"
        );
    }

    // A whisper from node 0 reaches node 1, with its sender's user id; not the sender.
    a[0].send(json!({"op": "whisper", "id": "a", "kind": "join", "channel": "room", "event": "typing", "data": {"who": "a"}}))
        .await
        .unwrap();
    let w = a[1].expect(ev("b1", "whisper")).await.unwrap();
    assert_eq!(w["data"], json!({"who": "a"}));

    a[1].send(json!({"op": "disconnect", "id": "b1"}))
        .await
        .unwrap();
    // Still a member through b2: a trigger after the disconnect arrives before any `leaving` would.
    a[1].trigger(&["presence-room"], "ping", json!({}))
        .await
        .unwrap();
    a[0].expect(|e| e["id"] == "a" && e["ev"] == "echo_event" && e["event"] == ".ping")
        .await
        .unwrap();
    assert!(!a[0].seen(|e| e["id"] == "a" && e["ev"] == "leaving"));
    a[2].send(json!({"op": "disconnect", "id": "b2"}))
        .await
        .unwrap();
    let leaving = a[0].expect(ev("a", "leaving")).await.unwrap();
    assert_eq!(leaving["user"], "User 2");
    a[2].trigger(&["presence-room"], "ping", json!({"n": 2}))
        .await
        .unwrap();
    a[0].expect(|e| e["id"] == "a" && e["ev"] == "echo_event" && e["data"] == json!({"n": 2}))
        .await
        .unwrap();
    assert!(!a[0].seen(|e| e["id"] == "a" && (e["ev"] == "leaving" || e["ev"] == "joining")));
    assert!(!a[0].seen(|e| e["id"] == "a" && e["ev"] == "whisper"));
    for (i, agent) in a.iter_mut().enumerate() {
        let (_, body) = agent
            .http(json!({"op": "get", "path": "/channels/presence-room/users"}))
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"users": [{"id": "1"}]}), "node {i}");
    }
    cluster.stop().await;
}

/// The presence cap holds cluster-wide: with room for one user, a second user on another node is
/// refused, and the first user's second connection is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_presence_cap_is_cluster_wide() {
    let cluster = TestCluster::start_on(2, &halley_tests::cluster::redis_url(), |c| {
        c.pusher.presence_max_members = 1;
    })
    .await;
    let t = cluster.tenant("cap@example.com").await;
    let mut a = agents(&cluster, &t).await;
    a[0].connect("a", "1").await.unwrap();
    a[1].connect("b", "2").await.unwrap();
    a[1].connect("a2", "1").await.unwrap();
    a[0].subscribe("a", "presence-small").await.unwrap();
    a[1].send(json!({"op": "subscribe", "id": "b", "channel": "presence-small"}))
        .await
        .unwrap();
    let refused = a[1].expect(ev("b", "pusher_error")).await.unwrap();
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is full"),
        "{refused}"
    );
    a[1].subscribe("a2", "presence-small").await.unwrap();
    let (_, body) = a[1]
        .http(json!({"op": "get", "path": "/channels/presence-small/users"}))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"users": [{"id": "1"}]}));
    cluster.stop().await;
}

/// `signin()` and `sendToUser` reach the user's connections on every node; `terminateUserConnections`
/// closes them all, and nobody else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_to_user_and_terminate_reach_every_node() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("su@example.com").await;
    let mut a = agents(&cluster, &t).await;
    a[1].connect("u1", "42").await.unwrap();
    a[2].connect("u2", "42").await.unwrap();
    a[1].connect("other", "43").await.unwrap();
    for (i, id) in [(1, "u1"), (2, "u2"), (1, "other")] {
        a[i].send(json!({"op": "signin", "id": id})).await.unwrap();
        a[i].expect(ev(id, "signed_in")).await.unwrap();
    }
    let (status, body) = a[0]
        .http(json!({"op": "send_to_user", "user": "42", "event": "note", "data": {"hi": 1}}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    for (i, id) in [(1, "u1"), (2, "u2")] {
        let got = a[i].expect(ev(id, "user_event")).await.unwrap();
        assert_eq!(
            (got["event"].clone(), got["data"].clone()),
            (json!("note"), json!({"hi": 1}))
        );
    }

    let (status, body) = a[0]
        .http(json!({"op": "terminate", "user": "42"}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    for (i, id) in [(1, "u1"), (2, "u2")] {
        a[i].expect(|e| e["id"] == id && e["ev"] == "state" && e["state"] == "disconnected")
            .await
            .unwrap();
    }
    // The other user is still connected: a message to them arrives after the others were closed.
    let (status, body) = a[0]
        .http(json!({"op": "send_to_user", "user": "43", "event": "still", "data": {}}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    a[1].expect(ev("other", "user_event")).await.unwrap();
    assert!(
        !a[1].seen(|e| e["id"] == "other" && e["ev"] == "state" && e["state"] == "disconnected")
    );
    cluster.stop().await;
}

/// Channel info answers the same on every node (subscribers of all nodes, users counted once), and a
/// cache channel's last event, published on one node, is what a subscriber on another gets first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channel_info_and_cache_channels_are_the_same_on_every_node() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("ci@example.com").await;
    let mut a = agents(&cluster, &t).await;
    a[0].connect("a", "1").await.unwrap();
    a[1].connect("b", "2").await.unwrap();
    a[1].connect("b2", "2").await.unwrap();
    a[0].subscribe("a", "news").await.unwrap();
    a[1].subscribe("b", "news").await.unwrap();
    a[0].subscribe("a", "presence-lobby").await.unwrap();
    a[1].subscribe("b", "presence-lobby").await.unwrap();
    a[1].subscribe("b2", "presence-lobby").await.unwrap();
    for (i, agent) in a.iter_mut().enumerate() {
        let (status, body) = agent
            .http(json!({"op": "get", "path": "/channels", "params": {"filter_by_prefix": "presence-", "info": "user_count"}}))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"channels": {"presence-lobby": {"user_count": 2}}}),
            "node {i}"
        );
        let (_, body) = agent
            .http(json!({"op": "get", "path": "/channels/news", "params": {"info": "subscription_count"}}))
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"occupied": true, "subscription_count": 2}),
            "node {i}"
        );
        let (_, body) = agent
            .http(json!({"op": "get", "path": "/channels"}))
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"channels": {"news": {}, "presence-lobby": {}}}),
            "node {i}"
        );
    }

    a[0].trigger(&["cache-scores"], "goal", json!({"score": "1-0"}))
        .await
        .unwrap();
    a[1].subscribe("b", "cache-scores").await.unwrap();
    let got = a[1]
        .expect(|e| e["id"] == "b" && e["ev"] == "event" && e["channel"] == "cache-scores")
        .await
        .unwrap();
    assert_eq!(
        (got["event"].clone(), got["data"].clone()),
        (json!("goal"), json!({"score": "1-0"}))
    );
    a[1].subscribe("b", "private-cache-none").await.unwrap();
    a[1].expect(|e| {
        e["id"] == "b" && e["ev"] == "cache_miss" && e["channel"] == "private-cache-none"
    })
    .await
    .unwrap();
    cluster.stop().await;
}

/// `cache_channels_per_tenant` holds across nodes: past it a channel not cached yet keeps nothing (as on
/// one node), whichever node the publishes came through; a channel already cached still takes its newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_channels_are_capped_per_tenant_across_nodes() {
    let cluster = TestCluster::start_on(2, &halley_tests::cluster::redis_url(), |c| {
        c.pusher.cache_channels_per_tenant = 2;
    })
    .await;
    let t = cluster.tenant("cap@example.com").await;
    for (node, channel, data) in [
        (0, "cache-a", "a1"),
        (1, "cache-b", "b1"),
        (0, "cache-c", "c1"),
        (1, "cache-a", "a2"),
    ] {
        let r = api(
            cluster.node(node),
            &t,
            "POST",
            "/events",
            &event(&[channel.into()], data),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (mut ws, _) = connect(cluster.node(1), &t.app_key).await;
    for (channel, cached) in [
        ("cache-a", Some("a2")),
        ("cache-b", Some("b1")),
        ("cache-c", None),
    ] {
        send_json(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await["event"],
            "pusher_internal:subscription_succeeded"
        );
        let got = next(&mut ws).await;
        match cached {
            Some(data) => assert_eq!(
                (got["event"].as_str(), got["data"].as_str()),
                (Some("e"), Some(data)),
                "{channel}"
            ),
            None => assert_eq!(got["event"], "pusher:cache_miss", "{channel}: {got}"),
        }
    }
    cluster.stop().await;
}

/// A killed node's presence members are swept: every survivor's subscriber gets one `member_removed`
/// per user it held (a user also connected elsewhere stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_presence_members_leave_once() {
    let mut cluster = ProcessCluster::start(3).await;
    let t = cluster.tenant("pk@example.com").await;
    let mut a = Vec::new();
    for i in 0..3 {
        a.push(
            Agent::start_at(cluster.node(i).http_addr(), &t, None)
                .await
                .unwrap(),
        );
    }
    a[0].connect("w", "1").await.unwrap();
    a[1].connect("stay", "4").await.unwrap();
    a[2].connect("k2", "2").await.unwrap();
    a[2].connect("k3", "3").await.unwrap();
    a[2].connect("k4", "4").await.unwrap();
    a[0].subscribe("w", "presence-room").await.unwrap();
    a[1].subscribe("stay", "presence-room").await.unwrap();
    for id in ["k2", "k3", "k4"] {
        a[2].subscribe(id, "presence-room").await.unwrap();
    }
    for user in ["4", "2", "3"] {
        a[0].expect(|e| e["id"] == "w" && e["ev"] == "member_added" && e["user"] == user)
            .await
            .unwrap();
    }

    cluster.nodes[2].kill();
    let mut gone = Vec::new();
    for _ in 0..2 {
        let e = a[0]
            .expect_within(SWEPT_WITHIN, |e| {
                e["id"] == "w" && e["ev"] == "member_removed"
            })
            .await
            .unwrap();
        gone.push(e["user"].as_str().unwrap_or_default().to_owned());
    }
    gone.sort();
    assert_eq!(gone, ["2", "3"]);
    // Published after the sweep: arrives after any further removal would have.
    let (status, body) = a[1]
        .http(json!({"op": "trigger", "channels": ["presence-room"], "event": "after", "data": {}}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    a[0].expect(|e| e["id"] == "w" && e["event"] == "after")
        .await
        .unwrap();
    assert!(!a[0].seen(|e| e["id"] == "w" && e["ev"] == "member_removed"));
    let (_, body) = a[0]
        .http(json!({"op": "get", "path": "/channels/presence-room/users"}))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"users": [{"id": "1"}, {"id": "4"}]}));
    cluster.stop().await;
}

/// Redis down: the HTTP API refuses events with 503 and says why, a presence join and a whisper are
/// refused with `pusher:error` 4200; once Redis is back (empty: it saved nothing), the members it lost
/// are written again by their nodes, and everything works again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_closed() {
    let mut redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("rd@example.com").await;
    for node in &cluster.nodes {
        enable_client_events(node, &t).await;
    }
    let mut a = agents(&cluster, &t).await;
    a[0].connect("a", "1").await.unwrap();
    a[1].connect("b", "2").await.unwrap();
    a[0].subscribe("a", "private-chat").await.unwrap();
    a[0].subscribe("a", "presence-room").await.unwrap();

    redis.kill();
    wait_ready(cluster.node(0), false).await;
    let (status, body) = a[0]
        .http(json!({"op": "trigger", "channels": ["App.Models.User.1"], "event": "App\\Events\\Ping", "data": {}}))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cluster is unavailable"), "{body}");
    a[1].send(json!({"op": "subscribe", "id": "b", "channel": "presence-room"}))
        .await
        .unwrap();
    let refused = a[1].expect(ev("b", "pusher_error")).await.unwrap();
    assert_eq!(refused["data"]["code"], 4200, "{refused}");
    a[0].send(json!({"op": "client_event", "id": "a", "channel": "private-chat", "event": "client-x", "data": {}}))
        .await
        .unwrap();
    let refused = a[0].expect(ev("a", "pusher_error")).await.unwrap();
    assert_eq!(refused["data"]["code"], 4200, "{refused}");
    // The channels' state is not answered from one node's part.
    let (status, body) = a[1]
        .http(json!({"op": "get", "path": "/channels/presence-room/users"}))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");

    redis.restart().await;
    for node in &cluster.nodes {
        wait_ready(node, true).await;
    }
    // Redis came back empty: node 0 writes its presence connection again (once it has written its
    // presence), so b2 finds user 1 there, and user 1 is told of b2.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = a[1]
            .http(json!({"op": "get", "path": "/channels/presence-room/users"}))
            .await
            .unwrap();
        if status == 200 && body.contains(r#""id":"1""#) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "user 1 not written again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a[1].connect("b2", "2").await.unwrap();
    a[1].send(json!({"op": "echo", "id": "b2", "kind": "join", "channel": "room", "event": ".App\\Events\\Back"}))
        .await
        .unwrap();
    let here = a[1].expect(ev("b2", "here")).await.unwrap();
    let mut users: Vec<String> = serde_json::from_value(here["users"].clone()).unwrap();
    users.sort();
    assert_eq!(users, ["User 1", "User 2"]);
    a[0].expect(|e| e["id"] == "a" && e["ev"] == "member_added" && e["user"] == "2")
        .await
        .unwrap();
    a[0].trigger(&["presence-room"], "App\\Events\\Back", json!({}))
        .await
        .unwrap();
    let got = a[1].expect(ev("b2", "echo_event")).await.unwrap();
    assert_eq!(got["event"], ".App\\Events\\Back");
    cluster.stop().await;
}
