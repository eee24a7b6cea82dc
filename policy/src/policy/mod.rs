//! The validated policy and its decisions.
//!
//! Every grant is additive (a rule can only allow), so a decision is an OR over rules and cannot
//! depend on their order. Decisions read a per-caller index built once at load (`Grants`);
//! `explain` walks the rules instead, kept sorted by name so that it names the same rule whatever
//! order the file lists them in. The two paths are cross-checked by the property tests.

mod explain;
mod rule;

use std::collections::{HashMap, HashSet};

use crate::error::PolicyError;
use crate::facts::ObjectFacts;
use crate::grants::Grants;
use crate::operation::{Operation, OperationKind};
use crate::raw::PolicyConfig;
use rule::{check_name, validate_rule, Rule};

/// The authenticated caller: its user name (the certificate's Common Name) and the groups the
/// policy puts it in. Made by `Policy::identity`. Decisions go by the user name and the deciding
/// policy's own membership, so an identity kept across a reload never carries stale groups into
/// a decision; `groups` is for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    user: String,
    groups: Vec<String>,
}

impl Identity {
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Sorted group names.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
}

/// Why a request is refused; each maps to one KMIP Result Reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The caller may not know the object exists: answer exactly as for a missing object
    /// (Item Not Found), and leave it out of Locate results.
    Invisible,
    /// The caller may see the object (or needs none) but not do this: Permission Denied.
    NotPermitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// A checked policy: every reference resolves, every operation is known. Immutable; share it as
/// `Arc<Policy>` and swap in a new one to reload.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    users: HashMap<String, User>,
    /// What a caller the policy does not list may do: `everyone` rules only.
    unlisted: Grants,
    admin_groups: HashSet<String>,
    /// Rules without scope, granting global operations; sorted by name.
    global_rules: Vec<Rule>,
    /// Rules with a scope, granting object operations; sorted by name.
    object_rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct User {
    groups: Vec<String>,
    /// The user's own `admin` flag; `grants.admin` also counts its groups'.
    admin: bool,
    grants: Grants,
}

impl Policy {
    /// Parses and validates a standalone policy file (top-level `[[groups]]`, `[[users]]`,
    /// `[[rules]]`).
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let config: PolicyConfig = toml::from_str(text)?;
        Policy::from_config(config)
    }

    /// Validates a policy already deserialised, e.g. from the `[policy]` table of the gateway's
    /// configuration.
    pub fn from_config(config: PolicyConfig) -> Result<Policy, PolicyError> {
        let mut declared_groups = HashSet::new();
        let mut admin_groups = HashSet::new();
        for g in &config.groups {
            check_name("group", &g.name)?;
            if !declared_groups.insert(g.name.clone()) {
                return Err(PolicyError::DuplicateGroup {
                    group: g.name.clone(),
                });
            }
            if g.admin {
                admin_groups.insert(g.name.clone());
            }
        }

        let mut users = HashMap::new();
        for u in &config.users {
            check_name("user", &u.name)?;
            if users.contains_key(&u.name) {
                return Err(PolicyError::DuplicateUser {
                    user: u.name.clone(),
                });
            }
            let mut groups = Vec::with_capacity(u.groups.len());
            for g in &u.groups {
                if !declared_groups.contains(g) {
                    return Err(PolicyError::UserUnknownGroup {
                        user: u.name.clone(),
                        group: g.clone(),
                    });
                }
                groups.push(g.clone());
            }
            groups.sort();
            groups.dedup();
            users.insert(
                u.name.clone(),
                User {
                    groups,
                    admin: u.admin,
                    grants: Grants::default(),
                },
            );
        }

        let mut rule_names = HashSet::new();
        let mut global_rules = Vec::new();
        let mut object_rules = Vec::new();
        for r in &config.rules {
            check_name("rule", &r.name)?;
            if !rule_names.insert(r.name.clone()) {
                return Err(PolicyError::DuplicateRule {
                    rule: r.name.clone(),
                });
            }
            let rule = validate_rule(r, &declared_groups, &users)?;
            if rule.scope.is_empty() {
                global_rules.push(rule);
            } else {
                object_rules.push(rule);
            }
        }
        global_rules.sort_by(|a, b| a.name.cmp(&b.name));
        object_rules.sort_by(|a, b| a.name.cmp(&b.name));

        let index = |id: &Identity, admin: bool| {
            let mut grants = Grants::default();
            grants.admin = admin;
            for rule in global_rules.iter().chain(&object_rules) {
                if rule.via(id).is_some() {
                    grants.add(rule.ops, rule.scope.as_ref());
                }
            }
            grants
        };
        for (name, user) in &mut users {
            let id = Identity {
                user: name.clone(),
                groups: user.groups.clone(),
            };
            let admin = user.admin || user.groups.iter().any(|g| admin_groups.contains(g));
            user.grants = index(&id, admin);
        }
        // Rules name only listed users, so an unlisted caller is reached by `everyone` alone.
        let unlisted = index(
            &Identity {
                user: String::new(),
                groups: Vec::new(),
            },
            false,
        );

        Ok(Policy {
            users,
            unlisted,
            admin_groups,
            global_rules,
            object_rules,
        })
    }

    /// The caller named `user`, with the groups this policy gives it. A user the policy does not
    /// list gets no groups: only `everyone` rules reach it.
    pub fn identity(&self, user: &str) -> Identity {
        let groups = self
            .users
            .get(user)
            .map(|u| u.groups.clone())
            .unwrap_or_default();
        Identity {
            user: user.to_string(),
            groups,
        }
    }

    /// Whether the policy lists this user.
    pub fn knows_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Listed user names, sorted.
    pub fn user_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// May `id` perform `op` on the existing object `obj`?
    ///
    /// For a global operation (Locate, Create …) this answers "may `id` do `op` and see `obj`":
    /// an invisible object stays invisible, otherwise `decide_global` decides.
    pub fn decide(&self, id: &Identity, op: Operation, obj: &ObjectFacts) -> Decision {
        let grants = self.grants(&id.user);
        if grants.admin {
            return Decision::Allow;
        }
        let on_object = grants.on(&id.user, obj);
        if on_object.is_empty() {
            return Decision::Deny(DenyReason::Invisible);
        }
        let granted = match op.kind() {
            OperationKind::Global => grants.global,
            OperationKind::Object => on_object,
        };
        if granted.contains(op) {
            Decision::Allow
        } else {
            Decision::Deny(DenyReason::NotPermitted)
        }
    }

    /// May `id` perform `op`, which creates objects or needs none (Create, Register, Query,
    /// DiscoverVersions, Locate)? Object operations are never granted here: use `decide`.
    pub fn decide_global(&self, id: &Identity, op: Operation) -> Decision {
        let grants = self.grants(&id.user);
        // `global` holds global operations only: rules are validated to keep them apart.
        if grants.admin || grants.global.contains(op) {
            Decision::Allow
        } else {
            Decision::Deny(DenyReason::NotPermitted)
        }
    }

    /// May `id` know that `obj` exists (keep it in Locate results)? True when any operation on it
    /// is granted.
    pub fn may_see(&self, id: &Identity, obj: &ObjectFacts) -> bool {
        let grants = self.grants(&id.user);
        grants.admin || !grants.on(&id.user, obj).is_empty()
    }

    fn grants(&self, user: &str) -> &Grants {
        self.users.get(user).map_or(&self.unlisted, |u| &u.grants)
    }
}
