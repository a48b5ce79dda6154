//! Transport security, the same for the gRPC and the HTTP listener: TLS (rustls with the
//! `ring` provider) from a PEM certificate chain and key, and an optional bearer token
//! that every call must carry in `authorization: Bearer <token>`, except health checks
//! (and the metrics listener, which serves only `/metrics`).
//!
//! The token is checked in one place per transport, around every service: a tower layer
//! over the whole gRPC router ([`crate::grpc::auth`]), so a service added to the server is covered
//! without being named here, and an axum middleware over the whole HTTP router
//! ([`crate::http`]). Neither is installed when no token is configured.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("reading {what} {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {}: {msg}", path.display())]
    Pem { what: &'static str, path: PathBuf, msg: String },
    #[error("TLS certificate {} with key {}: {msg}", cert.display(), key.display())]
    Config { cert: PathBuf, key: PathBuf, msg: String },
    #[error("the bearer token ({origin}) {problem}")]
    Token { origin: String, problem: String },
}

/// A server identity: the PEM files as read (the gRPC listener takes PEM) and the rustls
/// configuration built from them (which also proves they parse and belong together).
#[derive(Clone)]
pub struct Tls {
    cert_pem: Arc<[u8]>,
    key_pem: Arc<[u8]>,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, SecurityError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| SecurityError::Read { what, path: path.into(), source })
        };
        let (cert_pem, key_pem) = (read("--tls-cert", cert)?, read("--tls-key", key)?);
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SecurityError::Pem { what: "--tls-cert", path: cert.into(), msg: e.to_string() })?;
        if chain.is_empty() {
            return Err(SecurityError::Pem {
                what: "--tls-cert",
                path: cert.into(),
                msg: "holds no PEM CERTIFICATE block".into(),
            });
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| SecurityError::Pem {
            what: "--tls-key",
            path: key.into(),
            msg: format!("no PEM private key ({e})"),
        })?;
        let config_err = |msg: String| SecurityError::Config { cert: cert.into(), key: key.into(), msg };
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| config_err(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .map_err(|e| config_err(e.to_string()))?;
        // The HTTP listener speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { cert_pem: cert_pem.into(), key_pem: key_pem.into(), config: Arc::new(config) })
    }

    /// The PEM certificate chain and key as read (the gRPC listener's TLS,
    /// [`crate::grpc::auth::tls_config`], takes PEM).
    pub fn pem(&self) -> (&[u8], &[u8]) {
        (&self.cert_pem, &self.key_pem)
    }

    /// The HTTP listener's handshakes.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// The secret every call must present. Never printed.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8]>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// `origin` names where the token came from, for errors (never the token itself).
    /// Surrounding whitespace (a file's final newline) is not part of it; what is left
    /// must be 1 to 4096 visible ASCII characters, which is what a header can carry.
    pub fn new(token: &str, origin: &str) -> Result<BearerToken, SecurityError> {
        let token = token.trim();
        let problem = if token.is_empty() {
            Some("is empty".to_string())
        } else if token.len() > 4096 {
            Some(format!("is {} bytes long, more than 4096", token.len()))
        } else {
            token.bytes().position(|b| !b.is_ascii_graphic()).map(|i| {
                format!("has a character at byte {i} that is not visible ASCII (a header cannot carry it)")
            })
        };
        match problem {
            Some(problem) => Err(SecurityError::Token { origin: origin.into(), problem }),
            None => Ok(BearerToken(token.as_bytes().into())),
        }
    }

    /// Reads the token from `path` (the file's whole content, trimmed).
    pub fn from_file(path: &Path) -> Result<BearerToken, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            what: "--auth-token-file",
            path: path.into(),
            source,
        })?;
        BearerToken::new(&text, &format!("in {}", path.display()))
    }

    /// Whether an `authorization` header value presents this token. The scheme is
    /// case-insensitive (RFC 9110); the token is compared in constant time, so the time
    /// taken tells nothing about how much of a guess was right (only, at most, its length).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else { return false };
        let Some((scheme, rest)) = value.split_at_checked(6) else { return false };
        if !scheme.eq_ignore_ascii_case(b"Bearer") || !rest.starts_with(b" ") {
            return false;
        }
        let presented = rest.trim_ascii();
        presented.ct_eq(&self.0).into()
    }

    /// Why a call without the right token is refused (the same words on both transports).
    pub fn refusal(authorization: Option<&[u8]>) -> &'static str {
        match authorization {
            None => "this server requires a bearer token: send `authorization: Bearer <token>`",
            Some(_) => "the authorization header does not carry this server's bearer token",
        }
    }
}

/// What the listeners enforce; the default (nothing) is the demo's plain loopback service.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub tls: Option<Tls>,
    pub token: Option<BearerToken>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_accepted_only_exactly_and_with_the_bearer_scheme() {
        let t = BearerToken::new(" s3cret-Token_1\n", "test").unwrap();
        for good in ["Bearer s3cret-Token_1", "bearer s3cret-Token_1", "BEARER  s3cret-Token_1 "] {
            assert!(t.accepts(Some(good.as_bytes())), "{good:?}");
        }
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer s3cret-Token_",
            "Bearer s3cret-Token_12",
            "Bearer S3cret-Token_1",
            "Basic s3cret-Token_1",
            "Bearers3cret-Token_1",
            "s3cret-Token_1",
        ] {
            assert!(!t.accepts(Some(bad.as_bytes())), "{bad:?}");
        }
        assert!(!t.accepts(None));
    }

    #[test]
    fn a_token_a_header_cannot_carry_is_refused_naming_where_it_came_from() {
        let err = |s: &str| BearerToken::new(s, "in /etc/segd/token").unwrap_err().to_string();
        assert_eq!(err(" \n"), "the bearer token (in /etc/segd/token) is empty");
        assert!(err("two words").contains("byte 3 that is not visible ASCII"), "{}", err("two words"));
        assert!(err("caf\u{e9}").contains("byte 3"));
        assert!(err(&"x".repeat(4097)).contains("4097 bytes long"));
        assert!(BearerToken::new(&"x".repeat(4096), "t").is_ok());
    }

    #[test]
    fn tls_files_are_checked_at_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, junk) =
            (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("j.pem"));
        std::fs::write(&junk, "not a pem file\n").unwrap();
        let e = Tls::from_pem_files(&cert, &key).unwrap_err().to_string();
        assert!(e.starts_with("reading --tls-cert ") && e.contains("c.pem"), "{e}");
        let e = Tls::from_pem_files(&junk, &junk).unwrap_err().to_string();
        assert!(e.contains("--tls-cert") && e.contains("no PEM CERTIFICATE"), "{e}");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let e = Tls::from_pem_files(&fixtures.join("cert.pem"), &junk).unwrap_err().to_string();
        assert!(e.contains("--tls-key") && e.contains("no PEM private key"), "{e}");
        // The fixture's certificate with a key of another pair.
        let e = Tls::from_pem_files(&fixtures.join("cert.pem"), &fixtures.join("other-key.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TLS certificate") && e.contains("other-key.pem"), "{e}");
        assert!(Tls::from_pem_files(&fixtures.join("cert.pem"), &fixtures.join("key.pem")).is_ok());
    }
}
