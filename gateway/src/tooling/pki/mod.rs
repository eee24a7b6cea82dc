//! Certificate authority operations for the gateway's mutual-TLS PKI.
//!
//! Used for the development PKI of the embedded default configuration and by the
//! `kmip-gateway pki ...` commands that stand in for the KMES setup steps of a Pure
//! FlashArray integration: one root CA (the array does not support intermediates),
//! client certificates signed from the array's CSR with its Common Name kept (the
//! gateway maps that CN to a user), the listener's server certificate, and CRLs to
//! revoke client certificates. Everything goes in and out as PEM; private keys are
//! ECDSA P-256 by default, or P-384, RSA-2048 or RSA-3072 (`key_type`), and are held in
//! `Zeroizing` buffers.
//!
//! `issue` issues (CA, leaves, CSRs, CRLs), `certify` the certificates KMIP Certify issues, `x509` reads certificates, `dev` writes the
//! development PKI, and `common_name` is the one Common Name rule that both issuing and the
//! listener's authentication apply.

mod certify;
mod common_name;
mod dev;
mod issue;
mod key_type;
mod x509;

pub use certify::{CertifyTerms, IssuingCa, SubjectField, CERTIFY_DEFAULT_VALIDITY_DAYS};
pub use common_name::{
    check_common_name, subject_common_name, CommonNameError, MAX_COMMON_NAME_LEN,
};
pub use dev::{
    dev_pki, DevPki, DEV_CA_CERT, DEV_CA_COMMON_NAME, DEV_CA_KEY, DEV_CA_STATE,
    DEV_CA_VALIDITY_DAYS, DEV_CLIENT_CERT, DEV_CLIENT_COMMON_NAME, DEV_CLIENT_KEY, DEV_CRL,
    DEV_CRL_VALIDITY_DAYS, DEV_ISSUING_CA_CERT, DEV_ISSUING_CA_COMMON_NAME, DEV_ISSUING_CA_KEY,
    DEV_LEAF_VALIDITY_DAYS, DEV_SERVER_CERT, DEV_SERVER_KEY,
};
pub use issue::{
    init_ca, init_ca_with_key, issue_cert, issue_client_cert, issue_server_cert,
    issue_server_cert_with_key, make_crl, server_csr, server_csr_with_key, sign_csr,
};
pub use key_type::KeyType;
pub use x509::{describe_cert, describe_certs, subject_alt_names};

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use issue::validity_from_now;

/// Longest validity accepted (20 years): keeps the date arithmetic far from overflow
/// and stops a typo from minting a certificate that outlives every key rotation plan.
pub const MAX_VALIDITY_DAYS: u32 = 7305;
/// Largest PEM input accepted: a certificate, key or CSR is a few KiB; this bounds
/// the work the parsers do on a file an operator (or an array) handed over.
pub const MAX_PEM_LEN: usize = 64 * 1024;
/// RFC 5280 §4.1.2.2: serial numbers are at most 20 octets once DER-encoded.
pub const MAX_SERIAL_LEN: usize = 20;
/// Subject alternative names per server certificate: bounds certificate size
/// (every handshake sends it) against a runaway command line.
pub const MAX_SUBJECT_ALT_NAMES: usize = 64;
/// RFC 1035: the longest DNS name.
pub const MAX_DNS_NAME_LEN: usize = 253;
/// Revoked entries per CRL: the verifier holds every CRL in memory and scans it on
/// each handshake, so a CRL stays within a size that costs nothing per connection.
pub const MAX_CRL_ENTRIES: usize = 100_000;
/// Bytes of randomness in generated serials: 16 bytes (126 random bits after the
/// sign fix-up) make collisions impossible in practice, so a certificate re-issued
/// for the same key after a revocation never inherits the revoked serial.
const RANDOM_SERIAL_LEN: usize = 16;

/// Errors of the PKI layer. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what} is {len} bytes, more than the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("cannot read the {what} as PEM: {reason}")]
    Pem {
        what: &'static str,
        reason: &'static str,
    },
    #[error("the PEM input holds {count} certificates where exactly one is expected")]
    CertificateCount { count: usize },
    #[error("cannot parse the {what}: {reason}")]
    Parse { what: &'static str, reason: String },
    #[error("the CSR signature does not verify")]
    CsrSignature,
    #[error(
        "the CSR carries {found}; the gateway signs only RSA keys of 2048 to 8192 bits, EC keys \
         on P-256 or P-384, and Ed25519: make a new CSR with one of those \
         (e.g. `openssl req -newkey rsa:2048`)"
    )]
    UnsupportedPublicKey { found: String },
    #[error("the subject has no Common Name")]
    MissingCommonName,
    #[error("the subject has {0} Common Names where exactly one is required")]
    MultipleCommonNames(usize),
    #[error("wildcard Common Names are refused: a client identity must name one client")]
    WildcardCommonName,
    #[error("invalid Common Name: {0}")]
    InvalidCommonName(&'static str),
    #[error("a validity of {days} days is outside 1..={max}")]
    Validity { days: u32, max: u32 },
    #[error("not_after must be later than not_before")]
    ValidityOrder,
    #[error("invalid serial number: {0}")]
    InvalidSerial(&'static str),
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidDnsName { name: String, reason: &'static str },
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoSubjectAltName,
    #[error("{count} subject alternative names, more than the limit of {limit}")]
    TooManySubjectAltNames { count: usize, limit: usize },
    #[error("{count} revoked certificates, more than the per-CRL limit of {limit}")]
    TooManyRevoked { count: usize, limit: usize },
    #[error("the issuing CA {0}; give Certify its own CA certificate and key")]
    IssuingCaShared(&'static str),
    #[error("the certificate would outlive the issuing CA: ask for an earlier end of validity or renew the CA")]
    OutlivesIssuer,
    #[error("the CSR asks for a CA certificate; Certify issues end-entity certificates only")]
    CsrAsksForCa,
    #[error("the CA certificate is not a CA (basic constraints CA flag missing)")]
    NotACa,
    #[error("the CA private key does not belong to the CA certificate")]
    KeyMismatch,
    #[error("the {what} private key cannot be loaded (expected an unencrypted PKCS#8, SEC1 or PKCS#1 key)")]
    Key { what: &'static str },
    #[error("the system random number generator failed")]
    Random,
    #[error("certificate encoding failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the development PKI in {} is incomplete (present: {present:?}, missing: {missing:?}); \
         remove the present files to regenerate it or supply the missing ones",
        dir.display()
    )]
    PartialDevPki {
        dir: PathBuf,
        present: Vec<&'static str>,
        missing: Vec<&'static str>,
    },
}

impl From<CommonNameError> for PkiError {
    fn from(e: CommonNameError) -> Self {
        match e {
            CommonNameError::Missing | CommonNameError::Empty => PkiError::MissingCommonName,
            CommonNameError::Multiple(n) => PkiError::MultipleCommonNames(n),
            CommonNameError::Wildcard(_) => PkiError::WildcardCommonName,
            CommonNameError::Unreadable => PkiError::InvalidCommonName("not a readable string"),
            CommonNameError::TooLong => PkiError::InvalidCommonName("longer than 64 bytes"),
            CommonNameError::ControlCharacters => {
                PkiError::InvalidCommonName("contains control characters")
            }
            CommonNameError::SurroundingWhitespace => {
                PkiError::InvalidCommonName("has leading or trailing whitespace")
            }
        }
    }
}

/// A certificate serial number: positive, without leading zero bytes, at most
/// [`MAX_SERIAL_LEN`] bytes once DER-encoded. Its hex form is what [`CertInfo`]
/// shows and what an operator passes back to revoke a certificate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A fresh random serial.
    pub fn random() -> Result<Self, PkiError> {
        let mut bytes = [0u8; RANDOM_SERIAL_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Random)?;
        // Clear the sign bit (serials are positive) and set the next one so the
        // serial never starts with a zero byte and keeps its full length.
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Ok(Self(bytes.to_vec()))
    }

    /// From big-endian bytes as found in a certificate (leading zeros allowed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PkiError> {
        let first = bytes.iter().position(|b| *b != 0);
        let Some(first) = first else {
            return Err(PkiError::InvalidSerial("zero is not a valid serial"));
        };
        let trimmed = &bytes[first..];
        // A set top bit costs one more (zero) byte in DER.
        let encoded_len = trimmed.len() + usize::from(trimmed[0] & 0x80 != 0);
        if encoded_len > MAX_SERIAL_LEN {
            return Err(PkiError::InvalidSerial("longer than 20 bytes"));
        }
        Ok(Self(trimmed.to_vec()))
    }

    /// From hex, optionally with `0x` and `:` separators (as `openssl x509 -serial` prints).
    pub fn from_hex(text: &str) -> Result<Self, PkiError> {
        let text = text.trim();
        let text = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        if digits.len() > 2 * (MAX_SERIAL_LEN + 1) {
            return Err(PkiError::InvalidSerial("longer than 20 bytes"));
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = hex::decode(padded).map_err(|_| PkiError::InvalidSerial("not a hex number"))?;
        Self::from_bytes(&bytes)
    }

    /// Lower-case hex without separators or leading zero bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

/// A CA certificate and its private key.
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// A certificate issued together with a freshly generated private key.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// A CSR for the listener's certificate, to be signed by an external CA, and its key.
pub struct ServerCsr {
    pub csr_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for ServerCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCsr")
            .field("csr_pem", &self.csr_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// What an issued leaf certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertProfile {
    /// A KMIP client: clientAuth extended key usage.
    Client,
    /// A KMIP listener: serverAuth extended key usage and these subject alternative names.
    Server {
        dns_names: Vec<String>,
        ip_addrs: Vec<IpAddr>,
    },
    /// No extended key usage extension at all, as some CAs issue: usable for anything in
    /// RFC 5280 terms, but the gateway refuses it as a client certificate (tests build it).
    NoExtendedKeyUsage,
}

/// Full control over an issued leaf certificate. [`issue_cert`] applies no Common
/// Name policy to it, so tests and tools can build certificates that the gateway
/// must refuse (expired, wildcard CN, no CN).
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// `None` leaves the Common Name out of the subject; `Some("")` writes an empty one.
    pub common_name: Option<String>,
    pub profile: CertProfile,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: Serial,
    /// The new key's type (P-256 unless set).
    pub key_type: KeyType,
}

impl IssueOptions {
    /// Valid from now (minus a small clock-skew allowance) for `validity_days`, with a random serial.
    pub fn new(
        common_name: Option<String>,
        profile: CertProfile,
        validity_days: u32,
    ) -> Result<Self, PkiError> {
        let (not_before, not_after) = validity_from_now(validity_days)?;
        Ok(Self {
            common_name,
            profile,
            not_before,
            not_after,
            serial: Serial::random()?,
            key_type: KeyType::default(),
        })
    }
}

/// What `pki list` and the expiry gauges need to know about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha256_fingerprint_hex: String,
    pub is_ca: bool,
}

#[cfg(test)]
mod tests;
