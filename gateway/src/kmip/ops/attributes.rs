//! Get Attributes, Get Attribute List and the attribute writes (Add, Modify, Delete, Set), with
//! the Digest of generated keys derived when asked for.

use super::attribute_order::canonical_order;
use super::attribute_rules::{
    check_client_writable, check_is_attribute, instance_position, reportable, with_indexes,
    MULTI_VALUED,
};
use super::object::{digest_attr, is_destroyed};
use super::server_attributes::server_attributes;
use super::unique_names::name_values;
use super::{OpContext, OpError, Ops};
use crate::kmip::store::StoredObject;
use kmip_backends::ObjectKind;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};

impl Ops {
    pub(super) async fn get_attributes(
        &self,
        ctx: &mut OpContext<'_>,
        r: GetAttributesRequest,
    ) -> Result<GetAttributesResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.object(&uid)?;
        let digest = AttributeName::Tag(tags::DIGEST);
        let derived = if r.names.is_empty() || r.names.contains(&digest) {
            self.derived_digest(&obj).await
        } else {
            None
        };
        let mut attributes: Vec<Attribute> = if r.names.is_empty() {
            obj.attributes().collect()
        } else {
            // An attribute the object does not have is simply absent (vCenter asks for custom
            // attributes before it sets them).
            r.names
                .iter()
                .flat_map(|n| obj.find(n).collect::<Vec<_>>())
                .collect()
        };
        attributes.extend(derived);
        let in_hardware = self.store.backend().keeps_material_in_hardware();
        attributes.extend(
            server_attributes(&obj, in_hardware)
                .into_iter()
                .filter(|a| r.names.is_empty() || r.names.contains(&a.name)),
        );
        let attributes: Vec<Attribute> = attributes
            .into_iter()
            .filter(|a| reportable(&a.name, ctx.version))
            .collect();
        ctx.id_placeholder = Some(uid.clone());
        Ok(GetAttributesResponse {
            unique_identifier: uid,
            attributes: with_indexes(attributes, ctx.version),
        })
    }

    pub(super) fn get_attribute_list(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<GetAttributeListResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.object(&uid)?;
        let mut names: Vec<AttributeName> = Vec::new();
        for a in obj.attributes() {
            if reportable(&a.name, ctx.version) && !names.contains(&a.name) {
                names.push(a.name.clone());
            }
        }
        if digest_derivable(&obj) {
            names.push(AttributeName::Tag(tags::DIGEST));
        }
        let in_hardware = self.store.backend().keeps_material_in_hardware();
        names.extend(
            server_attributes(&obj, in_hardware)
                .into_iter()
                .map(|a| a.name)
                .filter(|n| reportable(n, ctx.version)),
        );
        canonical_order(&mut names);
        ctx.id_placeholder = Some(uid.clone());
        Ok(GetAttributeListResponse {
            unique_identifier: uid,
            names,
        })
    }

    pub(super) async fn add_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: AttributeRequest,
    ) -> Result<AttributeResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        let a = r.attribute;
        check_is_attribute(&a.name)?;
        check_client_writable(&target, &a.name)?;
        let _names = self.lock_names(name_values([&a])).await?;
        if a.is(tags::NAME) {
            self.check_name_unique(ctx, &a, None)?;
        }
        let now = ctx.now;
        let echoed = self
            .update(ctx, &uid, |o| {
                let multi = a.tag().is_none_or(|t| MULTI_VALUED.contains(&t));
                let existing = o.find(&a.name).count();
                if existing > 0 && (!multi || a.tag().is_none()) {
                    return Err(OpError::SingleValued(a.name.v1_name().unwrap_or_default()));
                }
                let added = Attribute {
                    index: if existing > 0 {
                        Some(existing as i32)
                    } else {
                        None
                    },
                    ..a.clone()
                };
                o.attributes.push(Attribute {
                    index: None,
                    ..added.clone()
                });
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(added)
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(AttributeResponse {
            unique_identifier: uid,
            attribute: Some(echoed),
        })
    }

    pub(super) async fn modify_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: ModifyAttributeRequest,
    ) -> Result<AttributeResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        let new = r.attribute;
        check_is_attribute(&new.name)?;
        check_client_writable(&target, &new.name)?;
        let _names = self.lock_names(name_values([&new])).await?;
        if new.is(tags::NAME) {
            self.check_name_unique(ctx, &new, Some(&uid))?;
        }
        let now = ctx.now;
        let current = r.current;
        let echoed = self
            .update(ctx, &uid, |o| {
                let at = instance_position(o, &new.name, current.as_ref(), new.index)?;
                o.attributes[at].value = new.value.clone();
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(new.clone())
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(AttributeResponse {
            unique_identifier: uid,
            attribute: Some(echoed),
        })
    }

    pub(super) async fn delete_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: DeleteAttributeRequest,
    ) -> Result<AttributeResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        check_client_writable(&target, &r.name)?;
        let now = ctx.now;
        let removed = self
            .update(ctx, &uid, |o| {
                let at = instance_position(o, &r.name, r.current.as_ref(), r.index)?;
                let removed = o.attributes.remove(at);
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(removed)
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(AttributeResponse {
            unique_identifier: uid,
            attribute: Some(removed),
        })
    }

    pub(super) async fn set_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: AttributeRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        let a = r.attribute;
        check_is_attribute(&a.name)?;
        check_client_writable(&target, &a.name)?;
        if a.tag().is_some_and(|t| MULTI_VALUED.contains(&t)) {
            return Err(OpError::InvalidField(
                "Set Attribute applies to single-valued attributes only".into(),
            ));
        }
        let now = ctx.now;
        self.update(ctx, &uid, |o| {
            o.attributes.retain(|x| x.name != a.name);
            o.attributes.push(Attribute {
                index: None,
                ..a.clone()
            });
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    /// The Digest of a generated key, which only the backend has seen: derived from the
    /// material when asked for rather than stored, so a Create is one durable write.
    async fn derived_digest(&self, obj: &StoredObject) -> Option<Attribute> {
        if !digest_derivable(obj) {
            return None;
        }
        match self.store.read_material(&obj.uid).await {
            Ok(material) => Some(digest_attr(&material, KeyFormatType::Raw)),
            Err(e) => {
                tracing::warn!(uid = %obj.uid, error = %e, "Digest not derived");
                None
            }
        }
    }
}

/// Whether a Digest can be derived for `obj`: a live generated key the backend may return.
fn digest_derivable(obj: &StoredObject) -> bool {
    let flag = |tag: Tag| obj.first(tag).and_then(|a| a.as_bool());
    obj.kind == ObjectKind::SymmetricKey
        && obj.first(tags::DIGEST).is_none()
        && !is_destroyed(obj)
        && flag(tags::EXTRACTABLE) != Some(false)
        && flag(tags::SENSITIVE) != Some(true)
}
