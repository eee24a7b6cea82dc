//! Get: an object's material from the backend, in the Key Format it was registered in (or raw /
//! transparent for symmetric keys), never for sensitive or non-extractable keys.

use super::key_wrap::served_as_stored;
use super::split_material::{check_certificate_requests_exist, decode_object};
use super::template::template_object;
use super::{OpContext, OpError, Ops};
use bytes::Bytes;
use kmip_backends::ObjectKind;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Value};

impl Ops {
    pub(super) async fn get(
        &self,
        ctx: &mut OpContext<'_>,
        r: GetRequest,
    ) -> Result<GetResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.live_object(&uid)?;
        if r.key_wrap_type.is_some() {
            return Err(OpError::FeatureNotSupported("Key Wrap Type on Get".into()));
        }
        let wrapping = match &r.key_wrapping_specification {
            Some(spec) => Some(self.wrapping(ctx, spec, &uid)?),
            None => None,
        };
        let flag = |tag: Tag| obj.first(tag).and_then(|a| a.as_bool());
        // KMIP lets a Sensitive key leave wrapped, but the backends never release its
        // material, even to wrap it: say so rather than answer as for a clear Get.
        if flag(tags::SENSITIVE) == Some(true) && wrapping.is_some() {
            return Err(OpError::FeatureNotSupported(
                "serving a Sensitive key wrapped: the backend never releases its material".into(),
            ));
        }
        if flag(tags::SENSITIVE) == Some(true) {
            return Err(OpError::Sensitive);
        }
        if flag(tags::EXTRACTABLE) == Some(false) {
            return Err(OpError::NotExtractable);
        }
        let stored_format = obj
            .enum_of(tags::KEY_FORMAT_TYPE)
            .map(KeyFormatType::from_u32)
            .unwrap_or(KeyFormatType::Raw);
        let algorithm = obj
            .first(tags::CRYPTOGRAPHIC_ALGORITHM)
            .and_then(|a| a.as_enum());
        let length = obj
            .first(tags::CRYPTOGRAPHIC_LENGTH)
            .and_then(|a| a.as_int());
        let secret_data_type = obj
            .enum_of(tags::SECRET_DATA_TYPE)
            .map(SecretDataType::from_u32)
            .unwrap_or(SecretDataType::Password);
        // Served in its stored form, a key is wrapped where it lives and never read here.
        let as_stored = wrapping.as_ref().and_then(|w| {
            Some((
                w,
                served_as_stored(obj.kind, stored_format, r.key_format_type)?,
            ))
        });
        let object = if let Some((w, format)) = as_stored {
            let (key_value, wrapping_data) = self.wrapped_by_backend(w, &uid).await?;
            let block = KeyBlock {
                key_format_type: format,
                key_compression_type: None,
                key_value,
                cryptographic_algorithm: algorithm,
                cryptographic_length: length,
                key_wrapping_data: Some(wrapping_data),
            };
            match obj.kind {
                ObjectKind::SymmetricKey => ManagedObject::SymmetricKey(block),
                ObjectKind::PublicKey => ManagedObject::PublicKey(block),
                ObjectKind::PrivateKey => ManagedObject::PrivateKey(block),
                _ => ManagedObject::SecretData {
                    secret_data_type,
                    key_block: block,
                },
            }
        } else {
            let material = self.store.read_material(&uid).await.map_err(|e| match e {
                kmip_backends::BackendError::NotExtractable(_) => OpError::NotExtractable,
                other => OpError::Backend(other),
            })?;
            let secret = SecretBytes::from_slice(&material);
            let object = match obj.kind {
                ObjectKind::Template => template_object(ctx.version, &uid, &material)?,
                ObjectKind::CertificateRequest => {
                    check_certificate_requests_exist(ctx.version)?;
                    if r.key_format_type.is_some() {
                        return Err(OpError::KeyFormatNotSupported);
                    }
                    decode_object(&uid, obj.kind, &material)?.0
                }
                // Served as registered or split: their Key Block is stored whole, in one format.
                ObjectKind::SplitKey | ObjectKind::PgpKey => {
                    let (object, _) = decode_object(&uid, obj.kind, &material)?;
                    let stored = object.key_block().map(|b| b.key_format_type);
                    if r.key_format_type.is_some_and(|f| Some(f) != stored) {
                        return Err(OpError::KeyFormatNotSupported);
                    }
                    object
                }
                ObjectKind::SymmetricKey => {
                    // Without a requested format, the key comes back as it was registered.
                    let wanted = r.key_format_type.unwrap_or(stored_format);
                    let value = match Some(wanted) {
                        None | Some(KeyFormatType::Raw) => KeyValue::Material(secret),
                        Some(KeyFormatType::TransparentSymmetricKey) => {
                            KeyValue::TransparentSymmetricKey(secret)
                        }
                        Some(_) => return Err(OpError::KeyFormatNotSupported),
                    };
                    let format = wanted;
                    ManagedObject::SymmetricKey(KeyBlock {
                        key_format_type: format,
                        key_compression_type: None,
                        key_value: value,
                        cryptographic_algorithm: algorithm,
                        cryptographic_length: length,
                        key_wrapping_data: None,
                    })
                }
                kind => {
                    let (stored_format, material) = match kind {
                        ObjectKind::PublicKey | ObjectKind::PrivateKey => {
                            super::asym::served_material(
                                kind,
                                stored_format,
                                r.key_format_type,
                                material,
                            )?
                        }
                        _ if r.key_format_type.is_some_and(|f| f != stored_format) => {
                            return Err(OpError::KeyFormatNotSupported)
                        }
                        _ => (stored_format, material),
                    };
                    let secret = SecretBytes::from_slice(&material);
                    let key_value = if is_transparent_structure(stored_format) {
                        let tree = decode(&Bytes::copy_from_slice(&material), &Limits::default())
                            .map_err(|e| {
                            OpError::Backend(kmip_backends::BackendError::Corrupt(format!(
                                "stored transparent key of {uid}: {e}"
                            )))
                        })?;
                        KeyValue::Transparent(SecretTtlv(tree))
                    } else {
                        KeyValue::Material(secret.clone())
                    };
                    let block = KeyBlock {
                        key_format_type: stored_format,
                        key_compression_type: None,
                        key_value,
                        cryptographic_algorithm: algorithm,
                        cryptographic_length: length,
                        key_wrapping_data: None,
                    };
                    match kind {
                        ObjectKind::SecretData => ManagedObject::SecretData {
                            secret_data_type,
                            key_block: block,
                        },
                        ObjectKind::PublicKey => ManagedObject::PublicKey(block),
                        ObjectKind::PrivateKey => ManagedObject::PrivateKey(block),
                        ObjectKind::OpaqueObject => ManagedObject::OpaqueObject {
                            opaque_data_type: obj
                                .enum_of(tags::OPAQUE_DATA_TYPE)
                                .unwrap_or(0x8000_0000),
                            value: secret,
                        },
                        ObjectKind::Certificate => ManagedObject::Certificate {
                            certificate_type: obj
                                .enum_of(tags::CERTIFICATE_TYPE)
                                .map(CertificateType::from_u32)
                                .unwrap_or(CertificateType::X509),
                            value: Bytes::copy_from_slice(&material),
                        },
                        ObjectKind::SymmetricKey
                        | ObjectKind::Template
                        | ObjectKind::SplitKey
                        | ObjectKind::PgpKey
                        | ObjectKind::CertificateRequest => return Err(OpError::NotFound),
                    }
                }
            };
            let mut object = object;
            if let Some(w) = &wrapping {
                match &mut object {
                    ManagedObject::SymmetricKey(block)
                    | ManagedObject::PublicKey(block)
                    | ManagedObject::PrivateKey(block)
                    | ManagedObject::SecretData {
                        key_block: block, ..
                    } => self.wrap_block(w, block).await?,
                    _ => {
                        return Err(OpError::InvalidField(
                            "only keys and Secret Data can be served wrapped".into(),
                        ))
                    }
                }
            }
            object
        };
        if flag(tags::FRESH) == Some(true) {
            // KMIP: an object stops being Fresh once it has been served to a client. The flag
            // is informational, so the Get does not wait for its durable write.
            let written = self
                .store
                .update_lazily(&uid, |o| o.set(tags::FRESH, Value::Boolean(false)))
                .await;
            ctx.written.extend(written);
        }
        ctx.id_placeholder = Some(uid.clone());
        Ok(GetResponse {
            unique_identifier: uid,
            object,
        })
    }
}

/// Key formats whose Key Material is a structure rather than a byte string.
fn is_transparent_structure(f: KeyFormatType) -> bool {
    !matches!(
        f,
        KeyFormatType::Raw
            | KeyFormatType::Opaque
            | KeyFormatType::Pkcs1
            | KeyFormatType::Pkcs8
            | KeyFormatType::X509
            | KeyFormatType::EcPrivateKey
            | KeyFormatType::Pkcs12
            | KeyFormatType::Pkcs10
            | KeyFormatType::TransparentSymmetricKey
            | KeyFormatType::Other(_)
    )
}
