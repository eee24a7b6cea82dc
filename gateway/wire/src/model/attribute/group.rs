//! Where a group of attributes sits in a payload (`Template-Attribute`, `Attributes`, …) and
//! the 2.x `New Attribute` / `Current Attribute` wrappers.

use super::{Attribute, Name};
use crate::model::codec::{self, Node};
use crate::model::error::ModelError;
use crate::model::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{Tag, Ttlv};

/// Where a group of attributes sits: the wrapper tags of 1.x and 2.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeGroup {
    /// `Template-Attribute` / `Attributes`.
    Plain,
    /// `Common Template-Attribute` / `Common Attributes` (Create Key Pair).
    Common,
    /// `Private Key Template-Attribute` / `Private Key Attributes`.
    PrivateKey,
    /// `Public Key Template-Attribute` / `Public Key Attributes`.
    PublicKey,
}

impl AttributeGroup {
    fn tags(self) -> (Tag, Tag) {
        match self {
            AttributeGroup::Plain => (tags::TEMPLATE_ATTRIBUTE, tags::ATTRIBUTES),
            AttributeGroup::Common => (tags::COMMON_TEMPLATE_ATTRIBUTE, tags::COMMON_ATTRIBUTES),
            AttributeGroup::PrivateKey => (
                tags::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
                tags::PRIVATE_KEY_ATTRIBUTES,
            ),
            AttributeGroup::PublicKey => (
                tags::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
                tags::PUBLIC_KEY_ATTRIBUTES,
            ),
        }
    }

    /// Reads the group from a payload, whichever encoding it uses. With `Plain`, bare 1.x
    /// `Attribute` items of the payload are read too (Locate, Get Attributes response). A 2.x-style
    /// tagged attribute inside a 1.x `Template-Attribute` is read as that attribute: clients mix
    /// the shapes, and ignoring it would make a Locate match more than asked.
    /// A Template reference is refused: only the operations that create objects
    /// ([`AttributeGroup::read_with_templates`]) take one.
    pub(crate) fn read(self, payload: &Node<'_>) -> Result<Vec<Attribute>, ModelError> {
        let (attributes, templates) = self.read_with_templates(payload)?;
        if !templates.is_empty() {
            let (v1_tag, _) = self.tags();
            return Err(payload
                .req(v1_tag)?
                .unsupported("a Template reference outside Create, Create Key Pair and Register"));
        }
        Ok(attributes)
    }

    /// Reads the group and the names of the Templates its 1.x `Template-Attribute` refers to,
    /// in the order given (a later Template takes precedence over an earlier one).
    pub(crate) fn read_with_templates(
        self,
        payload: &Node<'_>,
    ) -> Result<(Vec<Attribute>, Vec<Name>), ModelError> {
        let (v1_tag, v2_tag) = self.tags();
        let mut out = Vec::new();
        let mut templates = Vec::new();
        if let Some(group) = payload.opt(v2_tag) {
            group.structure()?;
            for item in group.items() {
                out.push(Attribute::read_tagged(&item)?);
            }
        }
        if let Some(group) = payload.opt(v1_tag) {
            group.structure()?;
            for item in group.items() {
                if item.ttlv.tag == tags::NAME {
                    templates.push(Name::read(&item)?);
                } else {
                    out.push(Attribute::read_tagged(&item)?);
                }
            }
        }
        if self == AttributeGroup::Plain {
            for item in payload.all(tags::ATTRIBUTE) {
                out.push(Attribute::read_v1(&item)?);
            }
        }
        Ok((out, templates))
    }

    /// Writes a request's group, keeping every attribute ([`Attribute::to_request_ttlv`]), in
    /// the 2.x shape when [`needs_v2_shape`].
    pub(crate) fn write_request(self, attributes: &[Attribute], version: ProtocolVersion) -> Ttlv {
        let (v1_tag, v2_tag) = self.tags();
        let tag = if needs_v2_shape(attributes, version) {
            v2_tag
        } else {
            v1_tag
        };
        let items = attributes
            .iter()
            .map(|a| a.to_request_ttlv(version))
            .collect();
        codec::structure(tag, items)
    }

    /// Writes a request's group that names Templates: always the 1.x `Template-Attribute`, the
    /// only shape that can carry them, names first as the specification lists them.
    pub(crate) fn write_request_with_templates(
        self,
        attributes: &[Attribute],
        templates: &[Name],
        version: ProtocolVersion,
    ) -> Ttlv {
        if templates.is_empty() {
            return self.write_request(attributes, version);
        }
        let (v1_tag, _) = self.tags();
        let items = templates
            .iter()
            .map(|t| Ttlv::new(tags::NAME, t.to_value()))
            .chain(attributes.iter().map(|a| a.to_request_ttlv(version)))
            .collect();
        codec::structure(v1_tag, items)
    }

    /// Writes a response's group in the encoding of `version`, leaving out what that version
    /// cannot carry: a server must not send tags the client's version lacks.
    pub(crate) fn write_response(self, attributes: &[Attribute], version: ProtocolVersion) -> Ttlv {
        let (v1_tag, v2_tag) = self.tags();
        let tag = if version.is_v2() { v2_tag } else { v1_tag };
        codec::structure(tag, write_bare_response(attributes, version))
    }
}

/// Whether a request must use the 2.x shape (`Attributes`, `New Attribute`): in 2.x, and in 1.x
/// when an attribute has no 1.x form. The reader accepts either shape in any version; a 1.x
/// server rejects the 2.x one rather than act on less than the caller asked.
pub(crate) fn needs_v2_shape<'a>(
    attributes: impl IntoIterator<Item = &'a Attribute>,
    version: ProtocolVersion,
) -> bool {
    version.is_v2() || attributes.into_iter().any(|a| !a.has_v1_form())
}

/// A response's attributes as bare items of `version`'s encoding, leaving out what it cannot
/// carry.
pub(crate) fn write_bare_response(attributes: &[Attribute], version: ProtocolVersion) -> Vec<Ttlv> {
    attributes
        .iter()
        .filter_map(|a| a.to_ttlv(version))
        .collect()
}

/// Reads the single attribute of a 2.x `New Attribute` / `Current Attribute` wrapper.
pub(crate) fn read_wrapped(wrapper: &Node<'_>) -> Result<Attribute, ModelError> {
    wrapper.structure()?;
    let mut items = wrapper.items();
    match (items.next(), items.next()) {
        (Some(item), None) => Attribute::read_tagged(&item),
        _ => Err(wrapper.invalid("must hold exactly one attribute")),
    }
}

/// Writes a request's 2.x `New Attribute` / `Current Attribute` wrapper.
pub(crate) fn write_wrapped(tag: Tag, attribute: &Attribute, version: ProtocolVersion) -> Ttlv {
    codec::structure(tag, vec![attribute.to_request_ttlv(version)])
}
