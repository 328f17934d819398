//! The Pusher protocol's real clients, driven from a test: `tests/clients/pusher/agent.mjs` runs pusher-js
//! (Node build), laravel-echo and the npm `pusher` server library (with a small auth endpoint made with
//! it) in one Node process, reading JSON commands on stdin and writing JSON events on stdout. A test sends
//! commands with [`Agent::send`] and waits for the events it expects with [`Agent::expect`]; events it did
//! not ask for yet are kept, so the order of unrelated events does not matter.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::clients::clients_dir;
use crate::server::{Tenant, TestServer};
use crate::wait::WAIT;

/// How long an agent may take to start.
const AGENT_START: Duration = Duration::from_secs(30);

pub struct Agent {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read but not asked for yet.
    kept: Vec<Value>,
}

impl Agent {
    /// Starts the agent for `tenant` on `server` (the npm libraries' `appId`, `key` and `secret` are the
    /// tenant's dev_id, app key and secret key), with `master_key` for encrypted channels.
    pub async fn start(server: &TestServer, tenant: &Tenant) -> anyhow::Result<Agent> {
        Self::start_with(server, tenant, None).await
    }

    pub async fn start_with(
        server: &TestServer,
        tenant: &Tenant,
        master_key: Option<&str>,
    ) -> anyhow::Result<Agent> {
        Self::start_at(server.http_addr(), tenant, master_key).await
    }

    /// The agent for the server at `addr` (a cluster's node in a process of its own, too).
    pub async fn start_at(
        addr: std::net::SocketAddr,
        tenant: &Tenant,
        master_key: Option<&str>,
    ) -> anyhow::Result<Agent> {
        let dir = clients_dir();
        if !dir.join("node_modules/pusher-js").is_dir() {
            bail!(
                "{}/node_modules is missing: run `npm ci` there (tests/run.sh does it)",
                dir.display()
            );
        }
        let mut child = Command::new("node")
            .arg(dir.join("pusher/agent.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node tests/clients/pusher/agent.mjs")?;
        let stdin = child.stdin.take().context("agent stdin")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let mut agent = Agent {
            _child: child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            kept: Vec::new(),
        };
        agent
            .send(json!({
                "op": "init",
                "host": addr.ip().to_string(),
                "port": addr.port(),
                "appId": tenant.dev_id.to_string(),
                "key": tenant.app_key,
                "secret": tenant.key,
                "masterKey": master_key,
            }))
            .await?;
        // Node loads pusher-js, Echo and playwright-core first: slow when several agents start at once.
        agent
            .expect_within(AGENT_START, |e| e["ev"] == "ready")
            .await?;
        Ok(agent)
    }

    pub async fn send(&mut self, command: Value) -> anyhow::Result<()> {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .context("writing to the agent")?;
        self.stdin.flush().await.context("flushing to the agent")
    }

    /// The first event (kept or new) that `f` accepts, within [`WAIT`].
    pub async fn expect(&mut self, f: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        self.expect_within(WAIT, f).await
    }

    pub async fn expect_within(
        &mut self,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        if let Some(i) = self.kept.iter().position(&f) {
            return Ok(self.kept.remove(i));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| {
                    anyhow!(
                        "no expected event from the agent within {timeout:?}; got: {:?}",
                        self.kept
                    )
                })?
                .context("reading the agent")?
                .ok_or_else(|| anyhow!("the agent ended; events: {:?}", self.kept))?;
            let event: Value =
                serde_json::from_str(&line).with_context(|| format!("agent printed {line:?}"))?;
            if event["ev"] == "agent_error" {
                bail!("the agent failed: {}", event["error"]);
            }
            if f(&event) {
                return Ok(event);
            }
            self.kept.push(event);
        }
    }

    /// Whether an event `f` accepts was seen (kept) so far: for "never got it" checks made after a later
    /// event that was sent after it arrived.
    pub fn seen(&self, f: impl Fn(&Value) -> bool) -> bool {
        self.kept.iter().any(f)
    }

    /// Connects client `id` (as `user` for the auth endpoint) and returns its socket id.
    pub async fn connect(&mut self, id: &str, user: &str) -> anyhow::Result<String> {
        self.send(json!({"op": "connect", "id": id, "user": user, "name": format!("User {user}")}))
            .await?;
        let e = self
            .expect(|e| e["id"] == id && e["ev"] == "connected")
            .await?;
        Ok(e["socket_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Subscribes client `id` with pusher-js and waits for `subscription_succeeded`.
    pub async fn subscribe(&mut self, id: &str, channel: &str) -> anyhow::Result<Value> {
        self.send(json!({"op": "subscribe", "id": id, "channel": channel}))
            .await?;
        self.expect(|e| e["id"] == id && e["ev"] == "subscribed" && e["channel"] == channel)
            .await
    }

    /// An HTTP API call through the npm `pusher` library: its status and body.
    pub async fn http(&mut self, command: Value) -> anyhow::Result<(u16, String)> {
        let op = command["op"].clone();
        self.send(command).await?;
        let e = self.expect(|e| e["ev"] == "http" && e["op"] == op).await?;
        Ok((
            e["status"].as_u64().unwrap_or(0) as u16,
            e["body"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// `pusher.trigger(channels, event, data)` answered 200.
    pub async fn trigger(
        &mut self,
        channels: &[&str],
        event: &str,
        data: Value,
    ) -> anyhow::Result<()> {
        let (status, body) = self
            .http(json!({"op": "trigger", "channels": channels, "event": event, "data": data}))
            .await?;
        if status != 200 {
            bail!("trigger answered {status}: {body}");
        }
        Ok(())
    }
}
