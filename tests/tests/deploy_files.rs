//! The deployment files' checker (`deploy/scripts/lint_deploy.py`, run by `lint-deploy.sh` in
//! CI) holds the high-availability rules: the repository's files pass, and each broken copy —
//! one rule broken at a time, in a temporary copy of `deploy/` — fails with the problem named.
//! The Python interpreter (with PyYAML) is `$KMIP_PYTHON`, else `<workspace>/.venv/bin/python`.

use kmip_e2e::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    let path = std::env::var_os("KMIP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.is_file(),
        "no Python at {}: set KMIP_PYTHON, or run deploy/scripts/install-test-deps.sh",
        path.display()
    );
    path
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A repository root with a copy of `deploy/` (the sources the dashboard check reads are
/// linked, not copied).
struct Copy {
    root: tempfile::TempDir,
}

impl Copy {
    fn new() -> Copy {
        let root = tempfile::tempdir().unwrap();
        copy_tree(
            &workspace_root().join("deploy"),
            &root.path().join("deploy"),
        );
        for crate_dir in ["gateway", "backends", "policy"] {
            std::os::unix::fs::symlink(
                workspace_root().join(crate_dir),
                root.path().join(crate_dir),
            )
            .unwrap();
        }
        Copy { root }
    }

    /// Replaces `from` (which must occur) by `to` in the file `path` of `deploy/`.
    fn edit(&self, path: &str, from: &str, to: &str) {
        let file = self.root.path().join("deploy").join(path);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(from), "{path} has no {from:?}");
        std::fs::write(&file, text.replacen(from, to, 1)).unwrap();
    }

    /// The checker's exit status and its report.
    fn lint(&self) -> (bool, String) {
        let out = Command::new(python())
            .arg(workspace_root().join("deploy/scripts/lint_deploy.py"))
            .arg(self.root.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

#[test]
fn the_repository_deploy_files_pass() {
    let (ok, report) = Copy::new().lint();
    assert!(ok, "{report}");
}

/// Each case: file, text replaced, replacement, a phrase of the expected problem.
const BROKEN: &[(&str, &str, &str, &str)] = &[
    (
        "k8s/postgres/deployment.yaml",
        "replicas: 3",
        "replicas: 1",
        "replicas must be at least 3",
    ),
    (
        "k8s/postgres/deployment.yaml",
        "topologyKey: kubernetes.io/hostname\n              labelSelector",
        "topologyKey: topology.kubernetes.io/zone\n              labelSelector",
        "podAntiAffinity on kubernetes.io/hostname",
    ),
    (
        "k8s/postgres/deployment.yaml",
        "path: /readyz",
        "path: /healthz",
        "readinessProbe must GET /readyz",
    ),
    (
        "k8s/postgres/deployment.yaml",
        "name: kmip-db-app\n                  key: password",
        "name: kmip-gateway-kek\n                  key: kek",
        "password_env must come from the Secret kmip-db-app",
    ),
    (
        "k8s/postgres/deployment.yaml",
        "secretName: kmip-db-ca",
        "secretName: kmip-db-tls",
        "refers to a missing Secret",
    ),
    (
        "k8s/postgres/pdb.yaml",
        "minAvailable: 2",
        "minAvailable: 1",
        "minAvailable must be at least 2",
    ),
    (
        "k8s/postgres/database.yaml",
        "  minSyncReplicas: 1\n  maxSyncReplicas: 1\n",
        "",
        "needs synchronous replication",
    ),
    (
        "k8s/postgres/database.yaml",
        "synchronous_commit: \"on\"",
        "synchronous_commit: \"local\"",
        "acknowledges commits the standby may not have",
    ),
    (
        "k8s/postgres/database.yaml",
        "instances: 3",
        "instances: 1",
        "instances must be at least 3",
    ),
    (
        "k8s/postgres/configmap.yaml",
        "sslmode=verify-full",
        "sslmode=require",
        "sslmode=verify-full",
    ),
    (
        "k8s/postgres/configmap.yaml",
        "kmip@kmip-db-rw:5432",
        "kmip@kmip-db-ro:5432",
        "must name kmip-db-rw",
    ),
    (
        "k8s/postgres/configmap.yaml",
        "kmip@kmip-db-rw",
        "kmip:secret@kmip-db-rw",
        "url carries a password",
    ),
    (
        "k8s/postgres/configmap.yaml",
        "env = \"KMIP_KEK\"",
        "env = \"KMIP_KEK_TYPO\"",
        "KMIP_KEK_TYPO is not set in the container",
    ),
    (
        "haproxy/haproxy.cfg",
        "backend kmip_gateways\n    mode tcp",
        "backend kmip_gateways\n    mode http",
        "mode must be tcp",
    ),
    (
        "haproxy/haproxy.cfg",
        "bind 192.0.2.10:5696",
        "bind 192.0.2.10:5696 ssl crt /etc/haproxy/kmip.pem",
        "terminates TLS",
    ),
    (
        "haproxy/haproxy.cfg",
        "uri /readyz",
        "uri /healthz",
        "http-check send must GET /readyz",
    ),
    (
        "haproxy/haproxy.cfg",
        "server gw2 192.0.2.12:5696 check port 9696",
        "server gw2 192.0.2.12:5696 check",
        "server gw2 needs `check port 9696`",
    ),
    (
        "keepalived/keepalived.conf",
        "    track_process {\n        track_haproxy\n    }\n",
        "",
        "does not track_process track_haproxy",
    ),
];

#[test]
fn each_broken_high_availability_rule_is_reported() {
    for (file, from, to, expected) in BROKEN {
        let copy = Copy::new();
        copy.edit(file, from, to);
        let (ok, report) = copy.lint();
        assert!(
            !ok && report.contains(expected),
            "{file}: {from:?} -> {to:?} should report {expected:?}; got (ok={ok}):\n{report}"
        );
    }
}

#[test]
fn the_single_gateway_set_keeps_its_own_rules() {
    // The vault set still needs its volume; the HA set must not have one.
    let copy = Copy::new();
    copy.edit("k8s/kustomization.yaml", "  - pvc.yaml\n", "");
    std::fs::remove_file(copy.root.path().join("deploy/k8s/pvc.yaml")).unwrap();
    let (ok, report) = copy.lint();
    assert!(
        !ok && report.contains("no PersistentVolumeClaim for the vault data"),
        "{report}"
    );
    let copy = Copy::new();
    std::fs::copy(
        workspace_root().join("deploy/k8s/pvc.yaml"),
        copy.root.path().join("deploy/k8s/postgres/pvc.yaml"),
    )
    .unwrap();
    copy.edit(
        "k8s/postgres/kustomization.yaml",
        "  - pdb.yaml\n",
        "  - pdb.yaml\n  - pvc.yaml\n",
    );
    let (ok, report) = copy.lint();
    assert!(!ok && report.contains("keep no state"), "{report}");
}
