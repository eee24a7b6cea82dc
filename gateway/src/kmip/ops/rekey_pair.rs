//! ReKey Key Pair: a new key pair replacing a private key and the public key its Link names,
//! with the same algorithm, size and client attributes (those in the request win); the Names
//! move to the new keys, and Replacement/Replaced Object Links tie old and new together.

use super::attribute_rules::server_set;
use super::{OpContext, OpError, Ops};
use crate::kmip::store::StoredObject;
use kmip_backends::ObjectKind;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;

/// Attributes of a replaced key its replacement keeps: the client's, less those that belong to
/// the old key alone (Names move separately; Links and dates are the old key's own).
fn carried(old: &StoredObject) -> Vec<Attribute> {
    old.attributes()
        .filter(|a| a.name.is_attribute())
        .filter(|a| {
            a.tag().is_none_or(|t| {
                !server_set(t)
                    && ![
                        tags::NAME,
                        tags::LINK,
                        tags::ACTIVATION_DATE,
                        tags::DEACTIVATION_DATE,
                        tags::REVOCATION_REASON,
                        tags::COMPROMISE_OCCURRENCE_DATE,
                    ]
                    .contains(&t)
            })
        })
        .chain(old.first(tags::CRYPTOGRAPHIC_ALGORITHM))
        .chain(old.first(tags::CRYPTOGRAPHIC_LENGTH))
        .collect()
}

/// `base` with each attribute of `over` replacing those of its name.
fn overridden(mut base: Vec<Attribute>, over: &[Attribute]) -> Vec<Attribute> {
    for a in over {
        base.retain(|x| x.name != a.name);
        base.push(a.clone());
    }
    base
}

impl Ops {
    pub(super) async fn rekey_key_pair(
        &self,
        ctx: &mut OpContext<'_>,
        r: ReKeyKeyPairRequest,
    ) -> Result<CreateKeyPairResponse, OpError> {
        if r.offset.is_some() {
            return Err(OpError::FeatureNotSupported(
                "Offset on ReKey Key Pair: give the new keys' dates as attributes instead".into(),
            ));
        }
        let old_private_uid = ctx.uid(r.unique_identifier)?;
        let old_private = self.live_object(&old_private_uid)?;
        if old_private.kind != ObjectKind::PrivateKey {
            return Err(OpError::InvalidField(
                "ReKey Key Pair replaces a Private Key".into(),
            ));
        }
        let old_public_uid = old_private
            .all(tags::LINK)
            .filter_map(|a| a.as_link())
            .find(|l| l.link_type == LinkType::PublicKeyLink)
            .map(|l| l.linked_object_identifier)
            .ok_or_else(|| {
                OpError::InvalidField("the private key has no Public Key Link to replace".into())
            })?;
        let old_public = self.live_object(&old_public_uid)?;
        let request = CreateKeyPairRequest {
            common_templates: Vec::new(),
            private_key_templates: Vec::new(),
            public_key_templates: Vec::new(),
            common_attributes: Vec::new(),
            private_key_attributes: overridden(
                overridden(carried(&old_private), &r.common_attributes),
                &r.private_key_attributes,
            ),
            public_key_attributes: overridden(
                overridden(carried(&old_public), &r.common_attributes),
                &r.public_key_attributes,
            ),
        };
        let created = self.create_key_pair(ctx, request).await?;
        for (old, new) in [
            (&old_private, &created.private_key_unique_identifier),
            (&old_public, &created.public_key_unique_identifier),
        ] {
            self.link_replacement(ctx, old, new).await?;
        }
        ctx.id_placeholder = Some(created.private_key_unique_identifier.clone());
        Ok(created)
    }

    /// Moves `old`'s Names to `new_uid` and links the two both ways.
    async fn link_replacement(
        &self,
        ctx: &mut OpContext<'_>,
        old: &StoredObject,
        new_uid: &str,
    ) -> Result<(), OpError> {
        let names: Vec<Attribute> = old.all(tags::NAME).collect();
        let back = Attribute::link(&Link {
            link_type: LinkType::ReplacedObjectLink,
            linked_object_identifier: old.uid.to_string(),
        });
        self.update(ctx, new_uid, |o| {
            o.attributes.extend(names.iter().cloned());
            o.attributes.push(back.clone());
            Ok(())
        })
        .await?;
        let forward = Attribute::link(&Link {
            link_type: LinkType::ReplacementObjectLink,
            linked_object_identifier: new_uid.to_owned(),
        });
        let now = ctx.now;
        self.update(ctx, &old.uid, |o| {
            o.attributes.retain(|a| !a.is(tags::NAME));
            o.attributes.push(forward.clone());
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await
    }
}
