//! Connection scenarios: connections opened as fast as the server takes them (WebSocket, WSS, CometQL
//! logins), and connections left idle (memory per connection; a cluster's Redis memory per subscriber too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::crowd::{self, CrowdSpec};
use crate::meter::{Meter, SetupMeter};
use crate::mysql_client::MysqlConn;
use crate::procstat;
use crate::record::Record;
use crate::scenarios::{spec, Options};
use crate::target::Target;

/// Which pipes the idle connections subscribe to.
#[derive(Clone, Copy)]
pub(crate) enum Pipes {
    /// Each its own.
    Own,
    /// All the same one.
    One,
}

/// N connections (over WSS with `tls`), each subscribed to its own pipe or all to one, then left idle:
/// memory per connection.
pub(crate) async fn idle(
    t: &Target,
    o: &Options,
    n: usize,
    tls: bool,
    shared: Pipes,
    r: &mut Record,
) -> anyhow::Result<()> {
    let before = t.memory_kb()?;
    let subscribing = SetupMeter::start(t)?;
    let pipes: Vec<String> = match shared {
        Pipes::Own => (0..n).map(|i| format!("idle{i}")).collect(),
        Pipes::One => vec!["idle".to_owned()],
    };
    let pipe_of = |i: usize| Some(pipes[i % pipes.len()].clone());
    let crowd = crowd::open(
        t,
        CrowdSpec {
            tls,
            ..spec(o, n, &pipe_of, false)
        },
    )
    .await?;
    subscribing.finish(n, r).await?;
    let mut publisher = t.publisher().await?;
    crowd::wait_subscribed(&mut publisher, &pipes, n as u64).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = t.memory_kb()?;
    let meter = Meter::start(t)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (elapsed, cpu) = meter.finish(t, r)?;
    let load_tool_kb = procstat::vm_rss_kb(std::process::id() as i32)?;
    let setup = crowd.setup.as_secs_f64();
    let got = crowd.finish().await;
    r.set("connections", n as f64);
    r.set("setup_s", setup);
    r.set("server_mem_before_mb", before as f64 / 1024.0);
    r.set("server_mem_after_mb", after as f64 / 1024.0);
    r.set("kb_per_conn", (after as f64 - before as f64) / n as f64);
    r.set("idle_cpu_pct", 100.0 * cpu / elapsed);
    r.set("load_tool_mb", load_tool_kb as f64 / 1024.0);
    r.set("closed_by_server", got.closed_by_server as f64);
    Ok(())
}

/// N connections (over WSS with `tls`) opened as fast as the server takes them (upgrade and greeting),
/// then closed.
pub(crate) async fn connect(
    t: &Target,
    o: &Options,
    n: usize,
    tls: bool,
    r: &mut Record,
) -> anyhow::Result<()> {
    let meter = Meter::start(t)?;
    let no_pipe = |_: usize| None;
    let crowd = crowd::open(
        t,
        CrowdSpec {
            tls,
            ..spec(o, n, &no_pipe, false)
        },
    )
    .await?;
    let (_, cpu) = meter.finish(t, r)?;
    let setup = crowd.setup.as_secs_f64();
    crowd.finish().await;
    r.set("connections", n as f64);
    r.set("conns_per_s", n as f64 / setup);
    r.set("server_cpu_us_per_conn", cpu * 1e6 / n as f64);
    Ok(())
}

/// N CometQL logins (TLS first with `tls`), at most 32 at once, each closed after its OK: what a PHP
/// backend that connects per request costs.
pub(crate) async fn cometql_connect(
    t: &Target,
    o: &Options,
    n: usize,
    tls: bool,
    r: &mut Record,
) -> anyhow::Result<()> {
    let s = &t.server;
    let client_tls = match tls {
        true => Some(s.tls.clone().context("the server has no certificate")?),
        false => None,
    };
    let user = s.dev_id.to_string();
    let gate = Arc::new(tokio::sync::Semaphore::new(o.concurrency.clamp(1, 32)));
    let meter = Meter::start(t)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (gate, tls) = (gate.clone(), client_tls.clone());
        let (addr, user, key) = (s.publish, user.clone(), s.key.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            MysqlConn::connect(addr, &user, &key, "CometQL_v1", tls.as_ref())
                .await
                .map(drop)
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if task.await.context("login task")?.is_err() {
            failed += 1;
        }
    }
    let setup = started.elapsed().as_secs_f64();
    let (_, cpu) = meter.finish(t, r)?;
    if failed > 0 {
        anyhow::bail!("{failed} of {n} CometQL logins failed");
    }
    r.set("connections", n as f64);
    r.set("conns_per_s", n as f64 / setup);
    r.set("server_cpu_us_per_conn", cpu * 1e6 / n as f64);
    Ok(())
}
