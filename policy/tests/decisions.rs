//! Decisions for each scope kind, the admin role, global operations, and `explain`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use kmip_policy::{Decision, DenyReason, ObjectFacts, Operation, Policy};

const ALLOW: Decision = Decision::Allow;
const HIDDEN: Decision = Decision::Deny(DenyReason::Invisible);
const DENIED: Decision = Decision::Deny(DenyReason::NotPermitted);

fn obj(uid: &str, owner: &str, groups: &[&str], names: &[&str]) -> ObjectFacts {
    ObjectFacts {
        uid: uid.to_string(),
        owner: owner.to_string(),
        object_groups: groups.iter().map(|s| s.to_string()).collect(),
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

fn policy(rules: &str) -> Policy {
    let text = format!(
        r#"
[[groups]]
name = "arrays"
[[groups]]
name = "readers"
[[groups]]
name = "admins"
admin = true

[[users]]
name = "alice"
groups = ["arrays"]
[[users]]
name = "bob"
groups = ["arrays"]
[[users]]
name = "carol"
groups = ["readers"]
[[users]]
name = "root"
groups = ["admins"]
[[users]]
name = "solo-admin"
admin = true
{rules}"#
    );
    Policy::from_toml_str(&text).unwrap()
}

#[test]
fn empty_policy_denies_everything() {
    let p = Policy::from_toml_str("").unwrap();
    let id = p.identity("alice");
    let o = obj("k1", "alice", &["g"], &["n"]);
    for op in Operation::ALL {
        assert_eq!(p.decide(&id, op, &o), HIDDEN, "{op}");
        assert_eq!(p.decide_global(&id, op), DENIED, "{op}");
    }
    assert!(!p.may_see(&id, &o));
}

#[test]
fn owned_scope_covers_only_own_objects() {
    let p = policy(
        r#"
[[rules]]
name = "own"
groups = ["arrays"]
operations = ["Get", "Destroy"]
owned = true
"#,
    );
    let alice = p.identity("alice");
    let mine = obj("k1", "alice", &[], &[]);
    let bobs = obj("k2", "bob", &[], &[]);
    assert_eq!(p.decide(&alice, Operation::Get, &mine), ALLOW);
    assert_eq!(p.decide(&alice, Operation::Destroy, &mine), ALLOW);
    assert_eq!(p.decide(&alice, Operation::Encrypt, &mine), DENIED);
    assert_eq!(p.decide(&alice, Operation::Get, &bobs), HIDDEN);
    assert!(p.may_see(&alice, &mine));
    assert!(!p.may_see(&alice, &bobs));
    // Carol is not in the rule's group, even for an object she owns.
    let carol = p.identity("carol");
    assert_eq!(
        p.decide(&carol, Operation::Get, &obj("k3", "carol", &[], &[])),
        HIDDEN
    );
}

#[test]
fn ownerless_object_is_nobodys_even_for_an_empty_user_name() {
    let p = policy(
        r#"
[[rules]]
name = "own"
everyone = true
operations = ["Get"]
owned = true
"#,
    );
    let nameless = p.identity("");
    assert_eq!(
        p.decide(&nameless, Operation::Get, &obj("k1", "", &[], &[])),
        HIDDEN
    );
}

#[test]
fn owners_scope_shares_another_clients_keys() {
    let p = policy(
        r#"
[[rules]]
name = "carol-reads-alice"
users = ["carol"]
operations = ["Get"]
owners = ["alice"]
"#,
    );
    let carol = p.identity("carol");
    assert_eq!(
        p.decide(&carol, Operation::Get, &obj("k1", "alice", &[], &[])),
        ALLOW
    );
    assert_eq!(
        p.decide(&carol, Operation::Destroy, &obj("k1", "alice", &[], &[])),
        DENIED
    );
    assert_eq!(
        p.decide(&carol, Operation::Get, &obj("k2", "bob", &[], &[])),
        HIDDEN
    );
    // The grant names carol only.
    let bob = p.identity("bob");
    assert_eq!(
        p.decide(&bob, Operation::Get, &obj("k1", "alice", &[], &[])),
        HIDDEN
    );
}

#[test]
fn object_group_scope_matches_any_of_the_objects_groups() {
    let p = policy(
        r#"
[[rules]]
name = "rdl"
groups = ["readers"]
operations = ["Get", "GetAttributes"]
object_groups = ["purefa-rdl"]
"#,
    );
    let carol = p.identity("carol");
    let in_group = obj("k1", "alice", &["other", "purefa-rdl"], &[]);
    assert_eq!(p.decide(&carol, Operation::Get, &in_group), ALLOW);
    assert_eq!(p.decide(&carol, Operation::Revoke, &in_group), DENIED);
    // Exact match, case-sensitive: no prefix or case folding on Object Group.
    for groups in [&["purefa-rdl2"][..], &["PUREFA-RDL"], &["purefa"], &[]] {
        assert_eq!(
            p.decide(&carol, Operation::Get, &obj("k2", "alice", groups, &[])),
            HIDDEN,
            "{groups:?}"
        );
    }
}

#[test]
fn name_prefix_scope_matches_any_name() {
    let p = policy(
        r#"
[[rules]]
name = "backup"
groups = ["readers"]
operations = ["Get"]
name_prefixes = ["backup/", "vm-"]
"#,
    );
    let carol = p.identity("carol");
    assert_eq!(
        p.decide(
            &carol,
            Operation::Get,
            &obj("k1", "alice", &[], &["x", "vm-42"])
        ),
        ALLOW
    );
    assert_eq!(
        p.decide(
            &carol,
            Operation::Get,
            &obj("k2", "alice", &[], &["backup/"])
        ),
        ALLOW
    );
    for names in [&["Backup/x"][..], &["backup"], &["my-vm-1"], &[]] {
        assert_eq!(
            p.decide(&carol, Operation::Get, &obj("k3", "alice", &[], names)),
            HIDDEN,
            "{names:?}"
        );
    }
}

#[test]
fn uid_scope_grants_single_objects() {
    let p = policy(
        r#"
[[rules]]
name = "one-key"
users = ["carol"]
operations = ["Get"]
uids = ["k1"]
"#,
    );
    let carol = p.identity("carol");
    assert_eq!(
        p.decide(&carol, Operation::Get, &obj("k1", "alice", &[], &[])),
        ALLOW
    );
    assert_eq!(
        p.decide(&carol, Operation::Get, &obj("k10", "alice", &[], &[])),
        HIDDEN
    );
}

#[test]
fn all_objects_scope_and_everyone_subject() {
    let p = policy(
        r#"
[[rules]]
name = "audit"
everyone = true
operations = ["GetAttributes"]
all_objects = true
"#,
    );
    // Even a user the policy does not list.
    let stranger = p.identity("stranger");
    assert!(!p.knows_user("stranger"));
    let o = obj("k1", "alice", &[], &[]);
    assert_eq!(p.decide(&stranger, Operation::GetAttributes, &o), ALLOW);
    assert_eq!(p.decide(&stranger, Operation::Get, &o), DENIED);
}

#[test]
fn scope_keys_of_one_rule_are_alternatives() {
    let p = policy(
        r#"
[[rules]]
name = "mixed"
users = ["carol"]
operations = ["Get"]
uids = ["k1"]
object_groups = ["g"]
name_prefixes = ["n-"]
"#,
    );
    let carol = p.identity("carol");
    for o in [
        obj("k1", "alice", &[], &[]),
        obj("k2", "alice", &["g"], &[]),
        obj("k3", "alice", &[], &["n-1"]),
    ] {
        assert_eq!(p.decide(&carol, Operation::Get, &o), ALLOW, "{o:?}");
    }
    assert_eq!(
        p.decide(&carol, Operation::Get, &obj("k4", "alice", &["h"], &["m"])),
        HIDDEN
    );
}

#[test]
fn grants_from_several_rules_add_up() {
    let p = policy(
        r#"
[[rules]]
name = "read"
groups = ["arrays"]
operations = ["Get"]
owned = true
[[rules]]
name = "destroy"
users = ["alice"]
operations = ["Destroy"]
object_groups = ["g"]
"#,
    );
    let alice = p.identity("alice");
    let o = obj("k1", "alice", &["g"], &[]);
    assert_eq!(p.decide(&alice, Operation::Get, &o), ALLOW);
    assert_eq!(p.decide(&alice, Operation::Destroy, &o), ALLOW);
    let not_in_g = obj("k2", "alice", &[], &[]);
    assert_eq!(p.decide(&alice, Operation::Destroy, &not_in_g), DENIED);
}

#[test]
fn admin_role_through_group_or_user_allows_everything() {
    let p = policy("");
    let o = obj("k1", "alice", &[], &[]);
    for user in ["root", "solo-admin"] {
        let id = p.identity(user);
        for op in Operation::ALL {
            assert_eq!(p.decide(&id, op, &o), ALLOW, "{user} {op}");
            assert_eq!(p.decide_global(&id, op), ALLOW, "{user} {op}");
        }
        assert!(p.may_see(&id, &o));
    }
}

#[test]
fn global_operations_need_a_global_rule() {
    let p = policy(
        r#"
[[rules]]
name = "connect"
groups = ["arrays"]
operations = ["Query", "Locate", "Create"]
[[rules]]
name = "own"
groups = ["arrays"]
operations = ["Get"]
owned = true
"#,
    );
    let alice = p.identity("alice");
    assert_eq!(p.decide_global(&alice, Operation::Query), ALLOW);
    assert_eq!(p.decide_global(&alice, Operation::Create), ALLOW);
    assert_eq!(p.decide_global(&alice, Operation::Register), DENIED);
    // An object operation is never granted without an object.
    assert_eq!(p.decide_global(&alice, Operation::Get), DENIED);
    let carol = p.identity("carol");
    assert_eq!(p.decide_global(&carol, Operation::Query), DENIED);
    // Locate against one object: granted and visible, or hidden.
    let mine = obj("k1", "alice", &[], &[]);
    let bobs = obj("k2", "bob", &[], &[]);
    assert_eq!(p.decide(&alice, Operation::Locate, &mine), ALLOW);
    assert_eq!(p.decide(&alice, Operation::Locate, &bobs), HIDDEN);
    assert_eq!(p.decide(&alice, Operation::Register, &mine), DENIED);
}

#[test]
fn identity_carries_sorted_groups_and_unknown_users_have_none() {
    let p = Policy::from_toml_str(
        r#"
[[groups]]
name = "b"
[[groups]]
name = "a"
[[users]]
name = "u"
groups = ["b", "a", "b"]
"#,
    )
    .unwrap();
    assert_eq!(p.identity("u").groups(), ["a", "b"]);
    assert_eq!(p.identity("u").user(), "u");
    assert!(p.identity("nobody").groups().is_empty());
    assert_eq!(p.user_names(), ["u"]);
}

#[test]
fn explain_names_the_rule_or_the_missing_grant() {
    let p = policy(
        r#"
[[rules]]
name = "own"
groups = ["arrays"]
operations = ["Get"]
owned = true
[[rules]]
name = "rdl"
groups = ["arrays"]
operations = ["Get"]
object_groups = ["rdl"]
[[rules]]
name = "connect"
groups = ["arrays"]
operations = ["Query"]
"#,
    );
    let alice = p.identity("alice");
    let mine = obj("k1", "alice", &[], &["n"]);
    assert_eq!(
        p.explain(&alice, Operation::Get, &mine),
        "ALLOW Get on object 'k1' (owner 'alice', object groups [], names [\"n\"]): \
         rule 'own' grants it to group 'arrays' on objects the caller owns"
    );
    assert_eq!(
        p.explain(&alice, Operation::Destroy, &mine),
        "DENY (Permission Denied) Destroy on object 'k1' (owner 'alice', object groups [], \
         names [\"n\"]): user 'alice' (groups [\"arrays\"]) sees the object through rule 'own' \
         (to group 'arrays' on objects the caller owns; grants Get), but none of them grants \
         Destroy"
    );
    let bobs = obj("k2", "bob", &[], &[]);
    assert_eq!(
        p.explain(&alice, Operation::Get, &bobs),
        "DENY (Item Not Found: object hidden) Get on object 'k2' (owner 'bob', object groups \
         [], names []): no rule grants user 'alice' (groups [\"arrays\"]) any operation on this \
         object, so it is hidden; scopes of the caller's rules that do not match: 'own' \
         (objects the caller owns); 'rdl' (object groups [\"rdl\"])"
    );
    assert_eq!(
        p.explain(&p.identity("root"), Operation::Destroy, &bobs),
        "ALLOW Destroy on object 'k2' (owner 'bob', object groups [], names []): user 'root' \
         has the admin role through group 'admins'"
    );
    assert_eq!(
        p.explain_global(&alice, Operation::Query),
        "ALLOW Query: rule 'connect' grants it to group 'arrays'"
    );
    assert_eq!(
        p.explain_global(&alice, Operation::Create),
        "DENY (Permission Denied) Create: no rule grants Create to user 'alice' (groups \
         [\"arrays\"]); the caller's global rules grant only: 'connect' (Query)"
    );
    assert_eq!(
        p.explain_global(&p.identity("stranger"), Operation::Query),
        "DENY (Permission Denied) Query: no rule grants Query to user 'stranger' (no groups)"
    );
    assert_eq!(
        p.explain_global(&alice, Operation::Get),
        "DENY (Permission Denied) Get: Get acts on an existing object; decide it against that \
         object"
    );
}

#[test]
fn explain_agrees_with_decide_on_every_operation() {
    let p = policy(
        r#"
[[rules]]
name = "own"
groups = ["arrays"]
operations = ["Get", "Destroy"]
owned = true
[[rules]]
name = "connect"
groups = ["arrays"]
operations = ["Locate"]
"#,
    );
    let objects = [
        obj("k1", "alice", &[], &[]),
        obj("k2", "bob", &[], &[]),
        obj("k3", "", &[], &[]),
    ];
    for user in ["alice", "carol", "root", "stranger"] {
        let id = p.identity(user);
        for o in &objects {
            for op in Operation::ALL {
                let prefix = match p.decide(&id, op, o) {
                    ALLOW => "ALLOW ",
                    HIDDEN => "DENY (Item Not Found",
                    _ => "DENY (Permission Denied)",
                };
                let text = p.explain(&id, op, o);
                assert!(text.starts_with(prefix), "{user} {op} {o:?}: {text}");
            }
        }
    }
}

#[test]
fn explain_stays_one_line_whatever_the_client_named_things() {
    let p = policy(
        r#"
[[rules]]
name = "prefixed"
groups = ["arrays"]
operations = ["Get"]
name_prefixes = ["vm"]
"#,
    );
    let alice = p.identity("alice\nDENY");
    let o = obj("k\n1", "bob\r", &["g\n"], &["vm\nALLOW"]);
    for op in [Operation::Get, Operation::Destroy] {
        let text = p.explain(&alice, op, &o);
        assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
    }
    let alice = p.identity("alice");
    let text = p.explain(&alice, Operation::Get, &o);
    assert!(text.ends_with("(Name 'vm\\nALLOW')"), "{text}");
}

#[test]
fn an_identity_kept_across_a_reload_follows_the_new_membership() {
    let old = policy(
        r#"
[[rules]]
name = "arrays-read"
groups = ["arrays"]
operations = ["Get"]
all_objects = true
"#,
    );
    let alice = old.identity("alice");
    let o = obj("k1", "bob", &[], &[]);
    assert_eq!(old.decide(&alice, Operation::Get, &o), ALLOW);
    // The reload moves alice out of `arrays`.
    let new = Policy::from_toml_str(
        r#"
[[groups]]
name = "arrays"
[[users]]
name = "alice"
[[rules]]
name = "arrays-read"
groups = ["arrays"]
operations = ["Get"]
all_objects = true
"#,
    )
    .unwrap();
    assert_eq!(alice.groups(), ["arrays"]);
    assert_eq!(new.decide(&alice, Operation::Get, &o), HIDDEN);
    assert!(new
        .explain(&alice, Operation::Get, &o)
        .starts_with("DENY (Item Not Found"));
}
