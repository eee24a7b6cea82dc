//! The validated policy and its decisions.
//!
//! Every grant is additive (a rule can only allow), so a decision is an OR over rules and cannot
//! depend on their order. Decisions read a per-caller index built once at load (`Grants`);
//! `explain` walks the rules instead, kept sorted by name so that it names the same rule whatever
//! order the file lists them in. The two paths are cross-checked by the property tests.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::error::PolicyError;
use crate::grants::{Grants, ScopeRef};
use crate::operation::{OpSet, Operation, OperationKind};
use crate::raw::{PolicyConfig, RuleConfig};

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

/// What the policy may know about a stored object: nothing of its key material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub uid: String,
    /// User that created or registered the object; empty if unknown (then no one owns it).
    pub owner: String,
    /// Values of its Object Group attribute.
    pub object_groups: Vec<String>,
    /// Values of its Name attribute.
    pub names: Vec<String>,
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

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    users: HashSet<String>,
    groups: HashSet<String>,
    everyone: bool,
    ops: OpSet,
    scope: Scope,
}

/// Value lists are sorted and deduplicated.
#[derive(Debug, Clone, Default)]
struct Scope {
    owned: bool,
    owners: Vec<String>,
    object_groups: Vec<String>,
    name_prefixes: Vec<String>,
    uids: Vec<String>,
    all_objects: bool,
}

impl Scope {
    fn is_empty(&self) -> bool {
        !self.owned
            && !self.all_objects
            && self.owners.is_empty()
            && self.object_groups.is_empty()
            && self.name_prefixes.is_empty()
            && self.uids.is_empty()
    }

    /// The first scope key matching the object, checked in a fixed order.
    fn hit<'a>(&'a self, id: &Identity, obj: &'a ObjectFacts) -> Option<Hit<'a>> {
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

    fn describe(&self) -> String {
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

    fn as_ref(&self) -> Option<ScopeRef<'_>> {
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
enum Via<'a> {
    User,
    Group(&'a str),
    Everyone,
}

/// Which scope key matched the object.
#[derive(Debug, Clone, Copy)]
enum Hit<'a> {
    AllObjects,
    Owned,
    Owner(&'a str),
    Uid,
    ObjectGroup(&'a str),
    NamePrefix { prefix: &'a str, name: &'a str },
}

/// Why the caller holds the admin role.
#[derive(Debug, Clone, Copy)]
enum AdminVia<'a> {
    User,
    Group(&'a str),
}

impl Rule {
    fn via<'a>(&self, id: &'a Identity) -> Option<Via<'a>> {
        if self.users.contains(&id.user) {
            return Some(Via::User);
        }
        if let Some(g) = id.groups.iter().find(|g| self.groups.contains(*g)) {
            return Some(Via::Group(g));
        }
        self.everyone.then_some(Via::Everyone)
    }

    fn op_names(&self) -> String {
        self.ops
            .iter()
            .map(Operation::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
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

    /// `decide`, by walking the rules: the reference `explain` reports from.
    fn decide_by_rules(&self, id: &Identity, op: Operation, obj: &ObjectFacts) -> Decision {
        if self.admin_via(id).is_some() {
            return Decision::Allow;
        }
        let mut visible = false;
        for (rule, _, _) in self.object_matches(id, obj) {
            if rule.ops.contains(op) {
                return Decision::Allow;
            }
            visible = true;
        }
        if !visible {
            return Decision::Deny(DenyReason::Invisible);
        }
        match op.kind() {
            OperationKind::Global => self.decide_global_by_rules(id, op),
            OperationKind::Object => Decision::Deny(DenyReason::NotPermitted),
        }
    }

    /// `decide_global`, by walking the rules.
    fn decide_global_by_rules(&self, id: &Identity, op: Operation) -> Decision {
        if self.admin_via(id).is_some()
            || self
                .global_matches(id)
                .any(|(rule, _)| rule.ops.contains(op))
        {
            Decision::Allow
        } else {
            Decision::Deny(DenyReason::NotPermitted)
        }
    }

    /// One line saying what `decide` answers and which rule or missing grant made it so.
    pub fn explain(&self, id: &Identity, op: Operation, obj: &ObjectFacts) -> String {
        let id = &self.identity(&id.user);
        let decision = self.decide_by_rules(id, op, obj);
        let target = describe_object(obj);
        let mut out = format!("{} {op} on {target}: ", verdict(decision));
        if let Some(admin) = self.admin_via(id) {
            out.push_str(&describe_admin(id, admin));
            return out;
        }
        let matches: Vec<_> = self.object_matches(id, obj).collect();
        if matches.is_empty() {
            let _ = write!(
                out,
                "no rule grants {} any operation on this object, so it is hidden",
                describe_caller(id)
            );
            let near: Vec<String> = self
                .object_rules
                .iter()
                .filter(|r| r.via(id).is_some())
                .map(|r| format!("'{}' ({})", r.name, r.scope.describe()))
                .collect();
            if !near.is_empty() {
                let _ = write!(
                    out,
                    "; scopes of the caller's rules that do not match: {}",
                    near.join("; ")
                );
            }
            return out;
        }
        if op.kind() == OperationKind::Global {
            out.push_str("the object is visible; ");
            out.push_str(&self.global_reason(id, op));
            return out;
        }
        if let Some((rule, via, hit)) = matches.iter().find(|(r, _, _)| r.ops.contains(op)) {
            let _ = write!(
                out,
                "rule '{}' grants it to {} on {}",
                rule.name,
                describe_via(id, *via),
                describe_hit(*hit)
            );
            return out;
        }
        let visible_through: Vec<String> = matches
            .iter()
            .map(|(rule, via, hit)| {
                format!(
                    "rule '{}' (to {} on {}; grants {})",
                    rule.name,
                    describe_via(id, *via),
                    describe_hit(*hit),
                    rule.op_names()
                )
            })
            .collect();
        let _ = write!(
            out,
            "{} sees the object through {}, but none of them grants {op}",
            describe_caller(id),
            visible_through.join(", ")
        );
        out
    }

    /// One line saying what `decide_global` answers and why.
    pub fn explain_global(&self, id: &Identity, op: Operation) -> String {
        let id = &self.identity(&id.user);
        let decision = self.decide_global_by_rules(id, op);
        let mut out = format!("{} {op}: ", verdict(decision));
        if let Some(admin) = self.admin_via(id) {
            out.push_str(&describe_admin(id, admin));
        } else if op.kind() == OperationKind::Object {
            let _ = write!(
                out,
                "{op} acts on an existing object; decide it against that object"
            );
        } else {
            out.push_str(&self.global_reason(id, op));
        }
        out
    }

    fn global_reason(&self, id: &Identity, op: Operation) -> String {
        if let Some((rule, via)) = self.global_matches(id).find(|(r, _)| r.ops.contains(op)) {
            return format!(
                "rule '{}' grants it to {}",
                rule.name,
                describe_via(id, via)
            );
        }
        let mut reason = format!("no rule grants {op} to {}", describe_caller(id));
        let others: Vec<String> = self
            .global_matches(id)
            .map(|(r, _)| format!("'{}' ({})", r.name, r.op_names()))
            .collect();
        if !others.is_empty() {
            let _ = write!(
                reason,
                "; the caller's global rules grant only: {}",
                others.join(", ")
            );
        }
        reason
    }

    fn admin_via<'a>(&self, id: &'a Identity) -> Option<AdminVia<'a>> {
        if self.users.get(&id.user).is_some_and(|u| u.admin) {
            return Some(AdminVia::User);
        }
        id.groups
            .iter()
            .find(|g| self.admin_groups.contains(*g))
            .map(|g| AdminVia::Group(g))
    }

    /// Object rules that reach `id` and whose scope covers `obj`, in name order.
    fn object_matches<'a>(
        &'a self,
        id: &'a Identity,
        obj: &'a ObjectFacts,
    ) -> impl Iterator<Item = (&'a Rule, Via<'a>, Hit<'a>)> + 'a {
        self.object_rules.iter().filter_map(move |rule| {
            let via = rule.via(id)?;
            let hit = rule.scope.hit(id, obj)?;
            Some((rule, via, hit))
        })
    }

    /// Global rules that reach `id`, in name order.
    fn global_matches<'a>(
        &'a self,
        id: &'a Identity,
    ) -> impl Iterator<Item = (&'a Rule, Via<'a>)> + 'a {
        self.global_rules
            .iter()
            .filter_map(move |rule| rule.via(id).map(|via| (rule, via)))
    }
}

fn validate_rule(
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

fn check_name(what: &'static str, name: &str) -> Result<(), PolicyError> {
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

fn verdict(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "ALLOW",
        Decision::Deny(DenyReason::Invisible) => "DENY (Item Not Found: object hidden)",
        Decision::Deny(DenyReason::NotPermitted) => "DENY (Permission Denied)",
    }
}

// Caller and object values are escaped: a client chooses Names, and a line must stay one line.
fn describe_object(obj: &ObjectFacts) -> String {
    format!(
        "object '{}' (owner '{}', object groups {:?}, names {:?})",
        obj.uid.escape_debug(),
        obj.owner.escape_debug(),
        obj.object_groups,
        obj.names
    )
}

fn describe_caller(id: &Identity) -> String {
    if id.groups.is_empty() {
        format!("user '{}' (no groups)", id.user.escape_debug())
    } else {
        format!("user '{}' (groups {:?})", id.user.escape_debug(), id.groups)
    }
}

fn describe_admin(id: &Identity, admin: AdminVia<'_>) -> String {
    match admin {
        AdminVia::User => format!("user '{}' has the admin role", id.user.escape_debug()),
        AdminVia::Group(g) => format!(
            "user '{}' has the admin role through group '{g}'",
            id.user.escape_debug()
        ),
    }
}

fn describe_via(id: &Identity, via: Via<'_>) -> String {
    match via {
        Via::User => format!("user '{}'", id.user.escape_debug()),
        Via::Group(g) => format!("group '{g}'"),
        Via::Everyone => "everyone".to_string(),
    }
}

fn describe_hit(hit: Hit<'_>) -> String {
    match hit {
        Hit::AllObjects => "all objects".to_string(),
        Hit::Owned => "objects the caller owns".to_string(),
        Hit::Owner(o) => format!("objects owned by '{}'", o.escape_debug()),
        Hit::Uid => "this object by uid".to_string(),
        Hit::ObjectGroup(g) => format!("Object Group '{}'", g.escape_debug()),
        Hit::NamePrefix { prefix, name } => format!(
            "name prefix '{}' (Name '{}')",
            prefix.escape_debug(),
            name.escape_debug()
        ),
    }
}
