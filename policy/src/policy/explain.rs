//! `explain`: decisions made by walking the rules instead of the index, so that the answer can
//! name the rule (or the missing grant) behind it.

use std::fmt::Write as _;

use super::rule::{AdminVia, Hit, Rule, Via};
use super::{Decision, DenyReason, Identity, Policy};
use crate::facts::ObjectFacts;
use crate::operation::{Operation, OperationKind};

impl Policy {
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
