//! The policy as written in TOML, before validation. `Policy::from_config` turns it into a `Policy`.
//!
//! Every user-chosen name is a TOML *value*, never a key, so loaders that fold key case (the
//! `config` crate) cannot change what a rule refers to.

use serde::Deserialize;

/// Top level of a policy: `[[groups]]`, `[[users]]`, `[[rules]]` (under `[policy]` when embedded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A group of users; `admin = true` gives every member every operation on every object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    /// Free text for the operator; ignored by decisions.
    #[serde(default)]
    pub description: Option<String>,
}

/// A user, named exactly as the Common Name of its client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}

/// A grant: who (`users`, `groups`, `everyone`) may do what (`operations`) on which objects (the
/// scope keys). A rule without scope keys grants only global operations; a rule with scope keys
/// grants only object operations, on the objects matching *any* of its scope keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Every authenticated caller, including users the policy does not list.
    #[serde(default)]
    pub everyone: bool,
    pub operations: Vec<String>,
    /// Objects whose owner (creator) is the caller.
    #[serde(default)]
    pub owned: bool,
    /// Objects owned by any of these users.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Objects with any of these Object Group attribute values.
    #[serde(default)]
    pub object_groups: Vec<String>,
    /// Objects with a Name starting with any of these prefixes.
    #[serde(default)]
    pub name_prefixes: Vec<String>,
    /// Objects with any of these Unique Identifiers.
    #[serde(default)]
    pub uids: Vec<String>,
    /// Every object.
    #[serde(default)]
    pub all_objects: bool,
}
