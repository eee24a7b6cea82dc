//! What Query says about the server beyond its operations: the profiles it conforms to, its
//! capabilities and its server information. One table each, read by Query and by the test that
//! holds README.md's "KMIP support" section to them, so the three never disagree.

use kmip_wire::model::ProtocolVersion;
use kmip_wire::names::enum_names_for_tag;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};

/// A KMIP profile this server conforms to: its Profile Name in each protocol line. README.md's
/// table names the OASIS mandatory vector family that proves each (`tests/tests/conformance.rs`
/// holds that every family there passes).
pub(crate) struct Profile {
    /// The Profile Name enumeration answered to a KMIP 1.x client (`None`: not claimed in 1.x).
    pub(crate) v1: Option<&'static str>,
    /// The Profile Name enumeration answered to a KMIP 2.x client (`None`: not claimed in 2.x).
    pub(crate) v2: Option<&'static str>,
}

/// The profiles whose every mandatory vector passes on every backend. A profile is added here
/// only together with its family in the conformance test's required list.
pub(crate) const PROFILES: &[Profile] = &[
    Profile {
        v1: None,
        v2: Some("BaselineServer"),
    },
    Profile {
        v1: Some("SymmetricKeyLifecycleServerKMIPV1_4"),
        v2: Some("SymmetricKeyLifecycleServer"),
    },
    Profile {
        v1: Some("OpaqueManagedObjectStoreServerKMIPV1_4"),
        v2: None,
    },
    Profile {
        v1: Some("StorageArrayWithSelfEncryptingDriveServerKMIPV1_4"),
        v2: Some("StorageArrayWithSelfEncryptingDriveServer"),
    },
    Profile {
        v1: Some("AsymmetricKeyLifecycleServerKMIPV1_4"),
        v2: Some("AsymmetricKeyLifecycleServer"),
    },
    Profile {
        v1: Some("SymmetricKeyFoundryServerKMIPV1_4"),
        v2: Some("SymmetricKeyFoundryServer"),
    },
    Profile {
        v1: Some("RNGCryptographicServerKMIPV1_4"),
        v2: Some("RNGCryptographicServer"),
    },
    // TL-M-3-14 contradicts itself (`tests/tests/conformance.rs`): claimed in 2.x only.
    Profile {
        v1: None,
        v2: Some("TapeLibraryServer"),
    },
    Profile {
        v1: None,
        v2: Some("AESXTSServer"),
    },
    Profile {
        v1: None,
        v2: Some("QuantumSafeServer"),
    },
    Profile {
        v1: None,
        v2: Some("PKCS_11Server"),
    },
];

/// The Profile Version a 2.x Profile Information names: the version the profiles were tested at.
const PROFILE_VERSION: (i32, i32) = (2, 1);

/// The Profile Name of `p` for a client of `version`.
pub(crate) fn profile_name(p: &Profile, version: ProtocolVersion) -> Option<&'static str> {
    if version.is_v2() {
        p.v2
    } else {
        p.v1
    }
}

/// The Query Profiles answer: one Profile Information per profile claimed in `version`'s line.
/// Profile Information exists from KMIP 1.3; the model prunes it for older clients.
pub(super) fn profile_information(version: ProtocolVersion) -> Vec<Ttlv> {
    let Some(names) = enum_names_for_tag(tags::PROFILE_NAME) else {
        return Vec::new();
    };
    PROFILES
        .iter()
        .filter_map(|p| profile_name(p, version))
        .filter_map(|name| names.value_of(name))
        .map(|code| {
            let mut fields = vec![Ttlv::new(tags::PROFILE_NAME, Value::Enumeration(code))];
            if version.is_v2() {
                let (major, minor) = PROFILE_VERSION;
                fields.push(Ttlv::structure(
                    tags::PROFILE_VERSION,
                    vec![
                        Ttlv::new(tags::PROFILE_VERSION_MAJOR, Value::Integer(major)),
                        Ttlv::new(tags::PROFILE_VERSION_MINOR, Value::Integer(minor)),
                    ],
                ));
            }
            Ttlv::structure(tags::PROFILE_INFORMATION, fields)
        })
        .collect()
}

/// What the server can do, as Capability Information states it (KMIP 2.x): Encrypt and Decrypt
/// stream (Init/Final Indicator, Correlation Value: `stream.rs`) where the backend can (not
/// through the KMIP proxy backend), every operation answers at
/// once (no asynchronous answers), no attestation, Undo and Continue
/// batches are honoured, and Destroy deletes the key material (the vault and the token shred it;
/// PostgreSQL's old row versions are certainly unreadable only once the KEK is rotated away, so
/// the answer claims deletion, which holds on every backend).
const CAPABILITIES: &[(Tag, CapabilityValue)] = &[
    (tags::STREAMING_CAPABILITY, CapabilityValue::BackendStreams),
    (tags::ASYNCHRONOUS_CAPABILITY, CapabilityValue::Flag(false)),
    (tags::ATTESTATION_CAPABILITY, CapabilityValue::Flag(false)),
    (tags::BATCH_UNDO_CAPABILITY, CapabilityValue::Flag(true)),
    (tags::BATCH_CONTINUE_CAPABILITY, CapabilityValue::Flag(true)),
    (
        tags::DESTROY_ACTION,
        CapabilityValue::Named("KeyMaterialDeleted"),
    ),
];

/// A Capability Information field's value.
enum CapabilityValue {
    Flag(bool),
    /// Whether the backend streams multi-part operations.
    BackendStreams,
    /// An enumeration, by its specification name.
    Named(&'static str),
}

/// The Query Capabilities answer (2.x; pruned for 1.x clients).
pub(super) fn capability_information(backend_streams: bool) -> Ttlv {
    let fields = CAPABILITIES
        .iter()
        .filter_map(|(tag, v)| {
            let value = match v {
                CapabilityValue::Flag(b) => Value::Boolean(*b),
                CapabilityValue::BackendStreams => Value::Boolean(backend_streams),
                CapabilityValue::Named(name) => {
                    Value::Enumeration(enum_names_for_tag(*tag)?.value_of(name)?)
                }
            };
            Some(Ttlv::new(*tag, value))
        })
        .collect();
    Ttlv::structure(tags::CAPABILITY_INFORMATION, fields)
}

/// The product named in Server Information.
pub(crate) const PRODUCT_NAME: &str = "kmip-gateway";

/// The Query Server Information answer: the product and its version (fields KMIP 2.x defines;
/// to a 1.x client, whose Server Information is vendor-specific, the model prunes them).
pub(super) fn server_information() -> Ttlv {
    Ttlv::structure(
        tags::SERVER_INFORMATION,
        vec![
            Ttlv::new(tags::PRODUCT_NAME, Value::TextString(PRODUCT_NAME.into())),
            Ttlv::new(
                tags::SERVER_VERSION,
                Value::TextString(env!("CARGO_PKG_VERSION").into()),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_and_capability_name_is_an_enumeration_of_the_specification() {
        let names = enum_names_for_tag(tags::PROFILE_NAME).unwrap();
        for p in PROFILES {
            assert!(p.v1.is_some() || p.v2.is_some());
            for name in p.v1.iter().chain(&p.v2) {
                assert!(names.value_of(name).is_some(), "{name}");
            }
        }
        assert_eq!(
            profile_information(ProtocolVersion::V1_4).len(),
            PROFILES.iter().filter(|p| p.v1.is_some()).count()
        );
        assert_eq!(
            profile_information(ProtocolVersion::V2_1).len(),
            PROFILES.iter().filter(|p| p.v2.is_some()).count()
        );
        let Value::Structure(caps) = capability_information(true).value else {
            panic!("Capability Information is a structure");
        };
        assert_eq!(caps.len(), CAPABILITIES.len(), "every capability resolves");
        // Streaming is the backend's to say: the proxy backend does not stream.
        for streams in [true, false] {
            let Value::Structure(caps) = capability_information(streams).value else {
                panic!("Capability Information is a structure");
            };
            let flag = caps.iter().find(|c| c.tag == tags::STREAMING_CAPABILITY);
            assert_eq!(flag.map(|c| &c.value), Some(&Value::Boolean(streams)));
        }
    }

    /// The "KMIP support" section of README.md.
    fn readme_section() -> &'static str {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("## KMIP support")
            .expect("README has a KMIP support section");
        let rest = &readme[start + 3..];
        &rest[..rest.find("\n## ").unwrap_or(rest.len())]
    }

    /// The backticked words of the paragraph that starts with `label`.
    fn listed(section: &str, label: &str) -> Vec<String> {
        let start = section
            .find(label)
            .unwrap_or_else(|| panic!("no {label} in README"));
        let para = &section[start..];
        let para = &para[..para.find("\n\n").unwrap_or(para.len())];
        para.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    fn names<T: kmip_wire::model::KmipEnum>(tag: Tag, values: &[T]) -> Vec<String> {
        let names = enum_names_for_tag(tag).unwrap();
        values
            .iter()
            .map(|v| names.name_of(v.to_u32()).unwrap().to_owned())
            .collect()
    }

    /// A profile table cell: a name, or `–` for none.
    fn name_cell(c: &str) -> Option<&str> {
        (c != "–").then_some(c)
    }

    #[test]
    fn the_readme_states_what_query_answers() {
        let section = readme_section();
        let rows: Vec<Vec<String>> = section
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| profile"))
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .collect();
        let claimed: Vec<(Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (name_cell(&r[1]), name_cell(&r[2])))
            .collect();
        let table: Vec<(Option<&str>, Option<&str>)> =
            PROFILES.iter().map(|p| (p.v1, p.v2)).collect();
        assert_eq!(claimed, table, "README's profile table");
        assert_eq!(
            listed(section, "Operations:"),
            names(
                tags::OPERATION,
                &super::super::table::supported_operations()
            ),
            "README's operations"
        );
        assert_eq!(
            listed(section, "Object types:"),
            names(
                tags::OBJECT_TYPE,
                super::super::query::SUPPORTED_OBJECT_TYPES
            ),
            "README's object types"
        );
    }
}
