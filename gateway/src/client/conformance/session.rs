//! What one vector file learns from the server's answers: identifiers and values to bind in
//! later requests, and which recorded literals stand for values the server chose.

use kmip_wire::compare::{compare, CompareOptions, Difference};
use kmip_wire::names::tag_name;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use kmip_wire::xml::{Bindings, Placeholder, XmlNode, XmlValue};
use std::collections::HashMap;

use super::attribute_answers::relax_attribute_answers;
use super::relax::{
    blank_generator_description, blank_generator_description_xml, drop_default_attribute_index,
    drop_default_attribute_index_xml, mask_generated_key_material, operation_of,
    relax_server_specific,
};
use super::{IDENTIFIER_TAGS, UID_PREFIX};

/// Placeholder names for literals made volatile start with this; vector names never do (they
/// are `$` followed by upper-case letters).
const VOLATILE_PREFIX: &str = "~volatile";

/// Operations whose new objects hold material the server generated (random key bits, a
/// certificate signature): their values cannot match the recorded ones.
const GENERATING_OPERATIONS: &[&str] = &[
    "Create",
    "CreateKeyPair",
    "ReKey",
    "ReKeyKeyPair",
    "DeriveKey",
    "CreateSplitKey",
    "Certify",
    "ReCertify",
];

/// Operations whose outputs are computed with the key: random when the key is generated.
const KEYED_OUTPUT_OPERATIONS: &[&str] = &["Encrypt", "Decrypt", "Sign", "MAC"];

/// Object Types (Public Key, Private Key) whose Encrypt and Sign outputs are randomized
/// (RSA-OAEP, PKCS#1 v1.5 encryption, PSS, ECDSA): a recorded ciphertext or signature cannot
/// match, whoever made the key. The vectors check them by decrypting or verifying next.
const RANDOMIZED_OUTPUT_OBJECT_TYPES: [u32; 2] = [3, 4];

/// What one vector file has learnt so far from the server's answers.
#[derive(Default)]
pub(super) struct Session {
    pub(super) bindings: Bindings,
    /// Identifiers bound so far (`$UNIQUE_IDENTIFIER_n` for n < this).
    pub(super) uid_count: usize,
    /// Identifiers of objects whose material the server generated.
    generated: Vec<String>,
    /// Identifiers of registered asymmetric keys (see [`RANDOMIZED_OUTPUT_OBJECT_TYPES`]).
    randomized: Vec<String>,
    /// The last value the server returned for each tag (leaves only).
    pub(super) last_by_tag: HashMap<Tag, Value>,
    /// Recorded literals that stood for server-chosen values → what the server actually chose.
    replaced_literals: Vec<(Value, Value)>,
    volatile_count: usize,
}

impl Session {
    /// The request to send: recorded literals replaced by the server's actual values, and
    /// placeholders filled. A placeholder no response has bound yet (1.x vectors name a value the
    /// reference server returned as a literal, e.g. `$DATA_0`, `$IV_COUNTER_NONCE` after a
    /// literal ciphertext and IV) takes the last value the server returned under the same tag.
    pub(super) fn prepare_request(&mut self, request: &XmlNode) -> Result<Ttlv, String> {
        let mut node = request.clone();
        self.replace_literals(&mut node);
        self.bind_from_last_seen(&node, &mut String::new())?;
        node.to_ttlv(&self.bindings).map_err(|e| e.to_string())
    }

    fn replace_literals(&self, node: &mut XmlNode) {
        match &mut node.value {
            XmlValue::Structure(children) => {
                children.iter_mut().for_each(|c| self.replace_literals(c));
            }
            XmlValue::Value(v) => {
                if let Some((_, actual)) = self.replaced_literals.iter().find(|(lit, _)| lit == v) {
                    *v = actual.clone();
                }
            }
            XmlValue::Placeholder { .. } => {}
        }
    }

    fn bind_from_last_seen(&mut self, node: &XmlNode, path: &mut String) -> Result<(), String> {
        let len = path.len();
        path.push('/');
        path.push_str(tag_name(node.tag).unwrap_or("?"));
        match &node.value {
            XmlValue::Structure(children) => {
                for c in children {
                    self.bind_from_last_seen(c, path)?;
                }
            }
            XmlValue::Value(_) => {}
            XmlValue::Placeholder {
                item_type,
                placeholder,
            } => {
                if self.bindings.resolve(placeholder, *item_type).is_none() {
                    let fallback = (!placeholder.0.starts_with(UID_PREFIX))
                        .then(|| self.last_by_tag.get(&node.tag))
                        .flatten()
                        .filter(|v| v.item_type() == *item_type)
                        .cloned();
                    match fallback {
                        Some(v) => self.bindings.bind(&placeholder.0, v),
                        None => {
                            return Err(format!(
                                "{path}: no value known for ${} (the server has not returned it)",
                                placeholder.0
                            ))
                        }
                    }
                }
            }
        }
        path.truncate(len);
        Ok(())
    }

    /// Compares the actual response with the expected one, then learns from it.
    pub(super) fn check_response(
        &mut self,
        request: &Ttlv,
        expected: &XmlNode,
        actual: &Ttlv,
    ) -> Result<(), Difference> {
        self.note_objects_made_before(actual);
        self.bind_new_identifiers(actual);
        let mut expected = expected.clone();
        let volatile = self.mark_volatile(request, &mut expected, actual);
        let mut relaxed = actual.clone();
        drop_default_attribute_index_xml(&mut expected);
        drop_default_attribute_index(&mut relaxed);
        blank_generator_description_xml(&mut expected);
        blank_generator_description(&mut relaxed);
        relax_server_specific(&mut expected, &mut relaxed)?;
        relax_attribute_answers(&mut expected, &mut relaxed);
        mask_generated_key_material(&expected, &mut relaxed);
        let mut options = CompareOptions::default();
        options.ignored_tags.push(tags::RESULT_MESSAGE);
        compare(&expected, &relaxed, &options, &mut self.bindings)?;
        for (name, literal) in volatile {
            if let Some(actual) = self.bindings.get(&name) {
                if *actual != literal {
                    self.replaced_literals.push((literal, actual.clone()));
                }
            }
        }
        self.learn(actual);
        Ok(())
    }

    /// An object Locate finds that this file has not seen yet was made before the file began
    /// (TL-M-3 works on the key TL-M-2 created): the material the server holds for it is
    /// unknown to the file, as for a key the server generated.
    fn note_objects_made_before(&mut self, actual: &Ttlv) {
        for item in actual.children(tags::BATCH_ITEM) {
            if operation_of(item) != Some("Locate") {
                continue;
            }
            let Some(payload) = item.child(tags::RESPONSE_PAYLOAD) else {
                continue;
            };
            for uid in payload
                .children(tags::UNIQUE_IDENTIFIER)
                .filter_map(Ttlv::as_text)
            {
                let bound = (0..self.uid_count).any(|n| {
                    self.bindings.get(&format!("{UID_PREFIX}{n}"))
                        == Some(&Value::TextString(uid.to_owned()))
                });
                if !bound && !self.generated.iter().any(|g| g == uid) {
                    self.generated.push(uid.to_owned());
                }
            }
        }
    }

    /// Binds `$UNIQUE_IDENTIFIER_n` to the n-th distinct identifier the server returned, in
    /// order of appearance.
    pub(super) fn bind_new_identifiers(&mut self, t: &Ttlv) {
        match &t.value {
            Value::Structure(items) => items.iter().for_each(|i| self.bind_new_identifiers(i)),
            Value::TextString(s) if IDENTIFIER_TAGS.contains(&t.tag) => {
                let known = (0..self.uid_count).any(|n| {
                    self.bindings.get(&format!("{UID_PREFIX}{n}"))
                        == Some(&Value::TextString(s.clone()))
                });
                if !known {
                    self.bindings.bind(
                        &format!("{UID_PREFIX}{}", self.uid_count),
                        Value::TextString(s.clone()),
                    );
                    self.uid_count += 1;
                }
            }
            _ => {}
        }
    }

    /// Turns the recorded literals of server-chosen values in `expected` into fresh placeholders;
    /// returns their names with the literals they replaced.
    fn mark_volatile(
        &mut self,
        request: &Ttlv,
        expected: &mut XmlNode,
        actual: &Ttlv,
    ) -> Vec<(String, Value)> {
        let mut marked = Vec::new();
        let requests: Vec<&Ttlv> = request.children(tags::BATCH_ITEM).collect();
        let actuals: Vec<&Ttlv> = actual.children(tags::BATCH_ITEM).collect();
        let XmlValue::Structure(items) = &mut expected.value else {
            return marked;
        };
        for (i, item) in items
            .iter_mut()
            .filter(|c| c.tag == tags::BATCH_ITEM)
            .enumerate()
        {
            let (Some(req), Some(act)) = (requests.get(i), actuals.get(i)) else {
                continue;
            };
            let operation = operation_of(req).unwrap_or_default();
            let req_payload = req.child(tags::REQUEST_PAYLOAD);
            let uid = act
                .child(tags::RESPONSE_PAYLOAD)
                .and_then(|p| p.child(tags::UNIQUE_IDENTIFIER))
                .or_else(|| req_payload.and_then(|p| p.child(tags::UNIQUE_IDENTIFIER)))
                .and_then(Ttlv::as_text);
            let generated_key = uid.is_some_and(|u| self.generated.iter().any(|g| g == u));
            let registers_asymmetric = operation == "Register"
                && req_payload
                    .and_then(|p| p.child(tags::OBJECT_TYPE))
                    .and_then(|t| t.as_enum())
                    .is_some_and(|t| RANDOMIZED_OUTPUT_OBJECT_TYPES.contains(&t));
            if let (true, Some(u)) = (registers_asymmetric, uid) {
                self.randomized.push(u.to_owned());
            }
            let mut volatile_tags: Vec<Tag> = Vec::new();
            if uid.is_some_and(|u| self.randomized.iter().any(|g| g == u))
                && KEYED_OUTPUT_OPERATIONS.contains(&operation)
            {
                volatile_tags.extend([tags::DATA, tags::SIGNATURE_DATA]);
            }
            if generated_key {
                volatile_tags.extend([tags::KEY_MATERIAL, tags::DIGEST_VALUE, tags::KEY_VALUE]);
                volatile_tags.push(tags::CERTIFICATE_VALUE);
                if KEYED_OUTPUT_OPERATIONS.contains(&operation) {
                    volatile_tags.extend([
                        tags::DATA,
                        tags::SIGNATURE_DATA,
                        tags::MACDATA,
                        tags::AUTHENTICATED_ENCRYPTION_TAG,
                    ]);
                }
            }
            let iv_from_server = operation == "Encrypt"
                && req_payload.is_some_and(|p| p.child(tags::IV_COUNTER_NONCE).is_none());
            if iv_from_server {
                volatile_tags.extend([
                    tags::IV_COUNTER_NONCE,
                    tags::DATA,
                    tags::AUTHENTICATED_ENCRYPTION_TAG,
                ]);
            }
            // Random bytes are the server's to choose.
            if operation == "RNGRetrieve" {
                volatile_tags.push(tags::DATA);
            }
            if volatile_tags.is_empty() {
                continue;
            }
            let XmlValue::Structure(parts) = &mut item.value else {
                continue;
            };
            for payload in parts.iter_mut().filter(|p| p.tag == tags::RESPONSE_PAYLOAD) {
                self.mark_tags(payload, &volatile_tags, false, &mut marked);
            }
        }
        marked
    }

    /// Replaces the literal leaves of `node` under any of `volatile_tags` by fresh placeholders.
    fn mark_tags(
        &mut self,
        node: &mut XmlNode,
        volatile_tags: &[Tag],
        inside: bool,
        marked: &mut Vec<(String, Value)>,
    ) {
        let inside = inside || volatile_tags.contains(&node.tag);
        match &mut node.value {
            XmlValue::Structure(children) => {
                for c in children {
                    self.mark_tags(c, volatile_tags, inside, marked);
                }
            }
            XmlValue::Value(v) if inside => {
                let name = format!("{VOLATILE_PREFIX}{}", self.volatile_count);
                self.volatile_count += 1;
                marked.push((name.clone(), v.clone()));
                node.value = XmlValue::Placeholder {
                    item_type: v.item_type(),
                    placeholder: Placeholder(name),
                };
            }
            XmlValue::Value(_) | XmlValue::Placeholder { .. } => {}
        }
    }

    /// Records generated objects and the last value returned under each tag.
    fn learn(&mut self, actual: &Ttlv) {
        for item in actual.children(tags::BATCH_ITEM) {
            let generating =
                operation_of(item).is_some_and(|op| GENERATING_OPERATIONS.contains(&op));
            if let (true, Some(payload)) = (generating, item.child(tags::RESPONSE_PAYLOAD)) {
                for tag in IDENTIFIER_TAGS {
                    if let Some(uid) = payload.child(tag).and_then(Ttlv::as_text) {
                        self.generated.push(uid.to_owned());
                    }
                }
            }
        }
        self.remember_leaves(actual);
    }

    fn remember_leaves(&mut self, t: &Ttlv) {
        match &t.value {
            Value::Structure(items) => items.iter().for_each(|i| self.remember_leaves(i)),
            v => {
                self.last_by_tag.insert(t.tag, v.clone());
            }
        }
    }
}
