//! Get Attribute List and Get Attributes answers, relaxed where KMIP leaves them to the server:
//! the order of the attributes (the specification defines none, and the vectors' own order
//! differs between files for the same attributes), and the values of the attributes that state
//! the server's policy rather than a fact of the object.

use super::relax::{child_node_mut, child_ttlv_mut, operation_of};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use kmip_wire::xml::{XmlNode, XmlValue};

/// The operations whose answers list attributes.
const ATTRIBUTE_ANSWERS: [&str; 2] = ["GetAttributeList", "GetAttributes"];

/// Attributes describing the server's policy (2.x tags): how long a client may keep an object,
/// where the server keeps material. Their presence is compared, their value is not.
const POLICY_TAGS: [Tag; 2] = [tags::LEASE_TIME, tags::PROTECTION_STORAGE_MASK];

/// The 1.x names of those attributes (Protection Storage Mask is 2.x only).
const POLICY_NAMES: [&str; 1] = ["Lease Time"];

/// The value both sides' policy attributes are replaced with before the comparison.
const BLANK: Value = Value::Integer(0);

/// What identifies an entry of an attribute answer beyond its tag: the attribute's name for an
/// Attribute Reference/Name leaf or an Attribute structure, nothing for a 2.x attribute leaf.
fn identity(tag: Tag, leaf: Option<&Value>, children: &[(Tag, Option<&Value>)]) -> Vec<Value> {
    if tag == tags::ATTRIBUTE_REFERENCE || tag == tags::ATTRIBUTE_NAME {
        if let Some(v) = leaf {
            return vec![v.clone()];
        }
    }
    children
        .iter()
        .filter(|(t, _)| *t == tags::VENDOR_IDENTIFICATION || *t == tags::ATTRIBUTE_NAME)
        .filter_map(|(_, v)| v.cloned())
        .collect()
}

fn xml_key(node: &XmlNode) -> (Tag, Vec<Value>) {
    let leaf = |n: &XmlNode| match &n.value {
        XmlValue::Value(v) => Some(v.clone()),
        _ => None,
    };
    let children: Vec<(Tag, Option<Value>)> =
        node.children().iter().map(|c| (c.tag, leaf(c))).collect();
    let refs: Vec<(Tag, Option<&Value>)> = children.iter().map(|(t, v)| (*t, v.as_ref())).collect();
    (node.tag, identity(node.tag, leaf(node).as_ref(), &refs))
}

fn ttlv_key(t: &Ttlv) -> (Tag, Vec<Value>) {
    let leaf = |t: &Ttlv| match &t.value {
        Value::Structure(_) => None,
        v => Some(v.clone()),
    };
    let children: Vec<(Tag, Option<Value>)> = match &t.value {
        Value::Structure(items) => items.iter().map(|c| (c.tag, leaf(c))).collect(),
        _ => Vec::new(),
    };
    let refs: Vec<(Tag, Option<&Value>)> = children.iter().map(|(t, v)| (*t, v.as_ref())).collect();
    (t.tag, identity(t.tag, leaf(t).as_ref(), &refs))
}

/// Puts `actual` in the order of `expected`: each expected entry takes the first unused actual
/// entry of the same key; actual entries nothing expected stay at the end, in their order, so a
/// missing or extra attribute is still reported.
fn follow_order(expected: &[XmlNode], actual: &mut Vec<Ttlv>) {
    let mut rest: Vec<Option<Ttlv>> = actual.drain(..).map(Some).collect();
    for e in expected {
        let key = xml_key(e);
        if let Some(slot) = rest
            .iter_mut()
            .find(|a| a.as_ref().is_some_and(|a| ttlv_key(a) == key))
        {
            actual.extend(slot.take());
        }
    }
    actual.extend(rest.into_iter().flatten());
}

fn blank_policy_xml(nodes: &mut [XmlNode]) {
    for n in nodes {
        let named = n.children().iter().any(|c| {
            c.tag == tags::ATTRIBUTE_NAME
                && matches!(&c.value, XmlValue::Value(Value::TextString(s)) if POLICY_NAMES.contains(&s.as_str()))
        });
        if POLICY_TAGS.contains(&n.tag) {
            n.value = XmlValue::Value(BLANK);
        } else if let (true, XmlValue::Structure(children)) = (named, &mut n.value) {
            for c in children
                .iter_mut()
                .filter(|c| c.tag == tags::ATTRIBUTE_VALUE)
            {
                c.value = XmlValue::Value(BLANK);
            }
        }
    }
}

fn blank_policy(items: &mut [Ttlv]) {
    for t in items {
        let named = t
            .child(tags::ATTRIBUTE_NAME)
            .and_then(Ttlv::as_text)
            .is_some_and(|s| POLICY_NAMES.contains(&s));
        if POLICY_TAGS.contains(&t.tag) {
            t.value = BLANK;
        } else if let (true, Value::Structure(children)) = (named, &mut t.value) {
            for c in children
                .iter_mut()
                .filter(|c| c.tag == tags::ATTRIBUTE_VALUE)
            {
                c.value = BLANK;
            }
        }
    }
}

/// Relaxes one entry list (a payload, or a 2.x Attributes structure) of an attribute answer.
fn relax_list(expected: &mut XmlNode, actual: &mut Ttlv) {
    let (XmlValue::Structure(exp), Value::Structure(act)) =
        (&mut expected.value, &mut actual.value)
    else {
        return;
    };
    blank_policy_xml(exp);
    blank_policy(act);
    follow_order(exp, act);
}

/// Relaxes the attribute answers of a response (see the module comment).
pub(super) fn relax_attribute_answers(expected: &mut XmlNode, actual: &mut Ttlv) {
    let (XmlValue::Structure(exp_items), Value::Structure(act_items)) =
        (&mut expected.value, &mut actual.value)
    else {
        return;
    };
    let exp_batch = exp_items.iter_mut().filter(|c| c.tag == tags::BATCH_ITEM);
    let act_batch = act_items.iter_mut().filter(|c| c.tag == tags::BATCH_ITEM);
    for (exp, act) in exp_batch.zip(act_batch) {
        if !operation_of(act).is_some_and(|op| ATTRIBUTE_ANSWERS.contains(&op)) {
            continue;
        }
        let (Some(exp_payload), Some(act_payload)) = (
            child_node_mut(exp, tags::RESPONSE_PAYLOAD),
            child_ttlv_mut(act, tags::RESPONSE_PAYLOAD),
        ) else {
            continue;
        };
        if let (Some(e), Some(a)) = (
            child_node_mut(exp_payload, tags::ATTRIBUTES),
            child_ttlv_mut(act_payload, tags::ATTRIBUTES),
        ) {
            relax_list(e, a);
        }
        relax_list(exp_payload, act_payload);
    }
}
