//! Runs the OASIS KMIP XML test vectors against a live server (the `kmip-conformance` binary).
//!
//! A vector file alternates `RequestMessage` / `ResponseMessage`. Each request is sent in order
//! over one connection, with placeholders filled from what the server actually answered, and each
//! actual response is compared structurally with the expected one (`kmip_wire::conformance`).
//!
//! What the vectors recorded but a correct server cannot reproduce is not compared: time stamps,
//! correlation values and result messages; the key material, digests and cryptographic outputs
//! of keys the server generated; IVs the server chose and what was encrypted under them. Such a
//! literal is compared as a placeholder instead, and when a later request quotes it (1.x vectors
//! copy ciphertexts literally) the value the server actually returned is sent in its place.

use crate::client::{ClientError, ClientTls, KmipClient};
use kmip_wire::conformance::{compare, CompareOptions, Difference};
use kmip_wire::names::{enum_names_for_tag, tag_name};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use kmip_wire::xml::{
    parse_document, Bindings, Placeholder, XmlError, XmlNode, XmlValue, MAX_XML_SIZE,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Placeholder names for literals made volatile start with this; vector names never do (they
/// are `$` followed by upper-case letters).
const VOLATILE_PREFIX: &str = "~volatile";

/// Placeholder name prefix of the identifiers the server returns, numbered by first appearance.
pub const UID_PREFIX: &str = "UNIQUE_IDENTIFIER_";

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
const KEYED_OUTPUT_OPERATIONS: &[&str] = &["Encrypt", "Sign", "MAC"];

/// Tags carrying identifiers the server assigned.
pub const IDENTIFIER_TAGS: [Tag; 3] = [
    tags::UNIQUE_IDENTIFIER,
    tags::PRIVATE_KEY_UNIQUE_IDENTIFIER,
    tags::PUBLIC_KEY_UNIQUE_IDENTIFIER,
];

/// Everything that makes a vector file fail.
#[derive(Debug, Error)]
pub enum ConformanceError {
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("vector: {0}")]
    Vector(String),
    #[error("cannot list {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("connect: {0}")]
    Connect(ClientError),
    #[error("request {index} ({operation}): {what}")]
    Request {
        index: usize,
        operation: String,
        what: String,
    },
    #[error("request {index} ({operation}): {source}")]
    Exchange {
        index: usize,
        operation: String,
        source: ClientError,
    },
    #[error("response {index} ({operation}): {difference}{}", server.as_deref().map(|s| format!(" [server: {s}]")).unwrap_or_default())]
    Mismatch {
        index: usize,
        operation: String,
        difference: Difference,
        /// What the server said when a batch item failed.
        server: Option<String>,
    },
}

/// The files named on a command line: files as given, folders expanded to their `*.xml` files
/// in name order.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConformanceError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ConformanceError::Dir {
                path: path.display().to_string(),
                source,
            })?;
            let mut found = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| ConformanceError::Dir {
                    path: path.display().to_string(),
                    source,
                })?;
                let p = entry.path();
                if p.is_file() && p.extension().is_some_and(|e| e == "xml") {
                    found.push(p);
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The name a result line shows for a file.
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Where and how to reach the server under test.
pub struct Target {
    pub addr: String,
    pub server_name: String,
    pub tls: ClientTls,
}

/// The text of a vector file; one larger than [`MAX_XML_SIZE`] is refused before it is read.
pub fn read_vector_file(path: &Path) -> Result<String, XmlError> {
    let io = |message: String| XmlError::Io {
        file: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    if meta.len() > MAX_XML_SIZE as u64 {
        return Err(io(format!("larger than {MAX_XML_SIZE} bytes")));
    }
    std::fs::read_to_string(path).map_err(|e| io(e.to_string()))
}

/// Request/response pairs of a vector file, in order.
fn exchanges(path: &Path) -> Result<Vec<(XmlNode, XmlNode)>, ConformanceError> {
    let nodes = parse_document(&read_vector_file(path)?)?;
    if nodes.len() % 2 != 0 {
        return Err(ConformanceError::Vector(format!(
            "{} messages: requests and responses do not pair up",
            nodes.len()
        )));
    }
    let mut pairs = Vec::with_capacity(nodes.len() / 2);
    let mut it = nodes.into_iter();
    while let (Some(req), Some(resp)) = (it.next(), it.next()) {
        if req.tag != tags::REQUEST_MESSAGE || resp.tag != tags::RESPONSE_MESSAGE {
            return Err(ConformanceError::Vector(format!(
                "message {} is not a RequestMessage followed by a ResponseMessage",
                pairs.len() * 2
            )));
        }
        pairs.push((req, resp));
    }
    Ok(pairs)
}

/// Runs one vector file over a fresh connection; `Ok` when every response matched.
pub async fn run_file(path: &Path, target: &Target) -> Result<(), ConformanceError> {
    let pairs = exchanges(path)?;
    let mut client = KmipClient::connect(&target.addr, &target.server_name, &target.tls)
        .await
        .map_err(ConformanceError::Connect)?;
    let mut session = Session::default();
    for (index, (request, expected)) in pairs.iter().enumerate() {
        let operation = operations_of(request);
        session.bindings.now = Some(unix_now());
        let request =
            session
                .prepare_request(request)
                .map_err(|what| ConformanceError::Request {
                    index,
                    operation: operation.clone(),
                    what,
                })?;
        let actual = client
            .call(&request)
            .await
            .map_err(|source| ConformanceError::Exchange {
                index,
                operation: operation.clone(),
                source,
            })?;
        session
            .check_response(&request, expected, &actual)
            .map_err(|difference| ConformanceError::Mismatch {
                index,
                operation,
                difference,
                server: server_error(&actual),
            })?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The operations of a message's batch items, for messages: `Create` or `Encrypt+Decrypt`.
fn operations_of(message: &XmlNode) -> String {
    let names: Vec<String> = message
        .children()
        .iter()
        .filter(|c| c.tag == tags::BATCH_ITEM)
        .filter_map(|item| item.children().iter().find(|c| c.tag == tags::OPERATION))
        .map(|op| match &op.value {
            XmlValue::Value(Value::Enumeration(v)) => operation_name(*v),
            _ => "?".to_owned(),
        })
        .collect();
    if names.is_empty() {
        "no operation".to_owned()
    } else {
        names.join("+")
    }
}

fn operation_name(value: u32) -> String {
    enum_names_for_tag(tags::OPERATION)
        .and_then(|n| n.name_of(value))
        .map_or_else(|| format!("0x{value:08X}"), str::to_owned)
}

fn operation_of(item: &Ttlv) -> Option<&'static str> {
    let value = item.child(tags::OPERATION)?.as_enum()?;
    enum_names_for_tag(tags::OPERATION)?.name_of(value)
}

/// A server may return `Attribute Index` 0 or omit it (1.x: an absent index "SHALL be assumed
/// to be 0"); the vectors omit it.
fn drop_default_attribute_index(t: &mut Ttlv) {
    if let Value::Structure(items) = &mut t.value {
        if t.tag == tags::ATTRIBUTE {
            items.retain(|i| !(i.tag == tags::ATTRIBUTE_INDEX && i.value == Value::Integer(0)));
        }
        items.iter_mut().for_each(drop_default_attribute_index);
    }
}

fn drop_default_attribute_index_xml(node: &mut XmlNode) {
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

/// Leaf values a Query response lists (what the server supports) and compares as a set.
const QUERY_LISTED: [Tag; 2] = [tags::OPERATION, tags::OBJECT_TYPE];

/// Relaxes what the specification leaves to the server:
/// - a Query answer describes the server: the operations and object types the vector lists must
///   be among those the server lists (in any order, more allowed); vendor and server information
///   and the other descriptions are not compared;
/// - Locate MAY return `Located Items` when the vector's server did not.
fn relax_server_specific(expected: &mut XmlNode, actual: &mut Ttlv) -> Result<(), Difference> {
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

fn child_node_mut(node: &mut XmlNode, tag: Tag) -> Option<&mut XmlNode> {
    match &mut node.value {
        XmlValue::Structure(c) => c.iter_mut().find(|c| c.tag == tag),
        _ => None,
    }
}

fn child_ttlv_mut(t: &mut Ttlv, tag: Tag) -> Option<&mut Ttlv> {
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

/// What one vector file has learnt so far from the server's answers.
#[derive(Default)]
struct Session {
    bindings: Bindings,
    /// Identifiers bound so far (`$UNIQUE_IDENTIFIER_n` for n < this).
    uid_count: usize,
    /// Identifiers of objects whose material the server generated.
    generated: Vec<String>,
    /// The last value the server returned for each tag (leaves only).
    last_by_tag: HashMap<Tag, Value>,
    /// Recorded literals that stood for server-chosen values → what the server actually chose.
    replaced_literals: Vec<(Value, Value)>,
    volatile_count: usize,
}

impl Session {
    /// The request to send: recorded literals replaced by the server's actual values, and
    /// placeholders filled. A placeholder no response has bound yet (1.x vectors name a value the
    /// reference server returned as a literal, e.g. `$DATA_0`, `$IV_COUNTER_NONCE` after a
    /// literal ciphertext and IV) takes the last value the server returned under the same tag.
    fn prepare_request(&mut self, request: &XmlNode) -> Result<Ttlv, String> {
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
    fn check_response(
        &mut self,
        request: &Ttlv,
        expected: &XmlNode,
        actual: &Ttlv,
    ) -> Result<(), Difference> {
        self.bind_new_identifiers(actual);
        let mut expected = expected.clone();
        let volatile = self.mark_volatile(request, &mut expected, actual);
        let mut relaxed = actual.clone();
        drop_default_attribute_index_xml(&mut expected);
        drop_default_attribute_index(&mut relaxed);
        relax_server_specific(&mut expected, &mut relaxed)?;
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

    /// Binds `$UNIQUE_IDENTIFIER_n` to the n-th distinct identifier the server returned, in
    /// order of appearance.
    fn bind_new_identifiers(&mut self, t: &Ttlv) {
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
            let mut volatile_tags: Vec<Tag> = Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::xml::parse_template;

    fn uid(s: &str) -> Ttlv {
        Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(s.into()))
    }

    #[test]
    fn identifiers_bind_in_order_of_appearance() {
        let mut s = Session::default();
        let resp = Ttlv::structure(tags::RESPONSE_PAYLOAD, vec![uid("b"), uid("a"), uid("b")]);
        s.bind_new_identifiers(&resp);
        assert_eq!(
            s.bindings.get("UNIQUE_IDENTIFIER_0"),
            Some(&Value::TextString("b".into()))
        );
        assert_eq!(
            s.bindings.get("UNIQUE_IDENTIFIER_1"),
            Some(&Value::TextString("a".into()))
        );
        assert_eq!(s.uid_count, 2);
    }

    #[test]
    fn unbound_request_placeholder_takes_the_last_value_of_its_tag() {
        let mut s = Session::default();
        s.last_by_tag
            .insert(tags::DATA, Value::ByteString(vec![1, 2, 3].into()));
        let req = parse_template(
            r#"<RequestPayload><Data type="ByteString" value="$DATA_0"/></RequestPayload>"#,
        )
        .unwrap();
        let t = s.prepare_request(&req).unwrap();
        assert_eq!(
            t.child(tags::DATA)
                .and_then(Ttlv::as_bytes)
                .map(|b| b.to_vec()),
            Some(vec![1, 2, 3])
        );
        let unknown = parse_template(
            r#"<RequestPayload><UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_3"/></RequestPayload>"#,
        )
        .unwrap();
        let err = s.prepare_request(&unknown).unwrap_err();
        assert!(err.contains("$UNIQUE_IDENTIFIER_3"), "{err}");
    }

    fn enc_request(iv: bool) -> Ttlv {
        let mut payload = vec![
            uid("k"),
            Ttlv::new(tags::DATA, Value::ByteString(vec![9; 16].into())),
        ];
        if iv {
            payload.push(Ttlv::new(
                tags::IV_COUNTER_NONCE,
                Value::ByteString(vec![7; 16].into()),
            ));
        }
        Ttlv::structure(
            tags::REQUEST_MESSAGE,
            vec![Ttlv::structure(
                tags::BATCH_ITEM,
                vec![
                    Ttlv::new(tags::OPERATION, Value::Enumeration(0x1F)),
                    Ttlv::structure(tags::REQUEST_PAYLOAD, payload),
                ],
            )],
        )
    }

    fn enc_response(data: u8, iv: u8) -> Ttlv {
        Ttlv::structure(
            tags::RESPONSE_MESSAGE,
            vec![Ttlv::structure(
                tags::BATCH_ITEM,
                vec![
                    Ttlv::new(tags::OPERATION, Value::Enumeration(0x1F)),
                    Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                    Ttlv::structure(
                        tags::RESPONSE_PAYLOAD,
                        vec![
                            uid("k"),
                            Ttlv::new(tags::DATA, Value::ByteString(vec![data; 16].into())),
                            Ttlv::new(
                                tags::IV_COUNTER_NONCE,
                                Value::ByteString(vec![iv; 16].into()),
                            ),
                        ],
                    ),
                ],
            )],
        )
    }

    const EXPECTED_ENCRYPT: &str = r#"<ResponseMessage><BatchItem>
        <Operation type="Enumeration" value="Encrypt"/>
        <ResultStatus type="Enumeration" value="Success"/>
        <ResponsePayload>
          <UniqueIdentifier type="TextString" value="k"/>
          <Data type="ByteString" value="01010101010101010101010101010101"/>
          <IVCounterNonce type="ByteString" value="02020202020202020202020202020202"/>
        </ResponsePayload></BatchItem></ResponseMessage>"#;

    #[test]
    fn server_chosen_iv_and_its_ciphertext_are_not_compared_but_replayed() {
        let expected = parse_template(EXPECTED_ENCRYPT).unwrap();
        let mut s = Session::default();
        s.check_response(&enc_request(false), &expected, &enc_response(5, 6))
            .unwrap();
        // A later request quoting the recorded ciphertext sends the actual one.
        let replay = parse_template(
            r#"<RequestPayload><Data type="ByteString" value="01010101010101010101010101010101"/></RequestPayload>"#,
        )
        .unwrap();
        let t = s.prepare_request(&replay).unwrap();
        assert_eq!(
            t.child(tags::DATA)
                .and_then(Ttlv::as_bytes)
                .map(|b| b.to_vec()),
            Some(vec![5; 16])
        );
    }

    #[test]
    fn client_supplied_iv_makes_the_ciphertext_compared() {
        let expected = parse_template(EXPECTED_ENCRYPT).unwrap();
        let mut s = Session::default();
        let d = s
            .check_response(&enc_request(true), &expected, &enc_response(5, 2))
            .unwrap_err();
        assert_eq!(d.path, "/ResponseMessage/BatchItem/ResponsePayload/Data");
        s.check_response(&enc_request(true), &expected, &enc_response(1, 2))
            .unwrap();
    }

    fn query_response(ops: &[u32]) -> Ttlv {
        let mut payload: Vec<Ttlv> = ops
            .iter()
            .map(|o| Ttlv::new(tags::OPERATION, Value::Enumeration(*o)))
            .collect();
        payload.push(Ttlv::new(
            tags::VENDOR_IDENTIFICATION,
            Value::TextString("another vendor".into()),
        ));
        Ttlv::structure(
            tags::RESPONSE_MESSAGE,
            vec![Ttlv::structure(
                tags::BATCH_ITEM,
                vec![
                    Ttlv::new(tags::OPERATION, Value::Enumeration(0x18)),
                    Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                    Ttlv::structure(tags::RESPONSE_PAYLOAD, payload),
                ],
            )],
        )
    }

    #[test]
    fn query_lists_compare_as_a_subset() {
        let expected = parse_template(
            r#"<ResponseMessage><BatchItem>
            <Operation type="Enumeration" value="Query"/>
            <ResultStatus type="Enumeration" value="Success"/>
            <ResponsePayload>
              <Operation type="Enumeration" value="Query"/>
              <Operation type="Enumeration" value="Locate"/>
              <VendorIdentification type="TextString" value="server-vendor.com"/>
            </ResponsePayload></BatchItem></ResponseMessage>"#,
        )
        .unwrap();
        let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
        // Locate (0x08) and Query (0x18) listed, in another order, with Get (0x0A) as well.
        Session::default()
            .check_response(&request, &expected, &query_response(&[0x0A, 0x08, 0x18]))
            .unwrap();
        let d = Session::default()
            .check_response(&request, &expected, &query_response(&[0x18]))
            .unwrap_err();
        assert!(d.what.contains("Locate"), "{d}");
    }

    #[test]
    fn attribute_index_zero_is_the_same_as_none() {
        let expected = parse_template(
            r#"<Attribute><AttributeName type="TextString" value="State"/>
               <AttributeValue type="Enumeration" value="PreActive"/></Attribute>"#,
        )
        .unwrap();
        let actual = |index: i32| {
            Ttlv::structure(
                tags::ATTRIBUTE,
                vec![
                    Ttlv::new(tags::ATTRIBUTE_NAME, Value::TextString("State".into())),
                    Ttlv::new(tags::ATTRIBUTE_INDEX, Value::Integer(index)),
                    Ttlv::new(tags::ATTRIBUTE_VALUE, Value::Enumeration(1)),
                ],
            )
        };
        let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
        Session::default()
            .check_response(&request, &expected, &actual(0))
            .unwrap();
        Session::default()
            .check_response(&request, &expected, &actual(1))
            .unwrap_err();
    }
}
