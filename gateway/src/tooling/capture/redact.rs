//! Redaction (pure): key material, credentials and data replaced by their length wherever
//! they appear in a message, before anything is rendered.

use kmip_wire::names::tag_name;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{ItemType, Tag, Ttlv, Value};

/// Tags whose value is secret wherever it appears: key material, wrapped keys, credentials,
/// nonces/IVs, MACs and tags, plain and cipher text, certificates, opaque data, the fields of
/// transparent keys, and digests of key values (a digest of a low-entropy Secret Data, such as a
/// drive password, can be brute-forced offline). A Structure with one of these tags keeps its
/// shape; its secret leaves go.
const SECRET_TAGS: &[Tag] = &[
    tags::KEY_MATERIAL,
    tags::DIGEST_VALUE,
    tags::KEY_VALUE,
    tags::OPAQUE_DATA_VALUE,
    tags::CERTIFICATE_VALUE,
    tags::DATA,
    tags::IV_COUNTER_NONCE,
    tags::INITIALIZATION_VECTOR,
    tags::MACDATA,
    tags::MAC_SIGNATURE,
    tags::SIGNATURE_DATA,
    tags::AUTHENTICATED_ENCRYPTION_TAG,
    tags::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA,
    tags::PASSWORD,
    tags::HASHED_PASSWORD,
    tags::SERVER_HASHED_PASSWORD,
    tags::ONE_TIME_PASSWORD,
    tags::CREDENTIAL_VALUE,
    tags::NONCE_VALUE,
    tags::TICKET_VALUE,
    tags::DERIVATION_DATA,
    tags::SALT,
    tags::DIGESTED_DATA,
    tags::PKCS_11_INPUT_PARAMETERS,
    tags::PKCS_11_OUTPUT_PARAMETERS,
    tags::P,
    tags::Q,
    tags::G,
    tags::X,
    tags::Y,
    tags::J,
    tags::D,
    tags::MODULUS,
    tags::PRIVATE_EXPONENT,
    tags::PUBLIC_EXPONENT,
    tags::PRIME_EXPONENT_P,
    tags::PRIME_EXPONENT_Q,
    tags::CRTCOEFFICIENT,
];

/// A message as a capture shows it: secret values replaced by their length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown<'a> {
    /// Nothing secret in it: shown as is.
    Plain(&'a Ttlv),
    /// A Structure with a secret somewhere below it.
    Structure { tag: Tag, items: Vec<Shown<'a>> },
    /// A secret value: only its tag, type and length remain.
    Redacted {
        tag: Tag,
        item_type: ItemType,
        len: usize,
    },
    /// A value written as a named XML placeholder (a server-assigned identifier).
    Named {
        tag: Tag,
        item_type: ItemType,
        name: String,
    },
}

/// Replaces every secret value of `t` by its length. Secret: a byte string, big integer or text
/// string under one of `SECRET_TAGS` or anywhere inside Key Material (transparent keys); every
/// Big Integer (KMIP only uses them for key parts); a byte string under a tag the specifications
/// do not name (a vendor extension may carry anything).
pub fn redact(t: &Ttlv) -> Shown<'_> {
    walk(t, false, &mut |_| None)
}

/// Redacts secrets, and lets `other` replace what else it wants among the remaining leaves (in
/// document order).
pub(super) fn walk<'a>(
    t: &'a Ttlv,
    inside_key_material: bool,
    other: &mut dyn FnMut(&'a Ttlv) -> Option<Shown<'a>>,
) -> Shown<'a> {
    match &t.value {
        Value::Structure(items) => {
            let inside = inside_key_material || t.tag == tags::KEY_MATERIAL;
            let shown: Vec<Shown<'a>> = items.iter().map(|c| walk(c, inside, other)).collect();
            if shown.iter().all(|s| matches!(s, Shown::Plain(_))) {
                Shown::Plain(t)
            } else {
                Shown::Structure {
                    tag: t.tag,
                    items: shown,
                }
            }
        }
        Value::BigInteger(b) => redacted(t, b.len()),
        Value::ByteString(b)
            if inside_key_material || SECRET_TAGS.contains(&t.tag) || tag_name(t.tag).is_none() =>
        {
            redacted(t, b.len())
        }
        Value::TextString(s) if inside_key_material || SECRET_TAGS.contains(&t.tag) => {
            redacted(t, s.len())
        }
        _ => other(t).unwrap_or(Shown::Plain(t)),
    }
}

fn redacted(t: &Ttlv, len: usize) -> Shown<'_> {
    Shown::Redacted {
        tag: t.tag,
        item_type: t.value.item_type(),
        len,
    }
}
