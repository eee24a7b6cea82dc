//! Issuing: the root CA, leaf certificates (client, server, from a CSR or with a new key), the
//! listener's CSR and CRLs. rcgen builds and signs; every input is checked first.

use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateSigningRequestDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::common_name::{check_common_name, subject_common_name};
use super::key_type::{accepted_public_key, KeyType};
use super::x509::{check_len, parse_single_cert_der, parse_x509, pem_error, subject_key_id};
use super::{
    CaBundle, CertProfile, IssueOptions, IssuedCert, PkiError, Serial, ServerCsr, MAX_CRL_ENTRIES,
    MAX_DNS_NAME_LEN, MAX_SUBJECT_ALT_NAMES, MAX_VALIDITY_DAYS,
};

/// `not_before` is backdated by this much so a peer whose clock runs slightly
/// behind still accepts a certificate issued a moment ago.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);
/// Common Name of a server certificate that has no DNS name to borrow one from.
const DEFAULT_SERVER_COMMON_NAME: &str = "kmip-gateway";

/// Creates a self-signed root CA with a P-256 key (see [`init_ca_with_key`]).
pub fn init_ca(common_name: &str, validity_days: u32) -> Result<CaBundle, PkiError> {
    init_ca_with_key(common_name, validity_days, KeyType::default())
}

/// Creates a self-signed root CA allowed to sign certificates and CRLs, with no
/// room for intermediates (path length 0), with a key of `key_type`. It signs leaves of any
/// key type: the signature follows the CA's key, the leaf keeps its own.
pub fn init_ca_with_key(
    common_name: &str,
    validity_days: u32,
    key_type: KeyType,
) -> Result<CaBundle, PkiError> {
    check_common_name(common_name)?;
    let (not_before, not_after) = validity_from_now(validity_days)?;
    let key = key_type.generate()?;
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
/// certificate may do. The CSR's key may be RSA (2048 to 8192 bits), EC P-256 or P-384, or
/// Ed25519, whatever the CA's key: anything else the listener could not verify, so
/// it is refused here rather than issued as a certificate that never logs in.
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
    let info = &csr.certification_request_info;
    // Before the signature: a key the verifier cannot use would only be reported as a bad signature.
    accepted_public_key(&info.subject_pki)?;
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let common_name = subject_common_name(&info.subject)?;
    let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)?;

    let key = key_from_pem(&ca.key_pem, "CA")?;
    let issuer = load_issuer(ca, &key)?;
    let mut params = leaf_params(Some(common_name), not_before, not_after, serial);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&public_key, &issuer)?;
    Ok(cert.pem())
}

/// Issues the listener's certificate with a new P-256 key pair (see [`issue_server_cert_with_key`]).
pub fn issue_server_cert(
    ca: &CaBundle,
    dns_names: &[String],
    ip_addrs: &[IpAddr],
    validity_days: u32,
) -> Result<IssuedCert, PkiError> {
    issue_server_cert_with_key(ca, dns_names, ip_addrs, validity_days, KeyType::default())
}

/// Issues the listener's certificate with a new key pair of `key_type`; the listener offers the
/// TLS 1.2 suites of that key type (`front::tls::suites`).
pub fn issue_server_cert_with_key(
    ca: &CaBundle,
    dns_names: &[String],
    ip_addrs: &[IpAddr],
    validity_days: u32,
    key_type: KeyType,
) -> Result<IssuedCert, PkiError> {
    check_alt_names(dns_names, ip_addrs)?;
    let mut options = IssueOptions::new(
        Some(server_common_name(dns_names, ip_addrs)),
        CertProfile::Server {
            dns_names: dns_names.to_vec(),
            ip_addrs: ip_addrs.to_vec(),
        },
        validity_days,
    )?;
    options.key_type = key_type;
    issue_cert(ca, &options)
}

/// A P-256 key pair and CSR for the listener's certificate (see [`server_csr_with_key`]).
pub fn server_csr(dns_names: &[String], ip_addrs: &[IpAddr]) -> Result<ServerCsr, PkiError> {
    server_csr_with_key(dns_names, ip_addrs, KeyType::default())
}

/// A key pair of `key_type` and CSR for the listener's certificate, for operators whose CA is
/// not this tool.
pub fn server_csr_with_key(
    dns_names: &[String],
    ip_addrs: &[IpAddr],
    key_type: KeyType,
) -> Result<ServerCsr, PkiError> {
    check_alt_names(dns_names, ip_addrs)?;
    let key = key_type.generate()?;
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
    let ca_key = key_from_pem(&ca.key_pem, "CA")?;
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
    let key = options.key_type.generate()?;
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
    let key = key_from_pem(&ca.key_pem, "CA")?;
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

pub(super) fn validity_from_now(
    validity_days: u32,
) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
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

fn subject(common_name: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    if let Some(cn) = common_name {
        name.push(DnType::CommonName, cn);
    }
    name
}

pub(super) fn serial_number(serial: &Serial) -> SerialNumber {
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

pub(super) fn key_from_pem(
    key_pem: &str,
    what: &'static str,
) -> Result<Zeroizing<KeyPair>, PkiError> {
    check_len("private key", key_pem.len())?;
    let der = Zeroizing::new(
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| pem_error(what, &e))?,
    );
    let key = KeyPair::try_from(&*der).map_err(|_| PkiError::Key { what })?;
    Ok(Zeroizing::new(key))
}

/// The CA as an rcgen issuer, after checking that the certificate is a CA and that
/// the key is its key (a mismatched pair would sign certificates nothing verifies).
pub(super) fn load_issuer<'k>(
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
