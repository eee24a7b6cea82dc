//! KMIP 1.x Template objects: a named set of attributes, registered, got, located and destroyed
//! like any object. Its material is the encoded Template structure, so every backend keeps it
//! as it keeps opaque data. Templates were deprecated in KMIP 1.3 and 2.x has none: a 2.x client
//! can neither register nor get one.

use super::attribute_rules::check_is_attribute;
use super::OpError;
use bytes::Bytes;
use kmip_wire::model::{
    template_attributes, template_ttlv, Attribute, ManagedObject, ProtocolVersion,
};
use kmip_wire::ttlv::{decode, Limits};
use zeroize::Zeroizing;

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
