//! What differs between the servers under test, seen from the clients: the subscribe URL and command, and
//! how a message is published (CometQL, HTTP POST, the raw control line, or the Pusher HTTP API) and
//! subscribers counted.

use std::io;
use std::net::SocketAddr;

use crate::http_client::{self, HttpConn};
use crate::mysql_client::MysqlConn;
use crate::pusher::{self, ApiConn};
use crate::raw_control::RawControl;
use crate::servers::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Halley on SQLite (its default database).
    Halley,
    /// Halley on PostgreSQL (a fresh database per server start).
    HalleyPg,
    /// Two Halley nodes on PostgreSQL and a Redis of their own (cluster.rs): subscribers on both, publishers
    /// on the first.
    HalleyCluster,
    Raw,
    Nchan,
    /// Halley's Pusher endpoint (`/app/{key}`, the HTTP API on the same port), on SQLite.
    HalleyPusher,
    /// Sockudo (Rust, `cargo install sockudo`), one app, local adapter.
    Sockudo,
    /// Soketi (Node, `npm install @soketi/soketi`), one app, local adapter.
    Soketi,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Halley => "halley",
            Kind::HalleyPg => "halley-pg",
            Kind::HalleyCluster => "halley-cluster",
            Kind::Raw => "raw",
            Kind::Nchan => "nchan",
            Kind::HalleyPusher => "halley-pusher",
            Kind::Sockudo => "sockudo",
            Kind::Soketi => "soketi",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Halley,
            Kind::HalleyPg,
            Kind::HalleyCluster,
            Kind::Raw,
            Kind::Nchan,
            Kind::HalleyPusher,
            Kind::Sockudo,
            Kind::Soketi,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }

    /// Spoken to over the Pusher protocol (subscribers on `/app/{key}`, publishes through the HTTP API).
    pub fn is_pusher(self) -> bool {
        matches!(self, Kind::HalleyPusher | Kind::Sockudo | Kind::Soketi)
    }

    /// Halley's own binary, whatever the protocol (the halley binary must exist).
    pub fn runs_halley(self) -> bool {
        self.is_halley() || self == Kind::HalleyPusher
    }

    /// Halley on either database, one node or a cluster: spoken to over CometQL and Comet.
    pub fn is_halley(self) -> bool {
        matches!(self, Kind::Halley | Kind::HalleyPg | Kind::HalleyCluster)
    }
}

pub struct Target {
    pub kind: Kind,
    pub server: Server,
}

impl Target {
    /// Where WebSocket client number `n` connects: a cluster's subscribers alternate between its two nodes.
    pub fn ws_addr(&self, n: u64) -> SocketAddr {
        match &self.server.cluster {
            Some(c) if n % 2 == 1 => c.other.http,
            _ => self.server.http,
        }
    }

    /// CPU seconds the server used so far: a cluster's both nodes and its Redis.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let own = self.server.child.cpu_seconds()?;
        Ok(match &self.server.cluster {
            Some(c) => own + c.cpu_seconds()?,
            None => own,
        })
    }

    /// The server's memory: a cluster's both nodes (Redis's is read from Redis: `redis_stats`).
    pub fn memory_kb(&self) -> anyhow::Result<u64> {
        let own = self.server.child.memory_kb()?;
        Ok(match &self.server.cluster {
            Some(c) => own + c.other.child.memory_kb()?,
            None => own,
        })
    }

    /// CPU seconds a cluster's Redis used so far (part of `cpu_seconds`).
    pub fn redis_cpu_seconds(&self) -> anyhow::Result<Option<f64>> {
        self.server
            .cluster
            .as_ref()
            .map(|c| c.redis.cpu_seconds())
            .transpose()
    }

    /// A cluster's Redis.
    pub fn redis(&self) -> Option<SocketAddr> {
        self.server.cluster.as_ref().map(|c| c.redis_addr)
    }

    /// The upgrade path of subscriber number `n` of pipe `pipe`.
    pub fn ws_path(&self, pipe: &str, n: u64) -> String {
        match self.kind {
            Kind::Nchan => format!("/sub/{pipe}"),
            Kind::HalleyPusher | Kind::Sockudo | Kind::Soketi => {
                pusher::ws_path(&self.server.pusher.key)
            }
            Kind::Halley | Kind::HalleyPg | Kind::HalleyCluster | Kind::Raw => format!(
                "/ws/sesion=&myid=0&devid={}&v=4.08&uuid={n:032x}&api=js",
                self.server.dev_id
            ),
        }
    }

    /// Whether the server greets a new connection with a frame (comet-server's serverInfo).
    pub fn greets(&self) -> bool {
        self.kind != Kind::Nchan
    }

    /// The command that subscribes after the greeting; Nchan subscribes by URL.
    pub fn subscribe_command(&self, pipe: &str) -> Option<String> {
        match self.kind {
            Kind::Nchan => None,
            Kind::HalleyPusher | Kind::Sockudo | Kind::Soketi => {
                Some(pusher::subscribe_frame(pipe))
            }
            Kind::Halley | Kind::HalleyPg | Kind::HalleyCluster | Kind::Raw => {
                Some(format!("subscription\n{pipe}"))
            }
        }
    }

    /// What the server answers a subscription with, when it answers (Pusher's subscription_succeeded):
    /// a subscriber counts as set up once it arrived.
    pub fn subscribe_ack(&self) -> Option<&'static [u8]> {
        self.kind.is_pusher().then_some(pusher::SUBSCRIBED)
    }

    pub async fn publisher(&self) -> io::Result<Publisher> {
        let s = &self.server;
        Ok(match self.kind {
            Kind::Halley | Kind::HalleyPg | Kind::HalleyCluster => Publisher::CometQl(
                MysqlConn::connect(s.publish, &s.dev_id.to_string(), &s.key, "CometQL_v1", None)
                    .await?,
            ),
            Kind::Raw => Publisher::Raw(RawControl::connect(s.publish).await?),
            Kind::Nchan => Publisher::Http(HttpConn::connect(s.publish).await?),
            Kind::HalleyPusher | Kind::Sockudo | Kind::Soketi => {
                Publisher::Pusher(ApiConn::connect(s.http, s.pusher.clone()).await?)
            }
        })
    }
}

/// One publishing connection, used query after query like a backend's.
pub enum Publisher {
    CometQl(MysqlConn),
    Http(HttpConn),
    Raw(RawControl),
    Pusher(ApiConn),
}

impl Publisher {
    pub async fn publish(&mut self, pipe: &str, event: &str, payload: &str) -> io::Result<()> {
        match self {
            Publisher::CometQl(c) => {
                let sql = format!(
                    "INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}','{event}','{payload}')"
                );
                c.query(&sql).await.map(drop)
            }
            Publisher::Http(c) => {
                let (status, _) = c
                    .request("POST", &format!("/pub?id={pipe}"), payload.as_bytes())
                    .await?;
                match status {
                    200..=202 => Ok(()),
                    s => Err(io::Error::other(format!("Nchan publish answered {s}"))),
                }
            }
            Publisher::Raw(c) => c.publish(pipe, event, payload).await,
            Publisher::Pusher(c) => c.trigger(pipe, event, payload).await,
        }
    }

    /// Several messages to one pipe in one statement (a multi-row INSERT); CometQL only.
    pub async fn publish_rows(
        &mut self,
        pipe: &str,
        event: &str,
        payloads: &[String],
    ) -> io::Result<()> {
        let Publisher::CometQl(c) = self else {
            return Err(io::Error::other("multi-row publishes are CometQL only"));
        };
        let rows: Vec<String> = payloads
            .iter()
            .map(|p| format!("('{pipe}','{event}','{p}')"))
            .collect();
        let sql = format!(
            "INSERT INTO pipes_messages (name, event, message) VALUES {}",
            rows.join(",")
        );
        c.query(&sql).await.map(drop)
    }

    /// The total number of subscriptions to `pipes` the server reports.
    pub async fn subscribers(&mut self, pipes: &[String]) -> io::Result<u64> {
        let mut total = 0;
        match self {
            Publisher::CometQl(c) => {
                for chunk in pipes.chunks(500) {
                    let list: Vec<String> = chunk.iter().map(|p| format!("'{p}'")).collect();
                    let sql = format!("SELECT * FROM pipes WHERE name IN ({})", list.join(","));
                    for row in c.query(&sql).await? {
                        total += row.get(1).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0);
                    }
                }
            }
            Publisher::Http(c) => {
                // Nchan's channel info (GET) under-reports subscribers registered through another worker
                // (seen: 79 of 1,000 single-subscriber channels said 0, yet all received), while the answer
                // to a publish counts them all. So count with a probe message, which subscribers ignore.
                for p in pipes {
                    let (status, body) =
                        c.request("POST", &format!("/pub?id={p}"), b"probe").await?;
                    if (200..=202).contains(&status) {
                        total += http_client::subscribers_in(&body).unwrap_or(0);
                    }
                }
            }
            Publisher::Raw(c) => {
                for chunk in pipes.chunks(500) {
                    total += c.count(chunk).await?;
                }
            }
            Publisher::Pusher(c) => {
                for p in pipes {
                    total += c.subscription_count(p).await?;
                }
            }
        }
        Ok(total)
    }
}
