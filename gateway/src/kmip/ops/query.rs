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
    ObjectType::SplitKey,
    ObjectType::Template,
    ObjectType::PgpKey,
    ObjectType::CertificateRequest,
];

/// The last Operation code KMIP 1.x defines (Export, 1.4 §9.1.3.2.27); later ones are 2.x only.
const LAST_V1_OPERATION: u32 = 0x0000_002B;

/// The operations a client of `version` is told of: a 1.x client only those its version has.
fn operations_of(operations: &[Operation], version: ProtocolVersion) -> Vec<Operation> {
    operations
        .iter()
        .copied()
        .filter(|op| version.is_v2() || op.to_u32() <= LAST_V1_OPERATION)
        .collect()
}

/// The object types a client of `version` is told of: Templates exist in KMIP 1.x only,
/// Certificate Requests in 2.x only.
fn object_types(version: ProtocolVersion) -> Vec<ObjectType> {
    SUPPORTED_OBJECT_TYPES
        .iter()
        .copied()
        .filter(|t| match t {
            ObjectType::Template => !version.is_v2(),
            ObjectType::CertificateRequest => version.is_v2(),
            _ => true,
        })
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
    backend_streams: bool,
) -> QueryResponse {
    let mut resp = QueryResponse::default();
    for f in &r.functions {
        match f {
            QueryFunction::QueryOperations => resp.operations = operations_of(operations, version),
            QueryFunction::QueryObjects => resp.object_types = object_types(version),
            QueryFunction::QueryServerInformation => {
                resp.vendor_identification = Some(VENDOR_IDENTIFICATION.to_owned());
                resp.server_information = Some(server_information());
            }
            QueryFunction::QueryProfiles => resp.other.extend(profile_information(version)),
            QueryFunction::QueryCapabilities => {
                resp.other.push(capability_information(backend_streams))
            }
            _ => {}
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_is_told_of_the_operations_and_objects_it_defines() {
        let ops = [
            Operation::Get,
            Operation::SetAttribute,
            Operation::AdjustAttribute,
        ];
        let request = QueryRequest {
            functions: vec![QueryFunction::QueryOperations, QueryFunction::QueryObjects],
        };
        let v1 = query(&request, &ops, ProtocolVersion::V1_4, true);
        assert_eq!(v1.operations, vec![Operation::Get]);
        assert!(v1.object_types.contains(&ObjectType::Template));
        let v2 = query(&request, &ops, ProtocolVersion::V2_1, true);
        assert_eq!(v2.operations, ops.to_vec());
        assert!(!v2.object_types.contains(&ObjectType::Template));
    }
}
