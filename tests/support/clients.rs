//! Drives the users' real MySQL clients (PHP mysqli, PyMySQL, Node mysql2, the `mariadb` CLI) against a
//! server, through the drivers in `tests/clients/` (see the README.md there for the JSON they speak).

mod cli;
mod process;
mod protocol;

#[cfg(test)]
mod mariadb_tests;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Command;

pub use cli::{mariadb, mariadb_query, query_args, CliOutput};
/// Runs any client program with a hard time limit (what the drivers here are run with).
pub use process::{run as run_process, Finished};
pub use protocol::{
    ChangeUser, ClientTls, Connected, Login, Outcome, Request, Response, Row, SqlError, Step,
    StepResult,
};

/// Drivers connect with a 10 s timeout and read with 10 s timeouts: 30 s means the driver itself hangs.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Php,
    Python,
    Node,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::Php, Client::Python, Client::Node];

    pub fn name(self) -> &'static str {
        match self {
            Client::Php => "php-mysqli",
            Client::Python => "python-pymysql",
            Client::Node => "node-mysql2",
        }
    }

    /// Interpreter (overridable, e.g. `HALLEY_TEST_PHP=/usr/bin/php8.2`), its arguments, driver file.
    fn command(self) -> Command {
        let (var, default, script) = match self {
            Client::Php => ("HALLEY_TEST_PHP", "php", "query.php"),
            Client::Python => ("HALLEY_TEST_PYTHON", "python3", "query.py"),
            Client::Node => ("HALLEY_TEST_NODE", "node", "query.mjs"),
        };
        let mut cmd = Command::new(std::env::var(var).unwrap_or_else(|_| default.to_owned()));
        if self == Client::Php {
            // Keep PHP warnings out of the JSON on stdout whatever php.ini says.
            cmd.args(["-d", "display_errors=stderr"]);
        }
        cmd.arg(clients_dir().join(script));
        cmd.current_dir(clients_dir());
        cmd
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `tests/clients/` of this crate.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs `req` with `client`'s driver. `Err` only when the driver itself broke (missing interpreter,
/// missing node_modules, crash, hang, unparsable output); server and login errors are in the `Response`.
pub async fn run(client: Client, req: &Request) -> anyhow::Result<Response> {
    if client == Client::Node && !clients_dir().join("node_modules/mysql2").is_dir() {
        bail!(
            "{}/node_modules is missing: run `npm ci` there (tests/run.sh does it)",
            clients_dir().display()
        );
    }
    let input = serde_json::to_vec(req)?;
    let done = process::run(client.command(), &input, DRIVER_TIMEOUT)
        .await
        .with_context(|| format!("{client} driver"))?;
    let stdout = String::from_utf8_lossy(&done.stdout);
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    if !done.status.success() {
        bail!(
            "{client} driver failed ({}): stderr: {stderr} stdout: {stdout}",
            done.status
        );
    }
    let mut resp: Response = serde_json::from_str(stdout.trim_end()).with_context(|| {
        format!("{client} driver printed unexpected output: {stdout}; stderr: {stderr}")
    })?;
    let expected = if resp.connect.is_ok() {
        req.steps.len()
    } else {
        0
    };
    if resp.results.len() != expected {
        bail!(
            "{client} driver returned {} results for {expected} steps: {stdout}",
            resp.results.len()
        );
    }
    resp.stderr = stderr;
    Ok(resp)
}

/// Runs the same request with every client (one after the other, so that failures name the client).
pub async fn run_all(req: &Request) -> anyhow::Result<Vec<(Client, Response)>> {
    let mut out = Vec::with_capacity(Client::ALL.len());
    for client in Client::ALL {
        out.push((client, run(client, req).await?));
    }
    Ok(out)
}
