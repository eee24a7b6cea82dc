//! Properties over random policies: rule order never matters, and nothing but an explicit grant
//! shows a user another user's object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use kmip_policy::{
    Decision, DenyReason, GroupConfig, ObjectFacts, Operation, OperationKind, Policy, PolicyConfig,
    RuleConfig, UserConfig,
};
use proptest::prelude::*;
use proptest::sample::subsequence;

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const OBJECT_GROUPS: [&str; 4] = ["og0", "og1", "og2", "og3"];
const NAMES: [&str; 5] = ["alpha-1", "alpha-2", "beta-1", "gamma", "é-1"];
const PREFIXES: [&str; 9] = [
    "a", "alpha-", "alpha-1x", "b", "beta-1", "g", "z", "é", "é-",
];
const UIDS: [&str; 4] = ["k0", "k1", "k2", "k3"];

fn strings<const N: usize>(pool: [&'static str; N]) -> impl Strategy<Value = Vec<String>> {
    subsequence(pool.to_vec(), 0..=N).prop_map(|v| v.into_iter().map(String::from).collect())
}

fn ops_of(kind: OperationKind) -> Vec<Operation> {
    Operation::ALL
        .into_iter()
        .filter(|op| op.kind() == kind)
        .collect()
}

fn op_names(kind: OperationKind) -> impl Strategy<Value = Vec<String>> {
    let ops = ops_of(kind);
    let n = ops.len();
    subsequence(ops, 1..=n).prop_map(|v| v.into_iter().map(|op| op.name().to_string()).collect())
}

/// A valid rule named `name`: global or scoped, with at least one subject.
fn rule(name: String) -> impl Strategy<Value = RuleConfig> {
    let subjects = (strings(USERS), strings(GROUPS), any::<bool>());
    let scope = (
        any::<bool>(),
        strings(USERS),
        strings(OBJECT_GROUPS),
        strings(PREFIXES),
        strings(UIDS),
        prop::bool::weighted(0.1),
    );
    (
        subjects,
        prop::bool::weighted(0.3),
        op_names(OperationKind::Global),
        op_names(OperationKind::Object),
        scope,
    )
        .prop_map(
            move |((users, groups, everyone), global, gops, oops, scope)| {
                let (owned, owners, object_groups, name_prefixes, uids, all_objects) = scope;
                let everyone = everyone || (users.is_empty() && groups.is_empty());
                let mut r = RuleConfig {
                    name: name.clone(),
                    users,
                    groups,
                    everyone,
                    ..RuleConfig::default()
                };
                if global {
                    r.operations = gops;
                } else {
                    r.operations = oops;
                    r.owned = owned;
                    r.owners = owners;
                    r.object_groups = object_groups;
                    r.name_prefixes = name_prefixes;
                    r.uids = uids;
                    r.all_objects = all_objects;
                    if !has_scope(&r) {
                        r.owned = true;
                    }
                }
                r
            },
        )
}

fn has_scope(r: &RuleConfig) -> bool {
    r.owned
        || r.all_objects
        || !r.owners.is_empty()
        || !r.object_groups.is_empty()
        || !r.name_prefixes.is_empty()
        || !r.uids.is_empty()
}

fn rules() -> impl Strategy<Value = Vec<RuleConfig>> {
    (0usize..10).prop_flat_map(|n| (0..n).map(|i| rule(format!("r{i}"))).collect::<Vec<_>>())
}

fn users() -> impl Strategy<Value = Vec<UserConfig>> {
    USERS
        .iter()
        .map(|name| {
            (strings(GROUPS), prop::bool::weighted(0.05)).prop_map(move |(groups, admin)| {
                UserConfig {
                    name: name.to_string(),
                    groups,
                    admin,
                }
            })
        })
        .collect::<Vec<_>>()
}

fn groups() -> impl Strategy<Value = Vec<GroupConfig>> {
    GROUPS
        .iter()
        .map(|name| {
            prop::bool::weighted(0.05).prop_map(move |admin| GroupConfig {
                name: name.to_string(),
                admin,
                description: None,
            })
        })
        .collect::<Vec<_>>()
}

fn object() -> impl Strategy<Value = ObjectFacts> {
    (
        prop::sample::select(UIDS.to_vec()),
        prop::sample::select(vec!["u0", "u1", "u2", "u3", ""]),
        strings(OBJECT_GROUPS),
        strings(NAMES),
    )
        .prop_map(|(uid, owner, object_groups, names)| ObjectFacts {
            uid: uid.to_string(),
            owner: owner.to_string(),
            object_groups,
            names,
        })
}

/// Everything observable about a policy for these callers and objects.
fn observe(p: &Policy, objects: &[ObjectFacts]) -> Vec<String> {
    let mut out = Vec::new();
    for user in USERS.iter().chain(&["stranger"]) {
        let id = p.identity(user);
        for op in Operation::ALL {
            out.push(format!("{:?}", p.decide_global(&id, op)));
            out.push(p.explain_global(&id, op));
            for o in objects {
                out.push(format!("{:?}", p.decide(&id, op, o)));
                out.push(p.explain(&id, op, o));
            }
        }
        for o in objects {
            out.push(format!("{}", p.may_see(&id, o)));
        }
    }
    out
}

/// The verdict `explain` opens with for a decision.
fn verdict_prefix(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "ALLOW ",
        Decision::Deny(DenyReason::Invisible) => "DENY (Item Not Found",
        Decision::Deny(DenyReason::NotPermitted) => "DENY (Permission Denied)",
    }
}

proptest! {
    // These two compare every explanation of every caller, operation and object of a policy; 64
    // policies keep the debug-build run to a few seconds.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `decide` reads the precomputed per-caller index, `explain` walks the rules: they agree.
    #[test]
    fn index_agrees_with_rule_walk(
        groups in groups(),
        users in users(),
        rules in rules(),
        objects in prop::collection::vec(object(), 1..6),
    ) {
        let p = Policy::from_config(PolicyConfig { groups, users, rules }).unwrap();
        for user in USERS.iter().chain(&["stranger", ""]) {
            let id = p.identity(user);
            for op in Operation::ALL {
                let text = p.explain_global(&id, op);
                prop_assert!(text.starts_with(verdict_prefix(p.decide_global(&id, op))), "{}", text);
                for o in &objects {
                    let d = p.decide(&id, op, o);
                    let text = p.explain(&id, op, o);
                    prop_assert!(text.starts_with(verdict_prefix(d)), "{}", text);
                    prop_assert_eq!(p.may_see(&id, o), d != Decision::Deny(DenyReason::Invisible));
                }
            }
        }
    }

    #[test]
    fn rule_order_never_changes_a_decision(
        (config, shuffled) in (groups(), users(), rules()).prop_flat_map(|(g, u, r)| {
            let config = PolicyConfig { groups: g.clone(), users: u.clone(), rules: r.clone() };
            let shuffled = (Just(g).prop_shuffle(), Just(u).prop_shuffle(), Just(r).prop_shuffle())
                .prop_map(|(groups, users, rules)| PolicyConfig { groups, users, rules });
            (Just(config), shuffled)
        }),
        objects in prop::collection::vec(object(), 1..4),
    ) {
        let a = Policy::from_config(config).unwrap();
        let b = Policy::from_config(shuffled).unwrap();
        prop_assert_eq!(observe(&a, &objects), observe(&b, &objects));
    }
}

proptest! {

    #[test]
    fn only_an_explicit_grant_shows_another_users_object(
        groups in groups(),
        users in users(),
        rules in rules(),
        target_groups in strings(GROUPS),
        obj in object(),
        owner in prop::sample::select(vec!["u1", "u2", "u3", ""]),
    ) {
        let obj = ObjectFacts { owner: owner.to_string(), ..obj };
        let config = isolate_u0(groups, users, rules, &target_groups, &obj);
        let p = Policy::from_config(config.clone()).unwrap();
        let u0 = p.identity("u0");
        prop_assert!(!p.may_see(&u0, &obj));
        for op in Operation::ALL {
            prop_assert_eq!(p.decide(&u0, op, &obj), Decision::Deny(DenyReason::Invisible));
        }

        // The same policy plus one explicit grant of this object does show it: the property above
        // is not vacuous.
        let mut granted = config;
        granted.rules.push(RuleConfig {
            name: "explicit".into(),
            users: vec!["u0".into()],
            operations: vec!["GetAttributes".into()],
            uids: vec![obj.uid.clone()],
            ..RuleConfig::default()
        });
        let p = Policy::from_config(granted).unwrap();
        prop_assert!(p.may_see(&u0, &obj));
    }
}

/// Rewrites a random policy so that no grant reaches `u0` on `obj`: `u0` is in `target_groups`,
/// neither it nor those groups are admin, and every rule that names `u0`, one of its groups or
/// everyone loses the scope keys that name `obj` (its owner, uid, Object Groups, a prefix of one of
/// its Names, all objects). `owned` stays, as `obj` belongs to someone else. Rules that reach other
/// callers keep any scope.
fn isolate_u0(
    mut groups: Vec<GroupConfig>,
    mut users: Vec<UserConfig>,
    mut rules: Vec<RuleConfig>,
    target_groups: &[String],
    obj: &ObjectFacts,
) -> PolicyConfig {
    for u in &mut users {
        if u.name == "u0" {
            u.groups = target_groups.to_vec();
            u.admin = false;
        }
    }
    for g in &mut groups {
        if target_groups.contains(&g.name) {
            g.admin = false;
        }
    }
    for r in &mut rules {
        let names_u0 = r.everyone
            || r.users.iter().any(|u| u == "u0")
            || r.groups.iter().any(|g| target_groups.contains(g));
        if !names_u0 || !has_scope(r) {
            continue;
        }
        r.all_objects = false;
        r.owners.retain(|o| *o != obj.owner);
        r.uids.retain(|u| *u != obj.uid);
        r.object_groups.retain(|g| !obj.object_groups.contains(g));
        r.name_prefixes
            .retain(|p| !obj.names.iter().any(|n| n.starts_with(p.as_str())));
        if !has_scope(r) {
            r.owned = true;
        }
    }
    PolicyConfig {
        groups,
        users,
        rules,
    }
}
