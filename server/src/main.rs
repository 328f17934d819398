//! The `halley` binary: parses the command line and hands over to the library. Nothing else lives here.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use halley::config::Config;

#[derive(Parser)]
#[command(
    name = "halley",
    version,
    about = "Halley: a hosted Comet (WebSocket push) server, compatible with comet-server"
)]
struct Cli {
    /// TOML configuration file (see halley.example.toml); HALLEY_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per run: the size of the biggest variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Check the configuration and print the effective values.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints `dev_id=<n>`, `key=<key>` and `app_key=<public Pusher app key>`.
    Create {
        #[arg(long)]
        email: String,
    },
    /// List tenants.
    List,
    /// Override a tenant's limits (omitted values fall back to the global [limits]); a running server
    /// picks the change up within a minute.
    Limits {
        #[arg(long)]
        dev_id: u64,
        #[arg(long)]
        publishes_per_sec: Option<i64>,
        #[arg(long)]
        publish_burst: Option<i64>,
        #[arg(long)]
        websocket_connections: Option<i64>,
        /// Seconds a private message (users_messages) waits for its offline user.
        #[arg(long)]
        queue_ttl_secs: Option<i64>,
        /// Messages each pipe keeps for recovery on reconnect ([recovery] window_messages).
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        window_messages: Option<i64>,
        /// Seconds each message is kept for recovery ([recovery] window_secs).
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        window_secs: Option<i64>,
        /// `true`: CometQL logins of this tenant must come over TLS (a plaintext one with a valid key gets
        /// ERROR 3159); `false`: plaintext allowed (the default). Omitted: left as it is.
        #[arg(long, value_name = "true|false")]
        require_tls: Option<bool>,
        /// `true`: the tenant's Pusher connections may send client events (`client-*`, Echo's whisper) on
        /// private and presence channels; `false`: refused (the default). Omitted: left as it is.
        #[arg(long, value_name = "true|false")]
        client_events: Option<bool>,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
}

/// Storage quotas of `tenant limits` (omitted: the global [limits] value).
#[derive(clap::Args)]
struct QuotaArgs {
    /// Bytes of message text kept in pipe history.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    history_bytes: Option<i64>,
    /// Pipe history entries.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    history_rows: Option<i64>,
    /// Private messages queued for one offline user.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    queued_per_user: Option<i64>,
    /// Private messages queued for all users of the tenant.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    queued_per_tenant: Option<i64>,
    /// Users with a users_data value.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    users_data: Option<i64>,
    /// revoked_tokens entries.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    revoked_tokens: Option<i64>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("halley: {e}");
            return ExitCode::from(2);
        }
    };
    halley::logging::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("halley: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halley: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let running = halley::app::start(config).await?;
            println!(
                "halley listening: http+ws {} cometql {}",
                running.http_addr, running.cometql_addr
            );
            // A second line, so that the first stays the one scripts parse. Its write error is ignored: a
            // reader that keeps only the first line may have closed the pipe already.
            let _ = writeln!(
                std::io::stdout(),
                "dashboard: {}",
                dashboard_url("http", running.http_addr)
            );
            if let Some(https) = running.https_addr {
                let url = dashboard_url("https", https);
                let _ = writeln!(std::io::stdout(), "https+wss: {url}");
            }
            halley::logging::wait_for_signal().await?;
            running.shutdown().await;
        }
        Command::Migrate => {
            halley::app::open_tenants(&config)
                .await?
                .storage()
                .close()
                .await;
            println!("migrations applied");
        }
        Command::Tenant(TenantCommand::Create { email }) => {
            let tenants = halley::app::open_tenants(&config).await?;
            let created = tenants
                .create(&email, None)
                .await
                .context("creating the tenant")?;
            println!("dev_id={}", created.dev_id);
            println!("key={}", created.key);
            println!("app_key={}", created.app_key);
            tenants.storage().close().await;
        }
        Command::Tenant(TenantCommand::List) => {
            let tenants = halley::app::open_tenants(&config).await?;
            println!("dev_id\temail\tactive_keys\tcreated_at\tapp_key");
            for t in tenants.storage().list_tenants().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.dev_id, t.email, t.active_keys, t.created_at, t.app_key
                );
            }
            tenants.storage().close().await;
        }
        Command::Tenant(TenantCommand::Limits {
            dev_id,
            publishes_per_sec,
            publish_burst,
            websocket_connections,
            queue_ttl_secs,
            window_messages,
            window_secs,
            require_tls,
            client_events,
            quotas,
        }) => {
            let tenants = halley::app::open_tenants(&config).await?;
            let dev_id = halley::ids::DevId(dev_id);
            anyhow::ensure!(
                tenants.exists(dev_id).await?,
                "no tenant with dev_id {dev_id}"
            );
            let row = halley::storage::LimitRow {
                dev_id,
                publishes_per_sec,
                publish_burst,
                websocket_connections,
                queue_ttl_secs,
                window_messages,
                window_secs,
            };
            tenants.storage().set_tenant_limits(&row).await?;
            let quotas = halley::storage::QuotaRow {
                dev_id,
                history_bytes: quotas.history_bytes,
                history_rows: quotas.history_rows,
                queued_per_user: quotas.queued_per_user,
                queued_per_tenant: quotas.queued_per_tenant,
                users_data: quotas.users_data,
                revoked_tokens: quotas.revoked_tokens,
            };
            tenants.storage().set_tenant_quotas(&quotas).await?;
            if let Some(require) = require_tls {
                tenants
                    .storage()
                    .set_tenant_require_tls(dev_id, require)
                    .await?;
            }
            if let Some(on) = client_events {
                tenants
                    .storage()
                    .set_tenant_flag(dev_id, halley::storage::TenantFlag::ClientEvents, on)
                    .await?;
            }
            println!("limits of dev_id {dev_id} set");
            tenants.storage().close().await;
        }
        Command::Config(ConfigCommand::Check) => {
            println!("data_dir = {}", config.data_dir.display());
            println!(
                "database_url = {}",
                halley::app::redact(&config.database_url())
            );
            println!("http_addr = {}", config.http_addr);
            println!("cometql_addr = {}", config.cometql_addr);
            if let Some(https) = config.https_addr {
                println!("https_addr = {https}");
            }
            println!("master_key_file = {}", config.master_key_path().display());
            println!("configuration OK");
        }
    }
    Ok(())
}

/// Where a browser on this machine finds the dashboard: a wildcard bind is reached through loopback.
fn dashboard_url(scheme: &str, addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}/", std::net::SocketAddr::new(ip, addr.port()))
}
