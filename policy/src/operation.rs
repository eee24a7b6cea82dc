//! KMIP operations as the policy sees them: a name, and whether they act on an existing object.

use std::fmt;

/// A KMIP operation, independent of the protocol version it arrived in.
///
/// Policy files name operations by their KMIP spelling (`Display`), matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Create,
    CreateKeyPair,
    Register,
    Import,
    Locate,
    Query,
    DiscoverVersions,
    RngRetrieve,
    RngSeed,
    Get,
    GetAttributes,
    GetAttributeList,
    AddAttribute,
    ModifyAttribute,
    DeleteAttribute,
    SetAttribute,
    Activate,
    Revoke,
    Destroy,
    Archive,
    Recover,
    ReKey,
    ReKeyKeyPair,
    DeriveKey,
    Check,
    ObtainLease,
    GetUsageAllocation,
    Export,
    Encrypt,
    Decrypt,
    Sign,
    SignatureVerify,
    Mac,
    MacVerify,
    Hash,
    Certify,
    ReCertify,
    Poll,
    Cancel,
    AdjustAttribute,
    Pkcs11,
    SetEndpointRole,
    Interop,
    Log,
    CreateSplitKey,
    JoinSplitKey,
}

/// Whether an operation is decided against an existing object or without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Creates objects or needs none (Create, Register, Query, Locate …): `Policy::decide_global`.
    Global,
    /// Acts on one existing object: `Policy::decide`.
    Object,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 46] = [
        Operation::Create,
        Operation::CreateKeyPair,
        Operation::Register,
        Operation::Import,
        Operation::Locate,
        Operation::Query,
        Operation::DiscoverVersions,
        Operation::RngRetrieve,
        Operation::RngSeed,
        Operation::Get,
        Operation::GetAttributes,
        Operation::GetAttributeList,
        Operation::AddAttribute,
        Operation::ModifyAttribute,
        Operation::DeleteAttribute,
        Operation::SetAttribute,
        Operation::Activate,
        Operation::Revoke,
        Operation::Destroy,
        Operation::Archive,
        Operation::Recover,
        Operation::ReKey,
        Operation::ReKeyKeyPair,
        Operation::DeriveKey,
        Operation::Check,
        Operation::ObtainLease,
        Operation::GetUsageAllocation,
        Operation::Export,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::Sign,
        Operation::SignatureVerify,
        Operation::Mac,
        Operation::MacVerify,
        Operation::Hash,
        Operation::Certify,
        Operation::ReCertify,
        Operation::Poll,
        Operation::Cancel,
        Operation::AdjustAttribute,
        Operation::Pkcs11,
        Operation::SetEndpointRole,
        Operation::Interop,
        Operation::Log,
        Operation::CreateSplitKey,
        Operation::JoinSplitKey,
    ];

    /// The KMIP spelling, as written in policy files and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::CreateKeyPair => "CreateKeyPair",
            Operation::Register => "Register",
            Operation::Import => "Import",
            Operation::Locate => "Locate",
            Operation::Query => "Query",
            Operation::DiscoverVersions => "DiscoverVersions",
            Operation::RngRetrieve => "RNGRetrieve",
            Operation::RngSeed => "RNGSeed",
            Operation::Get => "Get",
            Operation::GetAttributes => "GetAttributes",
            Operation::GetAttributeList => "GetAttributeList",
            Operation::AddAttribute => "AddAttribute",
            Operation::ModifyAttribute => "ModifyAttribute",
            Operation::DeleteAttribute => "DeleteAttribute",
            Operation::SetAttribute => "SetAttribute",
            Operation::Activate => "Activate",
            Operation::Revoke => "Revoke",
            Operation::Destroy => "Destroy",
            Operation::Archive => "Archive",
            Operation::Recover => "Recover",
            Operation::ReKey => "ReKey",
            Operation::ReKeyKeyPair => "ReKeyKeyPair",
            Operation::DeriveKey => "DeriveKey",
            Operation::Check => "Check",
            Operation::ObtainLease => "ObtainLease",
            Operation::GetUsageAllocation => "GetUsageAllocation",
            Operation::Export => "Export",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
            Operation::Sign => "Sign",
            Operation::SignatureVerify => "SignatureVerify",
            Operation::Mac => "MAC",
            Operation::MacVerify => "MACVerify",
            Operation::Hash => "Hash",
            Operation::Certify => "Certify",
            Operation::ReCertify => "ReCertify",
            Operation::Poll => "Poll",
            Operation::Cancel => "Cancel",
            Operation::AdjustAttribute => "AdjustAttribute",
            Operation::Pkcs11 => "PKCS_11",
            Operation::SetEndpointRole => "SetEndpointRole",
            Operation::Interop => "Interop",
            Operation::Log => "Log",
            Operation::CreateSplitKey => "CreateSplitKey",
            Operation::JoinSplitKey => "JoinSplitKey",
        }
    }

    /// Global operations create objects or need none; all others act on one existing object.
    pub const fn kind(self) -> OperationKind {
        match self {
            Operation::Create
            | Operation::CreateKeyPair
            | Operation::Register
            | Operation::Import
            | Operation::Locate
            | Operation::Query
            | Operation::DiscoverVersions
            | Operation::RngRetrieve
            | Operation::RngSeed
            | Operation::Hash
            // Creates a certificate; the Public Key it may name is checked as a Get of that key.
            | Operation::Certify
            | Operation::Poll
            | Operation::Cancel
            // Answers about the server's own PKCS#11 library; names no object.
            | Operation::Pkcs11
            // The client's role on its own connection; names no object.
            | Operation::SetEndpointRole
            // A test boundary or a line written to the server's log: no object, no state.
            | Operation::Interop
            | Operation::Log
            // Create new objects; a key to split and the parts to join are each checked as a
            // Get of that object.
            | Operation::CreateSplitKey
            | Operation::JoinSplitKey => OperationKind::Global,
            _ => OperationKind::Object,
        }
    }

    /// Looks an operation up by its KMIP spelling, ignoring ASCII case ("Mac" and "MAC" both work).
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(name))
    }

    const fn bit(self) -> u64 {
        1u64 << (self as u32)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of operations as a bit mask: membership is one AND.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OpSet(u64);

impl OpSet {
    pub(crate) fn insert(&mut self, op: Operation) {
        self.0 |= op.bit();
    }

    pub(crate) fn union(&mut self, other: OpSet) {
        self.0 |= other.0;
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn contains(self, op: Operation) -> bool {
        self.0 & op.bit() != 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Operation> {
        Operation::ALL
            .into_iter()
            .filter(move |op| self.contains(*op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_once_in_bit_order() {
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i, "{op} is out of order in ALL");
        }
        // A u64 mask holds at most 64 operations.
        assert!(Operation::ALL.len() <= 64);
    }

    #[test]
    fn names_round_trip_and_ignore_case() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
            assert_eq!(Operation::from_name(&op.name().to_lowercase()), Some(op));
        }
        assert_eq!(Operation::from_name("Mac"), Some(Operation::Mac));
        assert_eq!(Operation::from_name("Gett"), None);
        assert_eq!(Operation::from_name(""), None);
    }

    #[test]
    fn kinds_match_kmip_semantics() {
        assert_eq!(Operation::Create.kind(), OperationKind::Global);
        assert_eq!(Operation::Register.kind(), OperationKind::Global);
        assert_eq!(Operation::Locate.kind(), OperationKind::Global);
        assert_eq!(Operation::Query.kind(), OperationKind::Global);
        assert_eq!(Operation::DiscoverVersions.kind(), OperationKind::Global);
        // Certify makes a certificate (for a request, or a key checked separately); Re-certify
        // acts on the certificate it renews.
        assert_eq!(Operation::Certify.kind(), OperationKind::Global);
        assert_eq!(Operation::ReCertify.kind(), OperationKind::Object);
        assert_eq!(Operation::Get.kind(), OperationKind::Object);
        assert_eq!(Operation::ReKey.kind(), OperationKind::Object);
        assert_eq!(Operation::Destroy.kind(), OperationKind::Object);
    }

    #[test]
    fn opset_membership() {
        let mut set = OpSet::default();
        set.insert(Operation::Get);
        set.insert(Operation::MacVerify);
        assert!(set.contains(Operation::Get));
        assert!(set.contains(Operation::MacVerify));
        assert!(!set.contains(Operation::Create));
        assert!(OpSet::default().is_empty() && !set.is_empty());
        let mut other = OpSet::default();
        other.insert(Operation::Create);
        other.union(set);
        assert!(other.contains(Operation::Create) && other.contains(Operation::Get));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Operation::Get, Operation::MacVerify]
        );
    }
}
