//! The validated rules: who a rule reaches, which objects its scope covers, and how a rule
//! read from the configuration is checked.

use std::collections::{HashMap, HashSet};

use super::{Identity, User};
use crate::error::PolicyError;
use crate::facts::ObjectFacts;
use crate::grants::ScopeRef;
use crate::operation::{OpSet, Operation, OperationKind};
use crate::raw::RuleConfig;

#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) name: String,
    pub(super) users: HashSet<String>,
    pub(super) groups: HashSet<String>,
    pub(super) everyone: bool,
    pub(super) ops: OpSet,
    pub(super) scope: Scope,
}

/// Value lists are sorted and deduplicated.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    owned: bool,
    owners: Vec<String>,
    object_groups: Vec<String>,
    name_prefixes: Vec<String>,
    uids: Vec<String>,
    all_objects: bool,
}

impl Scope {
    pub(super) fn is_empty(&self) -> bool {
        !self.owned
            && !self.all_objects
            && self.owners.is_empty()
            && self.object_groups.is_empty()
            && self.name_prefixes.is_empty()
            && self.uids.is_empty()
    }

    /// The first scope key matching the object, checked in a fixed order.
    pub(super) fn hit<'a>(&'a self, id: &Identity, obj: &'a ObjectFacts) -> Option<Hit<'a>> {
        if self.all_objects {
            return Some(Hit::AllObjects);
        }
        // An object without a recorded owner is nobody's, even for a caller with an empty name.
        if self.owned && !obj.owner.is_empty() && obj.owner == id.user {
            return Some(Hit::Owned);
        }
        if has(&self.owners, &obj.owner) {
            return Some(Hit::Owner(&obj.owner));
        }
        if has(&self.uids, &obj.uid) {
            return Some(Hit::Uid);
        }
        if let Some(g) = obj
            .object_groups
            .iter()
            .find(|g| has(&self.object_groups, g))
        {
            return Some(Hit::ObjectGroup(g));
        }
        for name in &obj.names {
            if let Some(prefix) = self.name_prefixes.iter().find(|p| name.starts_with(*p)) {
                return Some(Hit::NamePrefix { prefix, name });
            }
        }
        None
    }

    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.all_objects {
            parts.push("all objects".to_string());
        }
        if self.owned {
            parts.push("objects the caller owns".to_string());
        }
        if !self.owners.is_empty() {
            parts.push(format!("owners {:?}", self.owners));
        }
        if !self.uids.is_empty() {
            parts.push(format!("uids {:?}", self.uids));
        }
        if !self.object_groups.is_empty() {
            parts.push(format!("object groups {:?}", self.object_groups));
        }
        if !self.name_prefixes.is_empty() {
            parts.push(format!("name prefixes {:?}", self.name_prefixes));
        }
        parts.join(", ")
    }

    pub(super) fn as_ref(&self) -> Option<ScopeRef<'_>> {
        (!self.is_empty()).then_some(ScopeRef {
            all_objects: self.all_objects,
            owned: self.owned,
            owners: &self.owners,
            uids: &self.uids,
            object_groups: &self.object_groups,
            name_prefixes: &self.name_prefixes,
        })
    }
}

/// How a rule reached the caller.
#[derive(Debug, Clone, Copy)]
pub(super) enum Via<'a> {
    User,
    Group(&'a str),
    Everyone,
}

/// Which scope key matched the object.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hit<'a> {
    AllObjects,
    Owned,
    Owner(&'a str),
    Uid,
    ObjectGroup(&'a str),
    NamePrefix { prefix: &'a str, name: &'a str },
}

/// Why the caller holds the admin role.
#[derive(Debug, Clone, Copy)]
pub(super) enum AdminVia<'a> {
    User,
    Group(&'a str),
}

impl Rule {
    pub(super) fn via<'a>(&self, id: &'a Identity) -> Option<Via<'a>> {
        if self.users.contains(&id.user) {
            return Some(Via::User);
        }
        if let Some(g) = id.groups.iter().find(|g| self.groups.contains(*g)) {
            return Some(Via::Group(g));
        }
        self.everyone.then_some(Via::Everyone)
    }

    pub(super) fn op_names(&self) -> String {
        self.ops
            .iter()
            .map(Operation::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(super) fn validate_rule(
    r: &RuleConfig,
    declared_groups: &HashSet<String>,
    users: &HashMap<String, User>,
) -> Result<Rule, PolicyError> {
    let rule_err = || r.name.clone();

    let mut subject_users = HashSet::new();
    for u in &r.users {
        if !users.contains_key(u) {
            return Err(PolicyError::RuleUnknownUser {
                rule: rule_err(),
                key: "users",
                user: u.clone(),
            });
        }
        subject_users.insert(u.clone());
    }
    let mut subject_groups = HashSet::new();
    for g in &r.groups {
        if !declared_groups.contains(g) {
            return Err(PolicyError::RuleUnknownGroup {
                rule: rule_err(),
                group: g.clone(),
            });
        }
        subject_groups.insert(g.clone());
    }
    if subject_users.is_empty() && subject_groups.is_empty() && !r.everyone {
        return Err(PolicyError::NoSubjects { rule: rule_err() });
    }

    if r.operations.is_empty() {
        return Err(PolicyError::NoOperations { rule: rule_err() });
    }
    let mut ops = OpSet::default();
    for name in &r.operations {
        let op = Operation::from_name(name).ok_or_else(|| PolicyError::UnknownOperation {
            rule: rule_err(),
            operation: name.clone(),
        })?;
        ops.insert(op);
    }

    for u in &r.owners {
        if !users.contains_key(u) {
            return Err(PolicyError::RuleUnknownUser {
                rule: rule_err(),
                key: "owners",
                user: u.clone(),
            });
        }
    }
    let scope = Scope {
        owned: r.owned,
        owners: non_empty_list(&r.name, "owners", &r.owners)?,
        object_groups: non_empty_list(&r.name, "object_groups", &r.object_groups)?,
        name_prefixes: non_empty_list(&r.name, "name_prefixes", &r.name_prefixes)?,
        uids: non_empty_list(&r.name, "uids", &r.uids)?,
        all_objects: r.all_objects,
    };

    let wanted = if scope.is_empty() {
        OperationKind::Global
    } else {
        OperationKind::Object
    };
    if let Some(op) = ops.iter().find(|op| op.kind() != wanted) {
        return Err(match wanted {
            OperationKind::Global => PolicyError::ObjectOperationWithoutScope {
                rule: rule_err(),
                operation: op.name().to_string(),
            },
            OperationKind::Object => PolicyError::GlobalOperationInScopedRule {
                rule: rule_err(),
                operation: op.name().to_string(),
            },
        });
    }

    Ok(Rule {
        name: r.name.clone(),
        users: subject_users,
        groups: subject_groups,
        everyone: r.everyone,
        ops,
        scope,
    })
}

/// The values sorted and deduplicated, or an error naming the key if one is empty.
fn non_empty_list(
    rule: &str,
    key: &'static str,
    values: &[String],
) -> Result<Vec<String>, PolicyError> {
    if values.iter().any(String::is_empty) {
        return Err(PolicyError::EmptyValue {
            rule: rule.to_string(),
            key,
        });
    }
    let mut list = values.to_vec();
    list.sort();
    list.dedup();
    Ok(list)
}

fn has(sorted: &[String], value: &str) -> bool {
    sorted.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
}

pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), PolicyError> {
    if name.is_empty() {
        return Err(PolicyError::EmptyName { what });
    }
    if name.trim() != name {
        return Err(PolicyError::PaddedName {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}
