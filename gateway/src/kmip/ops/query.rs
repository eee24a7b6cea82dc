//! Discover Versions and Query: what this server speaks, implements and stores.

use super::server_info::{capability_information, profile_information, server_information};
use kmip_wire::model::*;

/// Versions this server speaks, newest first (the Discover Versions answer).
pub const SUPPORTED_VERSIONS: &[(i32, i32)] =
    &[(2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0)];

/// Object types this server stores (the Query Objects answer).
pub const SUPPORTED_OBJECT_TYPES: &[ObjectType] = &[
    ObjectType::SymmetricKey,
    ObjectType::SecretData,
    ObjectType::OpaqueObject,
    ObjectType::Certificate,
    ObjectType::PublicKey,
    ObjectType::PrivateKey,
    ObjectType::Template,
];

/// The object types a client of `version` is told of: Templates exist in KMIP 1.x only.
fn object_types(version: ProtocolVersion) -> Vec<ObjectType> {
    SUPPORTED_OBJECT_TYPES
        .iter()
        .copied()
        .filter(|t| *t != ObjectType::Template || !version.is_v2())
        .collect()
}

/// The Vendor Identification of the Query Server Information answer.
pub const VENDOR_IDENTIFICATION: &str = "kmip-gateway";

pub(super) fn discover_versions(r: &DiscoverVersionsRequest) -> DiscoverVersionsResponse {
    let ours = SUPPORTED_VERSIONS
        .iter()
        .map(|&(major, minor)| ProtocolVersion { major, minor });
    let versions = if r.versions.is_empty() {
        ours.collect()
    } else {
        // The client's order of preference, restricted to what we speak.
        r.versions
            .iter()
            .copied()
            .filter(|v| ours.clone().any(|o| o == *v))
            .collect()
    };
    DiscoverVersionsResponse { versions }
}

/// The Query answer to a client of `version`; `operations` is what Query Operations lists (the
/// table's listed rows).
pub(super) fn query(
    r: &QueryRequest,
    operations: &[Operation],
    version: ProtocolVersion,
) -> QueryResponse {
    let mut resp = QueryResponse::default();
    for f in &r.functions {
        match f {
            QueryFunction::QueryOperations => resp.operations = operations.to_vec(),
            QueryFunction::QueryObjects => resp.object_types = object_types(version),
            QueryFunction::QueryServerInformation => {
                resp.vendor_identification = Some(VENDOR_IDENTIFICATION.to_owned());
                resp.server_information = Some(server_information());
            }
            QueryFunction::QueryProfiles => resp.other.extend(profile_information(version)),
            QueryFunction::QueryCapabilities => resp.other.push(capability_information()),
            _ => {}
        }
    }
    resp
}
