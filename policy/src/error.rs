//! Why a policy was rejected. Each message names the rule, user or group and the key at fault.

/// A policy that cannot be loaded. Policies hold no secrets, so messages quote values freely.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy is not valid TOML for this schema: {0}")]
    Toml(String),
    #[error("{what} has an empty name")]
    EmptyName { what: &'static str },
    #[error("{what} '{name}' has leading or trailing whitespace in its name")]
    PaddedName { what: &'static str, name: String },
    #[error("group '{group}' is declared more than once")]
    DuplicateGroup { group: String },
    #[error("user '{user}' is declared more than once")]
    DuplicateUser { user: String },
    #[error("rule '{rule}' is declared more than once")]
    DuplicateRule { rule: String },
    #[error("user '{user}': key `groups` names unknown group '{group}'")]
    UserUnknownGroup { user: String, group: String },
    #[error("rule '{rule}': key `groups` names unknown group '{group}'")]
    RuleUnknownGroup { rule: String, group: String },
    #[error("rule '{rule}': key `{key}` names unknown user '{user}'")]
    RuleUnknownUser {
        rule: String,
        key: &'static str,
        user: String,
    },
    #[error("rule '{rule}': key `operations` names unknown operation '{operation}'")]
    UnknownOperation { rule: String, operation: String },
    #[error("rule '{rule}': key `operations` is empty")]
    NoOperations { rule: String },
    #[error("rule '{rule}': grants to nobody (set `users`, `groups` or `everyone = true`)")]
    NoSubjects { rule: String },
    #[error("rule '{rule}': key `{key}` contains an empty string")]
    EmptyValue { rule: String, key: &'static str },
    #[error(
        "rule '{rule}': operation '{operation}' creates objects or needs none, so it cannot be \
         limited to objects; move it to a rule without scope keys"
    )]
    GlobalOperationInScopedRule { rule: String, operation: String },
    #[error(
        "rule '{rule}': operation '{operation}' acts on an object but the rule has no scope \
         (set `owned`, `owners`, `object_groups`, `name_prefixes`, `uids` or `all_objects`)"
    )]
    ObjectOperationWithoutScope { rule: String, operation: String },
}

impl From<toml::de::Error> for PolicyError {
    fn from(e: toml::de::Error) -> Self {
        PolicyError::Toml(e.to_string())
    }
}
