//! Fan-out: 1,000 WebSocket subscribers on one pipe each receive every one of 100 messages published
//! from PHP, in publish order, none lost and none repeated.

use std::time::Duration;

use futures_util::future::join_all;
use halley_tests::browser::{anonymous, send_subscription, unix_now, wait_subscribers};
use halley_tests::clients::{self, Client};
use halley_tests::cometql::{insert_literal_sql, login};
use halley_tests::{on_both_backends, Backend, TestServer};

const SUBSCRIBERS: usize = 1_000;
const MESSAGES: usize = 100;
const PIPE: &str = "fanout";
/// Connections opened at once while setting up.
const WAVE: usize = 100;

/// Open files this process needs: both backends' tests may run at once, each with 1,000 client sockets
/// and 1,000 server sockets, plus database connections, the usual descriptors and what the other suites
/// of this test binary running alongside hold (a few hundred).
const FDS_NEEDED: u64 = 4 * SUBSCRIBERS as u64 + 2048;

/// `(soft, hard)` RLIMIT_NOFILE of this process, from /proc.
fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| match w {
            "unlimited" => Some(u64::MAX),
            w => w.parse().ok(),
        })
        .collect();
    (nums[0], nums[1])
}

/// Raises the soft open-files limit to the hard one when it is too low for this test (with util-linux
/// `prlimit`, which needs no unsafe code here). A hard limit below the need fails with the reason.
fn ensure_open_files() {
    let (soft, hard) = nofile_limits();
    if soft >= FDS_NEEDED {
        return;
    }
    assert!(
        hard >= FDS_NEEDED,
        "this test needs {FDS_NEEDED} open files; the hard limit is {hard} (raise it with ulimit -Hn)"
    );
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .expect("running prlimit to raise the open-files limit");
    assert!(status.success(), "prlimit failed: {status}");
    let (soft, _) = nofile_limits();
    assert!(soft >= FDS_NEEDED, "open-files limit still {soft}");
}

/// The exact frame of message `i`; returns an error describing what came instead.
fn check_frame(text: &str, i: usize) -> Result<(), String> {
    let prefix = format!(r#"{{"data":"m{i}","event":"e","message_send_time":"#);
    let suffix = format!(r#","pipe":"{PIPE}"}}"#);
    let t = text
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(&suffix))
        .ok_or_else(|| format!("message {i}: unexpected frame {text}"))?;
    let t: i64 = t
        .parse()
        .map_err(|_| format!("message {i}: bad time in {text}"))?;
    let now = unix_now();
    if !(now - 30..=now + 1).contains(&t) {
        return Err(format!("message {i}: time {t} is not now ({now})"));
    }
    Ok(())
}

async fn thousand_subscribers_get_every_message_in_order(backend: Backend) {
    ensure_open_files();
    let server = TestServer::start_with(backend, |c| {
        c.limits.new_connections_per_ip_per_sec = 100_000;
        c.limits.new_connections_per_ip_burst = 100_000;
        c.limits.connections_per_ip = 100_000;
        c.limits.websocket_connections_per_ip_per_tenant = 100_000;
    })
    .await;
    let tenant = server.tenant("fanout@example.com").await;

    let started = std::time::Instant::now();
    let mut subs = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS / WAVE {
        let wave = join_all((0..WAVE).map(|_| async {
            let mut ws = anonymous(&server, tenant.dev_id).await;
            send_subscription(&mut ws, &[PIPE]).await;
            ws
        }))
        .await;
        subs.extend(wave);
    }
    wait_subscribers(&server, tenant.dev_id, PIPE, SUBSCRIBERS).await;
    eprintln!(
        "{backend:?}: {SUBSCRIBERS} subscribed in {:?}",
        started.elapsed()
    );

    // Readers first, so that sockets are drained while the publisher runs.
    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(n, mut ws)| {
            tokio::spawn(async move {
                for i in 0..MESSAGES {
                    let text = ws
                        .recv_text(Duration::from_secs(30))
                        .await
                        .map_err(|e| format!("subscriber {n}, message {i}: {e:#}"))?;
                    check_frame(&text, i).map_err(|e| format!("subscriber {n}: {e}"))?;
                }
                // The end marker comes right after the last message: nothing was repeated.
                let text = ws
                    .recv_text(Duration::from_secs(30))
                    .await
                    .map_err(|e| format!("subscriber {n}, end marker: {e:#}"))?;
                if !text.starts_with(r#"{"data":"end","event":"e","#) {
                    return Err(format!(
                        "subscriber {n}: expected the end marker, got {text}"
                    ));
                }
                Ok::<_, String>(ws)
            })
        })
        .collect();

    let mut req = login(&server, &tenant).request();
    for i in 0..MESSAGES {
        req = req.sql(insert_literal_sql(PIPE, "e", &format!("'m{i}'")));
    }
    req = req.sql(insert_literal_sql(PIPE, "e", "'end'"));
    let resp = clients::run(Client::Php, &req).await.unwrap();
    for i in 0..=MESSAGES {
        assert_eq!(resp.step(i).unwrap().ok().unwrap(), (0, 0), "publish {i}");
    }

    let mut failures = Vec::new();
    let mut alive = Vec::new();
    for r in join_all(readers).await {
        match r.expect("reader task") {
            Ok(ws) => alive.push(ws),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {SUBSCRIBERS} subscribers failed; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(alive.len(), SUBSCRIBERS);
    eprintln!(
        "{backend:?}: {} frames delivered, total {:?}",
        SUBSCRIBERS * MESSAGES,
        started.elapsed()
    );
    // The server still counts every one of them.
    let resp = clients::run(
        Client::Php,
        &login(&server, &tenant)
            .request()
            .sql(format!("SELECT users FROM pipes WHERE name = '{PIPE}'")),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.step(0).unwrap().scalar().unwrap(),
        Some(SUBSCRIBERS.to_string().as_str())
    );
    drop(alive);
    server.stop().await;
}

on_both_backends!(thousand_subscribers_get_every_message_in_order);
