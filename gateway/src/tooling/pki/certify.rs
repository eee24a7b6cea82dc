//! Certify: certificates the gateway issues to KMIP clients, for a PKCS#10 request or a bare
//! public key, signed by the gateway's issuing CA. That CA is its own key pair, never the
//! listener's key nor a CA trusted for client logins ([`IssuingCa::check_separate`]): a
//! certificate a client obtains through Certify must not let anyone in.

use std::path::Path;

use rcgen::{
    CertificateSigningRequestParams, DistinguishedName, DnType, IsCa, PublicKeyData,
    SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::issue::{key_from_pem, load_issuer, serial_number};
use super::key_type::accepted_public_key;
use super::x509::{check_len, parse_single_cert_der, parse_x509};
use super::{CaBundle, PkiError, Serial};

/// The validity of a certificate Certify issues when the request names no Deactivation Date:
/// one year, the usual lifetime of a device certificate.
pub const CERTIFY_DEFAULT_VALIDITY_DAYS: i64 = 365;

/// The CA that signs Certify's certificates, loaded and checked.
pub struct IssuingCa {
    bundle: CaBundle,
    /// The CA certificate's validity end: no certificate it issues outlives it.
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What the certificate says besides its key and subject.
pub struct CertifyTerms {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: Serial,
}

/// The subject fields Certify of a bare public key takes from the request's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectField {
    CommonName,
    Organization,
    OrganizationalUnit,
    Country,
    State,
    Locality,
}

impl IssuingCa {
    /// Reads the CA certificate and key (PEM) and checks that they are a CA and its key.
    pub fn load(cert: &Path, key: &Path) -> Result<IssuingCa, PkiError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| PkiError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        let bundle = CaBundle {
            cert_pem: read(cert)?,
            key_pem: Zeroizing::new(read(key)?),
        };
        IssuingCa::from_bundle(bundle)
    }

    pub fn from_bundle(bundle: CaBundle) -> Result<IssuingCa, PkiError> {
        let signer = key_from_pem(&bundle.key_pem, "issuing CA")?;
        load_issuer(&bundle, &signer)?;
        let der = parse_single_cert_der(&bundle.cert_pem, "issuing CA certificate")?;
        let not_after = parse_x509(&der, "issuing CA certificate")?
            .validity()
            .not_after
            .to_datetime();
        Ok(IssuingCa { bundle, not_after })
    }

    /// Refuses an issuing CA that shares its key with the TLS listener (`listener_key_pem`) or
    /// whose certificate is among the CAs trusted for client logins (`login_ca_pems`).
    pub fn check_separate(
        &self,
        listener_key_pem: &str,
        login_ca_pems: &[String],
    ) -> Result<(), PkiError> {
        let own_key = key_from_pem(&self.bundle.key_pem, "issuing CA")?;
        let listener = key_from_pem(listener_key_pem, "listener")?;
        if own_key.subject_public_key_info() == listener.subject_public_key_info() {
            return Err(PkiError::IssuingCaShared("is the TLS listener's key"));
        }
        let own = parse_single_cert_der(&self.bundle.cert_pem, "issuing CA certificate")?;
        let own_spki = parse_x509(&own, "issuing CA certificate")?
            .public_key()
            .raw
            .to_vec();
        for pem in login_ca_pems {
            for der in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
                let same = parse_x509(&der, "login CA certificate")
                    .is_ok_and(|c| c.public_key().raw == own_spki.as_slice());
                if same {
                    return Err(PkiError::IssuingCaShared(
                        "is trusted for client logins: a certificate it issues would log in",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The latest end of validity a certificate it issues may have.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    fn check_terms(&self, terms: &CertifyTerms) -> Result<(), PkiError> {
        if terms.not_after <= terms.not_before {
            return Err(PkiError::ValidityOrder);
        }
        if terms.not_after > self.not_after {
            return Err(PkiError::OutlivesIssuer);
        }
        Ok(())
    }

    /// Issues a certificate for a PKCS#10 request (DER, or PEM when `pem`): its subject, its
    /// key and the alternative names and key usages it asks for; never a CA certificate.
    pub fn certify_csr(
        &self,
        request: &[u8],
        pem: bool,
        terms: &CertifyTerms,
    ) -> Result<Vec<u8>, PkiError> {
        check_len("CSR", request.len())?;
        self.check_terms(terms)?;
        let der = if pem {
            CertificateSigningRequestDer::from_pem_slice(request)
                .map_err(|e| super::x509::pem_error("CSR", &e))?
        } else {
            CertificateSigningRequestDer::from(request.to_vec())
        };
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .map_err(|e| PkiError::Parse {
                    what: "CSR",
                    reason: e.to_string(),
                })?;
        accepted_public_key(&parsed.certification_request_info.subject_pki)?;
        let mut csr = CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => PkiError::CsrSignature,
            other => PkiError::Parse {
                what: "CSR",
                reason: other.to_string(),
            },
        })?;
        if matches!(csr.params.is_ca, IsCa::Ca(_)) {
            return Err(PkiError::CsrAsksForCa);
        }
        let params = &mut csr.params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = terms.not_before;
        params.not_after = terms.not_after;
        params.serial_number = Some(serial_number(&terms.serial));
        params.use_authority_key_identifier_extension = true;
        let signer = key_from_pem(&self.bundle.key_pem, "issuing CA")?;
        let issuer = load_issuer(&self.bundle, &signer)?;
        Ok(csr.signed_by(&issuer)?.der().to_vec())
    }

    /// Issues a certificate for a public key (X.509 SubjectPublicKeyInfo DER) with the subject
    /// the request's attributes name.
    pub fn certify_public_key(
        &self,
        spki_der: &[u8],
        subject: &[(SubjectField, String)],
        terms: &CertifyTerms,
    ) -> Result<Vec<u8>, PkiError> {
        check_len("public key", spki_der.len())?;
        self.check_terms(terms)?;
        if !subject.iter().any(|(f, _)| *f == SubjectField::CommonName) {
            return Err(PkiError::MissingCommonName);
        }
        let (_, spki) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
                PkiError::Parse {
                    what: "public key",
                    reason: e.to_string(),
                }
            })?;
        accepted_public_key(&spki)?;
        let public_key = SubjectPublicKeyInfo::from_der(spki_der)?;
        let mut name = DistinguishedName::new();
        for (field, value) in subject {
            let ty = match field {
                SubjectField::CommonName => DnType::CommonName,
                SubjectField::Organization => DnType::OrganizationName,
                SubjectField::OrganizationalUnit => DnType::OrganizationalUnitName,
                SubjectField::Country => DnType::CountryName,
                SubjectField::State => DnType::StateOrProvinceName,
                SubjectField::Locality => DnType::LocalityName,
            };
            name.push(ty, value.as_str());
        }
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = terms.not_before;
        params.not_after = terms.not_after;
        params.serial_number = Some(serial_number(&terms.serial));
        params.use_authority_key_identifier_extension = true;
        let signer = key_from_pem(&self.bundle.key_pem, "issuing CA")?;
        let issuer = load_issuer(&self.bundle, &signer)?;
        Ok(params.signed_by(&public_key, &issuer)?.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tooling::pki::{init_ca, issue_server_cert};

    #[test]
    fn the_issuing_ca_must_be_neither_the_listener_key_nor_a_login_ca() {
        let issuing = init_ca("Issuing", 30).unwrap();
        let login = init_ca("Login", 30).unwrap();
        let listener = issue_server_cert(&login, &["localhost".into()], &[], 30).unwrap();
        let ca = IssuingCa::from_bundle(CaBundle {
            cert_pem: issuing.cert_pem.clone(),
            key_pem: issuing.key_pem.clone(),
        })
        .unwrap();
        ca.check_separate(&listener.key_pem, std::slice::from_ref(&login.cert_pem))
            .unwrap();
        let as_login = ca.check_separate(
            &listener.key_pem,
            &[login.cert_pem.clone(), issuing.cert_pem.clone()],
        );
        assert!(
            matches!(as_login, Err(PkiError::IssuingCaShared(_))),
            "{as_login:?}"
        );
        let as_listener = ca.check_separate(&issuing.key_pem, &[]);
        assert!(
            matches!(as_listener, Err(PkiError::IssuingCaShared(_))),
            "{as_listener:?}"
        );
        // A leaf is no CA: it cannot issue.
        let leaf = IssuingCa::from_bundle(CaBundle {
            cert_pem: listener.cert_pem.clone(),
            key_pem: listener.key_pem.clone(),
        });
        assert!(matches!(leaf, Err(PkiError::NotACa)), "{leaf:?}");
    }

    #[test]
    fn certificates_never_outlive_the_issuing_ca() {
        let issuing = init_ca("Issuing", 30).unwrap();
        let ca = IssuingCa::from_bundle(issuing).unwrap();
        let pair = rcgen::KeyPair::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let terms = |days| CertifyTerms {
            not_before: now,
            not_after: now + time::Duration::days(days),
            serial: Serial::random().unwrap(),
        };
        let subject = [(SubjectField::CommonName, "device".to_owned())];
        let spki = pair.subject_public_key_info();
        assert!(ca.certify_public_key(&spki, &subject, &terms(10)).is_ok());
        assert!(matches!(
            ca.certify_public_key(&spki, &subject, &terms(31)),
            Err(PkiError::OutlivesIssuer)
        ));
        assert!(matches!(
            ca.certify_public_key(&spki, &[], &terms(10)),
            Err(PkiError::MissingCommonName)
        ));
    }

    #[test]
    fn a_csr_asking_for_a_ca_certificate_is_refused() {
        let issuing = init_ca("Issuing", 30).unwrap();
        let ca = IssuingCa::from_bundle(issuing).unwrap();
        let pair = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["sub.example".to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let csr = params.serialize_request(&pair).unwrap();
        let now = OffsetDateTime::now_utc();
        let terms = CertifyTerms {
            not_before: now,
            not_after: now + time::Duration::days(1),
            serial: Serial::random().unwrap(),
        };
        let refused = ca.certify_csr(csr.der(), false, &terms);
        assert!(
            matches!(refused, Err(PkiError::CsrAsksForCa)),
            "{refused:?}"
        );
        let plain = rcgen::CertificateParams::new(vec!["leaf.example".to_owned()])
            .unwrap()
            .serialize_request(&pair)
            .unwrap();
        let der = ca.certify_csr(plain.der(), false, &terms).unwrap();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        assert!(!cert.is_ca());
    }
}
