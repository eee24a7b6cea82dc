//! Attributes the server decides: those it reports for an object without storing them (what
//! follows from its own policy, leases and where material is kept, or from the object's
//! identity, so objects stored before these were reported show them too), and the Random Number
//! Generator it records on the keys it generates.

use super::archive::NO_LEASE_LIMIT;
use super::object::is_destroyed;
use crate::kmip::store::StoredObject;
use kmip_backends::{ObjectKind, RngInfo};
use kmip_wire::model::{Attribute, CryptographicAlgorithm, KeyFormatType, KmipEnum};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use sha2::{Digest, Sha256};

/// Protection Storage Mask bits (KMIP 2.1 §11.42): material kept in software, or in hardware.
const PROTECTION_SOFTWARE: i32 = 0x1;
const PROTECTION_HARDWARE: i32 = 0x2;

/// The attributes the server derives for `obj` (those it stores are not repeated). Which of
/// them the protocol version defines is left to the caller's reportable filter.
pub(super) fn server_attributes(obj: &StoredObject, material_in_hardware: bool) -> Vec<Attribute> {
    let mut out = Vec::new();
    let absent = |tag| obj.first(tag).is_none();
    if absent(tags::SHORT_UNIQUE_IDENTIFIER) {
        // Fixed length and stable for the object's life: the SHA-256 of its Unique Identifier.
        let short = Sha256::digest(obj.uid.as_bytes()).to_vec();
        out.push(Attribute::new(
            tags::SHORT_UNIQUE_IDENTIFIER,
            Value::ByteString(short.into()),
        ));
    }
    let cryptographic = !matches!(obj.kind, ObjectKind::OpaqueObject | ObjectKind::Template);
    // Obtain Lease grants no lease for a destroyed object; neither does the attribute.
    if cryptographic && !is_destroyed(obj) && absent(tags::LEASE_TIME) {
        out.push(Attribute::new(
            tags::LEASE_TIME,
            Value::Interval(NO_LEASE_LIMIT),
        ));
    }
    if obj.kind != ObjectKind::Template && absent(tags::PROTECTION_STORAGE_MASK) {
        let mask = if material_in_hardware {
            PROTECTION_HARDWARE
        } else {
            PROTECTION_SOFTWARE
        };
        out.push(Attribute::new(
            tags::PROTECTION_STORAGE_MASK,
            Value::Integer(mask),
        ));
    }
    let key = matches!(
        obj.kind,
        ObjectKind::SymmetricKey
            | ObjectKind::PublicKey
            | ObjectKind::PrivateKey
            | ObjectKind::SecretData
    );
    if key && absent(tags::KEY_FORMAT_TYPE) {
        // The format Get returns a key in when none was recorded at Register.
        out.push(Attribute::enumeration(
            tags::KEY_FORMAT_TYPE,
            KeyFormatType::Raw,
        ));
    }
    out
}

/// RNG Algorithm (KMIP 2.1 §11.49) and DRBG Algorithm (§11.17) values.
const RNG_ALGORITHM_UNSPECIFIED: u32 = 1;
const RNG_ALGORITHM_DRBG: u32 = 3;
const DRBG_ALGORITHM_CTR: u32 = 5;

/// The Random Number Generator attribute (RNG Parameters) describing `rng`.
pub(super) fn rng_attribute(rng: RngInfo) -> Value {
    let field = |tag: Tag, v: Value| Ttlv::new(tag, v);
    Value::Structure(match rng {
        RngInfo::CtrDrbgAes256 => vec![
            field(tags::RNGALGORITHM, Value::Enumeration(RNG_ALGORITHM_DRBG)),
            field(
                tags::CRYPTOGRAPHIC_ALGORITHM,
                Value::Enumeration(CryptographicAlgorithm::Aes.to_u32()),
            ),
            field(tags::CRYPTOGRAPHIC_LENGTH, Value::Integer(256)),
            field(tags::DRBGALGORITHM, Value::Enumeration(DRBG_ALGORITHM_CTR)),
        ],
        RngInfo::Token => vec![field(
            tags::RNGALGORITHM,
            Value::Enumeration(RNG_ALGORITHM_UNSPECIFIED),
        )],
    })
}
