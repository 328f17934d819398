//! The operator's set-up without containers (deploy/cluster-local.sh, docs/production.md "Running several
//! nodes"): the script starts three nodes of the debug binary on free ports with one PostgreSQL database,
//! one Redis and one master key, each ready on `/info`; a tenant made with `halley tenant create` publishes
//! through one node and browsers on the two others (one with a user JWT) receive it; `stop` leaves no
//! process and no pid file behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use halley_tests::browser::{jwt, Browser};
use halley_tests::cluster::{fresh_prefix, redis_url};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::nodes::info;
use halley_tests::pg::TempPgDb;
use halley_tests::process::halley_bin;
use halley_tests::Tenant;

/// The script waits for each node up to CLUSTER_WAIT (its own bound); this one bounds the script.
const SCRIPT_WAIT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cluster-local.sh")
}

/// The script run with a clean Halley environment and the cluster's settings.
struct Script {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Script {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).args(args);
        for var in halley::config::ENV_VARS {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env("CLUSTER_DIR", self.dir.path());
        cmd
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = tokio::process::Command::from(self.command(args));
        cmd.kill_on_drop(true);
        let out = tokio::time::timeout(SCRIPT_WAIT, cmd.output())
            .await
            .expect("the script ends in time")
            .expect("bash runs the script");
        assert!(
            out.status.success(),
            "cluster-local.sh {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

impl Drop for Script {
    /// A failed test still stops what the script started.
    fn drop(&mut self) {
        let _ = self.command(&["stop"]).output();
    }
}

fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_script_runs_three_nodes_as_one_and_stops_them() {
    let pg = TempPgDb::require().await.unwrap();
    let script = Script {
        dir: tempfile::tempdir().unwrap(),
        env: vec![
            ("HALLEY_BIN".into(), halley_bin().display().to_string()),
            ("HALLEY_DATABASE_URL".into(), pg.url().into()),
            ("HALLEY_REDIS_URL".into(), redis_url()),
            ("HALLEY_REDIS_PREFIX".into(), fresh_prefix()),
            ("HALLEY_LOG".into(), "warn".into()),
            ("CLUSTER_HTTP_PORT".into(), "0".into()),
            ("CLUSTER_COMETQL_PORT".into(), "0".into()),
        ],
    };
    script.run(&["start", "3"]).await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let addrs = script.file(&format!("node-{i}.addr"));
        let (http, cql) = addrs.trim().split_once(' ').expect("http cometql");
        let pid: u32 = script
            .file(&format!("node-{i}.pid"))
            .trim()
            .parse()
            .unwrap();
        let (http, cql): (std::net::SocketAddr, std::net::SocketAddr) =
            (http.parse().unwrap(), cql.parse().unwrap());
        let v = info(http).await.unwrap();
        assert_eq!(v["ready"], true, "node {i}: {v}");
        nodes.push((http, cql, pid));
    }
    let status = script.run(&["status"]).await;
    let status = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.matches("\"ready\":true").count(), 3, "{status}");

    // A tenant as the operator makes one: the CLI on the cluster's database and master key.
    let out = Command::new(halley_bin())
        .args(["tenant", "create", "--email", "ops@example.com"])
        .env_clear()
        .env("HALLEY_DATABASE_URL", pg.url())
        .env(
            "HALLEY_MASTER_KEY_FILE",
            script.dir.path().join("master.key"),
        )
        .env("HALLEY_DATA_DIR", script.dir.path().join("node-0"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    let t = Tenant {
        dev_id: field("dev_id").parse().unwrap(),
        key: field("key"),
        app_key: field("app_key"),
    };

    let mut user = Browser::connect_at(nodes[1].0, t.dev_id, 5, &jwt(&t, 5), "user5").await;
    assert!(user.authorized(), "{}", user.hello);
    user.subscribe(&["chat"]).await;
    let mut anon = Browser::connect_at(nodes[2].0, t.dev_id, 0, "", "anon").await;
    anon.subscribe(&["chat"]).await;
    let mut q = RawMysql::login_at(nodes[0].1, &t.dev_id.to_string(), &t.key).await;
    q.query(&insert_sql("chat", "e", "through node 0"))
        .await
        .assert_ok();
    for b in [&mut user, &mut anon] {
        let v = json(&b.recv().await);
        assert_eq!(
            (v["pipe"].as_str(), v["data"].as_str()),
            (Some("chat"), Some("through node 0")),
            "{v}"
        );
    }

    script.run(&["stop"]).await;
    for (i, (_, _, pid)) in nodes.iter().enumerate() {
        assert!(!running(*pid), "node {i} (pid {pid}) still runs");
        assert!(!script.dir.path().join(format!("node-{i}.pid")).exists());
    }
    drop(script);
    pg.drop_db().await;
}
