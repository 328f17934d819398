//! `halley-load`: drives Halley the way its users do (browsers over WebSocket, backends over CometQL), and
//! Nchan and a raw baseline the same way in the same run, on loopback only. Every run is bounded in
//! connections, messages and time, and stops the servers it started. See BENCHMARKS.md.

mod child;
mod cluster;
mod compare;
mod connections;
mod crowd;
mod durable;
mod http_client;
mod meter;
mod mysql_client;
mod mysql_codec;
mod nchan_conf;
mod payload;
mod procstat;
mod pusher;
mod pusher_servers;
mod raw_control;
mod raw_server;
mod record;
mod recovery;
mod redis_stats;
mod report;
mod scenarios;
mod servers;
mod stats;
mod target;
mod tls;
mod wsclient;
mod wsproto;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use rustix::process::{getrlimit, setrlimit, Resource};

use scenarios::{Options, Scenario};
use target::Kind;

#[derive(Parser)]
#[command(
    name = "halley-load",
    about = "Load tool: Halley against Nchan, a raw baseline, Sockudo and Soketi, on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against servers it starts itself; prints one line per run, then the tables.
    Compare(Box<CompareArgs>),
    /// The raw baseline server (started by `compare`; runs until SIGTERM).
    RawServer {
        #[arg(long)]
        http: SocketAddr,
        #[arg(long)]
        control: SocketAddr,
    },
}

#[derive(Args)]
struct CompareArgs {
    /// The halley binary (target/release/halley).
    #[arg(long)]
    server_bin: PathBuf,
    /// Servers: halley (on SQLite), halley-pg (on PostgreSQL: see --postgres), halley-cluster (two nodes on
    /// PostgreSQL and a Redis the tool starts: see --redis-server; subscribers on both nodes, publishers on
    /// the first; its CPU is both nodes' and Redis's), raw, nchan; and the Pusher protocol: halley-pusher
    /// (Halley's /app/{key} and HTTP API), sockudo, soketi.
    #[arg(long, value_delimiter = ',', default_value = "halley,raw,nchan")]
    targets: Vec<String>,
    /// Scenarios (or `all`): connect-5k, idle-10k, idle-18k, fanout-1k, fanout-10k,
    /// fanout-10k-pipelined, fanout-10k-publishers, pipes-10k, latency-1k, publish-1conn; and TLS
    /// side by side (Halley only): connect-5k-wss, idle-10k-wss, cometql-connect-2k,
    /// cometql-connect-2k-tls; and recovery (Halley only): reconnect-storm-10k,
    /// reconnect-storm-10k-pipes (each client its own pipe), windows-10k; and durable
    /// writes (Halley only, on halley and halley-pg side by side): plain-1conn, history-1conn,
    /// plain-4conn, history-4conn, queue-1conn, queue-4conn, plain-32conn, history-32conn, auth-churn-1k; and
    /// the Pusher protocol (halley-pusher, sockudo, soketi only): pusher-idle-10k, pusher-fanout-10k,
    /// pusher-latency-1k.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    scenarios: Vec<String>,
    /// Repetitions of the whole set (medians are taken over them).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The PostgreSQL server the halley-pg target gets a fresh database on (created before each start,
    /// dropped after it; `createdb`/`dropdb` must be installed). A URL without a database name.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// The redis-server executable halley-cluster starts its own Redis with (on a free loopback port,
    /// saving nothing).
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// A command that `halley serve` runs under (split on spaces), e.g. "valgrind --tool=callgrind".
    #[arg(long)]
    server_wrap: Option<String>,
    /// A TOML file appended to the configuration Halley runs with, e.g. `[storage]` `synchronous = "full"`.
    #[arg(long)]
    halley_config: Option<PathBuf>,
    /// Also write the tables (markdown) and every run's line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// nginx worker processes (Halley's runtime has one worker thread per core: 2 here).
    #[arg(long, default_value_t = 2)]
    nchan_workers: usize,
    /// Sockudo's executable (cargo install sockudo --root DIR: DIR/bin/sockudo); default $SOCKUDO_BIN.
    #[arg(long)]
    sockudo_bin: Option<PathBuf>,
    /// Soketi's CLI (npm install @soketi/soketi in DIR: DIR/node_modules/.bin/soketi); default $SOKETI_BIN.
    #[arg(long)]
    soketi_bin: Option<PathBuf>,
    /// Worker threads of the load tool's own runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Source addresses 127.0.0.2, 127.0.0.3, ... the client connections are spread over.
    #[arg(long, default_value_t = 16)]
    sources: u8,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// fanout-10k-pipelined: publishes in flight (not yet delivered to every subscriber).
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// Publishing connections in the many-pipes and fanout-10k-publishers scenarios.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Size of each message's payload, bytes.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// reconnect-storm-10k: the number of clients that drop and come back (the name keeps its 10k).
    #[arg(long, default_value_t = 10_000)]
    storm_clients: usize,
    /// windows-10k: the number of pipes whose window is filled (the name keeps its 10k).
    #[arg(long, default_value_t = 10_000)]
    windows_pipes: usize,
}

/// Raises the soft limit on open files to the hard limit: the tool holds one socket per client.
fn raise_fd_limit() -> u64 {
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        if lim.current != Some(max) {
            lim.current = Some(max);
            let _ = setrlimit(Resource::Nofile, lim);
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A competitor's executable: the flag, else the environment variable, else the bare name (reported as
/// missing when that target is started).
fn bin_path(flag: &Option<PathBuf>, env: &str, name: &str) -> PathBuf {
    flag.clone()
        .or_else(|| std::env::var_os(env).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn plan(args: &CompareArgs) -> anyhow::Result<compare::Plan> {
    let targets = args
        .targets
        .iter()
        .map(|t| Kind::parse(t).with_context(|| format!("unknown target {t}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scenarios = if args.scenarios.iter().any(|s| s == "all") {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|s| Scenario::parse(s).with_context(|| format!("unknown scenario {s}")))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if !args.server_bin.exists() && targets.iter().any(|k| k.runs_halley()) {
        bail!(
            "{} does not exist: cargo build --release -p halley-server",
            args.server_bin.display()
        );
    }
    let sources = (0..args.sources)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)))
        .collect();
    Ok(compare::Plan {
        server_bin: args.server_bin.clone(),
        server_wrap: args
            .server_wrap
            .as_deref()
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        halley_extra: match &args.halley_config {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading --halley-config {}", path.display()))?,
            None => String::new(),
        },
        postgres: args.postgres.trim_end_matches('/').to_owned(),
        redis_bin: args.redis_server.clone(),
        nginx: args.nginx.clone(),
        nchan_workers: args.nchan_workers,
        sockudo_bin: bin_path(&args.sockudo_bin, "SOCKUDO_BIN", "sockudo"),
        soketi_bin: bin_path(&args.soketi_bin, "SOKETI_BIN", "soketi"),
        targets,
        scenarios,
        repeats: args.repeats.max(1),
        options: Options {
            sources,
            concurrency: args.concurrency,
            window: args.window.max(1),
            publishers: args.publishers,
            payload_bytes: args.payload_bytes,
            storm_clients: args.storm_clients.max(1),
            windows_pipes: args.windows_pipes.max(1),
        },
    })
}

fn compare_cmd(args: CompareArgs) -> anyhow::Result<()> {
    let fds = raise_fd_limit();
    let plan = plan(&args)?;
    eprintln!(
        "open-file limit {fds}; client threads {}",
        args.client_threads
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    let records = runtime.block_on(compare::run(&plan));
    let names: Vec<&str> = plan
        .scenarios
        .iter()
        .filter(|s| !s.is_pusher())
        .map(|s| s.name())
        .collect();
    let pusher_names: Vec<&str> = plan
        .scenarios
        .iter()
        .filter(|s| s.is_pusher())
        .map(|s| s.name())
        .collect();
    let mut text = String::new();
    let single = |k: &Kind| matches!(k, Kind::Halley | Kind::Raw | Kind::Nchan);
    if plan.targets.iter().any(single) && !names.is_empty() {
        text.push_str(&format!(
            "## Results (medians of {} runs)\n\n{}\n## Targets\n\n{}\n",
            plan.repeats,
            report::table(&records, &names),
            report::targets(&records)
        ));
    }
    if plan.targets.contains(&Kind::HalleyCluster) && !names.is_empty() {
        text.push_str(&format!(
            "## Two nodes against one (medians of {} runs)\n\n{}\n",
            plan.repeats,
            report::cluster_table(&records, &names)
        ));
    }
    if plan.targets.iter().any(|k| k.is_pusher()) && !pusher_names.is_empty() {
        text.push_str(&format!(
            "## Pusher protocol (medians of {} runs)\n\n{}\n",
            plan.repeats,
            report::pusher_table(&records, &pusher_names)
        ));
    }
    if plan.scenarios.iter().any(|s| s.is_durable()) {
        text.push_str(&format!(
            "## Durable writes (medians of {} runs)\n\n{}\n",
            plan.repeats,
            report::durable_table(&records, &names)
        ));
    }
    text.push_str("## Every run\n\n```\n");
    for r in &records {
        text.push_str(&r.line());
        text.push('\n');
    }
    text.push_str("```\n");
    println!("\n{text}");
    if let Some(path) = &args.out {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(args) => compare_cmd(*args),
        Command::RawServer { http, control } => {
            raise_fd_limit();
            tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(raw_server::run(http, control)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halley-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
