//! What the comparison leaves to the server: relaxations of the expected and actual responses
//! before the structural comparison, and how a failed batch item is described.

use kmip_wire::compare::Difference;
use kmip_wire::names::{enum_names_for_tag, tag_name};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use kmip_wire::xml::{XmlNode, XmlValue};

pub(super) fn operation_of(item: &Ttlv) -> Option<&'static str> {
    let value = item.child(tags::OPERATION)?.as_enum()?;
    enum_names_for_tag(tags::OPERATION)?.name_of(value)
}

/// A server may return `Attribute Index` 0 or omit it (1.x: an absent index "SHALL be assumed
/// to be 0"); the vectors omit it.
pub(super) fn drop_default_attribute_index(t: &mut Ttlv) {
    if let Value::Structure(items) = &mut t.value {
        if t.tag == tags::ATTRIBUTE {
            items.retain(|i| !(i.tag == tags::ATTRIBUTE_INDEX && i.value == Value::Integer(0)));
        }
        items.iter_mut().for_each(drop_default_attribute_index);
    }
}

pub(super) fn drop_default_attribute_index_xml(node: &mut XmlNode) {
    let tag = node.tag;
    if let XmlValue::Structure(children) = &mut node.value {
        if tag == tags::ATTRIBUTE {
            children.retain(|c| {
                !(c.tag == tags::ATTRIBUTE_INDEX && c.value == XmlValue::Value(Value::Integer(0)))
            });
        }
        children
            .iter_mut()
            .for_each(drop_default_attribute_index_xml);
    }
}

/// The 1.x name of the Random Number Generator attribute.
const RNG_ATTRIBUTE_NAME: &str = "Random Number Generator";

/// The Random Number Generator attribute describes the server's own generator (the vectors'
/// server used ANSI X9.31): whether it is there is compared, not what it says.
pub(super) fn blank_generator_description(t: &mut Ttlv) {
    let is_rng_attribute = t.tag == tags::ATTRIBUTE
        && t.child(tags::ATTRIBUTE_NAME).and_then(Ttlv::as_text) == Some(RNG_ATTRIBUTE_NAME);
    if let Value::Structure(items) = &mut t.value {
        if t.tag == tags::RANDOM_NUMBER_GENERATOR {
            items.clear();
        }
        for i in items {
            if is_rng_attribute && i.tag == tags::ATTRIBUTE_VALUE {
                i.value = Value::Structure(Vec::new());
            } else {
                blank_generator_description(i);
            }
        }
    }
}

pub(super) fn blank_generator_description_xml(node: &mut XmlNode) {
    let is_rng_attribute = node.tag == tags::ATTRIBUTE
        && node.children().iter().any(|c| {
            c.tag == tags::ATTRIBUTE_NAME
                && c.value == XmlValue::Value(Value::TextString(RNG_ATTRIBUTE_NAME.into()))
        });
    let tag = node.tag;
    if let XmlValue::Structure(children) = &mut node.value {
        if tag == tags::RANDOM_NUMBER_GENERATOR {
            children.clear();
        }
        for c in children {
            if is_rng_attribute && c.tag == tags::ATTRIBUTE_VALUE {
                c.value = XmlValue::Structure(Vec::new());
            } else {
                blank_generator_description_xml(c);
            }
        }
    }
}

/// Leaf values a Query response lists (what the server supports) and compares as a set.
const QUERY_LISTED: [Tag; 2] = [tags::OPERATION, tags::OBJECT_TYPE];

/// Server-to-client operations (KMIP 1.4 §5, 2.1 §7): a server lists them when it initiates
/// them, which no conformance clause requires; the vectors' server did.
const SERVER_INITIATED: [&str; 2] = ["Notify", "Put"];

/// Operations that exist only for an object type: required of a server only when its own Query
/// Objects answer lists that type.
const OPERATIONS_OF_OBJECT_TYPE: [(&str, &str); 2] =
    [("CreateSplitKey", "SplitKey"), ("JoinSplitKey", "SplitKey")];

/// Whether the server must list `expected` (an Operation or Object Type the vector's Query
/// answer lists), given the server's own answer `actual`.
fn required_listing(expected: &XmlNode, actual: &[Ttlv]) -> bool {
    if expected.tag != tags::OPERATION {
        return true;
    }
    let XmlValue::Value(Value::Enumeration(code)) = &expected.value else {
        return true;
    };
    let name = |tag, code| enum_names_for_tag(tag).and_then(|n| n.name_of(code));
    let Some(operation) = name(tags::OPERATION, *code) else {
        return true;
    };
    if SERVER_INITIATED.contains(&operation) {
        return false;
    }
    match OPERATIONS_OF_OBJECT_TYPE
        .iter()
        .find(|(op, _)| *op == operation)
    {
        Some((_, object_type)) => actual.iter().any(|a| {
            a.tag == tags::OBJECT_TYPE
                && a.as_enum().and_then(|c| name(tags::OBJECT_TYPE, c)) == Some(object_type)
        }),
        None => true,
    }
}

/// Relaxes what the specification leaves to the server:
/// - a Query answer describes the server: the operations and object types the vector lists must
///   be among those the server lists (in any order, more allowed), except server-to-client
///   operations and the operations of an object type the server does not list; vendor and
///   server information and the other descriptions are not compared;
/// - Locate MAY return `Located Items` when the vector's server did not;
/// - a PKCS#11 C_GetInfo answer is the server's own CK_INFO: its layout (length) and Cryptoki
///   version are compared, not the manufacturer, flags, description or library version.
pub(super) fn relax_server_specific(
    expected: &mut XmlNode,
    actual: &mut Ttlv,
) -> Result<(), Difference> {
    let XmlValue::Structure(exp_items) = &mut expected.value else {
        return Ok(());
    };
    let Value::Structure(act_items) = &mut actual.value else {
        return Ok(());
    };
    let exp_batch = exp_items.iter_mut().filter(|c| c.tag == tags::BATCH_ITEM);
    let act_batch = act_items.iter_mut().filter(|c| c.tag == tags::BATCH_ITEM);
    for (exp, act) in exp_batch.zip(act_batch) {
        let operation = operation_of(act).unwrap_or_default();
        let (Some(exp_payload), Some(act_payload)) = (
            child_node_mut(exp, tags::RESPONSE_PAYLOAD),
            child_ttlv_mut(act, tags::RESPONSE_PAYLOAD),
        ) else {
            continue;
        };
        let Value::Structure(act_children) = &mut act_payload.value else {
            continue;
        };
        match operation {
            "Query" => {
                let XmlValue::Structure(exp_children) = &mut exp_payload.value else {
                    continue;
                };
                for e in exp_children
                    .iter()
                    .filter(|e| QUERY_LISTED.contains(&e.tag))
                    .filter(|e| required_listing(e, act_children))
                {
                    let XmlValue::Value(v) = &e.value else {
                        continue;
                    };
                    if !act_children.iter().any(|a| a.tag == e.tag && a.value == *v) {
                        let name = tag_name(e.tag).unwrap_or("?");
                        return Err(Difference {
                            path: format!("/ResponseMessage/BatchItem/ResponsePayload/{name}"),
                            what: format!("the server does not list {}", describe(e.tag, v)),
                        });
                    }
                }
                exp_children.clear();
                act_children.clear();
            }
            "PKCS_11" => blank_library_info(exp_payload, act_children),
            "Locate"
                if !exp_payload
                    .children()
                    .iter()
                    .any(|c| c.tag == tags::LOCATED_ITEMS) =>
            {
                act_children.retain(|c| c.tag != tags::LOCATED_ITEMS);
            }
            _ => {}
        }
    }
    Ok(())
}

/// PKCS#11 Function C_GetInfo (KMIP 2.1 §11.40).
const C_GET_INFO: u32 = 0x03;
/// CK_INFO starts with its CK_VERSION cryptokiVersion (two bytes), compared as written.
const CRYPTOKI_VERSION_LEN: usize = 2;

/// A C_GetInfo answer of the vector's length and Cryptoki version is taken as the vector's: the
/// rest of CK_INFO describes the library that answered.
fn blank_library_info(expected: &XmlNode, actual: &mut [Ttlv]) {
    let is_get_info = actual
        .iter()
        .any(|a| a.tag == tags::PKCS_11_FUNCTION && a.value == Value::Enumeration(C_GET_INFO));
    let Some(XmlValue::Value(Value::ByteString(want))) = expected
        .children()
        .iter()
        .find(|c| c.tag == tags::PKCS_11_OUTPUT_PARAMETERS)
        .map(|c| &c.value)
    else {
        return;
    };
    let Some(got) = actual
        .iter_mut()
        .find(|a| a.tag == tags::PKCS_11_OUTPUT_PARAMETERS)
    else {
        return;
    };
    if let Value::ByteString(bytes) = &got.value {
        if is_get_info
            && bytes.len() == want.len()
            && bytes.get(..CRYPTOKI_VERSION_LEN) == want.get(..CRYPTOKI_VERSION_LEN)
        {
            got.value = Value::ByteString(want.clone());
        }
    }
}

/// The byte the vectors write for every byte of key material they cannot know (a key the
/// server generated): `2a2a…` ("****").
const MASK_BYTE: u8 = b'*';

/// Whether `node` holds a Key Material written as all [`MASK_BYTE`].
fn has_masked_key_material(node: &XmlNode) -> bool {
    match &node.value {
        XmlValue::Value(Value::ByteString(b)) => {
            node.tag == tags::KEY_MATERIAL && !b.is_empty() && b.iter().all(|&x| x == MASK_BYTE)
        }
        XmlValue::Structure(children) => children.iter().any(has_masked_key_material),
        _ => false,
    }
}

fn mask_key_material(t: &mut Ttlv) {
    match &mut t.value {
        Value::ByteString(b) if t.tag == tags::KEY_MATERIAL => {
            *b = vec![MASK_BYTE; b.len()].into();
        }
        Value::Structure(items) => items.iter_mut().for_each(mask_key_material),
        _ => {}
    }
}

/// A batch item whose expected Key Material is masked (generated material no vector can know)
/// has its actual Key Material masked the same way: its length is still compared.
pub(super) fn mask_generated_key_material(expected: &XmlNode, actual: &mut Ttlv) {
    let (XmlValue::Structure(exp_items), Value::Structure(act_items)) =
        (&expected.value, &mut actual.value)
    else {
        return;
    };
    let exp_batch = exp_items.iter().filter(|c| c.tag == tags::BATCH_ITEM);
    let act_batch = act_items.iter_mut().filter(|c| c.tag == tags::BATCH_ITEM);
    for (exp, act) in exp_batch.zip(act_batch) {
        if has_masked_key_material(exp) {
            mask_key_material(act);
        }
    }
}

pub(super) fn child_node_mut(node: &mut XmlNode, tag: Tag) -> Option<&mut XmlNode> {
    match &mut node.value {
        XmlValue::Structure(c) => c.iter_mut().find(|c| c.tag == tag),
        _ => None,
    }
}

pub(super) fn child_ttlv_mut(t: &mut Ttlv, tag: Tag) -> Option<&mut Ttlv> {
    match &mut t.value {
        Value::Structure(c) => c.iter_mut().find(|c| c.tag == tag),
        _ => None,
    }
}

/// A value for a message: enumerations by name.
fn describe(tag: Tag, v: &Value) -> String {
    match v {
        Value::Enumeration(e) => enum_names_for_tag(tag)
            .and_then(|n| n.name_of(*e))
            .map_or_else(|| format!("0x{e:08X}"), str::to_owned),
        other => format!("{other:?}"),
    }
}

/// What the server said about the first batch item that did not succeed, for failure messages.
pub fn server_error(actual: &Ttlv) -> Option<String> {
    let item = actual.children(tags::BATCH_ITEM).find(|i| {
        i.child(tags::RESULT_STATUS)
            .and_then(Ttlv::as_enum)
            .is_some_and(|s| s != 0)
    })?;
    let field = |tag| {
        item.child(tag)
            .map(|t| match &t.value {
                Value::TextString(s) => s.clone(),
                v => describe(tag, v),
            })
            .unwrap_or_default()
    };
    Some(format!(
        "{} {}: {}",
        field(tags::RESULT_STATUS),
        field(tags::RESULT_REASON),
        field(tags::RESULT_MESSAGE)
    ))
}
