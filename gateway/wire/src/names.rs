//! Name lookups over the generated tables of [`crate::spec`]: tag ↔ KMIP XML name, tag ↔
//! specification name (as 1.x `Attribute Name` values spell it), and the enumeration or bit mask
//! that gives names to a tag's values.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::spec::{EnumDef, TagInfo, ENUMS, MASKS, TAGS};
use crate::ttlv::Tag;

/// The entry of `tag` in the specification tables (binary search: `TAGS` is sorted by value).
pub fn tag_info(tag: Tag) -> Option<&'static TagInfo> {
    TAGS.binary_search_by_key(&tag, |t| t.tag)
        .ok()
        .map(|i| &TAGS[i])
}

/// KMIP XML name of a tag, e.g. `UniqueIdentifier`; `None` for tags the specifications do not
/// define (extensions `0x54xxxx`, unknown values).
pub fn tag_name(tag: Tag) -> Option<&'static str> {
    tag_info(tag).map(|t| t.xml_name)
}

/// Tag of a KMIP XML name, e.g. `UniqueIdentifier` → `0x420094`.
pub fn tag_by_name(name: &str) -> Option<Tag> {
    static INDEX: OnceLock<HashMap<&'static str, Tag>> = OnceLock::new();
    INDEX
        .get_or_init(|| TAGS.iter().map(|t| (t.xml_name, t.tag)).collect())
        .get(name)
        .copied()
}

/// Tag of a name as the specification writes it, e.g. `Cryptographic Algorithm`: the form KMIP 1.x
/// uses in `Attribute Name`.
pub fn tag_by_spec_name(name: &str) -> Option<Tag> {
    static INDEX: OnceLock<HashMap<&'static str, Tag>> = OnceLock::new();
    INDEX
        .get_or_init(|| TAGS.iter().map(|t| (t.spec_name, t.tag)).collect())
        .get(name)
        .copied()
}

/// Writes a tag the way the KMIP XML encoding writes unnamed tags: `0x` and six hex digits.
pub fn tag_hex(tag: Tag) -> String {
    format!("0x{:06x}", tag.0)
}

/// Parses `0x42ffff` (any case, 1–6 hex digits).
pub fn parse_tag_hex(s: &str) -> Option<Tag> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 6 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(Tag)
}

/// An enumeration or bit mask definition by its XML name (binary search: the tables are sorted by
/// name).
pub fn enum_def(name: &str) -> Option<&'static EnumDef> {
    ENUMS
        .binary_search_by(|e| e.name.cmp(name))
        .ok()
        .map(|i| &ENUMS[i])
}

/// A bit mask definition by its XML name.
pub fn mask_def(name: &str) -> Option<&'static EnumDef> {
    MASKS
        .binary_search_by(|e| e.name.cmp(name))
        .ok()
        .map(|i| &MASKS[i])
}

/// How the values of an Enumeration with a given tag are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumNames {
    /// Values named by an enumeration table.
    Table(&'static EnumDef),
    /// Values are tags, named by their XML names (KMIP 2.x `Attribute Reference`).
    Tags,
}

impl EnumNames {
    /// The preferred name of `value` (the 2.x spelling when 1.x and 2.x differ).
    pub fn name_of(self, value: u32) -> Option<&'static str> {
        match self {
            EnumNames::Table(def) => def
                .values
                .iter()
                .find(|(_, v)| *v == value)
                .map(|(n, _)| *n),
            EnumNames::Tags => tag_name(Tag(value)),
        }
    }

    /// The value of a name (any version's spelling).
    pub fn value_of(self, name: &str) -> Option<u32> {
        match self {
            EnumNames::Table(def) => def.values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            EnumNames::Tags => tag_by_name(name).map(|t| t.0),
        }
    }
}

/// The names of an Enumeration's values when it carries `tag`. Most tags share their XML name
/// with their enumeration; the exceptions are listed here.
pub fn enum_names_for_tag(tag: Tag) -> Option<EnumNames> {
    let name = tag_name(tag)?;
    let def_name = match name {
        "AttributeReference" => return Some(EnumNames::Tags),
        "MaskGeneratorHashingAlgorithm" => "HashingAlgorithm",
        other => other,
    };
    enum_def(def_name).map(EnumNames::Table)
}

/// The bit mask naming an Integer's flags when it carries `tag` (e.g. `CryptographicUsageMask`).
pub fn mask_for_tag(tag: Tag) -> Option<&'static EnumDef> {
    mask_def(tag_name(tag)?)
}

/// Splits a mask value into flag names, preferring the first name of each bit; bits without a
/// name are returned as the remainder.
pub fn mask_flags(def: &'static EnumDef, value: u32) -> (Vec<&'static str>, u32) {
    let mut names = Vec::new();
    let mut rest = value;
    for (name, bit) in def.values {
        if rest & bit != 0 {
            names.push(*name);
            rest &= !bit;
        }
    }
    (names, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tags;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(TAGS.windows(2).all(|w| w[0].tag < w[1].tag));
        assert!(ENUMS.windows(2).all(|w| w[0].name < w[1].name));
        assert!(MASKS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn every_tag_name_maps_back_to_its_tag() {
        for t in TAGS {
            assert_eq!(tag_by_name(t.xml_name), Some(t.tag), "{}", t.xml_name);
            assert_eq!(tag_name(t.tag), Some(t.xml_name));
        }
    }

    #[test]
    fn names_follow_the_xml_profile_normalisation() {
        assert_eq!(tag_name(tags::UNIQUE_IDENTIFIER), Some("UniqueIdentifier"));
        assert_eq!(tag_name(tags::IV_COUNTER_NONCE), Some("IVCounterNonce"));
        assert_eq!(
            tag_by_spec_name("Cryptographic Usage Mask"),
            Some(tags::CRYPTOGRAPHIC_USAGE_MASK)
        );
        let ops = enum_names_for_tag(tags::OPERATION).unwrap();
        assert_eq!(ops.value_of("ReKey"), Some(0x0000_0004));
        let alg = enum_names_for_tag(tags::CRYPTOGRAPHIC_ALGORITHM).unwrap();
        assert_eq!(alg.value_of("HMAC_SHA256"), Some(9));
        assert_eq!(alg.value_of("DES3"), Some(2));
        assert_eq!(alg.name_of(3), Some("AES"));
        assert_eq!(tag_name(Tag(0x54_0001)), None);
    }

    #[test]
    fn special_enumerations() {
        let r = enum_names_for_tag(tags::ATTRIBUTE_REFERENCE).unwrap();
        assert_eq!(r.value_of("State"), Some(tags::STATE.0));
        assert_eq!(r.name_of(tags::STATE.0), Some("State"));
        let h = enum_names_for_tag(tags::MASK_GENERATOR_HASHING_ALGORITHM).unwrap();
        assert_eq!(h.value_of("SHA_256"), Some(6));
        let f = enum_names_for_tag(tags::PKCS_11_FUNCTION).unwrap();
        assert_eq!(f.value_of("C_Initialize"), Some(1));
        assert_eq!(f.value_of("C_GetInfo"), Some(3));
        let m = enum_names_for_tag(tags::MASK_GENERATOR).unwrap();
        assert_eq!(m.value_of("MGF1"), Some(1));
        let o = enum_names_for_tag(tags::OBJECT_TYPE).unwrap();
        assert_eq!(o.value_of("Template"), Some(6));
    }

    #[test]
    fn masks_split_into_flags_and_remainder() {
        let m = mask_for_tag(tags::CRYPTOGRAPHIC_USAGE_MASK).unwrap();
        assert_eq!(mask_flags(m, 0x0C), (vec!["Encrypt", "Decrypt"], 0));
        assert_eq!(mask_flags(m, 0x8000_0004), (vec!["Encrypt"], 0x8000_0000));
    }

    #[test]
    fn hex_tags() {
        assert_eq!(parse_tag_hex("0x540001"), Some(Tag(0x54_0001)));
        assert_eq!(parse_tag_hex("0x1234567"), None);
        assert_eq!(parse_tag_hex("540001"), None);
        assert_eq!(tag_hex(Tag(0x42_ffff)), "0x42ffff");
    }
}
