//! Reading the TLS material (certificates, keys, CAs, CRLs) and the facts kept about it: subjects
//! and expiries, for the expiry gauges and warnings. A CRL must be signed by a trusted CA.

use super::TlsSetupError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a configured certificate or CRL is, for the expiry gauges and warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryKind {
    Server,
    Ca,
    Crl,
    Client,
}

impl ExpiryKind {
    pub fn label(self) -> &'static str {
        match self {
            ExpiryKind::Server => "server",
            ExpiryKind::Ca => "ca",
            ExpiryKind::Crl => "crl",
            ExpiryKind::Client => "client",
        }
    }
}

/// When something the TLS state depends on runs out: a certificate's `notAfter`, a CRL's
/// `nextUpdate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub kind: ExpiryKind,
    pub subject: String,
    /// Unix time, seconds.
    pub not_after: i64,
    pub path: PathBuf,
}

/// A file's bytes, or an error naming it.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// Every PEM certificate of a file, in order; an error when there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::File {
            path: path.display().to_string(),
            problem: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::File {
            path: path.display().to_string(),
            problem: "contains no certificate".into(),
        });
    }
    Ok(certs)
}

pub(super) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = zeroize::Zeroizing::new(read_file(path)?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsSetupError::File {
        path: path.display().to_string(),
        problem: "contains no usable PEM private key".into(),
    })
}

/// Subject and `notAfter` (Unix seconds) of a DER certificate.
pub fn cert_subject_and_expiry(der: &[u8]) -> Option<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

/// A CRL the gateway enforces: what `GET /revocation` reports and `pki revoke` checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrlInForce {
    pub path: PathBuf,
    /// The issuing CA's subject, as `x509_parser` prints it.
    pub issuer: String,
    /// Revoked serials: lowercase hex without leading zero bytes.
    pub revoked: Vec<String>,
}

/// Subject alternative names of a DER certificate, as `DNS:name` / `IP:address`.
pub fn subject_alt_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(n) => format!("DNS:{n}"),
            GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
                Ok(v4) => format!("IP:{}", std::net::IpAddr::from(v4)),
                Err(_) => match <[u8; 16]>::try_from(*b) {
                    Ok(v6) => format!("IP:{}", std::net::IpAddr::from(v6)),
                    Err(_) => format!("IP:{}", hex::encode(b)),
                },
            },
            other => other.to_string(),
        })
        .collect()
}

/// Refuses a listener certificate a client could not accept for what it is: one without the
/// serverAuth extended key usage (the array's TLS stack checks it), or a CA certificate (a
/// listener showing its CA's certificate means the wrong file was configured).
pub(super) fn check_server_cert(der: &[u8], path: &Path) -> Result<(), TlsSetupError> {
    let bad = |problem: String| TlsSetupError::File {
        path: path.display().to_string(),
        problem,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| bad("the server certificate cannot be parsed".into()))?;
    if cert.is_ca() {
        return Err(bad(format!(
            "'{}' is a CA certificate (basic constraints CA:TRUE), not a listener's              certificate: issue one with `kmip-gateway pki server-cert`",
            cert.subject()
        )));
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.server_auth => Ok(()),
        _ => Err(bad(format!(
            "'{}' lacks the serverAuth extended key usage, so clients refuse it as a TLS              server's certificate: issue one with `kmip-gateway pki server-cert`",
            cert.subject()
        ))),
    }
}

/// The subject (raw DER) and its printed form of a DER certificate.
pub(super) fn subject_of(der: &[u8]) -> Option<(Vec<u8>, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((cert.subject().as_raw().to_vec(), cert.subject().to_string()))
}

/// The issuer (raw DER) of a DER CRL.
pub(super) fn crl_issuer(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).ok()?;
    Some(crl.issuer().as_raw().to_vec())
}

/// Files already read during one build, so a CA or CRL shared by several users is read once.
#[derive(Default)]
pub(super) struct Loaded {
    cas: HashMap<PathBuf, Vec<CertificateDer<'static>>>,
    crls: HashMap<PathBuf, Vec<CertificateRevocationListDer<'static>>>,
    pub(super) expiries: Vec<Expiry>,
    /// Every CRL read, in the order first read.
    pub(super) in_force: Vec<CrlInForce>,
}

impl Loaded {
    pub(super) fn cas(
        &mut self,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
        if let Some(c) = self.cas.get(path) {
            return Ok(c.clone());
        }
        let certs = load_certs(path)?;
        for der in &certs {
            let unparsable = || TlsSetupError::File {
                path: path.display().to_string(),
                problem: "a certificate cannot be parsed".into(),
            };
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| unparsable())?;
            // webpki takes any certificate as a trust anchor; a leaf here is a wrong file, and
            // trusting it would let in whatever its key signs.
            if !cert.is_ca() {
                return Err(TlsSetupError::File {
                    path: path.display().to_string(),
                    problem: format!(
                        "'{}' is not a CA certificate (no CA basic constraint): give the                          certificate of the CA that issues the client certificates (ca.pem)",
                        cert.subject()
                    ),
                });
            }
            let (subject, not_after) = cert_subject_and_expiry(der).ok_or_else(unparsable)?;
            self.expiries.push(Expiry {
                kind: ExpiryKind::Ca,
                subject,
                not_after,
                path: path.to_path_buf(),
            });
        }
        self.cas.insert(path.to_path_buf(), certs.clone());
        Ok(certs)
    }

    /// Reads a CRL file (one or more PEM CRLs) and checks each is signed by one of `cas`: a CRL
    /// nobody trusted issued would be silently ignored by the verifier, so it is a setup error.
    pub(super) fn crls(
        &mut self,
        path: &Path,
        cas: &[CertificateDer<'static>],
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
        if let Some(c) = self.crls.get(path) {
            return Ok(c.clone());
        }
        let bad = |problem: String| TlsSetupError::File {
            path: path.display().to_string(),
            problem,
        };
        let pem = read_file(path)?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM CRL file: {e}")))?;
        if crls.is_empty() {
            return Err(bad("contains no CRL".into()));
        }
        for der in &crls {
            use x509_parser::prelude::FromDer;
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(der.as_ref())
                    .map_err(|e| bad(format!("a CRL cannot be parsed: {e}")))?;
            let signed_by_trusted = cas.iter().any(|ca| {
                x509_parser::parse_x509_certificate(ca.as_ref())
                    .map(|(_, ca)| {
                        ca.subject().as_raw() == crl.issuer().as_raw()
                            && crl.verify_signature(ca.public_key()).is_ok()
                    })
                    .unwrap_or(false)
            });
            if !signed_by_trusted {
                return Err(bad(format!(
                    "CRL of '{}' is not signed by a trusted CA",
                    crl.issuer()
                )));
            }
            self.in_force.push(CrlInForce {
                path: path.to_path_buf(),
                issuer: crl.issuer().to_string(),
                revoked: crl
                    .iter_revoked_certificates()
                    .map(|r| {
                        crate::tooling::pki::Serial::from_bytes(r.raw_serial())
                            .map(|s| s.to_hex())
                            .unwrap_or_else(|_| hex::encode(r.raw_serial()))
                    })
                    .collect(),
            });
            // No nextUpdate means "no newer CRL promised": nothing to warn about.
            if let Some(next) = crl.next_update() {
                self.expiries.push(Expiry {
                    kind: ExpiryKind::Crl,
                    subject: crl.issuer().to_string(),
                    not_after: next.timestamp(),
                    path: path.to_path_buf(),
                });
            }
        }
        self.crls.insert(path.to_path_buf(), crls.clone());
        Ok(crls)
    }
}
