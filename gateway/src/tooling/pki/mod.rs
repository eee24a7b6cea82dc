//! Certificate authority operations for the gateway's mutual-TLS PKI.
//!
//! Used for the development PKI of the embedded default configuration and by the
//! `kmip-gateway pki ...` commands that stand in for the KMES setup steps of a Pure
//! FlashArray integration: one root CA (the array does not support intermediates),
//! client certificates signed from the array's CSR with its Common Name kept (the
//! gateway maps that CN to a user), the listener's server certificate, and CRLs to
//! revoke client certificates. Everything goes in and out as PEM; private keys are
//! ECDSA P-256 and are held in `Zeroizing` buffers.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, SubjectPublicKeyInfo,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::{self as pki_pem, PemObject};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;
use zeroize::Zeroizing;

/// Longest validity accepted (20 years): keeps the date arithmetic far from overflow
/// and stops a typo from minting a certificate that outlives every key rotation plan.
pub const MAX_VALIDITY_DAYS: u32 = 7305;
/// Largest PEM input accepted: a certificate, key or CSR is a few KiB; this bounds
/// the work the parsers do on a file an operator (or an array) handed over.
pub const MAX_PEM_LEN: usize = 64 * 1024;
/// RFC 5280 `ub-common-name`: the longest Common Name X.509 allows.
pub const MAX_COMMON_NAME_LEN: usize = 64;
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
/// `not_before` is backdated by this much so a peer whose clock runs slightly
/// behind still accepts a certificate issued a moment ago.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);
/// Common Name of a server certificate that has no DNS name to borrow one from.
const DEFAULT_SERVER_COMMON_NAME: &str = "kmip-gateway";

/// File names and identities of the development PKI written by [`dev_pki`].
pub const DEV_CA_CERT: &str = "ca.pem";
pub const DEV_CA_KEY: &str = "ca.key";
pub const DEV_SERVER_CERT: &str = "server.pem";
pub const DEV_SERVER_KEY: &str = "server.key";
pub const DEV_CLIENT_CERT: &str = "client-purefa.pem";
pub const DEV_CLIENT_KEY: &str = "client-purefa.key";
pub const DEV_CA_COMMON_NAME: &str = "kmip-gateway development CA";
/// The Common Name a FlashArray uses in its certificate (`purecert create ... --common-name purefa`).
pub const DEV_CLIENT_COMMON_NAME: &str = "purefa";
pub const DEV_CA_VALIDITY_DAYS: u32 = 3650;
/// 825 days: the longest leaf validity common TLS clients still accept.
pub const DEV_LEAF_VALIDITY_DAYS: u32 = 825;
/// Mode of private key files: readable by their owner only.
const KEY_FILE_MODE: u32 = 0o600;
const CERT_FILE_MODE: u32 = 0o644;
const DEV_DIR_MODE: u32 = 0o700;

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

/// The development PKI on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevPki {
    pub dir: PathBuf,
    /// `false` when all files were already there and nothing was written.
    pub created: bool,
}

impl DevPki {
    pub fn path(&self, file_name: &str) -> PathBuf {
        self.dir.join(file_name)
    }
}

/// Creates a self-signed root CA allowed to sign certificates and CRLs, with no
/// room for intermediates (path length 0).
pub fn init_ca(common_name: &str, validity_days: u32) -> Result<CaBundle, PkiError> {
    check_common_name(common_name)?;
    let (not_before, not_after) = validity_from_now(validity_days)?;
    let key = generate_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(Some(common_name));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial_number(&Serial::random()?));
    let cert = params.self_signed(&*key)?;
    Ok(CaBundle {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// Signs a client's CSR (the FlashArray's, step 2 of its setup). The certificate
/// carries only the CSR's subject Common Name, the CSR's public key, and the CA's
/// own choice of extensions: clientAuth, digitalSignature + keyEncipherment. The
/// extensions the CSR asks for are ignored on purpose: the CA decides what a client
/// certificate may do.
pub fn sign_csr(
    ca: &CaBundle,
    csr_pem: &str,
    validity_days: u32,
    serial: &Serial,
) -> Result<String, PkiError> {
    check_len("CSR", csr_pem.len())?;
    let (not_before, not_after) = validity_from_now(validity_days)?;
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| pem_error("CSR", &e))?;
    let (_, csr) =
        X509CertificationRequest::from_der(csr_der.as_ref()).map_err(|e| PkiError::Parse {
            what: "CSR",
            reason: e.to_string(),
        })?;
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let info = &csr.certification_request_info;
    let common_name = single_common_name(&info.subject)?;
    check_common_name(&common_name)?;
    let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)?;

    let key = load_key(&ca.key_pem, "CA")?;
    let issuer = load_issuer(ca, &key)?;
    let mut params = leaf_params(Some(&common_name), not_before, not_after, serial);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&public_key, &issuer)?;
    Ok(cert.pem())
}

/// Issues the listener's certificate with a new key pair.
pub fn issue_server_cert(
    ca: &CaBundle,
    dns_names: &[String],
    ip_addrs: &[IpAddr],
    validity_days: u32,
) -> Result<IssuedCert, PkiError> {
    check_alt_names(dns_names, ip_addrs)?;
    let options = IssueOptions::new(
        Some(server_common_name(dns_names, ip_addrs)),
        CertProfile::Server {
            dns_names: dns_names.to_vec(),
            ip_addrs: ip_addrs.to_vec(),
        },
        validity_days,
    )?;
    issue_cert(ca, &options)
}

/// A key pair and CSR for the listener's certificate, for operators whose CA is
/// not this tool.
pub fn server_csr(dns_names: &[String], ip_addrs: &[IpAddr]) -> Result<ServerCsr, PkiError> {
    check_alt_names(dns_names, ip_addrs)?;
    let key = generate_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(Some(&server_common_name(dns_names, ip_addrs)));
    params.subject_alt_names = subject_alt_names(dns_names, ip_addrs)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params.serialize_request(&*key)?;
    Ok(ServerCsr {
        csr_pem: csr.pem()?,
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// Issues a client certificate with a new key pair, for the gateway's own tools,
/// PyKMIP and tests. The Common Name must be a plain (non-wildcard) name.
pub fn issue_client_cert(
    ca: &CaBundle,
    common_name: &str,
    validity_days: u32,
) -> Result<IssuedCert, PkiError> {
    check_common_name(common_name)?;
    let options = IssueOptions::new(
        Some(common_name.to_owned()),
        CertProfile::Client,
        validity_days,
    )?;
    issue_cert(ca, &options)
}

/// Issues a leaf certificate exactly as `options` say (no Common Name policy; the
/// dates only need to be in order, so expired certificates can be made).
pub fn issue_cert(ca: &CaBundle, options: &IssueOptions) -> Result<IssuedCert, PkiError> {
    if options.not_after <= options.not_before {
        return Err(PkiError::ValidityOrder);
    }
    let ca_key = load_key(&ca.key_pem, "CA")?;
    let issuer = load_issuer(ca, &ca_key)?;
    let mut params = leaf_params(
        options.common_name.as_deref(),
        options.not_before,
        options.not_after,
        &options.serial,
    );
    match &options.profile {
        CertProfile::Client => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        CertProfile::Server {
            dns_names,
            ip_addrs,
        } => {
            check_alt_names(dns_names, ip_addrs)?;
            params.subject_alt_names = subject_alt_names(dns_names, ip_addrs)?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        CertProfile::NoExtendedKeyUsage => params.extended_key_usages = Vec::new(),
    }
    let key = generate_key()?;
    let cert = params.signed_by(&*key, &issuer)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// A CRL signed by the CA listing `revoked` (serial, revocation time).
pub fn make_crl(
    ca: &CaBundle,
    revoked: &[(Serial, OffsetDateTime)],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    crl_number: u64,
) -> Result<String, PkiError> {
    if revoked.len() > MAX_CRL_ENTRIES {
        return Err(PkiError::TooManyRevoked {
            count: revoked.len(),
            limit: MAX_CRL_ENTRIES,
        });
    }
    let key = load_key(&ca.key_pem, "CA")?;
    let issuer = load_issuer(ca, &key)?;
    let ca_der = parse_single_cert_der(&ca.cert_pem, "CA certificate")?;
    let ca_cert = parse_x509(&ca_der, "CA certificate")?;
    // The CRL's authority key identifier must equal the CA's subject key identifier.
    let key_identifier_method = subject_key_id(&ca_cert)
        .map(KeyIdMethod::PreSpecified)
        .unwrap_or(KeyIdMethod::Sha256);
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|(serial, time)| RevokedCertParams {
                serial_number: serial_number(serial),
                revocation_time: *time,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

/// Describes the one certificate in `pem`.
pub fn describe_cert(pem: &str) -> Result<CertInfo, PkiError> {
    let der = parse_single_cert_der(pem, "certificate")?;
    describe_der(&der)
}

/// Describes every certificate of a PEM bundle (such as an exported CA tree), in order.
pub fn describe_certs(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    check_len("certificate bundle", pem.len())?;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|der| {
            let der = der.map_err(|e| pem_error("certificate", &e))?;
            describe_der(&der)
        })
        .collect()
}

/// Creates the development PKI in `dir` unless it already exists: a CA, a server
/// certificate for `localhost` and 127.0.0.1, and a client certificate for
/// [`DEV_CLIENT_COMMON_NAME`]. Never overwrites a file; if only some of the files
/// exist, refuses and names them.
pub fn dev_pki(dir: &Path) -> Result<DevPki, PkiError> {
    const FILES: [&str; 6] = [
        DEV_CA_CERT,
        DEV_CA_KEY,
        DEV_SERVER_CERT,
        DEV_SERVER_KEY,
        DEV_CLIENT_CERT,
        DEV_CLIENT_KEY,
    ];
    DirBuilder::new()
        .recursive(true)
        .mode(DEV_DIR_MODE)
        .create(dir)
        .map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for name in FILES {
        let path = dir.join(name);
        // symlink_metadata: a dangling symlink still counts as present, so it is never written through.
        match fs::symlink_metadata(&path) {
            Ok(_) => present.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(name),
            Err(source) => return Err(PkiError::Io { path, source }),
        }
    }
    let result = DevPki {
        dir: dir.to_path_buf(),
        created: missing.len() == FILES.len(),
    };
    if present.len() == FILES.len() {
        return Ok(result);
    }
    if !present.is_empty() {
        return Err(PkiError::PartialDevPki {
            dir: dir.to_path_buf(),
            present,
            missing,
        });
    }

    let ca = init_ca(DEV_CA_COMMON_NAME, DEV_CA_VALIDITY_DAYS)?;
    let server = issue_server_cert(
        &ca,
        &["localhost".to_owned()],
        &[IpAddr::from([127, 0, 0, 1])],
        DEV_LEAF_VALIDITY_DAYS,
    )?;
    let client = issue_client_cert(&ca, DEV_CLIENT_COMMON_NAME, DEV_LEAF_VALIDITY_DAYS)?;
    let outputs: [(&str, &[u8], u32); 6] = [
        (DEV_CA_CERT, ca.cert_pem.as_bytes(), CERT_FILE_MODE),
        (DEV_CA_KEY, ca.key_pem.as_bytes(), KEY_FILE_MODE),
        (DEV_SERVER_CERT, server.cert_pem.as_bytes(), CERT_FILE_MODE),
        (DEV_SERVER_KEY, server.key_pem.as_bytes(), KEY_FILE_MODE),
        (DEV_CLIENT_CERT, client.cert_pem.as_bytes(), CERT_FILE_MODE),
        (DEV_CLIENT_KEY, client.key_pem.as_bytes(), KEY_FILE_MODE),
    ];
    let mut written = Vec::new();
    for (name, contents, mode) in outputs {
        let path = dir.join(name);
        if let Err(e) = write_new_file(&path, contents, mode) {
            // Leave no half-made PKI behind. Only files this call created are
            // removed; a failure to remove one changes nothing about the error to report.
            for done in &written {
                let _ = fs::remove_file(done);
            }
            return Err(e);
        }
        written.push(path);
    }
    Ok(result)
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    // create_new: fails if anything (even a symlink) appeared at the path since the check.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

fn validity_from_now(validity_days: u32) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    if validity_days == 0 || validity_days > MAX_VALIDITY_DAYS {
        return Err(PkiError::Validity {
            days: validity_days,
            max: MAX_VALIDITY_DAYS,
        });
    }
    let now = OffsetDateTime::now_utc();
    Ok((
        now - CLOCK_SKEW_ALLOWANCE,
        now + Duration::days(i64::from(validity_days)),
    ))
}

fn check_len(what: &'static str, len: usize) -> Result<(), PkiError> {
    if len > MAX_PEM_LEN {
        return Err(PkiError::TooLarge {
            what,
            len,
            limit: MAX_PEM_LEN,
        });
    }
    Ok(())
}

fn pem_error(what: &'static str, error: &pki_pem::Error) -> PkiError {
    // Only a fixed reason: the error's own text may quote input, which can be a key.
    let reason = match error {
        pki_pem::Error::NoItemsFound => "no such PEM section",
        pki_pem::Error::MissingSectionEnd { .. } => "a PEM section has no end marker",
        pki_pem::Error::IllegalSectionStart { .. } => "malformed PEM section header",
        pki_pem::Error::Base64Decode(_) => "invalid base64",
        _ => "unreadable PEM",
    };
    PkiError::Pem { what, reason }
}

/// The Common Name policy for client identities and CAs: the gateway maps a client
/// CN to a user, so it must be one plain, printable name.
fn check_common_name(common_name: &str) -> Result<(), PkiError> {
    if common_name.is_empty() {
        return Err(PkiError::MissingCommonName);
    }
    if common_name.len() > MAX_COMMON_NAME_LEN {
        return Err(PkiError::InvalidCommonName("longer than 64 bytes"));
    }
    if common_name.contains('*') {
        return Err(PkiError::WildcardCommonName);
    }
    if common_name.chars().any(char::is_control) {
        return Err(PkiError::InvalidCommonName("contains control characters"));
    }
    if common_name.trim() != common_name {
        return Err(PkiError::InvalidCommonName(
            "has leading or trailing whitespace",
        ));
    }
    Ok(())
}

fn single_common_name(name: &X509Name<'_>) -> Result<String, PkiError> {
    let names: Vec<_> = name.iter_common_name().collect();
    match names.as_slice() {
        [] => Err(PkiError::MissingCommonName),
        [cn] => cn
            .as_str()
            .map(str::to_owned)
            .map_err(|_| PkiError::InvalidCommonName("not a readable string")),
        more => Err(PkiError::MultipleCommonNames(more.len())),
    }
}

fn first_common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn subject(common_name: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    if let Some(cn) = common_name {
        name.push(DnType::CommonName, cn);
    }
    name
}

fn serial_number(serial: &Serial) -> SerialNumber {
    SerialNumber::from_slice(serial.as_bytes())
}

fn leaf_params(
    common_name: Option<&str>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: &Serial,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial_number(serial));
    params.use_authority_key_identifier_extension = true;
    params
}

fn server_common_name(dns_names: &[String], ip_addrs: &[IpAddr]) -> String {
    dns_names
        .first()
        .cloned()
        .or_else(|| ip_addrs.first().map(IpAddr::to_string))
        .unwrap_or_else(|| DEFAULT_SERVER_COMMON_NAME.to_owned())
}

fn check_alt_names(dns_names: &[String], ip_addrs: &[IpAddr]) -> Result<(), PkiError> {
    let count = dns_names.len() + ip_addrs.len();
    if count == 0 {
        return Err(PkiError::NoSubjectAltName);
    }
    if count > MAX_SUBJECT_ALT_NAMES {
        return Err(PkiError::TooManySubjectAltNames {
            count,
            limit: MAX_SUBJECT_ALT_NAMES,
        });
    }
    Ok(())
}

fn subject_alt_names(dns_names: &[String], ip_addrs: &[IpAddr]) -> Result<Vec<SanType>, PkiError> {
    let mut names = Vec::with_capacity(dns_names.len() + ip_addrs.len());
    for dns in dns_names {
        let invalid = |reason| PkiError::InvalidDnsName {
            name: dns.chars().take(MAX_DNS_NAME_LEN).collect(),
            reason,
        };
        if dns.is_empty() || dns.len() > MAX_DNS_NAME_LEN {
            return Err(invalid("must be 1 to 253 characters"));
        }
        if !dns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*' | b'_'))
        {
            return Err(invalid(
                "only letters, digits, '-', '_', '.' and '*' are allowed",
            ));
        }
        let ia5 = Ia5String::try_from(dns.as_str()).map_err(|_| invalid("not ASCII"))?;
        names.push(SanType::DnsName(ia5));
    }
    names.extend(ip_addrs.iter().copied().map(SanType::IpAddress));
    Ok(names)
}

fn generate_key() -> Result<Zeroizing<KeyPair>, PkiError> {
    Ok(Zeroizing::new(KeyPair::generate_for(
        &PKCS_ECDSA_P256_SHA256,
    )?))
}

fn load_key(key_pem: &str, what: &'static str) -> Result<Zeroizing<KeyPair>, PkiError> {
    check_len("private key", key_pem.len())?;
    let der = Zeroizing::new(
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| pem_error(what, &e))?,
    );
    let key = KeyPair::try_from(&*der).map_err(|_| PkiError::Key { what })?;
    Ok(Zeroizing::new(key))
}

/// The CA as an rcgen issuer, after checking that the certificate is a CA and that
/// the key is its key (a mismatched pair would sign certificates nothing verifies).
fn load_issuer<'k>(
    ca: &CaBundle,
    key: &'k KeyPair,
) -> Result<Issuer<'static, &'k KeyPair>, PkiError> {
    let der = parse_single_cert_der(&ca.cert_pem, "CA certificate")?;
    let cert = parse_x509(&der, "CA certificate")?;
    if !cert.is_ca() {
        return Err(PkiError::NotACa);
    }
    if key.subject_public_key_info() != cert.public_key().raw {
        return Err(PkiError::KeyMismatch);
    }
    Ok(Issuer::from_ca_cert_der(&der, key)?)
}

fn parse_single_cert_der(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>, PkiError> {
    check_len(what, pem.len())?;
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, &e))?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(PkiError::Pem {
            what,
            reason: "no certificate found",
        }),
        count => Err(PkiError::CertificateCount { count }),
    }
}

fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
    what: &'static str,
) -> Result<X509Certificate<'a>, PkiError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| PkiError::Parse {
        what,
        reason: e.to_string(),
    })?;
    Ok(cert)
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn describe_der(der: &CertificateDer<'_>) -> Result<CertInfo, PkiError> {
    let cert = parse_x509(der, "certificate")?;
    let validity = cert.validity();
    let serial_hex = Serial::from_bytes(cert.raw_serial())
        .map(|s| s.to_hex())
        .unwrap_or_else(|_| hex::encode(cert.raw_serial()));
    Ok(CertInfo {
        subject_cn: first_common_name(cert.subject()),
        issuer_cn: first_common_name(cert.issuer()),
        serial_hex,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        sha256_fingerprint_hex: hex::encode(Sha256::digest(der.as_ref())),
        is_ca: cert.is_ca(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use rcgen::{RsaKeySize, PKCS_RSA_SHA256};
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::server::danger::ClientCertVerifier;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{CertificateError, RootCertStore};
    use rustls_pki_types::{CertificateRevocationListDer, ServerName, UnixTime};
    use x509_parser::extensions::GeneralName;
    use x509_parser::revocation_list::CertificateRevocationList;

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn roots(ca: &CaBundle) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        Arc::new(roots)
    }

    fn client_verifier(ca: &CaBundle, crl_pem: &str) -> Arc<dyn ClientCertVerifier> {
        let crl = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
        WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
            .with_crls([crl])
            .build()
            .unwrap()
    }

    fn verify_client(
        verifier: &dyn ClientCertVerifier,
        cert_pem: &str,
    ) -> Result<(), rustls::Error> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        verifier
            .verify_client_cert(&der, &[], UnixTime::now())
            .map(|_| ())
    }

    fn empty_crl(ca: &CaBundle) -> String {
        let now = OffsetDateTime::now_utc();
        make_crl(ca, &[], now, now + Duration::days(7), 1).unwrap()
    }

    fn serial_of(cert_pem: &str) -> Serial {
        Serial::from_hex(&describe_cert(cert_pem).unwrap().serial_hex).unwrap()
    }

    fn with_x509<R>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (rest, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
        assert!(rest.is_empty());
        f(&cert)
    }

    fn base64(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn csr_pem_from_der(der: &[u8]) -> String {
        let body = base64(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            lines.join("\n")
        )
    }

    /// A CSR like the array's: its own key, a subject with more than a CN, and
    /// requested extensions the CA must not copy.
    fn client_csr(common_name: Option<&str>, key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Pure Storage");
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn issued_certificates_parse_and_carry_the_right_extensions() {
        let ca = init_ca("Pure Storage FlashArray", 365).unwrap();
        with_x509(&ca.cert_pem, |cert| {
            assert!(cert.is_ca());
            let bc = cert.basic_constraints().unwrap().unwrap().value;
            assert_eq!(bc.path_len_constraint, Some(0));
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.key_cert_sign() && ku.crl_sign());
            assert!(!ku.digital_signature());
        });
        let ca_info = describe_cert(&ca.cert_pem).unwrap();
        assert_eq!(
            ca_info.subject_cn.as_deref(),
            Some("Pure Storage FlashArray")
        );
        assert_eq!(ca_info.issuer_cn, ca_info.subject_cn);
        assert!(ca_info.is_ca);
        let lifetime = ca_info.not_after - ca_info.not_before;
        assert!(
            lifetime >= Duration::days(365) && lifetime <= Duration::days(365) + Duration::hours(1)
        );

        let server = issue_server_cert(
            &ca,
            &["kmip.example.net".to_owned()],
            &[IpAddr::from([10, 0, 0, 7])],
            90,
        )
        .unwrap();
        with_x509(&server.cert_pem, |cert| {
            assert!(!cert.is_ca());
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && !eku.client_auth);
            let sans = &cert
                .subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names;
            assert!(sans.contains(&GeneralName::DNSName("kmip.example.net")));
            assert!(sans.contains(&GeneralName::IPAddress(&[10, 0, 0, 7])));
        });

        let client = issue_client_cert(&ca, "purefa", 30).unwrap();
        with_x509(&client.cert_pem, |cert| {
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth);
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        });
        let info = describe_cert(&client.cert_pem).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("purefa"));
        assert_eq!(info.issuer_cn.as_deref(), Some("Pure Storage FlashArray"));
        assert_eq!(info.sha256_fingerprint_hex.len(), 64);
        assert_ne!(info.serial_hex, ca_info.serial_hex);
        assert!(PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).is_ok());
    }

    #[test]
    fn client_certificate_verifies_until_its_serial_is_in_the_crl() {
        let ca = init_ca("test CA", 30).unwrap();
        let client = issue_client_cert(&ca, "purefa", 30).unwrap();
        let other = issue_client_cert(&ca, "vsphere", 30).unwrap();

        let verifier = client_verifier(&ca, &empty_crl(&ca));
        verify_client(&*verifier, &client.cert_pem).unwrap();
        verify_client(&*verifier, &other.cert_pem).unwrap();

        let now = OffsetDateTime::now_utc();
        let crl = make_crl(
            &ca,
            &[(serial_of(&client.cert_pem), now)],
            now,
            now + Duration::days(7),
            2,
        )
        .unwrap();
        let verifier = client_verifier(&ca, &crl);
        let err = verify_client(&*verifier, &client.cert_pem).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        );
        verify_client(&*verifier, &other.cert_pem).unwrap();
    }

    #[test]
    fn crl_lists_the_revoked_serials() {
        let ca = init_ca("test CA", 30).unwrap();
        let serials = [Serial::random().unwrap(), Serial::from_hex("80").unwrap()];
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let revoked: Vec<_> = serials.iter().map(|s| (s.clone(), now)).collect();
        let crl_pem = make_crl(&ca, &revoked, now, now + Duration::days(1), 42).unwrap();
        let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).unwrap();
        assert_eq!(
            crl.crl_number().map(|n| n.to_string()),
            Some("42".to_owned())
        );
        let listed: Vec<Serial> = crl
            .iter_revoked_certificates()
            .map(|r| Serial::from_bytes(r.raw_serial()).unwrap())
            .collect();
        assert_eq!(listed, serials);
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(ca_der.as_ref()).unwrap();
        crl.verify_signature(ca_cert.public_key()).unwrap();

        assert!(matches!(
            make_crl(&ca, &[], now, now, 43),
            Err(PkiError::Rcgen(rcgen::Error::InvalidCrlNextUpdate))
        ));
    }

    #[test]
    fn signed_csr_keeps_only_the_common_name_and_gets_client_auth() {
        let ca = init_ca("Pure Storage FlashArray", 30).unwrap();
        let array_key = KeyPair::generate().unwrap();
        let csr = client_csr(Some("purefa"), &array_key);
        let serial = Serial::random().unwrap();
        let cert_pem = sign_csr(&ca, &csr, 365, &serial).unwrap();

        let info = describe_cert(&cert_pem).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("purefa"));
        assert_eq!(info.serial_hex, serial.to_hex());
        with_x509(&cert_pem, |cert| {
            assert_eq!(cert.public_key().raw, array_key.subject_public_key_info());
            assert!(!cert.is_ca());
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth);
            assert_eq!(cert.subject().iter_organization().count(), 0);
        });
        verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert_pem).unwrap();
    }

    #[test]
    fn rsa_csr_is_signed() {
        // Arrays often make RSA keys; the ECDSA CA must sign them all the same.
        let ca = init_ca("test CA", 30).unwrap();
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        let cert_pem = sign_csr(
            &ca,
            &client_csr(Some("purefa"), &key),
            30,
            &Serial::random().unwrap(),
        )
        .unwrap();
        verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert_pem).unwrap();
    }

    #[test]
    fn csr_without_usable_common_name_is_refused() {
        let ca = init_ca("test CA", 30).unwrap();
        let key = KeyPair::generate().unwrap();
        let serial = Serial::random().unwrap();
        let sign = |cn: Option<&str>| sign_csr(&ca, &client_csr(cn, &key), 30, &serial);
        assert!(matches!(sign(None), Err(PkiError::MissingCommonName)));
        assert!(matches!(sign(Some("")), Err(PkiError::MissingCommonName)));
        assert!(matches!(sign(Some("*")), Err(PkiError::WildcardCommonName)));
        assert!(matches!(
            sign(Some("*.arrays.example")),
            Err(PkiError::WildcardCommonName)
        ));
        assert!(matches!(
            sign(Some("pure\nfa")),
            Err(PkiError::InvalidCommonName(_))
        ));
        assert!(matches!(
            sign(Some(&"a".repeat(65))),
            Err(PkiError::InvalidCommonName(_))
        ));
    }

    #[test]
    fn tampered_csr_is_refused() {
        let ca = init_ca("test CA", 30).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = client_csr(Some("purefa"), &key);
        let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let at = der.windows(6).position(|w| w == b"purefa").unwrap();
        der[at + 5] = b'b';
        let forged = csr_pem_from_der(&der);
        let serial = Serial::random().unwrap();
        assert!(matches!(
            sign_csr(&ca, &forged, 30, &serial),
            Err(PkiError::CsrSignature)
        ));
        // The untouched re-encoding is accepted: the refusal above is the signature's.
        let original = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
        sign_csr(&ca, &csr_pem_from_der(original.as_ref()), 30, &serial).unwrap();

        assert!(matches!(
            sign_csr(&ca, "not a csr", 30, &serial),
            Err(PkiError::Pem { .. })
        ));
        let huge = "A".repeat(MAX_PEM_LEN + 1);
        assert!(matches!(
            sign_csr(&ca, &huge, 30, &serial),
            Err(PkiError::TooLarge { .. })
        ));
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_rejected() {
        let ca = init_ca("test CA", 30).unwrap();
        let verifier = client_verifier(&ca, &empty_crl(&ca));
        let now = OffsetDateTime::now_utc();
        let mut options = IssueOptions::new(Some("purefa".into()), CertProfile::Client, 1).unwrap();
        options.not_before = now - Duration::days(10);
        options.not_after = now - Duration::days(1);
        let expired = issue_cert(&ca, &options).unwrap();
        let err = verify_client(&*verifier, &expired.cert_pem).unwrap_err();
        assert!(matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ));

        options.not_before = now + Duration::days(1);
        options.not_after = now + Duration::days(2);
        let future = issue_cert(&ca, &options).unwrap();
        assert!(verify_client(&*verifier, &future.cert_pem).is_err());

        options.not_after = options.not_before;
        assert!(matches!(
            issue_cert(&ca, &options),
            Err(PkiError::ValidityOrder)
        ));
    }

    #[test]
    fn test_options_can_build_certificates_the_policy_refuses() {
        let ca = init_ca("test CA", 30).unwrap();
        assert!(matches!(
            issue_client_cert(&ca, "*.example", 30),
            Err(PkiError::WildcardCommonName)
        ));
        assert!(matches!(
            issue_client_cert(&ca, "", 30),
            Err(PkiError::MissingCommonName)
        ));

        let wildcard = IssueOptions::new(Some("*".into()), CertProfile::Client, 30).unwrap();
        let cert = issue_cert(&ca, &wildcard).unwrap();
        assert_eq!(
            describe_cert(&cert.cert_pem).unwrap().subject_cn.as_deref(),
            Some("*")
        );

        let anonymous = IssueOptions::new(None, CertProfile::Client, 30).unwrap();
        let cert = issue_cert(&ca, &anonymous).unwrap();
        assert_eq!(describe_cert(&cert.cert_pem).unwrap().subject_cn, None);
        // Chain-wise both are fine: refusing them is the gateway's job, which is what they test.
        verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert.cert_pem).unwrap();

        let no_eku =
            IssueOptions::new(Some("purefa".into()), CertProfile::NoExtendedKeyUsage, 30).unwrap();
        let cert = issue_cert(&ca, &no_eku).unwrap();
        with_x509(&cert.cert_pem, |cert| {
            assert!(cert.extended_key_usage().unwrap().is_none());
        });
        // webpki lets a certificate without EKU through the handshake: `tls` refuses it.
        verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert.cert_pem).unwrap();
    }

    #[test]
    fn server_certificate_verifies_for_its_names_only_and_not_as_a_client() {
        let ca = init_ca("test CA", 30).unwrap();
        let server = issue_server_cert(
            &ca,
            &["localhost".to_owned()],
            &[IpAddr::from([127, 0, 0, 1])],
            30,
        )
        .unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
            .build()
            .unwrap();
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        let check = |name: &str| {
            let name = ServerName::try_from(name.to_owned()).unwrap();
            verifier.verify_server_cert(&der, &[], &name, &[], UnixTime::now())
        };
        check("localhost").unwrap();
        check("127.0.0.1").unwrap();
        assert!(check("kmip.example.net").is_err());
        assert!(check("127.0.0.2").is_err());

        let err =
            verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &server.cert_pem).unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)));

        assert!(matches!(
            issue_server_cert(&ca, &[], &[], 30),
            Err(PkiError::NoSubjectAltName)
        ));
        assert!(matches!(
            issue_server_cert(&ca, &["bad name".to_owned()], &[], 30),
            Err(PkiError::InvalidDnsName { .. })
        ));
    }

    #[test]
    fn server_csr_carries_names_and_a_valid_signature() {
        let csr = server_csr(
            &["kmip.example.net".to_owned()],
            &[IpAddr::from([192, 0, 2, 1])],
        )
        .unwrap();
        let der = CertificateSigningRequestDer::from_pem_slice(csr.csr_pem.as_bytes()).unwrap();
        let (_, parsed) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
        parsed.verify_signature().unwrap();
        let info = &parsed.certification_request_info;
        assert_eq!(
            single_common_name(&info.subject).unwrap(),
            "kmip.example.net"
        );
        let key = load_key(&csr.key_pem, "server").unwrap();
        assert_eq!(info.subject_pki.raw, key.subject_public_key_info());
        let sans: Vec<_> = parsed
            .requested_extensions()
            .unwrap()
            .filter_map(|ext| match ext {
                ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(sans.contains(&GeneralName::DNSName("kmip.example.net")));
        assert!(sans.contains(&GeneralName::IPAddress(&[192, 0, 2, 1])));
    }

    #[test]
    fn mismatched_or_non_ca_bundles_are_refused() {
        let ca = init_ca("test CA", 30).unwrap();
        let other = init_ca("other CA", 30).unwrap();
        let mixed = CaBundle {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
        };
        assert!(matches!(
            issue_client_cert(&mixed, "purefa", 30),
            Err(PkiError::KeyMismatch)
        ));
        let leaf = issue_client_cert(&ca, "purefa", 30).unwrap();
        let leaf_as_ca = CaBundle {
            cert_pem: leaf.cert_pem.clone(),
            key_pem: leaf.key_pem.clone(),
        };
        assert!(matches!(
            issue_client_cert(&leaf_as_ca, "x", 30),
            Err(PkiError::NotACa)
        ));
        let debug = format!("{ca:?} {leaf:?}");
        assert!(!debug.contains("PRIVATE KEY"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn validity_limits() {
        assert!(matches!(init_ca("x", 0), Err(PkiError::Validity { .. })));
        assert!(matches!(
            init_ca("x", MAX_VALIDITY_DAYS + 1),
            Err(PkiError::Validity { .. })
        ));
        init_ca("x", MAX_VALIDITY_DAYS).unwrap();
    }

    #[test]
    fn serial_hex_round_trip() {
        let s = Serial::from_hex("0x00:1A:2b").unwrap();
        assert_eq!(s.as_bytes(), &[0x1a, 0x2b]);
        assert_eq!(s.to_hex(), "1a2b");
        assert_eq!(Serial::from_hex("abc").unwrap().as_bytes(), &[0x0a, 0xbc]);
        assert!(Serial::from_hex("0").is_err());
        assert!(Serial::from_hex("xyz").is_err());
        assert!(Serial::from_hex(&"7f".repeat(20)).is_ok());
        assert!(Serial::from_hex(&"80".repeat(20)).is_err());
        assert!(Serial::from_hex(&"11".repeat(21)).is_err());
        let r = Serial::random().unwrap();
        assert_eq!(r.as_bytes().len(), RANDOM_SERIAL_LEN);
        assert_eq!(Serial::from_hex(&r.to_hex()).unwrap(), r);
        assert_ne!(r, Serial::random().unwrap());
    }

    #[test]
    fn describe_certs_reads_bundles_and_describe_cert_wants_one() {
        let ca = init_ca("test CA", 30).unwrap();
        let client = issue_client_cert(&ca, "purefa", 30).unwrap();
        let bundle = format!("{}{}", client.cert_pem, ca.cert_pem);
        let infos = describe_certs(&bundle).unwrap();
        let names: Vec<_> = infos.iter().map(|i| i.subject_cn.as_deref()).collect();
        assert_eq!(names, [Some("purefa"), Some("test CA")]);
        assert!(matches!(
            describe_cert(&bundle),
            Err(PkiError::CertificateCount { count: 2 })
        ));
        assert!(matches!(describe_cert(""), Err(PkiError::Pem { .. })));
    }

    #[test]
    fn dev_pki_is_created_once_and_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let made = dev_pki(&dir).unwrap();
        assert!(made.created);
        for key in [DEV_CA_KEY, DEV_SERVER_KEY, DEV_CLIENT_KEY] {
            let mode = fs::metadata(made.path(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
        let ca = CaBundle {
            cert_pem: read(DEV_CA_CERT),
            key_pem: Zeroizing::new(read(DEV_CA_KEY)),
        };
        let client = read(DEV_CLIENT_CERT);
        assert_eq!(
            describe_cert(&client).unwrap().subject_cn.as_deref(),
            Some(DEV_CLIENT_COMMON_NAME)
        );
        verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &client).unwrap();
        let server_der = CertificateDer::from_pem_slice(read(DEV_SERVER_CERT).as_bytes()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
            .build()
            .unwrap();
        for name in ["localhost", "127.0.0.1"] {
            let name = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&server_der, &[], &name, &[], UnixTime::now())
                .unwrap();
        }

        let again = dev_pki(&dir).unwrap();
        assert!(!again.created);
        assert_eq!(read(DEV_CA_CERT), ca.cert_pem);

        fs::remove_file(dir.join(DEV_SERVER_KEY)).unwrap();
        match dev_pki(&dir) {
            Err(PkiError::PartialDevPki {
                present, missing, ..
            }) => {
                assert_eq!(missing, [DEV_SERVER_KEY]);
                assert_eq!(present.len(), 5);
            }
            other => panic!("expected PartialDevPki, got {other:?}"),
        }
        assert_eq!(read(DEV_CA_CERT), ca.cert_pem);
        assert!(!dir.join(DEV_SERVER_KEY).exists());
    }
}
