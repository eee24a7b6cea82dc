//! KMIP 1.x Template objects: a named set of attributes, registered, got, located and destroyed
//! like any object. Its material is the encoded Template structure, so every backend keeps it
//! as it keeps opaque data. Templates were deprecated in KMIP 1.3 and 2.x has none: a 2.x client
//! can neither register nor get one.

use super::attribute_rules::{check_is_attribute, MULTI_VALUED};
use super::object::is_destroyed;
use super::{OpContext, OpError, Ops};
use crate::kmip::access::facts;
use bytes::Bytes;
use kmip_backends::ObjectKind;
use kmip_policy::Operation as PolicyOperation;
use kmip_wire::model::{
    template_attributes, template_ttlv, Attribute, ManagedObject, Name, ProtocolVersion,
};
use kmip_wire::ttlv::{decode, Limits};
use zeroize::Zeroizing;

/// The most Templates one attribute group may name: each costs a lookup, a policy decision and
/// a backend read, so a request cannot make the server do that without bound.
const MAX_TEMPLATE_REFERENCES: usize = 16;

impl Ops {
    /// A group's attributes with those of the Templates it names, as KMIP 1.4 §4 orders them:
    /// a later Template's single-instance attribute overrides an earlier one's, the request's own
    /// attributes override every Template's, and multi-instance attributes are the union. Using
    /// a Template is reading it, so the caller needs Get on it.
    pub(super) async fn with_templates(
        &self,
        ctx: &OpContext<'_>,
        templates: &[Name],
        attributes: Vec<Attribute>,
    ) -> Result<Vec<Attribute>, OpError> {
        if templates.is_empty() {
            return Ok(attributes);
        }
        check_templates_exist(ctx.version)?;
        if templates.len() > MAX_TEMPLATE_REFERENCES {
            return Err(OpError::InvalidField(format!(
                "at most {MAX_TEMPLATE_REFERENCES} Template references per Template-Attribute"
            )));
        }
        let mut merged = Vec::new();
        for name in templates {
            let uid = self.template_named(ctx, &name.value)?;
            self.decide_on(ctx, PolicyOperation::Get, &uid)?;
            let material = self.store.read_material(&uid).await?;
            if let ManagedObject::Template { attributes } =
                template_object(ctx.version, &uid, &material)?
            {
                overlay(&mut merged, attributes);
            }
        }
        overlay(&mut merged, attributes);
        Ok(merged)
    }

    /// The live Template the caller can see under `name`. Others' Templates stay invisible:
    /// the answer is the same as for a name nobody uses.
    fn template_named(&self, ctx: &OpContext<'_>, name: &str) -> Result<String, OpError> {
        let current = self.access.current();
        let id = current.1.identity(ctx.user);
        let mut found = self.store.by_name(name).into_iter().filter(|o| {
            o.kind == ObjectKind::Template && !is_destroyed(o) && current.1.may_see(&id, &facts(o))
        });
        match (found.next(), found.next()) {
            (Some(t), None) => Ok(t.uid.to_string()),
            (None, _) => Err(OpError::InvalidField(format!("no Template named {name:?}"))),
            (Some(_), Some(_)) => Err(OpError::InvalidField(format!(
                "more than one Template is named {name:?}"
            ))),
        }
    }
}

/// Lays `over` on `base`: `over`'s single-instance attributes replace `base`'s of the same
/// name; multi-instance ones (standard ones listed as such, and custom ones) are added unless
/// the same value is already there.
fn overlay(base: &mut Vec<Attribute>, over: Vec<Attribute>) {
    let multi = |a: &Attribute| a.tag().is_none_or(|t| MULTI_VALUED.contains(&t));
    let replaced: Vec<_> = over
        .iter()
        .filter(|a| !multi(a))
        .map(|a| a.name.clone())
        .collect();
    base.retain(|a| !replaced.contains(&a.name));
    for a in over {
        if !(multi(&a) && base.iter().any(|b| b.name == a.name && b.value == a.value)) {
            base.push(a);
        }
    }
}

/// Refuses Templates to a KMIP 2.x client, whose protocol has none.
pub(super) fn check_templates_exist(version: ProtocolVersion) -> Result<(), OpError> {
    if version.is_v2() {
        return Err(OpError::FeatureNotSupported(
            "Templates are KMIP 1.x objects; KMIP 2.x has none".into(),
        ));
    }
    Ok(())
}

/// The material a Template is stored as: its attributes, checked, as the Template structure.
pub(super) fn template_material(
    version: ProtocolVersion,
    attributes: &[Attribute],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    check_templates_exist(version)?;
    for a in attributes {
        check_is_attribute(&a.name)?;
    }
    let bytes = template_ttlv(attributes)
        .to_bytes()
        .map_err(|_| OpError::InvalidField("Template".into()))?;
    Ok(Zeroizing::new(bytes.to_vec()))
}

/// The Template object stored as `material`.
pub(super) fn template_object(
    version: ProtocolVersion,
    uid: &str,
    material: &[u8],
) -> Result<ManagedObject, OpError> {
    check_templates_exist(version)?;
    let corrupt = |what: String| {
        OpError::Backend(kmip_backends::BackendError::Corrupt(format!(
            "stored Template {uid}: {what}"
        )))
    };
    let tree = decode(&Bytes::copy_from_slice(material), &Limits::default())
        .map_err(|e| corrupt(e.to_string()))?;
    let attributes = template_attributes(&tree).map_err(|e| corrupt(e.to_string()))?;
    Ok(ManagedObject::Template { attributes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::model::{CryptographicAlgorithm, Name};
    use kmip_wire::spec::tags;

    #[test]
    fn a_template_round_trips_through_its_material_in_1x_only() {
        let attributes = vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::name(&Name::new("t")),
        ];
        let material = template_material(ProtocolVersion::V1_4, &attributes).unwrap();
        let ManagedObject::Template { attributes: back } =
            template_object(ProtocolVersion::V1_4, "u", &material).unwrap()
        else {
            panic!("not a Template");
        };
        assert_eq!(back, attributes);
        assert!(template_material(ProtocolVersion::V2_1, &attributes).is_err());
        assert!(template_object(ProtocolVersion::V2_1, "u", &material).is_err());
        assert!(template_object(ProtocolVersion::V1_4, "u", b"junk").is_err());
    }
}
