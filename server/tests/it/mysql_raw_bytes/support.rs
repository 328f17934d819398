//! A toy handler and a listener on 127.0.0.1:0 running `serve_connection`, for the byte-by-byte tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use halley::front::cometql::{serve_connection, ConnConfig, ConnError, ConnInfo, Handler};
use halley::front::tls::Tls;
use halley::mysql::{auth, ErrorPacket, LoginRequest, Reply, ResultSet};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

pub const KEY: &str = "secret-key";

/// User "1" with key "secret-key"; databases `CometQL_v1` (or none). `SELECT ...` echoes the query as a
/// one-row result set, `close-me` fires the session's closer, anything else is OK(1, 7).
#[derive(Default)]
pub struct Toy {
    pub logins: AtomicUsize,
    pub closed: AtomicUsize,
    pub last_salt: std::sync::Mutex<Option<[u8; 20]>>,
    /// Whether the last login came over TLS.
    pub last_tls: std::sync::atomic::AtomicBool,
}

pub struct ToySession {
    closer: Arc<Notify>,
}

fn auth_failure() -> ErrorPacket {
    ErrorPacket::new(16, "Authentication failure")
}

fn check_db(db: &str) -> Result<(), ErrorPacket> {
    if db == "CometQL_v1" {
        Ok(())
    } else {
        Err(ErrorPacket::new(15, "Select database failure"))
    }
}

impl Handler for Toy {
    type Session = ToySession;

    async fn login(
        &self,
        req: LoginRequest<'_>,
        conn: ConnInfo,
    ) -> Result<ToySession, ErrorPacket> {
        self.last_tls.store(conn.tls, Ordering::SeqCst);
        *self.last_salt.lock().unwrap() = Some(*req.salt);
        let verifier = auth::verifier(KEY.as_bytes());
        if req.user != b"1" || !auth::check_scramble(req.salt, req.auth_response, &verifier) {
            return Err(auth_failure());
        }
        if let Some(db) = req.database {
            check_db(db)?;
        }
        self.logins.fetch_add(1, Ordering::SeqCst);
        Ok(ToySession {
            closer: Arc::new(Notify::new()),
        })
    }

    async fn init_db(&self, _session: &mut ToySession, db: &str) -> Result<(), ErrorPacket> {
        check_db(db)
    }

    async fn query(&self, session: &mut ToySession, sql: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(sql).into_owned();
        let lower = text.trim().to_ascii_lowercase();
        if lower == "select @@version_comment limit 1" {
            return rows("@@version_comment", "Halley");
        }
        if lower.starts_with("select") {
            return rows("query", &text);
        }
        if lower == "close-me" {
            session.closer.notify_one();
            return Reply::Ok {
                affected_rows: 0,
                last_insert_id: 0,
            };
        }
        Reply::Ok {
            affected_rows: 1,
            last_insert_id: 7,
        }
    }

    fn closer(&self, session: &ToySession) -> Arc<Notify> {
        session.closer.clone()
    }

    fn closed(&self, _session: ToySession) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

fn rows(column: &str, value: &str) -> Reply {
    Reply::Rows(ResultSet {
        columns: vec![column.to_owned()],
        rows: vec![vec![value.to_owned()]],
    })
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub handler: Arc<Toy>,
    /// The outcome of every connection, in the order they ended.
    pub outcomes: mpsc::UnboundedReceiver<Result<(), ConnError>>,
    accept: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(cfg: ConnConfig) -> TestServer {
        Self::start_with_tls(cfg, None).await
    }

    /// Offers TLS with `tls` (see `halley::front::tls`).
    pub async fn start_with_tls(cfg: ConnConfig, tls: Option<Arc<Tls>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(Toy::default());
        let (tx, outcomes) = mpsc::unbounded_channel();
        let h = handler.clone();
        let cfg = Arc::new(cfg);
        let accept = tokio::spawn(async move {
            let ids = AtomicU32::new(1);
            while let Ok((stream, peer)) = listener.accept().await {
                let (h, cfg, tx, tls) = (h.clone(), cfg.clone(), tx.clone(), tls.clone());
                let id = ids.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let conn = ConnInfo { peer, tls: false };
                    let deadline = tokio::time::Instant::now() + cfg.handshake_timeout;
                    let tls = tls.as_deref();
                    let outcome =
                        serve_connection(stream, conn, id, &*h, &cfg, tls, deadline).await;
                    let _ = tx.send(outcome);
                });
            }
        });
        TestServer {
            addr,
            handler,
            outcomes,
            accept,
        }
    }

    pub async fn default() -> TestServer {
        Self::start(config()).await
    }

    /// The outcome of the next connection to end.
    pub async fn next_outcome(&mut self) -> Result<(), ConnError> {
        tokio::time::timeout(Duration::from_secs(10), self.outcomes.recv())
            .await
            .expect("a connection should have ended")
            .expect("server alive")
    }

    /// Every session that logged in was handed back exactly once.
    pub fn assert_sessions_balanced(&self) {
        assert_eq!(
            self.handler.logins.load(Ordering::SeqCst),
            self.handler.closed.load(Ordering::SeqCst),
            "logins vs closed"
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub fn config() -> ConnConfig {
    ConnConfig {
        server_version: "5.7.99-Halley-0.1.0".into(),
        ..ConnConfig::default()
    }
}
