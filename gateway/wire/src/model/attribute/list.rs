//! Typed access to the well-known attributes of a list.

use super::{Attribute, AttributeName, Link, Name};
use crate::model::enums::{CryptographicAlgorithm, ObjectType, State};
use crate::spec::tags;
use crate::ttlv::Tag;

/// Typed access to the well-known attributes of a list.
pub trait AttributeList {
    fn attributes(&self) -> &[Attribute];

    fn get(&self, tag: Tag) -> Option<&Attribute> {
        self.attributes().iter().find(|a| a.is(tag))
    }

    fn get_all(&self, tag: Tag) -> impl Iterator<Item = &Attribute> {
        self.attributes().iter().filter(move |a| a.is(tag))
    }

    fn object_type(&self) -> Option<ObjectType> {
        self.get(tags::OBJECT_TYPE)?.as_enum()
    }

    fn cryptographic_algorithm(&self) -> Option<CryptographicAlgorithm> {
        self.get(tags::CRYPTOGRAPHIC_ALGORITHM)?.as_enum()
    }

    fn cryptographic_length(&self) -> Option<i32> {
        self.get(tags::CRYPTOGRAPHIC_LENGTH)?.as_int()
    }

    fn cryptographic_usage_mask(&self) -> Option<i32> {
        self.get(tags::CRYPTOGRAPHIC_USAGE_MASK)?.as_int()
    }

    fn state(&self) -> Option<State> {
        self.get(tags::STATE)?.as_enum()
    }

    fn names(&self) -> Vec<Name> {
        self.get_all(tags::NAME)
            .filter_map(Attribute::as_name)
            .collect()
    }

    fn object_groups(&self) -> Vec<&str> {
        self.get_all(tags::OBJECT_GROUP)
            .filter_map(Attribute::as_text)
            .collect()
    }

    fn links(&self) -> Vec<Link> {
        self.get_all(tags::LINK)
            .filter_map(Attribute::as_link)
            .collect()
    }

    fn operation_policy_name(&self) -> Option<&str> {
        self.get(tags::OPERATION_POLICY_NAME)?.as_text()
    }

    fn sensitive(&self) -> Option<bool> {
        self.get(tags::SENSITIVE)?.as_bool()
    }

    fn extractable(&self) -> Option<bool> {
        self.get(tags::EXTRACTABLE)?.as_bool()
    }

    fn activation_date(&self) -> Option<i64> {
        self.get(tags::ACTIVATION_DATE)?.as_datetime()
    }

    fn deactivation_date(&self) -> Option<i64> {
        self.get(tags::DEACTIVATION_DATE)?.as_datetime()
    }

    fn vendor(&self, vendor: &str, name: &str) -> Option<&Attribute> {
        self.attributes().iter().find(|a| {
            matches!(&a.name, AttributeName::Vendor { vendor: v, name: n } if v == vendor && n == name)
        })
    }
}

impl AttributeList for [Attribute] {
    fn attributes(&self) -> &[Attribute] {
        self
    }
}

impl AttributeList for Vec<Attribute> {
    fn attributes(&self) -> &[Attribute] {
        self
    }
}
