//! Every rejection, with its exact message, and the shipped example policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use kmip_policy::{Decision, DenyReason, ObjectFacts, Operation, Policy, PolicyConfig};

const HEADER: &str = r#"
[[groups]]
name = "arrays"
[[users]]
name = "purefa"
groups = ["arrays"]
"#;

fn error_of(body: &str) -> String {
    match Policy::from_toml_str(&format!("{HEADER}{body}")) {
        Ok(_) => panic!("policy was accepted:\n{body}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejections_say_which_rule_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[[users]]\nname = \"purefa\"\n",
            "user 'purefa' is declared more than once",
        ),
        (
            "[[groups]]\nname = \"arrays\"\n",
            "group 'arrays' is declared more than once",
        ),
        (
            "[[users]]\nname = \"x\"\ngroups = [\"nope\"]\n",
            "user 'x': key `groups` names unknown group 'nope'",
        ),
        ("[[users]]\nname = \"\"\n", "user has an empty name"),
        (
            "[[users]]\nname = \"purefa \"\n",
            "user 'purefa ' has leading or trailing whitespace in its name",
        ),
        ("[[groups]]\nname = \"\"\n", "group has an empty name"),
        (
            "[[rules]]\nname = \"\"\neveryone = true\noperations = [\"Query\"]\n",
            "rule has an empty name",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Query\"]\n\
             [[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Query\"]\n",
            "rule 'r' is declared more than once",
        ),
        (
            "[[rules]]\nname = \"r\"\ngroups = [\"arays\"]\noperations = [\"Query\"]\n",
            "rule 'r': key `groups` names unknown group 'arays'",
        ),
        (
            "[[rules]]\nname = \"r\"\nusers = [\"pure\"]\noperations = [\"Query\"]\n",
            "rule 'r': key `users` names unknown user 'pure'",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Get\"]\nowners = [\"x\"]\n",
            "rule 'r': key `owners` names unknown user 'x'",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Query\", \"Fetch\"]\n",
            "rule 'r': key `operations` names unknown operation 'Fetch'",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = []\n",
            "rule 'r': key `operations` is empty",
        ),
        (
            "[[rules]]\nname = \"r\"\noperations = [\"Query\"]\n",
            "rule 'r': grants to nobody (set `users`, `groups` or `everyone = true`)",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Get\"]\nname_prefixes = [\"\"]\n",
            "rule 'r': key `name_prefixes` contains an empty string",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Get\"]\nobject_groups = [\"g\", \"\"]\n",
            "rule 'r': key `object_groups` contains an empty string",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Get\"]\nuids = [\"\"]\n",
            "rule 'r': key `uids` contains an empty string",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Get\", \"Create\"]\nowned = true\n",
            "rule 'r': operation 'Create' creates objects or needs none, so it cannot be limited \
             to objects; move it to a rule without scope keys",
        ),
        (
            "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Query\", \"Get\"]\n",
            "rule 'r': operation 'Get' acts on an object but the rule has no scope (set `owned`, \
             `owners`, `object_groups`, `name_prefixes`, `uids` or `all_objects`)",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(&error_of(body), want, "for policy:\n{body}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_toml_errors() {
    let e = error_of(
        "[[rules]]\nname = \"r\"\neveryone = true\noperations = [\"Query\"]\nownd = true\n",
    );
    assert!(
        e.starts_with("policy is not valid TOML for this schema: "),
        "{e}"
    );
    assert!(e.contains("unknown field `ownd`"), "{e}");
    let e = error_of("[[users]]\nname = \"x\"\nadmin = \"yes\"\n");
    assert!(e.contains("invalid type"), "{e}");
    let e = error_of("[[rules]]\nname = \"r\"\neveryone = true\n");
    assert!(e.contains("missing field `operations`"), "{e}");
}

#[test]
fn operation_names_ignore_case() {
    let p = Policy::from_toml_str(&format!(
        "{HEADER}[[rules]]\nname = \"r\"\nusers = [\"purefa\"]\noperations = [\"mac\", \"GETATTRIBUTES\"]\nowned = true\n"
    ))
    .unwrap();
    let id = p.identity("purefa");
    let o = ObjectFacts {
        uid: "k".into(),
        owner: "purefa".into(),
        ..ObjectFacts::default()
    };
    assert_eq!(p.decide(&id, Operation::Mac, &o), Decision::Allow);
    assert_eq!(p.decide(&id, Operation::GetAttributes, &o), Decision::Allow);
}

/// The gateway embeds the policy under `[policy]` in its own configuration.
#[test]
fn embeds_under_a_policy_table() {
    #[derive(serde::Deserialize)]
    struct GatewayConfig {
        policy: PolicyConfig,
    }
    let text =
        "[[policy.groups]]\nname = \"g\"\n[[policy.users]]\nname = \"u\"\ngroups = [\"g\"]\n\
                [[policy.rules]]\nname = \"r\"\ngroups = [\"g\"]\noperations = [\"Query\"]\n";
    let config: GatewayConfig = toml::from_str(text).unwrap();
    let p = Policy::from_config(config.policy).unwrap();
    assert!(p
        .decide_global(&p.identity("u"), Operation::Query)
        .is_allowed());
}

const EXAMPLE: &str = include_str!("../../deploy/config/policy.example.toml");

fn key(uid: &str, owner: &str, groups: &[&str], names: &[&str]) -> ObjectFacts {
    ObjectFacts {
        uid: uid.to_string(),
        owner: owner.to_string(),
        object_groups: groups.iter().map(|s| s.to_string()).collect(),
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn example_policy_serves_the_flasharray() {
    let p = Policy::from_toml_str(EXAMPLE).unwrap();
    let purefa = p.identity("purefa");
    assert_eq!(purefa.groups(), ["storage-arrays"]);
    // `purearray test security-token` and enabling RDL.
    for op in [
        Operation::DiscoverVersions,
        Operation::Query,
        Operation::Locate,
        Operation::Create,
        Operation::Register,
    ] {
        assert!(p.decide_global(&purefa, op).is_allowed(), "{op}");
    }
    let own = key("k1", "purefa", &["purefa-rdl"], &["purefa-secondary"]);
    for op in [
        Operation::Get,
        Operation::GetAttributes,
        Operation::Activate,
        Operation::ReKey,
        Operation::Revoke,
        Operation::Destroy,
    ] {
        assert!(p.decide(&purefa, op, &own).is_allowed(), "{op}");
    }
    assert_eq!(
        p.decide(&purefa, Operation::Export, &own),
        Decision::Deny(DenyReason::NotPermitted)
    );

    // The DR array reads the primary's keys but cannot destroy them.
    let dr = p.identity("purefa-dr");
    assert!(p.decide(&dr, Operation::Get, &own).is_allowed());
    assert_eq!(
        p.decide(&dr, Operation::Destroy, &own),
        Decision::Deny(DenyReason::NotPermitted)
    );
    // The primary cannot see the DR array's own keys: no grant goes that way.
    let dr_key = key("k2", "purefa-dr", &[], &[]);
    assert_eq!(
        p.decide(&purefa, Operation::Get, &dr_key),
        Decision::Deny(DenyReason::Invisible)
    );

    // Backup sees array keys only when named for backup or shared by uid.
    let backup = p.identity("backup01");
    assert!(!p.may_see(&backup, &own));
    assert!(p.may_see(&backup, &key("k3", "purefa", &[], &["backup/vol1"])));
    assert!(p.may_see(
        &backup,
        &key("6b1c5a0e-4d7f-4b1e-9a51-0c2f3e4d5a6b", "purefa", &[], &[])
    ));

    // Any certificate may Query; only admins reach everything.
    let stranger = p.identity("unlisted-cn");
    assert!(p.decide_global(&stranger, Operation::Query).is_allowed());
    assert!(!p.decide_global(&stranger, Operation::Locate).is_allowed());
    assert!(!p.may_see(&stranger, &own));
    assert!(p
        .decide(&p.identity("ops"), Operation::Destroy, &own)
        .is_allowed());
}
