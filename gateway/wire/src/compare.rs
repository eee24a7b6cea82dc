//! Checking messages against the OASIS XML test vectors.
//!
//! [`compare`] matches an expected message (an [`XmlNode`], placeholders included) against a
//! decoded [`Ttlv`], binding placeholders on first sight. [`codec_roundtrip_document`] proves the
//! codec on the text of a vector file: XML → TTLV bytes → decode → XML, equal to the original.

use std::fmt;

use crate::names::{mask_for_tag, tag_by_spec_name, tag_hex, tag_name};
use crate::spec::tags;
use crate::ttlv::{decode, ItemType, Limits, Tag, Ttlv, Value};
use crate::xml::{
    message_elements, parse_node, to_xml_string, Bindings, Element, Placeholder, XmlNode, XmlValue,
};

/// Where an actual message first differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Element path, e.g. `/ResponseMessage/BatchItem/ResponsePayload/UniqueIdentifier`.
    pub path: String,
    pub what: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

impl std::error::Error for Difference {}

/// What [`compare`] tolerates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareOptions {
    /// Items skipped on both sides wherever they appear (their presence is not checked either).
    pub ignored_tags: Vec<Tag>,
    /// Structures whose children may come in any order.
    pub unordered_structures: Vec<Tag>,
    /// Items that may come in any order among a run of their own kind (1.x `Attribute`s).
    pub unordered_runs: Vec<Tag>,
    /// How far (seconds) a Date Time may be from what `$NOW±n` stands for when
    /// `Bindings::now` is set; with `now` unset any Date Time matches `$NOW`.
    pub now_tolerance: i64,
}

impl Default for CompareOptions {
    /// What a server runner needs: server-chosen values ignored, attribute order free (the
    /// specifications do not order attributes), five minutes of clock slack.
    fn default() -> Self {
        CompareOptions {
            ignored_tags: vec![tags::TIME_STAMP, tags::SERVER_CORRELATION_VALUE],
            unordered_structures: vec![
                tags::ATTRIBUTES,
                tags::COMMON_ATTRIBUTES,
                tags::PRIVATE_KEY_ATTRIBUTES,
                tags::PUBLIC_KEY_ATTRIBUTES,
                tags::TEMPLATE_ATTRIBUTE,
                tags::COMMON_TEMPLATE_ATTRIBUTE,
                tags::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
                tags::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
            ],
            unordered_runs: vec![tags::ATTRIBUTE],
            now_tolerance: 300,
        }
    }
}

impl CompareOptions {
    /// Everything compared, in order, to the second.
    pub fn exact() -> Self {
        CompareOptions {
            ignored_tags: Vec::new(),
            unordered_structures: Vec::new(),
            unordered_runs: Vec::new(),
            now_tolerance: 0,
        }
    }
}

/// Compares `actual` with `expected`. A placeholder that `bindings` does not know yet is bound to
/// the actual value (e.g. `$UNIQUE_IDENTIFIER_0` in a response); a known one must match. On a
/// difference, bindings made by the failed comparison may remain.
pub fn compare(
    expected: &XmlNode,
    actual: &Ttlv,
    options: &CompareOptions,
    bindings: &mut Bindings,
) -> Result<(), Difference> {
    let mut path = String::new();
    compare_at(expected, actual, options, bindings, &mut path)
}

fn push_segment(path: &mut String, tag: Tag) {
    path.push('/');
    match tag_name(tag) {
        Some(n) => path.push_str(n),
        None => path.push_str(&tag_hex(tag)),
    }
}

fn diff(path: &str, what: impl Into<String>) -> Difference {
    Difference {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn compare_at(
    expected: &XmlNode,
    actual: &Ttlv,
    options: &CompareOptions,
    bindings: &mut Bindings,
    path: &mut String,
) -> Result<(), Difference> {
    let len = path.len();
    push_segment(path, expected.tag);
    if expected.tag != actual.tag {
        let name = tag_name(actual.tag).map_or_else(|| tag_hex(actual.tag), str::to_owned);
        return Err(diff(path, format!("found {name} instead")));
    }
    if expected.item_type() != actual.value.item_type() {
        return Err(diff(
            path,
            format!(
                "type {:?} expected, found {:?}",
                expected.item_type(),
                actual.value.item_type()
            ),
        ));
    }
    match &expected.value {
        XmlValue::Structure(children) => {
            let exp: Vec<&XmlNode> = children
                .iter()
                .filter(|c| !options.ignored_tags.contains(&c.tag))
                .collect();
            let act: Vec<&Ttlv> = actual
                .items()
                .iter()
                .filter(|c| !options.ignored_tags.contains(&c.tag))
                .collect();
            if options.unordered_structures.contains(&expected.tag) {
                match_unordered(&exp, &act, options, bindings, path)?;
            } else {
                match_ordered(&exp, &act, options, bindings, path)?;
            }
        }
        XmlValue::Value(v) => {
            if !values_equal(v, &actual.value) {
                return Err(diff(
                    path,
                    format!("expected {v:?}, found {:?}", actual.value),
                ));
            }
        }
        XmlValue::Placeholder { placeholder, .. } => {
            compare_placeholder(placeholder, &actual.value, options, bindings)
                .map_err(|what| diff(path, what))?;
        }
    }
    path.truncate(len);
    Ok(())
}

fn compare_placeholder(
    p: &Placeholder,
    actual: &Value,
    options: &CompareOptions,
    bindings: &mut Bindings,
) -> Result<(), String> {
    if let Some(offset) = p.now_offset() {
        let Some(now) = bindings.now else {
            return Ok(());
        };
        let t = match actual {
            Value::DateTime(t) => *t,
            Value::DateTimeExtended(us) => us.div_euclid(1_000_000),
            other => return Err(format!("${} stands for a Date Time, found {other:?}", p.0)),
        };
        let want = now.saturating_add(offset);
        if t.abs_diff(want) > options.now_tolerance.unsigned_abs() {
            return Err(format!("${} = {want}, found {t}", p.0));
        }
        return Ok(());
    }
    match bindings.get(&p.0) {
        Some(bound) if values_equal(bound, actual) => Ok(()),
        Some(bound) => Err(format!("${} = {bound:?}, found {actual:?}", p.0)),
        None => {
            bindings.bind(&p.0, actual.clone());
            Ok(())
        }
    }
}

/// Value equality, with Big Integers compared by numeric value (any sign extension).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::BigInteger(x), Value::BigInteger(y)) => {
            crate::xml::big_integer_wire_form(strip_sign(x))
                == crate::xml::big_integer_wire_form(strip_sign(y))
        }
        _ => a == b,
    }
}

/// Removes redundant leading sign bytes.
fn strip_sign(b: &[u8]) -> &[u8] {
    let mut s = b;
    while s.len() > 1 && ((s[0] == 0 && s[1] & 0x80 == 0) || (s[0] == 0xFF && s[1] & 0x80 != 0)) {
        s = &s[1..];
    }
    s
}

fn match_ordered(
    exp: &[&XmlNode],
    act: &[&Ttlv],
    options: &CompareOptions,
    bindings: &mut Bindings,
    path: &mut String,
) -> Result<(), Difference> {
    let (mut i, mut j) = (0, 0);
    while i < exp.len() {
        let tag = exp[i].tag;
        if options.unordered_runs.contains(&tag) {
            let ei = exp[i..].iter().take_while(|n| n.tag == tag).count();
            let aj = act[j..].iter().take_while(|n| n.tag == tag).count();
            match_unordered(&exp[i..i + ei], &act[j..j + aj], options, bindings, path)?;
            i += ei;
            j += aj;
            continue;
        }
        let Some(a) = act.get(j) else {
            let mut p = path.clone();
            push_segment(&mut p, tag);
            return Err(diff(&p, "missing"));
        };
        compare_at(exp[i], a, options, bindings, path)?;
        i += 1;
        j += 1;
    }
    if let Some(extra) = act.get(j) {
        let mut p = path.clone();
        push_segment(&mut p, extra.tag);
        return Err(diff(&p, "unexpected item"));
    }
    Ok(())
}

fn match_unordered(
    exp: &[&XmlNode],
    act: &[&Ttlv],
    options: &CompareOptions,
    bindings: &mut Bindings,
    path: &str,
) -> Result<(), Difference> {
    let mut used = vec![false; act.len()];
    for e in exp {
        let mut first_difference = None;
        let mut found = false;
        for (k, a) in act.iter().enumerate() {
            if used[k] || a.tag != e.tag {
                continue;
            }
            let mut trial = bindings.clone();
            match compare_at(e, a, options, &mut trial, &mut path.to_owned()) {
                Ok(()) => {
                    *bindings = trial;
                    used[k] = true;
                    found = true;
                    break;
                }
                Err(d) => {
                    first_difference.get_or_insert(d);
                }
            }
        }
        if !found {
            return Err(first_difference.unwrap_or_else(|| {
                let mut p = path.to_owned();
                push_segment(&mut p, e.tag);
                diff(&p, "missing")
            }));
        }
    }
    if let Some(k) = used.iter().position(|u| !u) {
        let mut p = path.to_owned();
        push_segment(&mut p, act[k].tag);
        return Err(diff(&p, "unexpected item"));
    }
    Ok(())
}

/// A fixed instant `$NOW` stands for in codec checks.
const DUMMY_NOW: i64 = 1_600_000_000;

/// Binds every placeholder of `node` not yet bound to a value of its type, distinct per name so
/// that a placeholder written back in the wrong place is caught.
fn bind_dummies(node: &XmlNode, bindings: &mut Bindings) {
    bindings.now.get_or_insert(DUMMY_NOW);
    node.for_each_placeholder(&mut |p, item_type| {
        if p.now_offset().is_some() || bindings.get(&p.0).is_some() {
            return;
        }
        let seed =
            p.0.bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let value = match item_type {
            ItemType::Structure => return,
            ItemType::Integer => Value::Integer(seed as i32),
            ItemType::LongInteger => Value::LongInteger(i64::from(seed)),
            ItemType::BigInteger => {
                Value::BigInteger(crate::xml::big_integer_wire_form(&seed.to_be_bytes()))
            }
            ItemType::Enumeration => Value::Enumeration(seed),
            ItemType::Boolean => Value::Boolean(seed % 2 == 1),
            ItemType::TextString => Value::TextString(format!("dummy {}", p.0)),
            ItemType::ByteString => Value::ByteString(bytes::Bytes::from(p.0.clone().into_bytes())),
            ItemType::DateTime => Value::DateTime(i64::from(seed)),
            ItemType::Interval => Value::Interval(seed),
            ItemType::DateTimeExtended => Value::DateTimeExtended(i64::from(seed)),
        };
        bindings.bind(&p.0, value);
    });
}

/// Runs the codec round trip on every message of a vector document (the text of a file): XML → [`Ttlv`] (placeholders
/// replaced by type-correct dummies, the same value for the same name across the file) → bytes →
/// decode (must equal) → XML text → compared with the original element by element (names, types
/// and values, with Date Times, hex and masks compared by value) and re-parsed to the same tree.
/// Returns the number of messages, or the first difference with its message index and element
/// path (the caller names the file).
pub fn codec_roundtrip_document(text: &str) -> Result<usize, String> {
    let elements = message_elements(text).map_err(|e| e.to_string())?;
    let mut bindings = Bindings::new();
    for (i, el) in elements.iter().enumerate() {
        codec_roundtrip_element(el, &mut bindings)
            .map_err(|e| format!("message {i} (<{}>): {e}", el.name))?;
    }
    Ok(elements.len())
}

fn codec_roundtrip_element(el: &Element, bindings: &mut Bindings) -> Result<(), String> {
    let node = crate::xml::node_from(el).map_err(|e| e.to_string())?;
    bind_dummies(&node, bindings);
    let ttlv = node.to_ttlv(bindings).map_err(|e| e.to_string())?;
    let bytes = ttlv.to_bytes().map_err(|e| format!("encode: {e}"))?;
    let decoded = decode(&bytes, &Limits::default()).map_err(|e| format!("decode: {e}"))?;
    if decoded != ttlv {
        return Err("decoded TTLV differs from the encoded tree".into());
    }
    let mut check = bindings.clone();
    compare(&node, &decoded, &CompareOptions::exact(), &mut check).map_err(|d| d.to_string())?;
    let written = to_xml_string(&decoded);
    let reparsed = parse_node(&written).map_err(|e| format!("re-reading written XML: {e}"))?;
    let again = reparsed
        .to_ttlv(&Bindings::new())
        .map_err(|e| format!("written XML: {e}"))?;
    if again != decoded {
        return Err("written XML reads back as a different tree".into());
    }
    let written_el = crate::xml::parse_elements(&written)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("nothing written")?;
    compare_elements(el, &written_el, &mut String::new(), None)
}

/// Compares an original vector element with the one the writer produced: same names, types and
/// value texts, where Date Times, hex and masks may be spelled differently for the same value and
/// placeholders stand for anything of their type.
fn compare_elements(
    orig: &Element,
    written: &Element,
    path: &mut String,
    attribute_name: Option<&str>,
) -> Result<(), String> {
    let len = path.len();
    path.push('/');
    path.push_str(&orig.name);
    if orig.name != written.name || orig.attr("tag") != written.attr("tag") {
        return Err(format!("{path}: written as <{}>", written.name));
    }
    let ty = orig.attr("type").unwrap_or("Structure");
    if ty != written.attr("type").unwrap_or("Structure") {
        return Err(format!("{path}: type written differently"));
    }
    if orig.children.len() != written.children.len() {
        return Err(format!(
            "{path}: {} children written instead of {}",
            written.children.len(),
            orig.children.len()
        ));
    }
    let names = if orig.name == "Attribute" {
        orig.children
            .iter()
            .find(|c| c.name == "AttributeName")
            .and_then(|c| c.attr("value"))
    } else {
        None
    };
    for (o, w) in orig.children.iter().zip(&written.children) {
        compare_elements(o, w, path, names)?;
    }
    if let (Some(o), Some(w)) = (orig.attr("value"), written.attr("value")) {
        if !o.starts_with('$') && !same_value_text(&orig.name, ty, o, w, attribute_name) {
            return Err(format!("{path}: value \"{o}\" written as \"{w}\""));
        }
    }
    path.truncate(len);
    Ok(())
}

fn same_value_text(name: &str, ty: &str, o: &str, w: &str, attribute_name: Option<&str>) -> bool {
    if o == w {
        return true;
    }
    let tag = if name == "AttributeValue" {
        attribute_name.and_then(tag_by_spec_name)
    } else {
        crate::names::tag_by_name(name)
    };
    match ty {
        "ByteString" => o.eq_ignore_ascii_case(w),
        // Same numeric value (sign extension, case): the parsed trees were already compared.
        "BigInteger" | "DateTime" | "DateTimeExtended" => true,
        "Integer" if tag.and_then(mask_for_tag).is_some() => {
            let mut a: Vec<&str> = o.split_whitespace().collect();
            let mut b: Vec<&str> = w.split_whitespace().collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        }
        // A hex enumeration is written back in hex only when it has no name.
        "Enumeration" => {
            let hex = |s: &str| {
                s.strip_prefix("0x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
            };
            hex(o).is_some() && hex(o) == hex(w)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_template;

    fn node(xml: &str) -> XmlNode {
        parse_template(xml).unwrap()
    }

    #[test]
    fn placeholders_bind_then_must_match() {
        let exp = node(
            r#"<ResponsePayload>
                <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
                <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
            </ResponsePayload>"#,
        );
        let uid = |s: &str| Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(s.into()));
        let ok = Ttlv::structure(tags::RESPONSE_PAYLOAD, vec![uid("a"), uid("a")]);
        let bad = Ttlv::structure(tags::RESPONSE_PAYLOAD, vec![uid("a"), uid("b")]);
        let mut b = Bindings::new();
        compare(&exp, &ok, &CompareOptions::default(), &mut b).unwrap();
        assert_eq!(
            b.get("UNIQUE_IDENTIFIER_0"),
            Some(&Value::TextString("a".into()))
        );
        let d = compare(&exp, &bad, &CompareOptions::default(), &mut Bindings::new()).unwrap_err();
        assert_eq!(d.path, "/ResponsePayload/UniqueIdentifier");
    }

    #[test]
    fn ignored_tags_and_now_tolerance() {
        let exp = node(
            r#"<ResponseHeader>
                <TimeStamp type="DateTime" value="$NOW"/>
                <ActivationDate type="DateTime" value="$NOW-3600"/>
            </ResponseHeader>"#,
        );
        let act = |t: i64| {
            Ttlv::structure(
                tags::RESPONSE_HEADER,
                vec![
                    Ttlv::new(
                        tags::SERVER_CORRELATION_VALUE,
                        Value::TextString("x".into()),
                    ),
                    Ttlv::new(tags::ACTIVATION_DATE, Value::DateTime(t)),
                ],
            )
        };
        let mut b = Bindings::new();
        b.now = Some(10_000);
        let opts = CompareOptions::default();
        compare(&exp, &act(6_400 + 299), &opts, &mut b).unwrap();
        let d = compare(&exp, &act(6_400 + 301), &opts, &mut b).unwrap_err();
        assert_eq!(d.path, "/ResponseHeader/ActivationDate");
        assert!(compare(&exp, &act(6_400), &CompareOptions::exact(), &mut b).is_err());
    }

    #[test]
    fn attribute_order_is_free_only_when_asked() {
        let exp = node(
            r#"<Attributes>
                <CryptographicAlgorithm type="Enumeration" value="AES"/>
                <CryptographicLength type="Integer" value="256"/>
            </Attributes>"#,
        );
        let act = Ttlv::structure(
            tags::ATTRIBUTES,
            vec![
                Ttlv::new(tags::CRYPTOGRAPHIC_LENGTH, Value::Integer(256)),
                Ttlv::new(tags::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(3)),
            ],
        );
        compare(&exp, &act, &CompareOptions::default(), &mut Bindings::new()).unwrap();
        let d = compare(&exp, &act, &CompareOptions::exact(), &mut Bindings::new()).unwrap_err();
        assert_eq!(d.path, "/Attributes/CryptographicAlgorithm");
    }

    #[test]
    fn big_integers_compare_by_value() {
        assert!(values_equal(
            &Value::BigInteger(vec![0, 0, 1].into()),
            &Value::BigInteger(vec![0, 0, 0, 0, 0, 0, 0, 1].into())
        ));
        assert!(!values_equal(
            &Value::BigInteger(vec![0xff].into()),
            &Value::BigInteger(vec![0, 0, 0, 0, 0, 0, 0, 0xff].into())
        ));
    }
}
