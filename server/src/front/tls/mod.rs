//! TLS for both ports: one certificate (a PEM chain and its key), loaded at start and swapped in place when
//! its files change or on SIGHUP, so that renewals need no restart and open sessions are not touched (a
//! session keeps the certificate it was made with; new handshakes get the new one). rustls with the `ring`
//! provider; TLS 1.2 and 1.3.
//!
//! A handshake is the most expensive thing an anonymous client can make the server do, so it runs only
//! after the accept-time limits (`front::listen`), under the connection's handshake deadline, and at most
//! `max_concurrent_handshakes` compute at once: past that, new handshakes wait (inside their deadline)
//! instead of taking every core. A slot is held only while the server computes (see `metered`), never
//! while it waits for the client: otherwise a few clients that send half a hello and stall would hold
//! every slot and lock everyone else out of TLS.
mod metered;
mod rewind;
mod socket;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

pub use metered::Metered;
pub(crate) use rewind::Rewind;
pub(crate) use socket::TlsSocket;

use crate::config::TlsConfig;
use crate::stats::Stats;

/// Why a certificate could not be loaded.
#[derive(Debug, Error)]
pub enum CertError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Why a TLS connection did not start.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("the TLS handshake was not completed in time")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

/// A TLS stream as `Tls::accept` returns it (the socket stays wrapped in its handshake meter, which is
/// empty and free once the handshake is done).
pub type TlsStream<S> = tokio_rustls::server::TlsStream<Metered<S>>;

/// The certificate in use, swapped whole on reload.
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The node's TLS: the certificate files, the one resolver both ports read, and their acceptors.
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<Resolver>,
    /// CometQL: no ALPN (MySQL clients send none).
    cometql: Arc<ServerConfig>,
    /// HTTPS: ALPN `http/1.1` (the only HTTP this server speaks).
    http: Arc<ServerConfig>,
    handshakes: Arc<Semaphore>,
    stats: Stats,
    /// The files' last seen (modified, length), to notice a renewal.
    seen: std::sync::Mutex<Option<(FileStamp, FileStamp)>>,
}

type FileStamp = (Option<SystemTime>, u64);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// Which port a handshake is for (they differ in ALPN only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Cometql,
    Http,
}

impl Tls {
    /// Loads the certificate named by `config`; `Ok(None)` when TLS is not configured.
    pub fn from_config(config: &TlsConfig, stats: Stats) -> Result<Option<Arc<Tls>>, CertError> {
        if !config.enabled() {
            return Ok(None);
        }
        let (cert_file, key_file) = (config.cert_file.clone(), config.key_file.clone());
        let key = load(&cert_file, &key_file)?;
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(key))));
        let acceptor = |alpn: &[&[u8]]| {
            let mut sc =
                ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .expect("ring supports TLS 1.2 and 1.3")
                    .with_no_client_auth()
                    .with_cert_resolver(resolver.clone());
            sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(sc)
        };
        let tls = Tls {
            cometql: acceptor(&[]),
            http: acceptor(&[b"http/1.1"]),
            resolver,
            handshakes: Arc::new(Semaphore::new(config.max_concurrent_handshakes.max(1))),
            stats,
            seen: std::sync::Mutex::new(stamps(&cert_file, &key_file)),
            cert_file,
            key_file,
        };
        Ok(Some(Arc::new(tls)))
    }

    /// Runs the TLS handshake on `stream` by `deadline`. The client's hello is read without a slot;
    /// answering it (key exchange, signature) waits for one, which is given back as soon as the server
    /// waits for the client again.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        port: Port,
        stream: S,
        deadline: Instant,
    ) -> Result<TlsStream<S>, HandshakeError> {
        let config = match port {
            Port::Cometql => &self.cometql,
            Port::Http => &self.http,
        };
        let (io, slot) = Metered::new(stream);
        let handshake = async {
            let acceptor = rustls::server::Acceptor::default();
            let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, io).await?;
            let permit = self.handshakes.clone().acquire_owned().await;
            slot.hold(permit.map_err(io::Error::other)?);
            let mut stream = start.into_stream(config.clone()).await?;
            stream.get_mut().0.done();
            Ok::<_, io::Error>(stream)
        };
        let result = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::Timeout),
        };
        let counter = match result {
            Ok(_) => &self.stats.tls_handshakes,
            Err(_) => &self.stats.tls_handshake_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Handshake slots free right now (for tests).
    pub fn free_handshake_slots(&self) -> usize {
        self.handshakes.available_permits()
    }

    /// Loads the files again and, if they hold a valid pair, uses it for every new handshake. A bad pair
    /// (a renewal caught half-written, a wrong key) keeps the one in use and says why.
    pub fn reload(&self) -> Result<(), CertError> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) =
            stamps(&self.cert_file, &self.key_file);
        let key = load(&self.cert_file, &self.key_file)?;
        *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        self.stats.tls_reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reloads when asked (SIGHUP) or when either file's modification time or length changes (checked
    /// every `every`), until shutdown.
    pub async fn watch(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut hup = sighup();
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            let why = tokio::select! {
                _ = tick.tick() => {
                    let now = stamps(&self.cert_file, &self.key_file);
                    if now == *self.seen.lock().unwrap_or_else(|e| e.into_inner()) {
                        continue;
                    }
                    "the certificate files changed"
                }
                _ = recv(&mut hup) => "SIGHUP",
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded ({why})")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded ({why}); the previous one stays in use")
                }
            }
        }
    }
}

#[cfg(unix)]
fn sighup() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(unix)]
async fn recv(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn sighup() -> Option<()> {
    None
}

#[cfg(not(unix))]
async fn recv(_: &mut Option<()>) {
    std::future::pending().await
}

fn stamps(cert: &Path, key: &Path) -> Option<(FileStamp, FileStamp)> {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    Some((stamp(cert)?, stamp(key)?))
}

/// Reads and checks a certificate chain and its key.
fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert_file)?, read(key_file)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_file.to_owned(),
        });
    }
    let bad_key = |detail: String| CertError::BadKey {
        path: key_file.to_owned(),
        detail,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    let signing = provider::sign::any_supported_type(&key).map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::Mismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
        }),
        // Unknown: the key type cannot say (never for the types ring loads); use it.
        Err(_) => Ok(certified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (cert, key, ck.cert.der().to_vec())
    }

    fn config(cert: &Path, key: &Path) -> TlsConfig {
        TlsConfig {
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
            ..TlsConfig::default()
        }
    }

    fn current(tls: &Tls) -> Vec<u8> {
        tls.resolver.0.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn no_files_no_tls() {
        assert!(Tls::from_config(&TlsConfig::default(), Stats::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_pair_loads_and_a_reload_swaps_it_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, first) = write_pair(dir.path(), &["localhost"]);
        let tls = Tls::from_config(&config(&cert, &key), Stats::default())
            .unwrap()
            .unwrap();
        assert_eq!(current(&tls), first);
        let (_, _, second) = write_pair(dir.path(), &["example.test"]);
        tls.reload().unwrap();
        assert_eq!(current(&tls), second);

        // A key of another certificate: refused, the one in use stays.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(&key, other.key_pair.serialize_pem()).unwrap();
        assert!(matches!(tls.reload(), Err(CertError::Mismatch { .. })));
        assert_eq!(current(&tls), second);
        std::fs::write(&cert, "not pem").unwrap();
        assert!(matches!(tls.reload(), Err(CertError::NoCertificate { .. })));
        std::fs::write(&cert, other.cert.pem()).unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(tls.reload(), Err(CertError::BadKey { .. })));
        assert_eq!(current(&tls), second);
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = Tls::from_config(&config(&missing, &missing), Stats::default()).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
