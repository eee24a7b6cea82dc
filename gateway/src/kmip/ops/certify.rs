//! Certify: a certificate for a PKCS#10 request (DER or PEM) or for a Public Key object (its
//! material is X.509 SubjectPublicKeyInfo DER), signed by the gateway's issuing CA
//! (`tooling::pki::IssuingCa`, configured per gateway) and registered as a Certificate object
//! owned by the caller, with the Public Key / Certificate Links between it and its key; and
//! Re-certify, its renewal.

use super::split_material::decode_object;
use super::unique_names::name_values;
use super::{OpContext, OpError, Ops};
use crate::kmip::access::facts;
use crate::kmip::store::StoredObject;
use crate::tooling::pki::{
    CertifyTerms, IssuingCa, PkiError, Serial, SubjectField, CERTIFY_DEFAULT_VALIDITY_DAYS,
};
use bytes::Bytes;
use kmip_backends::ObjectKind;
use kmip_policy::{Decision, DenyReason, Operation as PolicyOperation};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A certificate's `not_before` is backdated by this much, so a relying party whose clock is
/// slightly behind accepts a certificate issued a moment ago.
const CERTIFY_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The request attributes that name the subject of a certificate for a bare public key.
const SUBJECT_FIELDS: &[(Tag, SubjectField)] = &[
    (tags::CERTIFICATE_SUBJECT_CN, SubjectField::CommonName),
    (tags::CERTIFICATE_SUBJECT_O, SubjectField::Organization),
    (
        tags::CERTIFICATE_SUBJECT_OU,
        SubjectField::OrganizationalUnit,
    ),
    (tags::CERTIFICATE_SUBJECT_C, SubjectField::Country),
    (tags::CERTIFICATE_SUBJECT_ST, SubjectField::State),
    (tags::CERTIFICATE_SUBJECT_L, SubjectField::Locality),
];

/// Certify's refusals: a request the CA will not sign is an invalid CSR, anything else about
/// the request an invalid field; the CA's own files were checked at start.
fn certify_error(e: PkiError) -> OpError {
    match e {
        PkiError::Parse { .. }
        | PkiError::Pem { .. }
        | PkiError::CsrSignature
        | PkiError::CsrAsksForCa
        | PkiError::UnsupportedPublicKey { .. } => OpError::InvalidCsr(e.to_string()),
        PkiError::OutlivesIssuer
        | PkiError::ValidityOrder
        | PkiError::MissingCommonName
        | PkiError::TooLarge { .. } => OpError::InvalidField(e.to_string()),
        other => OpError::Backend(kmip_backends::BackendError::Crypto(format!(
            "issuing the certificate failed: {other}"
        ))),
    }
}

fn time_of(seconds: i64) -> Result<OffsetDateTime, OpError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| OpError::InvalidField(format!("date {seconds} is out of range")))
}

/// Validity and serial: from now (backdated by the skew) to the request's Deactivation Date, or
/// [`CERTIFY_DEFAULT_VALIDITY_DAYS`] from now.
fn terms(now: i64, attributes: &[Attribute]) -> Result<CertifyTerms, OpError> {
    let start = time_of(now)?;
    let not_after = match attributes
        .iter()
        .find(|a| a.is(tags::DEACTIVATION_DATE))
        .and_then(Attribute::as_datetime)
    {
        Some(d) => time_of(d)?,
        None => start + Duration::days(CERTIFY_DEFAULT_VALIDITY_DAYS),
    };
    Ok(CertifyTerms {
        not_before: start - CERTIFY_CLOCK_SKEW,
        not_after,
        serial: Serial::random().map_err(certify_error)?,
    })
}

impl Ops {
    fn issuing_ca(&self) -> Result<&Arc<IssuingCa>, OpError> {
        self.issuing_ca.as_ref().ok_or_else(|| {
            OpError::FeatureNotSupported(
                "Certify needs an issuing CA: set [certify] ca_cert and ca_key in the \
                 gateway's configuration"
                    .into(),
            )
        })
    }

    /// The Public Key `uid` names, if the caller may read it (Get); an invisible one answers as
    /// a missing one.
    fn readable_public_key(
        &self,
        ctx: &OpContext<'_>,
        uid: &str,
    ) -> Result<Arc<StoredObject>, OpError> {
        let obj = self.live_object(uid)?;
        let current = self.access.current();
        let policy = &current.1;
        match policy.decide(
            &policy.identity(ctx.user),
            PolicyOperation::Get,
            &facts(&obj),
        ) {
            Decision::Allow => {}
            Decision::Deny(DenyReason::Invisible) => return Err(OpError::NotFound),
            Decision::Deny(DenyReason::NotPermitted) => {
                return Err(OpError::PermissionDenied(format!(
                    "the policy does not grant Get of the public key to {}",
                    ctx.user
                )))
            }
        }
        if obj.kind != ObjectKind::PublicKey {
            return Err(OpError::InvalidField(
                "Certify certifies a Public Key object; the identifier names another object type"
                    .into(),
            ));
        }
        Ok(obj)
    }

    /// The SubjectPublicKeyInfo DER of a Public Key object.
    async fn public_key_info(&self, key: &StoredObject) -> Result<Vec<u8>, OpError> {
        let format = key
            .enum_of(tags::KEY_FORMAT_TYPE)
            .map(KeyFormatType::from_u32);
        if format != Some(KeyFormatType::X509) {
            return Err(OpError::KeyFormatNotSupported);
        }
        let material = self.store.read_material(&key.uid).await?;
        Ok(material.to_vec())
    }

    /// Puts into `r` the stored Certificate Request object it names (2.x Certificate Request
    /// Unique Identifier), which the caller must be allowed to Get. Naming one and sending one
    /// is refused: which to certify would be a guess.
    async fn take_stored_request(
        &self,
        ctx: &OpContext<'_>,
        r: &mut CertifyRequest,
    ) -> Result<(), OpError> {
        let Some(uid) = r.certificate_request_unique_identifier.take() else {
            return Ok(());
        };
        if r.certificate_request.is_some() {
            return Err(OpError::InvalidField(
                "both a Certificate Request and a Certificate Request Unique Identifier".into(),
            ));
        }
        self.decide_on(ctx, PolicyOperation::Get, &uid)?;
        let obj = self.live_object(&uid)?;
        if obj.kind != ObjectKind::CertificateRequest {
            return Err(OpError::InvalidField(format!(
                "{uid} is not a Certificate Request"
            )));
        }
        let material = self.store.read_material(&uid).await?;
        if let (
            ManagedObject::CertificateRequest {
                certificate_request_type,
                value,
            },
            _,
        ) = decode_object(&uid, obj.kind, &material)?
        {
            r.certificate_request_type = Some(certificate_request_type);
            r.certificate_request = Some(value);
        }
        Ok(())
    }

    pub(super) async fn certify(
        &self,
        ctx: &mut OpContext<'_>,
        mut r: CertifyRequest,
    ) -> Result<UidResponse, OpError> {
        self.take_stored_request(ctx, &mut r).await?;
        let ca = self.issuing_ca()?.clone();
        let terms = terms(ctx.now, &r.attributes)?;
        let mut attributes = Vec::with_capacity(r.attributes.len());
        let mut subject = Vec::new();
        for a in r.attributes {
            match a.tag() {
                Some(t) if t == tags::CERTIFICATE_TYPE => {
                    if a.as_enum::<CertificateType>() != Some(CertificateType::X509) {
                        return Err(OpError::FeatureNotSupported(
                            "Certify issues X.509 certificates only".into(),
                        ));
                    }
                }
                Some(t) => match SUBJECT_FIELDS.iter().find(|(tag, _)| *tag == t) {
                    Some((_, field)) => {
                        subject.push((*field, a.as_text().unwrap_or_default().to_owned()));
                    }
                    None => attributes.push(a),
                },
                None => attributes.push(a),
            }
        }
        let (der, key) = match (r.certificate_request_type, r.certificate_request) {
            (Some(kind), Some(request)) => {
                let pem = match kind {
                    CertificateRequestType::Pkcs10 => false,
                    CertificateRequestType::Pem => true,
                    other => {
                        return Err(OpError::FeatureNotSupported(format!(
                            "Certificate Request Type {other:?}: Certify takes PKCS#10 (DER) or PEM"
                        )))
                    }
                };
                let der = ca
                    .certify_csr(&request, pem, &terms)
                    .map_err(certify_error)?;
                // A named Public Key must be the key the request certifies.
                let key = match r.unique_identifier {
                    Some(uid) => {
                        let key = self.readable_public_key(ctx, &uid)?;
                        if self.public_key_info(&key).await? != spki_of(&der)? {
                            return Err(OpError::InvalidField(
                                "the certificate request is for another key than the Public Key \
                                 the request names"
                                    .into(),
                            ));
                        }
                        Some(key)
                    }
                    None => None,
                };
                (der, key)
            }
            (None, Some(_)) => return Err(OpError::MissingData("Certificate Request Type".into())),
            (_, None) => {
                let uid = ctx.uid(r.unique_identifier)?;
                let key = self.readable_public_key(ctx, &uid)?;
                let spki = self.public_key_info(&key).await?;
                let der = ca
                    .certify_public_key(&spki, &subject, &terms)
                    .map_err(certify_error)?;
                (der, Some(key))
            }
        };
        if let Some(key) = &key {
            attributes.push(Attribute::link(&Link {
                link_type: LinkType::PublicKeyLink,
                linked_object_identifier: key.uid.to_string(),
            }));
        }
        let registered = self
            .register(
                ctx,
                RegisterRequest {
                    templates: Vec::new(),
                    object_type: ObjectType::Certificate,
                    attributes,
                    object: ManagedObject::Certificate {
                        certificate_type: CertificateType::X509,
                        value: Bytes::from(der),
                    },
                },
            )
            .await?;
        ctx.id_placeholder = Some(registered.unique_identifier.clone());
        Ok(registered)
    }

    /// The keys the Public Key Links of a certificate being registered name, each checked: a
    /// live Public Key the caller may change (its Certificate Link will point at the new
    /// certificate). A missing key and one the caller may not see are refused alike.
    pub(super) fn certificate_key_links(
        &self,
        ctx: &OpContext<'_>,
        attributes: &[Attribute],
    ) -> Result<Vec<String>, OpError> {
        let current = self.access.current();
        let policy = &current.1;
        let id = policy.identity(ctx.user);
        let mut keys = Vec::new();
        for link in attributes.iter().filter_map(Attribute::as_link) {
            if link.link_type != LinkType::PublicKeyLink {
                continue;
            }
            let uid = link.linked_object_identifier;
            let unknown = || {
                OpError::InvalidField(format!(
                    "the Public Key Link names {uid}, which is no Public Key this caller can see"
                ))
            };
            let key = self.live_object(&uid).map_err(|_| unknown())?;
            match policy.decide(&id, PolicyOperation::AddAttribute, &facts(&key)) {
                Decision::Allow => {}
                Decision::Deny(DenyReason::Invisible) => return Err(unknown()),
                Decision::Deny(DenyReason::NotPermitted) => {
                    return Err(OpError::PermissionDenied(format!(
                        "linking the certificate needs AddAttribute on the public key {uid}"
                    )))
                }
            }
            if key.kind != ObjectKind::PublicKey {
                return Err(unknown());
            }
            keys.push(uid);
        }
        Ok(keys)
    }

    /// Points the one Link of `link_type` of object `uid` at `to` (a key has one current
    /// certificate; a certificate one replacement).
    pub(super) async fn relink(
        &self,
        ctx: &mut OpContext<'_>,
        uid: &str,
        link_type: LinkType,
        to: &str,
    ) -> Result<(), OpError> {
        let link = Attribute::link(&Link {
            link_type,
            linked_object_identifier: to.to_owned(),
        });
        let now = ctx.now;
        self.update(ctx, uid, |o| {
            o.attributes
                .retain(|a| a.as_link().is_none_or(|l| l.link_type != link_type));
            o.attributes.push(link.clone());
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await
    }

    /// Re-certify: a new certificate for the key of certificate `uid` (from the request's CSR,
    /// or from the old certificate's subject and key), which takes over the old one's Names;
    /// Replacement/Replaced Links join the two and the key's Certificate Link moves to the new
    /// one. Dates come from the Offset, else from the old certificate.
    pub(super) async fn recertify(
        &self,
        ctx: &mut OpContext<'_>,
        mut r: CertifyRequest,
    ) -> Result<UidResponse, OpError> {
        self.take_stored_request(ctx, &mut r).await?;
        let ca = self.issuing_ca()?.clone();
        let uid = ctx.uid(r.unique_identifier)?;
        let old = self.live_object(&uid)?;
        if old.kind != ObjectKind::Certificate {
            return Err(OpError::InvalidField(
                "Re-certify renews a Certificate; the identifier names another object type".into(),
            ));
        }
        let mut attributes: Vec<Attribute> = r
            .attributes
            .into_iter()
            .filter(|a| !a.is(tags::CERTIFICATE_TYPE) && !a.is(tags::NAME))
            .collect();
        match r.offset {
            Some(offset) => {
                attributes.retain(|a| !a.is(tags::ACTIVATION_DATE));
                attributes.push(Attribute::datetime(
                    tags::ACTIVATION_DATE,
                    ctx.now + i64::from(offset),
                ));
            }
            None => {
                for tag in [tags::ACTIVATION_DATE, tags::DEACTIVATION_DATE] {
                    if !attributes.iter().any(|a| a.is(tag)) {
                        attributes.extend(old.first(tag));
                    }
                }
            }
        }
        let terms = terms(ctx.now, &attributes)?;
        let der = match (r.certificate_request_type, r.certificate_request) {
            (Some(CertificateRequestType::Pkcs10), Some(request)) => {
                ca.certify_csr(&request, false, &terms)
            }
            (Some(CertificateRequestType::Pem), Some(request)) => {
                ca.certify_csr(&request, true, &terms)
            }
            (Some(other), Some(_)) => {
                return Err(OpError::FeatureNotSupported(format!(
                    "Certificate Request Type {other:?}: Re-certify takes PKCS#10 (DER) or PEM"
                )))
            }
            (None, Some(_)) => return Err(OpError::MissingData("Certificate Request Type".into())),
            (_, None) => {
                let old_der = self.store.read_material(&uid).await?;
                let (spki, subject) = renewal_of(&old_der)?;
                ca.certify_public_key(&spki, &subject, &terms)
            }
        }
        .map_err(certify_error)?;
        // A key destroyed since keeps no link; register points a live one at the new certificate.
        let key = old
            .all(tags::LINK)
            .filter_map(|a| a.as_link())
            .find(|l| l.link_type == LinkType::PublicKeyLink)
            .map(|l| l.linked_object_identifier)
            .filter(|k| self.live_object(k).is_ok());
        attributes.extend(key.iter().map(|k| {
            Attribute::link(&Link {
                link_type: LinkType::PublicKeyLink,
                linked_object_identifier: k.clone(),
            })
        }));
        attributes.push(Attribute::link(&Link {
            link_type: LinkType::ReplacedObjectLink,
            linked_object_identifier: uid.clone(),
        }));
        let names: Vec<Attribute> = old.all(tags::NAME).collect();
        let _names = self.lock_names(name_values(&names)).await?;
        let registered = self
            .register(
                ctx,
                RegisterRequest {
                    templates: Vec::new(),
                    object_type: ObjectType::Certificate,
                    attributes,
                    object: ManagedObject::Certificate {
                        certificate_type: CertificateType::X509,
                        value: Bytes::from(der),
                    },
                },
            )
            .await?;
        let new_uid = registered.unique_identifier.clone();
        self.relink(ctx, &uid, LinkType::ReplacementObjectLink, &new_uid)
            .await?;
        if !names.is_empty() {
            // The Names move under their locks: no other object can take them in between.
            self.update(ctx, &uid, |o| {
                o.attributes.retain(|a| !a.is(tags::NAME));
                Ok(())
            })
            .await?;
            self.update(ctx, &new_uid, |o| {
                o.attributes.extend(names.iter().cloned());
                Ok(())
            })
            .await?;
        }
        ctx.id_placeholder = Some(new_uid);
        Ok(registered)
    }
}

/// The subject fields of a certificate's name, in the form Certify of a public key takes them.
type Subject = Vec<(SubjectField, String)>;

/// The key (SubjectPublicKeyInfo DER) and subject of a certificate to renew without a request;
/// one with alternative names is refused (they would be lost), naming the way that keeps them.
fn renewal_of(der: &[u8]) -> Result<(Vec<u8>, Subject), OpError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| OpError::InvalidField("the certificate to renew does not parse".into()))?;
    if cert.subject_alternative_name().ok().flatten().is_some() {
        return Err(OpError::FeatureNotSupported(
            "the certificate has subject alternative names: send a Certificate Request to              Re-certify it"
                .into(),
        ));
    }
    let name = cert.subject();
    let text =
        |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_owned);
    let mut subject = Vec::new();
    let mut take = |field, values: Vec<String>| {
        subject.extend(values.into_iter().map(|v| (field, v)));
    };
    take(
        SubjectField::CommonName,
        name.iter_common_name().filter_map(text).collect(),
    );
    take(
        SubjectField::Organization,
        name.iter_organization().filter_map(text).collect(),
    );
    take(
        SubjectField::OrganizationalUnit,
        name.iter_organizational_unit().filter_map(text).collect(),
    );
    take(
        SubjectField::Country,
        name.iter_country().filter_map(text).collect(),
    );
    take(
        SubjectField::State,
        name.iter_state_or_province().filter_map(text).collect(),
    );
    take(
        SubjectField::Locality,
        name.iter_locality().filter_map(text).collect(),
    );
    Ok((cert.public_key().raw.to_vec(), subject))
}

/// The SubjectPublicKeyInfo DER of a certificate this gateway just issued.
fn spki_of(der: &[u8]) -> Result<Vec<u8>, OpError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .map(|(_, c)| c.public_key().raw.to_vec())
        .map_err(|_| OpError::InvalidField("the issued certificate does not parse".into()))
}
