//! Certificates for TLS tests, made fresh per test with rcgen: a test CA and a leaf for `localhost` and
//! 127.0.0.1 signed by it, written as PEM files a server configuration and the real clients can name; and
//! a rustls client that trusts that CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use halley::config::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A test CA and a server certificate it signed, as files in a temporary directory.
pub struct TestCerts {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl TestCerts {
    /// A CA and a leaf for `localhost` and 127.0.0.1 (cert.pem, key.pem, ca.pem).
    pub fn new() -> TestCerts {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Halley test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let certs = TestCerts {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        std::fs::write(certs.ca_file(), certs.ca.pem()).unwrap();
        certs.issue(&["localhost", "127.0.0.1"], "Halley test server");
        certs
    }

    /// Signs a new leaf for `names` (host names or IP addresses) with the same CA and writes it over
    /// cert.pem and key.pem, as a renewal does. Returns the leaf's DER, to tell certificates apart.
    pub fn issue(&self, names: &[&str], common_name: &str) -> Vec<u8> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        // Key first, then the certificate, each written whole (rename), so a watcher never pairs a new
        // certificate with the old key for long.
        write_atomically(&self.key_file(), key.serialize_pem().as_bytes());
        write_atomically(&self.cert_file(), leaf.pem().as_bytes());
        leaf.der().to_vec()
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The CA certificate (PEM), what a verifying client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Points `config` at these files (TLS on for CometQL; HTTPS needs `https_addr` too).
    pub fn configure(&self, config: &mut Config) {
        config.tls.cert_file = self.cert_file();
        config.tls.key_file = self.key_file();
    }

    /// A rustls client configuration that trusts the test CA only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
