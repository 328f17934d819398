//! The side-by-side run: every scenario against every server, repeated, servers started fresh for each
//! scenario and stopped after it. Scenarios take turns so that the servers compared are measured minutes
//! apart, not hours.

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster;
use crate::pusher_servers;
use crate::record::Record;
use crate::scenarios::{self, Options, Scenario};
use crate::servers::{self, Database};
use crate::target::{Kind, Target};

pub struct Plan {
    pub server_bin: PathBuf,
    /// A wrapper command for `halley serve` (a profiler), empty for none.
    pub server_wrap: Vec<String>,
    /// TOML appended to the configuration Halley runs with (`--halley-config`), empty for none.
    pub halley_extra: String,
    /// The PostgreSQL server halley-pg and halley-cluster create their fresh databases on (a URL without a
    /// database name).
    pub postgres: String,
    /// The redis-server executable halley-cluster starts its own Redis with.
    pub redis_bin: PathBuf,
    pub nginx: PathBuf,
    pub nchan_workers: usize,
    /// Sockudo's and Soketi's executables (installed by hand; see BENCHMARKS.md).
    pub sockudo_bin: PathBuf,
    pub soketi_bin: PathBuf,
    pub targets: Vec<Kind>,
    pub scenarios: Vec<Scenario>,
    pub repeats: usize,
    pub options: Options,
}

/// Each scenario must finish well within this, set-up and teardown included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(100);

fn start(kind: Kind, plan: &Plan, tls: bool) -> anyhow::Result<Target> {
    let server = match kind {
        // Halley's Pusher endpoint is the same server, spoken to differently.
        Kind::Halley | Kind::HalleyPusher => servers::start_halley(plan, tls, Database::Sqlite)?,
        Kind::HalleyPg => servers::start_halley(plan, tls, Database::Postgres(&plan.postgres))?,
        Kind::HalleyCluster => cluster::start(plan)?,
        Kind::Raw => servers::start_raw()?,
        Kind::Nchan => servers::start_nchan(&plan.nginx, plan.nchan_workers)?,
        Kind::Sockudo => pusher_servers::start_sockudo(&plan.sockudo_bin)?,
        Kind::Soketi => pusher_servers::start_soketi(&plan.soketi_bin)?,
    };
    Ok(Target { kind, server })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs the plan; a failed scenario is reported and recorded with `failed=1`, and the run goes on.
pub async fn run(plan: &Plan) -> Vec<Record> {
    let mut records = Vec::new();
    for rep in 1..=plan.repeats {
        for &s in &plan.scenarios {
            for &kind in plan.targets.iter().filter(|k| s.applies_to(**k)) {
                eprintln!(
                    "[run {rep}/{}] {} on {} (load {})",
                    plan.repeats,
                    s.name(),
                    kind.name(),
                    load_average()
                );
                let record = match start(kind, plan, s.uses_tls()) {
                    Ok(target) => {
                        let result = tokio::time::timeout(
                            SCENARIO_LIMIT,
                            scenarios::run(s, &target, &plan.options),
                        )
                        .await;
                        drop(target);
                        match result {
                            Ok(Ok(r)) => r,
                            Ok(Err(e)) => failed(s, kind, format!("{e:#}")),
                            Err(_) => failed(s, kind, "timed out".into()),
                        }
                    }
                    Err(e) => failed(s, kind, format!("start: {e:#}")),
                };
                println!("{}", record.line());
                records.push(record);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    records
}

fn failed(s: Scenario, kind: Kind, why: String) -> Record {
    eprintln!("  FAILED: {} on {}: {why}", s.name(), kind.name());
    let mut r = Record::new(s.name(), kind);
    r.set("failed", 1.0);
    r
}
