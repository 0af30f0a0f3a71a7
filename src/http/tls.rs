//! TLS trust for one API endpoint family (a site's Mold, or its Glue storage VMs).
//!
//! Glue's certificate is self-signed with an IP SAN of `127.0.0.1` only, so ordinary
//! verification against a storage VM's management IP always fails. A site therefore either
//! pins that certificate (`glue_ca_file`: a presented certificate identical to one in the file
//! is accepted whatever the address; anything else must chain to the file's certificates and
//! match the host name) or says `glue_insecure = true`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where trust comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// The system's trust store (ordinary public or enterprise CAs).
    System,
    /// Certificates from a PEM file: pinned as-is, and used as the only roots.
    Pinned(PathBuf),
    /// No verification at all (`insecure = true`): the connection is encrypted, but anyone on
    /// the path can impersonate the server. Callers warn once per run.
    Insecure,
}

/// A TLS set-up that could not be built; says which file and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("CA file {path} holds no PEM certificate")]
    EmptyCaFile { path: PathBuf },
    /// The key is never quoted, only its file named.
    #[error("cannot read key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    /// The text of rustls or reqwest, without any link they put in it.
    #[error("TLS set-up failed: {0}")]
    Client(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsTrust {
    /// The rustls configuration for this trust.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        self.client_config_with_identity(None)
    }

    /// The rustls configuration for this trust, presenting `identity` (a client certificate
    /// and its key, as etcd's `--client-cert-auth` asks) when given.
    pub fn client_config_with_identity(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Client(super::strip_links(&e.to_string())))?;
        let wants_cert = match self {
            TlsTrust::System => {
                let mut roots = RootCertStore::empty();
                // Unreadable system certificates only narrow what is trusted; an https Mold
                // behind a public CA then fails with "unknown issuer", which says enough.
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                builder.with_root_certificates(roots)
            }
            TlsTrust::Pinned(path) => {
                let pinned = read_pem_certs(path)?;
                let mut roots = RootCertStore::empty();
                for cert in &pinned {
                    let _ = roots.add(cert.clone());
                }
                let chain =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .ok();
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                        pinned,
                        chain,
                        provider,
                    }))
            }
            TlsTrust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider })),
        };
        match identity {
            None => Ok(wants_cert.with_no_client_auth()),
            Some(id) => {
                let certs = read_pem_certs(&id.cert)?;
                let key = read_pem_key(&id.key)?;
                wants_cert
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| TlsError::Client(super::strip_links(&e.to_string())))
            }
        }
    }
}

/// A client certificate (PEM, its chain) and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads the one private key of a PEM file.
pub fn read_pem_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsError::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::KeyFile {
            path: path.to_path_buf(),
            reason: "it holds no PEM private key".into(),
        })
}

/// Reads every certificate of a PEM file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::CaFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CaFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::EmptyCaFile {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

#[derive(Debug)]
struct PinnedVerifier {
    pinned: Vec<CertificateDer<'static>>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.chain {
            Some(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
