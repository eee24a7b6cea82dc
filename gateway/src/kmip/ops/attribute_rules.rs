//! Which attributes a client may set, change or delete, which have several instances, which a
//! client of a given version is shown, and which instance a request addresses.

use super::certificate;
use super::object::{state_name, state_of};
use super::OpError;
use crate::kmip::store::{ObjectDraft, StoredObject};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Tag;

/// Attributes only the server sets: a client may not add, modify or delete them.
const SERVER_ATTRIBUTES: &[Tag] = &[
    tags::UNIQUE_IDENTIFIER,
    tags::OBJECT_TYPE,
    tags::STATE,
    tags::INITIAL_DATE,
    tags::LAST_CHANGE_DATE,
    tags::DESTROY_DATE,
    tags::COMPROMISE_DATE,
    tags::DIGEST,
    tags::FRESH,
    tags::ORIGINAL_CREATION_DATE,
    tags::ALWAYS_SENSITIVE,
    tags::NEVER_EXTRACTABLE,
    tags::KEY_VALUE_PRESENT,
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
];

/// Whether only the server sets this attribute.
pub(super) fn server_set(tag: Tag) -> bool {
    SERVER_ATTRIBUTES.contains(&tag) || certificate::DERIVED.contains(&tag)
}

/// Dates a client may set or change only while the object is Pre-Active.
const LIFECYCLE_DATES: &[Tag] = &[
    tags::ACTIVATION_DATE,
    tags::PROCESS_START_DATE,
    tags::PROTECT_STOP_DATE,
];

/// Attributes a client sets at Create/Register but may not change later.
pub(super) const CREATE_ONLY: &[Tag] = &[
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
    tags::FRESH,
];

/// Standard attributes that may have several instances.
pub(super) const MULTI_VALUED: &[Tag] = &[
    tags::NAME,
    tags::OBJECT_GROUP,
    tags::LINK,
    tags::ALTERNATIVE_NAME,
    tags::APPLICATION_SPECIFIC_INFORMATION,
    tags::CRYPTOGRAPHIC_PARAMETERS,
    tags::CRYPTOGRAPHIC_DOMAIN_PARAMETERS,
    tags::DIGEST,
    tags::KEY_VALUE_LOCATION,
];

/// Refuses what a client sets as an attribute but is none (a 1.x name that is neither standard
/// nor `x-`/`y-`, or the tag of something else): stored, it could never be named back.
pub(super) fn check_is_attribute(name: &AttributeName) -> Result<(), OpError> {
    if name.is_attribute() {
        return Ok(());
    }
    Err(OpError::InvalidField(match name {
        AttributeName::Tag(tag) => match kmip_wire::spec::TAGS.iter().find(|t| t.tag == *tag) {
            Some(info) => format!("{} is not an attribute", info.spec_name),
            None => format!("tag {:06X} is not an attribute", tag.0),
        },
        other => format!(
            "'{}' is not a KMIP attribute (custom attribute names start with x- or y-)",
            other.v1_name().unwrap_or_default()
        ),
    }))
}

/// Whether a client may add, change or remove `name` on `obj` now.
pub(super) fn check_client_writable(
    obj: &StoredObject,
    name: &AttributeName,
) -> Result<(), OpError> {
    if let AttributeName::Tag(tag) = name {
        if server_set(*tag) {
            return Err(OpError::ReadOnlyAttribute(
                name.v1_name().unwrap_or_default(),
            ));
        }
        // The lifecycle dates that gate a key's use may only move before it is in use.
        if LIFECYCLE_DATES.contains(tag) && state_of(obj) != State::PreActive {
            return Err(OpError::WrongState(state_name(state_of(obj))));
        }
    }
    Ok(())
}

/// Whether `name` is an attribute a client of `version` may be shown. The server keeps Secret
/// Data Type, Key Format Type and Opaque Data Type with an object to rebuild it on Get, but Secret
/// Data Type is an attribute in no version and the other two only from 2.0 on; listing them
/// breaks clients (PyKMIP at 2.0 rejects a Get Attribute List naming Secret Data Type).
pub(super) fn reportable(name: &AttributeName, version: ProtocolVersion) -> bool {
    match name {
        AttributeName::Tag(t) if *t == tags::SECRET_DATA_TYPE => false,
        AttributeName::Tag(t) if *t == tags::KEY_FORMAT_TYPE || *t == tags::OPAQUE_DATA_TYPE => {
            version.is_v2()
        }
        _ => name.defined_in(version),
    }
}

/// KMIP 1.x numbers the instances of multi-valued attributes.
pub(super) fn with_indexes(attrs: Vec<Attribute>, version: ProtocolVersion) -> Vec<Attribute> {
    if version.is_v2() {
        return attrs
            .into_iter()
            .map(|a| Attribute { index: None, ..a })
            .collect();
    }
    let mut seen: Vec<(AttributeName, i32)> = Vec::new();
    attrs
        .into_iter()
        .map(|a| {
            let n = match seen.iter_mut().find(|(name, _)| *name == a.name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((a.name.clone(), 0));
                    0
                }
            };
            let multi = a.tag().is_some_and(|t| MULTI_VALUED.contains(&t));
            Attribute {
                index: if multi { Some(n) } else { None },
                ..a
            }
        })
        .collect()
}

/// Where in `o.attributes` the addressed instance of `name` is: the one whose value equals
/// `current` (2.x Current Attribute), else the `index`-th (1.x Attribute Index), else the first.
pub(super) fn instance_position(
    o: &ObjectDraft,
    name: &AttributeName,
    current: Option<&Attribute>,
    index: Option<i32>,
) -> Result<usize, OpError> {
    let mut positions = o
        .attributes
        .iter()
        .enumerate()
        .filter(|(_, x)| x.name == *name)
        .map(|(i, _)| i);
    let pick = match (current, index) {
        (Some(cur), _) => positions.find(|&i| o.attributes[i].value == cur.value),
        (None, Some(idx)) => usize::try_from(idx).ok().and_then(|i| positions.nth(i)),
        (None, None) => positions.next(),
    };
    pick.ok_or(OpError::AttributeNotFound)
}
