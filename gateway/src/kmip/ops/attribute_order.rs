//! The canonical order of a Get Attribute List answer: custom attributes, then the identifying
//! attributes (Unique Identifier first), then the rest by name. The OASIS vectors compare the
//! list in this order, and a fixed order lets clients diff two objects' lists line by line.

use kmip_wire::model::AttributeName;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Tag;

/// Standard attributes listed before the others, in this order: what identifies the object.
const LEADING: &[Tag] = &[
    tags::UNIQUE_IDENTIFIER,
    tags::SHORT_UNIQUE_IDENTIFIER,
    tags::OBJECT_TYPE,
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
];

/// Where `name` sorts: its group (custom, leading, other standard, unknown), then its rank in
/// the group (the position in [`LEADING`], else the name).
fn sort_key(name: &AttributeName) -> (u8, usize, String) {
    match name {
        AttributeName::Vendor { vendor, name } => (0, 0, format!("{vendor}-{name}")),
        AttributeName::Tag(tag) => match LEADING.iter().position(|t| t == tag) {
            Some(at) => (1, at, String::new()),
            None => (2, 0, name.v1_name().unwrap_or_default()),
        },
        AttributeName::Unknown(n) => (3, 0, n.clone()),
    }
}

/// Puts `names` into the canonical order (stable for equal keys).
pub(super) fn canonical_order(names: &mut [AttributeName]) {
    names.sort_by_cached_key(sort_key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_then_identifying_then_by_name() {
        let mut names = vec![
            AttributeName::Tag(tags::STATE),
            AttributeName::Tag(tags::CRYPTOGRAPHIC_LENGTH),
            AttributeName::from_v1_name("x-ID"),
            AttributeName::Tag(tags::ACTIVATION_DATE),
            AttributeName::Tag(tags::CRYPTOGRAPHIC_ALGORITHM),
            AttributeName::Tag(tags::OBJECT_TYPE),
            AttributeName::from_v1_name("x-Barcode"),
            AttributeName::Tag(tags::UNIQUE_IDENTIFIER),
            AttributeName::Tag(tags::DIGEST),
        ];
        canonical_order(&mut names);
        let v1: Vec<String> = names.iter().filter_map(AttributeName::v1_name).collect();
        assert_eq!(
            v1,
            [
                "x-Barcode",
                "x-ID",
                "Unique Identifier",
                "Object Type",
                "Cryptographic Algorithm",
                "Cryptographic Length",
                "Activation Date",
                "Digest",
                "State",
            ]
        );
    }
}
