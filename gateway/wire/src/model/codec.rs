//! Small helpers to read typed fields out of a TTLV tree with precise error paths, and to build
//! TTLV items. Internal to the model.

use bytes::Bytes;
use std::rc::Rc;

use super::enums::KmipEnum;
use super::error::ModelError;
use crate::ttlv::{Tag, Ttlv, Value};

/// How error paths show a tag: its XML name (`UniqueIdentifier`), or its hex value for tags no
/// specification names.
pub(crate) fn tag_label(tag: Tag) -> String {
    match crate::names::tag_name(tag) {
        Some(name) => name.to_owned(),
        None => format!("0x{:06X}", tag.0),
    }
}

/// A TTLV item together with the path that leads to it, for error messages.
#[derive(Clone)]
pub(crate) struct Node<'a> {
    pub ttlv: &'a Ttlv,
    path: Rc<Step>,
}

/// One step of a node's path. Reading a request walks every field and almost never fails, so
/// the text of a path (`RequestPayload.Attribute[2]`) is only rendered when an error names it:
/// formatting it for every field cost about a tenth of a Get's decode.
enum Step {
    Root(String),
    Child {
        parent: Rc<Step>,
        tag: Tag,
    },
    Indexed {
        parent: Rc<Step>,
        tag: Tag,
        index: usize,
    },
}

impl Step {
    fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = self;
        let root = loop {
            match at {
                Step::Root(name) => break name.as_str(),
                Step::Child { parent, tag } => {
                    steps.push(tag_label(*tag));
                    at = parent;
                }
                Step::Indexed { parent, tag, index } => {
                    steps.push(format!("{}[{index}]", tag_label(*tag)));
                    at = parent;
                }
            }
        };
        let mut out = root.to_owned();
        for step in steps.iter().rev() {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(step);
        }
        out
    }
}

type R<T> = Result<T, ModelError>;

impl<'a> Node<'a> {
    pub(crate) fn new(ttlv: &'a Ttlv, path: impl Into<String>) -> Node<'a> {
        Node {
            ttlv,
            path: Rc::new(Step::Root(path.into())),
        }
    }

    fn child(&self, ttlv: &'a Ttlv, tag: Tag) -> Node<'a> {
        Node {
            ttlv,
            path: Rc::new(Step::Child {
                parent: self.path.clone(),
                tag,
            }),
        }
    }

    fn indexed(&self, ttlv: &'a Ttlv, index: usize) -> Node<'a> {
        Node {
            ttlv,
            path: Rc::new(Step::Indexed {
                parent: self.path.clone(),
                tag: ttlv.tag,
                index,
            }),
        }
    }

    /// The path of this node as error messages show it.
    pub(crate) fn path(&self) -> String {
        self.path.render()
    }

    pub(crate) fn missing(&self, tag: Tag) -> ModelError {
        let mut path = self.path();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&tag_label(tag));
        ModelError::Missing { path }
    }

    pub(crate) fn wrong(&self, expected: &'static str) -> ModelError {
        ModelError::WrongType {
            path: self.path(),
            expected,
        }
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Invalid {
            path: self.path(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(&self, what: &'static str) -> ModelError {
        ModelError::Unsupported {
            path: self.path(),
            what,
        }
    }

    /// Fails unless this item is a Structure.
    pub(crate) fn structure(&self) -> R<&'a [Ttlv]> {
        match &self.ttlv.value {
            Value::Structure(items) => Ok(items),
            _ => Err(self.wrong("Structure")),
        }
    }

    pub(crate) fn opt(&self, tag: Tag) -> Option<Node<'a>> {
        self.ttlv.child(tag).map(|t| self.child(t, tag))
    }

    pub(crate) fn req(&self, tag: Tag) -> R<Node<'a>> {
        self.opt(tag).ok_or_else(|| self.missing(tag))
    }

    /// Every child with `tag`, each with an indexed path (`Attribute[2]`).
    pub(crate) fn all(&self, tag: Tag) -> impl Iterator<Item = Node<'a>> + '_ {
        self.ttlv
            .children(tag)
            .enumerate()
            .map(move |(i, t)| self.indexed(t, i))
    }

    /// Every child, whatever its tag, with indexed paths.
    pub(crate) fn items(&self) -> impl Iterator<Item = Node<'a>> + '_ {
        self.ttlv
            .items()
            .iter()
            .enumerate()
            .map(move |(i, t)| self.indexed(t, i))
    }

    pub(crate) fn text(&self) -> R<String> {
        self.ttlv
            .as_text()
            .map(str::to_owned)
            .ok_or_else(|| self.wrong("TextString"))
    }

    pub(crate) fn int(&self) -> R<i32> {
        self.ttlv.as_i32().ok_or_else(|| self.wrong("Integer"))
    }

    pub(crate) fn long(&self) -> R<i64> {
        self.ttlv.as_long().ok_or_else(|| self.wrong("LongInteger"))
    }

    pub(crate) fn boolean(&self) -> R<bool> {
        self.ttlv.as_bool().ok_or_else(|| self.wrong("Boolean"))
    }

    pub(crate) fn bytes(&self) -> R<Bytes> {
        self.ttlv
            .as_bytes()
            .cloned()
            .ok_or_else(|| self.wrong("ByteString"))
    }

    pub(crate) fn enumeration<E: KmipEnum>(&self) -> R<E> {
        self.ttlv
            .as_enum()
            .map(E::from_u32)
            .ok_or_else(|| self.wrong("Enumeration"))
    }

    /// An Enumeration's number, for enumerations without a Rust type.
    pub(crate) fn enum_value(&self) -> R<u32> {
        self.ttlv.as_enum().ok_or_else(|| self.wrong("Enumeration"))
    }

    /// Date Time (or Date Time Extended), in seconds.
    pub(crate) fn datetime(&self) -> R<i64> {
        self.ttlv
            .as_datetime()
            .ok_or_else(|| self.wrong("DateTime"))
    }

    pub(crate) fn interval(&self) -> R<u32> {
        match self.ttlv.value {
            Value::Interval(i) => Ok(i),
            _ => Err(self.wrong("Interval")),
        }
    }

    pub(crate) fn opt_text(&self, tag: Tag) -> R<Option<String>> {
        self.opt(tag).map(|n| n.text()).transpose()
    }

    pub(crate) fn req_text(&self, tag: Tag) -> R<String> {
        self.req(tag)?.text()
    }

    pub(crate) fn opt_int(&self, tag: Tag) -> R<Option<i32>> {
        self.opt(tag).map(|n| n.int()).transpose()
    }

    pub(crate) fn opt_long(&self, tag: Tag) -> R<Option<i64>> {
        self.opt(tag).map(|n| n.long()).transpose()
    }

    pub(crate) fn opt_bool(&self, tag: Tag) -> R<Option<bool>> {
        self.opt(tag).map(|n| n.boolean()).transpose()
    }

    pub(crate) fn opt_bytes(&self, tag: Tag) -> R<Option<Bytes>> {
        self.opt(tag).map(|n| n.bytes()).transpose()
    }

    pub(crate) fn opt_enum<E: KmipEnum>(&self, tag: Tag) -> R<Option<E>> {
        self.opt(tag).map(|n| n.enumeration()).transpose()
    }

    pub(crate) fn req_enum<E: KmipEnum>(&self, tag: Tag) -> R<E> {
        self.req(tag)?.enumeration()
    }

    pub(crate) fn opt_datetime(&self, tag: Tag) -> R<Option<i64>> {
        self.opt(tag).map(|n| n.datetime()).transpose()
    }

    pub(crate) fn opt_interval(&self, tag: Tag) -> R<Option<u32>> {
        self.opt(tag).map(|n| n.interval()).transpose()
    }

    pub(crate) fn all_text(&self, tag: Tag) -> R<Vec<String>> {
        self.all(tag).map(|n| n.text()).collect()
    }

    pub(crate) fn all_enum<E: KmipEnum>(&self, tag: Tag) -> R<Vec<E>> {
        self.all(tag).map(|n| n.enumeration()).collect()
    }
}

pub(crate) fn structure(tag: Tag, items: Vec<Ttlv>) -> Ttlv {
    Ttlv::new(tag, Value::Structure(items))
}

pub(crate) fn text(tag: Tag, s: &str) -> Ttlv {
    Ttlv::new(tag, Value::TextString(s.to_owned()))
}

pub(crate) fn int(tag: Tag, i: i32) -> Ttlv {
    Ttlv::new(tag, Value::Integer(i))
}

pub(crate) fn long(tag: Tag, i: i64) -> Ttlv {
    Ttlv::new(tag, Value::LongInteger(i))
}

pub(crate) fn boolean(tag: Tag, b: bool) -> Ttlv {
    Ttlv::new(tag, Value::Boolean(b))
}

pub(crate) fn bytes(tag: Tag, b: &[u8]) -> Ttlv {
    Ttlv::new(tag, Value::ByteString(Bytes::copy_from_slice(b)))
}

pub(crate) fn enumeration<E: KmipEnum>(tag: Tag, e: E) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(e.to_u32()))
}

pub(crate) fn datetime(tag: Tag, seconds: i64) -> Ttlv {
    Ttlv::new(tag, Value::DateTime(seconds))
}

pub(crate) fn interval(tag: Tag, seconds: u32) -> Ttlv {
    Ttlv::new(tag, Value::Interval(seconds))
}
