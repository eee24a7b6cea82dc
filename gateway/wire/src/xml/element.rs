//! The document as raw elements (names, attributes, children), read with quick-xml under the
//! size and depth bounds.

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{invalid, XmlError, MAX_XML_DEPTH, MAX_XML_SIZE};

/// A raw XML element: its name, attributes and child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn start_element(e: &BytesStart<'_>, offset: u64) -> Result<Element, XmlError> {
    let syntax = |message: String| XmlError::Syntax { offset, message };
    let name = e.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| syntax(err.to_string()))?;
        let key = a.key.as_ref().to_owned();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| syntax(err.to_string()))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

/// Parses XML text into its top-level elements (comments, declarations and whitespace ignored).
pub(crate) fn parse_elements(text: &str) -> Result<Vec<Element>, XmlError> {
    if text.len() > MAX_XML_SIZE {
        return Err(invalid(
            "/",
            format!("document of {} bytes exceeds {MAX_XML_SIZE}", text.len()),
        ));
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut top = Vec::new();
    loop {
        let offset = reader.buffer_position();
        let event = reader.read_event().map_err(|e| XmlError::Syntax {
            offset,
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(XmlError::Syntax {
                        offset,
                        message: format!("elements nested deeper than {MAX_XML_DEPTH}"),
                    });
                }
                stack.push(start_element(&e, offset)?);
            }
            Event::Empty(e) => {
                let el = start_element(&e, offset)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => top.push(el),
                }
            }
            Event::End(_) => {
                // quick-xml has checked that the end tag matches the open element.
                let Some(el) = stack.pop() else {
                    return Err(XmlError::Syntax {
                        offset,
                        message: "unbalanced end tag".into(),
                    });
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => top.push(el),
                }
            }
            Event::Text(t) if t.trim_ascii().is_empty() => {}
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                return Err(XmlError::Syntax {
                    offset,
                    message: "KMIP XML carries values in attributes, not in text".into(),
                })
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax {
            offset: reader.buffer_position(),
            message: "unclosed element".into(),
        });
    }
    Ok(top)
}

/// The message elements of a document: the children of a `<KMIP>` root (as in the OASIS vector
/// files), or the root element itself.
pub(crate) fn message_elements(text: &str) -> Result<Vec<Element>, XmlError> {
    let mut top = parse_elements(text)?;
    if top.len() == 1 && top[0].name == "KMIP" {
        return Ok(top.remove(0).children);
    }
    Ok(top)
}
