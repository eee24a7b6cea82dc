//! Protocol versions and version gating: which tags a given KMIP version defines.

use super::codec::{self, Node};
use super::error::ModelError;
use crate::spec::{tags, TAGS, V2_ONLY_ENUM_VALUES};
use crate::ttlv::{Tag, Ttlv};

/// A KMIP protocol version. Ordered by (major, minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    pub major: i32,
    pub minor: i32,
}

impl ProtocolVersion {
    pub const V1_0: ProtocolVersion = ProtocolVersion::new(1, 0);
    pub const V1_1: ProtocolVersion = ProtocolVersion::new(1, 1);
    pub const V1_2: ProtocolVersion = ProtocolVersion::new(1, 2);
    pub const V1_3: ProtocolVersion = ProtocolVersion::new(1, 3);
    pub const V1_4: ProtocolVersion = ProtocolVersion::new(1, 4);
    pub const V2_0: ProtocolVersion = ProtocolVersion::new(2, 0);
    pub const V2_1: ProtocolVersion = ProtocolVersion::new(2, 1);

    /// Every version this model can encode, newest first (the order Discover Versions answers in).
    pub const ALL: [ProtocolVersion; 7] = [
        ProtocolVersion::V2_1,
        ProtocolVersion::V2_0,
        ProtocolVersion::V1_4,
        ProtocolVersion::V1_3,
        ProtocolVersion::V1_2,
        ProtocolVersion::V1_1,
        ProtocolVersion::V1_0,
    ];

    pub const fn new(major: i32, minor: i32) -> ProtocolVersion {
        ProtocolVersion { major, minor }
    }

    /// KMIP 2.x: attributes travel as tagged items in an `Attributes` structure.
    pub fn is_v2(self) -> bool {
        self.major >= 2
    }

    pub fn is_known(self) -> bool {
        ProtocolVersion::ALL.contains(&self)
    }

    pub(crate) fn read(node: &Node<'_>) -> Result<ProtocolVersion, ModelError> {
        node.structure()?;
        Ok(ProtocolVersion {
            major: node.req(tags::PROTOCOL_VERSION_MAJOR)?.int()?,
            minor: node.req(tags::PROTOCOL_VERSION_MINOR)?.int()?,
        })
    }

    pub fn from_ttlv(ttlv: &Ttlv) -> Result<ProtocolVersion, ModelError> {
        ProtocolVersion::read(&Node::new(ttlv, codec::tag_label(ttlv.tag)))
    }

    pub fn to_ttlv(self) -> Ttlv {
        codec::structure(
            tags::PROTOCOL_VERSION,
            vec![
                codec::int(tags::PROTOCOL_VERSION_MAJOR, self.major),
                codec::int(tags::PROTOCOL_VERSION_MINOR, self.minor),
            ],
        )
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// First 1.x minor version defining each range of 1.x tags. The specifications shipped here
/// (1.4, 2.1) do not say when a tag appeared; each 1.x version appended its tags to the end of the
/// tag table, and these are the boundaries of the 1.1, 1.2 and 1.3 tables (1.1 starts with Device
/// Identifier, 1.2 with Key Value Location, 1.3 with Offset Items, 1.4 with Key Wrap Type).
const V1_TAG_RANGES: [(u32, u32, i32); 4] = [
    (0x4200A2, 0x4200B7, 1),
    (0x4200B8, 0x4200D3, 2),
    (0x4200D4, 0x4200F7, 3),
    (0x4200F8, 0x420123, 4),
];

/// First 1.x minor version that defines `tag` (0 for KMIP 1.0 tags).
fn v1_minor_introduced(tag: Tag) -> i32 {
    V1_TAG_RANGES
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&tag.0))
        .map_or(0, |(_, _, minor)| *minor)
}

/// Whether KMIP `version` defines `tag`. Unknown tags (extensions, `0x54xxxx`) are never defined:
/// a response must not carry them.
pub fn tag_defined(tag: Tag, version: ProtocolVersion) -> bool {
    let Some(info) = TAGS.iter().find(|t| t.tag == tag) else {
        return false;
    };
    if version.is_v2() {
        info.v2
    } else {
        info.v1 && version.minor >= v1_minor_introduced(tag)
    }
}

/// Whether KMIP `version` defines `value` for the Enumeration carried by `tag`: for 1.x, every
/// value but those only the 2.1 specification lists ([`crate::spec::V2_ONLY_ENUM_VALUES`]). Not
/// judged here (`true`): 2.x, values no table names (extensions), tags with no table.
pub fn enum_value_defined(tag: Tag, value: u32, version: ProtocolVersion) -> bool {
    if version.is_v2() {
        return true;
    }
    match crate::names::enum_names_for_tag(tag) {
        Some(crate::names::EnumNames::Table(def)) => V2_ONLY_ENUM_VALUES
            .binary_search(&(def.name, value))
            .is_err(),
        _ => true,
    }
}

/// The last Operation code each KMIP 1.x minor version defines: 1.0 ends with Put, 1.1 adds
/// Re-key Key Pair and Discover Versions, 1.2 the cryptographic operations up to Join Split Key,
/// 1.4 Import and Export (1.3 adds none).
const V1_LAST_OPERATION: [u32; 5] = [0x1C, 0x1E, 0x29, 0x29, 0x2B];

/// Whether KMIP `version` defines the operation `code` (every code in 2.x).
pub fn operation_defined(code: u32, version: ProtocolVersion) -> bool {
    if version.is_v2() {
        return true;
    }
    let last = usize::try_from(version.minor)
        .ok()
        .and_then(|m| V1_LAST_OPERATION.get(m))
        .or(V1_LAST_OPERATION.last());
    last.is_some_and(|last| code <= *last)
}

/// Removes, recursively, every item whose tag `version` does not define.
pub fn prune_undefined(ttlv: &mut Ttlv, version: ProtocolVersion) {
    if let crate::ttlv::Value::Structure(items) = &mut ttlv.value {
        items.retain(|t| tag_defined(t.tag, version));
        for item in items {
            prune_undefined(item, version);
        }
    }
}
