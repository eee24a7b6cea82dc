//! `kmip-gateway user add`: appends a `[[users]]` entry to the configuration file, keeping the
//! rest of the file (comments, order, formatting) as it was.

use super::{read_limited, write_atomic, CliError};
use kmip_gateway::config::{valid_user_name, GatewayConfig};
use std::path::Path;

/// Largest configuration file edited: far above any real one, bounds the parse.
const MAX_CONFIG_LEN: u64 = 4 * 1024 * 1024;

/// Adds user `name` trusting the CA certificate(s) in `ca` (and CRLs `crls`); with
/// `direct_issuer_only`, only certificates those CAs signed themselves (no intermediates below
/// them). Refuses a duplicate name, a file that is not a CA certificate, and any result that
/// does not validate as a whole.
pub(crate) fn add(
    name: &str,
    ca: &Path,
    crls: &[std::path::PathBuf],
    direct_issuer_only: bool,
    config: &Path,
) -> Result<String, CliError> {
    if !valid_user_name(name) {
        return Err(CliError::Refused(format!(
            "'{name}' cannot be a user name: empty, a wildcard or not printable"
        )));
    }
    // A user is the Common Name of its certificates: a name the rule refuses never logs in.
    if let Err(e) = kmip_gateway::tooling::pki::check_common_name(name) {
        return Err(CliError::Refused(format!(
            "'{name}' cannot be a user name: no client certificate may carry it ({e})"
        )));
    }
    let ca_pem = String::from_utf8(read_limited(
        ca,
        kmip_gateway::tooling::pki::MAX_PEM_LEN as u64,
    )?)
    .map_err(|_| CliError::Refused(format!("{}: not a PEM file", ca.display())))?;
    let infos = kmip_gateway::tooling::pki::describe_certs(&ca_pem)?;
    if infos.is_empty() || infos.iter().any(|i| !i.is_ca) {
        return Err(CliError::Refused(format!(
            "{}: every certificate in it must be a CA certificate",
            ca.display()
        )));
    }
    let text = String::from_utf8(read_limited(config, MAX_CONFIG_LEN)?)
        .map_err(|_| CliError::Refused(format!("{}: not UTF-8 text", config.display())))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| CliError::State {
                path: config.to_path_buf(),
                problem: e.to_string(),
            })?;
    let absolute = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let users = doc
        .entry("users")
        .or_insert(toml_edit::Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .ok_or_else(|| {
            CliError::Refused(format!(
                "{}: `users` is not written as [[users]] tables; add the user by hand",
                config.display()
            ))
        })?;
    if users
        .iter()
        .any(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
    {
        return Err(CliError::Refused(format!(
            "user '{name}' already exists in {}",
            config.display()
        )));
    }
    let mut table = toml_edit::Table::new();
    table.insert("name", toml_edit::value(name));
    let mut cas = toml_edit::Array::new();
    cas.push(absolute(ca));
    table.insert("cas", toml_edit::value(cas));
    if !crls.is_empty() {
        let mut list = toml_edit::Array::new();
        for c in crls {
            list.push(absolute(c));
        }
        table.insert("crls", toml_edit::value(list));
    }
    if direct_issuer_only {
        table.insert("direct_issuer_only", toml_edit::value(true));
    }
    users.push(table);
    let new_text = doc.to_string();
    let base = config.parent().unwrap_or(Path::new("."));
    GatewayConfig::from_toml_str(&new_text, base)
        .map_err(|e| CliError::Refused(format!("the result would not be valid: {e}")))?;
    // The file exists: its owner, group and mode are kept (a root-owned 0600 rewrite would lock
    // the service out of its own configuration at the next reload).
    let keep = super::Access {
        mode: 0o640,
        group_mode: 0o640,
        group: None,
    };
    write_atomic(config, new_text.as_bytes(), keep)?;
    Ok(format!(
        "user '{name}' added to {} (trusting {}). A gateway watching the file reloads by itself; \
         else run `kmip-gateway reload`.\n",
        config.display(),
        absolute(ca)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_a_user_keeps_the_rest_and_refuses_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = kmip_gateway::tooling::pki::init_ca("test CA", 30).unwrap();
        let ca_path = tmp.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        let config = tmp.path().join("gateway.toml");
        let original = "# my gateway\nlisten = \"127.0.0.1:0\" # port\n[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n\n[[users]]\nname = \"purefa\"\ncas = [\"ca.pem\"]\n\n[limits]\nmax_connections = 5\n";
        std::fs::write(&config, original).unwrap();
        add("vsphere", &ca_path, &[], false, &config).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.starts_with("# my gateway\nlisten = \"127.0.0.1:0\" # port\n"),
            "{text}"
        );
        let cfg = GatewayConfig::load(&config).unwrap();
        assert_eq!(cfg.users.len(), 2);
        assert_eq!(cfg.users[1].name, "vsphere");
        assert_eq!(cfg.users[1].cas, std::slice::from_ref(&ca_path));
        assert_eq!(cfg.limits.max_connections, 5);

        assert!(add("vsphere", &ca_path, &[], false, &config).is_err());
        assert!(add("*", &ca_path, &[], false, &config).is_err());
        // Names the Common Name rule refuses, which `valid_user_name` alone let through.
        assert!(add(" padded", &ca_path, &[], false, &config).is_err());
        assert!(add(&"a".repeat(65), &ca_path, &[], false, &config).is_err());
        let leaf = kmip_gateway::tooling::pki::issue_client_cert(&ca, "x", 30).unwrap();
        let leaf_path = tmp.path().join("leaf.pem");
        std::fs::write(&leaf_path, &leaf.cert_pem).unwrap();
        assert!(add("other", &leaf_path, &[], false, &config).is_err());
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    }

    #[test]
    fn a_user_can_be_pinned_to_its_ca_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = kmip_gateway::tooling::pki::init_ca("test CA", 30).unwrap();
        let ca_path = tmp.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        let config = tmp.path().join("gateway.toml");
        std::fs::write(
            &config,
            "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n",
        )
        .unwrap();
        add("pinned", &ca_path, &[], true, &config).unwrap();
        add("loose", &ca_path, &[], false, &config).unwrap();
        let cfg = GatewayConfig::load(&config).unwrap();
        let pinned: Vec<(&str, bool)> = cfg
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.direct_issuer_only))
            .collect();
        assert_eq!(pinned, [("pinned", true), ("loose", false)]);
    }
}
