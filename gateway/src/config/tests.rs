//! Unit tests of the configuration: defaults, resolved paths, and errors that name the key.

use super::*;

const MINIMAL: &str = r#"
listen = "127.0.0.1:0"
[tls]
cert = "server.pem"
key = "server.key"
[[users]]
name = "purefa"
cas = ["ca.pem"]
"#;

#[test]
fn minimal_config_gets_defaults_and_resolved_paths() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/etc/kg")).unwrap();
    assert_eq!(c.tls.cert, Path::new("/etc/kg/server.pem"));
    assert_eq!(c.users[0].cas[0], Path::new("/etc/kg/ca.pem"));
    assert_eq!(c.limits.max_message_size, 1 << 20);
    assert!(matches!(c.backend, BackendConfig::Vault { .. }));
    assert_eq!(c.capture_dir, None);
    let c = GatewayConfig::from_toml_str(
        &format!("capture_dir = \"capture\"\n{MINIMAL}"),
        Path::new("/etc/kg"),
    )
    .unwrap();
    assert_eq!(c.capture_dir.as_deref(), Some(Path::new("/etc/kg/capture")));
}

#[test]
fn result_and_object_limits_are_read_and_validated() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
    assert_eq!(c.limits.max_locate_results, DEFAULT_MAX_LOCATE_RESULTS);
    assert_eq!(c.limits.max_objects_per_user, DEFAULT_MAX_OBJECTS_PER_USER);
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[limits]\nmax_locate_results = 50\nmax_objects_per_user = 7\n"),
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(
        (c.limits.max_locate_results, c.limits.max_objects_per_user),
        (50, 7)
    );
    for key in ["max_locate_results", "max_objects_per_user"] {
        let e = error_of(&format!("{MINIMAL}[limits]\n{key} = 0\n"));
        assert!(e.starts_with(&format!("limits.{key}")), "{e}");
    }
}

#[test]
fn connection_and_memory_limits_default_and_are_checked() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
    assert_eq!(c.limits.max_connections_per_source, 64);
    assert_eq!(c.limits.max_handshakes, 256);
    assert_eq!(c.limits.max_handshakes_per_source, 32);
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(5));
    assert_eq!(c.limits.max_inflight_request_bytes, 64 << 20);
    assert_eq!(c.locate_cache, LocateCacheConfig::default());
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[limits]\nmax_handshakes = 8\nmax_handshakes_per_source = 2\nmax_inflight_request_bytes = 2097152\n[locate_cache]\nmax_bytes = 4096\n"),
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(
        (c.limits.max_handshakes, c.limits.max_handshakes_per_source),
        (8, 2)
    );
    assert_eq!(c.limits.max_inflight_request_bytes, 2 << 20);
    assert_eq!(c.locate_cache.max_bytes, 4096);
    for key in [
        "max_handshakes",
        "max_handshakes_per_source",
        "max_inflight_request_bytes",
    ] {
        assert!(error_of(&format!("{MINIMAL}[limits]\n{key} = 0\n"))
            .starts_with(&format!("limits.{key}")));
    }
    assert!(error_of(&format!(
        "{MINIMAL}[limits]\nmax_inflight_request_bytes = 1000\n"
    ))
    .starts_with("limits.max_inflight_request_bytes"));
}

fn vault_of(c: &GatewayConfig) -> (PathBuf, MasterKeyConfig, PathBuf) {
    match &c.backend {
        BackendConfig::Vault {
            dir,
            master_key,
            head,
        } => (dir.clone(), master_key.clone(), head.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_vault_key_and_head_default_outside_the_data_folder() {
    let c = GatewayConfig::from_toml_str(
        &format!("data_dir = \"/var/lib/kg/\"\n{MINIMAL}"),
        Path::new("/etc/kg"),
    )
    .unwrap();
    let (dir, key, head) = vault_of(&c);
    assert_eq!(dir, Path::new("/var/lib/kg/vault"));
    assert_eq!(
        key,
        MasterKeyConfig::File("/var/lib/kg-secrets/master.key".into())
    );
    assert_eq!(head, Path::new("/var/lib/kg-secrets/vault.head"));
    assert_eq!(c.vault_key_warning(), None);
    // A key from the environment: the head still goes beside the data folder, not in it.
    let c = GatewayConfig::from_toml_str(
        &format!(
            "data_dir = \"/d\"\n{MINIMAL}[backend]\nkind = \"vault\"\nmaster_key_env = \"K\"\n"
        ),
        Path::new("/etc/kg"),
    )
    .unwrap();
    assert_eq!(vault_of(&c).2, Path::new("/d-secrets/vault.head"));
    // An explicit key file: the head beside it, unless head_file says otherwise.
    let c = GatewayConfig::from_toml_str(
        &format!("data_dir = \"/d\"\n{MINIMAL}[backend]\nkind = \"vault\"\nmaster_key_file = \"/etc/kg/k/master.key\"\nhead_file = \"/var/lib/h/vault.head\"\n"),
        Path::new("/etc/kg"),
    )
    .unwrap();
    assert_eq!(vault_of(&c).2, Path::new("/var/lib/h/vault.head"));
    assert!(error_of(&format!(
        "data_dir = \"/d\"\n{MINIMAL}[backend]\nkind = \"vault\"\nhead_file = \"/d/vault.head\"\n"
    ))
    .starts_with("backend.head_file"));
}

#[test]
fn a_key_file_left_in_the_data_folder_is_used_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("vault")).unwrap();
    std::fs::write(legacy_master_key_path(&data), [0u8; 32]).unwrap();
    for c in [
        GatewayConfig::embedded(&data),
        GatewayConfig::from_toml_str(
            &format!("data_dir = {:?}\n{MINIMAL}", data.display().to_string()),
            Path::new("/etc/kg"),
        )
        .unwrap(),
    ] {
        let (_, key, head) = vault_of(&c);
        assert_eq!(key, MasterKeyConfig::File(legacy_master_key_path(&data)));
        assert_eq!(head, data.join("vault/vault.head"));
        let warning = c.vault_key_warning().unwrap();
        assert!(
            warning.contains("inside the data folder") && warning.contains("data-secrets"),
            "{warning}"
        );
    }
    let fresh = tmp.path().join("fresh");
    let (_, key, _) = vault_of(&GatewayConfig::embedded(&fresh));
    assert_eq!(
        key,
        MasterKeyConfig::File(tmp.path().join("fresh-secrets/master.key"))
    );
}

fn error_of(toml: &str) -> String {
    GatewayConfig::from_toml_str(toml, Path::new("/x"))
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_the_key() {
    assert!(error_of(&MINIMAL.replace("purefa", "*.example.com")).starts_with("users[0].name"));
    assert!(
        error_of(&format!("{MINIMAL}[limits]\nmax_connections = 0\n"))
            .starts_with("limits.max_connections")
    );
    assert!(error_of(&format!(
        "{MINIMAL}[limits]\nmax_connections_per_source = 0\n"
    ))
    .starts_with("limits.max_connections_per_source"));
    assert!(error_of(&format!("{MINIMAL}[backend]\nkind = \"hsm\"\n")).starts_with("backend.kind"));
    assert!(error_of(&format!(
        "{MINIMAL}[backend]\nkind = \"pkcs11\"\nmodule = \"/m.so\"\n"
    ))
    .starts_with("backend.token_label"));
    assert!(error_of(&MINIMAL.replace("127.0.0.1:0", "nowhere")).starts_with("listen"));
    assert!(error_of(&format!("{MINIMAL}bogus = 1\n")).contains("bogus"));
    assert!(error_of(&format!(
        "{MINIMAL}[[users]]\nname = \"purefa\"\ncas = [\"b.pem\"]\n"
    ))
    .contains("twice"));
    assert!(
        error_of(&format!("{MINIMAL}[admin]\nmetrics_require_token = true\n"))
            .starts_with("admin.metrics_require_token")
    );
    assert!(
        error_of(&format!("{MINIMAL}[admin]\nallowed_hosts = [\"a:80\"]\n"))
            .starts_with("admin.allowed_hosts[0]")
    );
}

#[test]
fn the_example_configuration_is_valid_once_user_add_added_a_user() {
    let example = include_str!("../../../deploy/config/gateway.example.toml");
    let base = Path::new("/etc/kmip-gateway");
    // No active user, so that the setup's `user add purefa` does not find a duplicate.
    let bare = GatewayConfig::from_toml_str(example, base)
        .unwrap_err()
        .to_string();
    assert!(bare.contains("kmip-gateway user add"), "{bare}");
    let with_user = format!("{example}\n[[users]]\nname = \"purefa\"\ncas = [\"pki/ca.pem\"]\n");
    let c = GatewayConfig::from_toml_str(&with_user, base).unwrap();
    assert!(c.admin.token_file.is_some());
    assert_eq!(c.log_format, LogFormat::Text);
    // The example's CA folder is enforced and every user CA must have a CRL.
    assert_eq!(
        c.pki_dir.as_deref(),
        Some(Path::new("/etc/kmip-gateway/pki"))
    );
    assert!(c.revocation.crls.is_empty());
    assert!(c.revocation.require_crl);
}

#[test]
fn pki_dir_and_require_crl_are_read() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
    assert_eq!(c.pki_dir, None);
    assert!(!c.revocation.require_crl);
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[pki]\ndir = \"pki\"\n[revocation]\nrequire_crl = true\n"),
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(
        c.pki_files(),
        Some(("/x/pki/ca.pem".into(), "/x/pki/crl.pem".into()))
    );
    assert!(c.revocation.require_crl);
    // The embedded default enforces its development CA's CRL.
    let e = GatewayConfig::embedded(Path::new("/d"));
    assert_eq!(e.pki_dir.as_deref(), Some(Path::new("/d/pki")));
}

#[test]
fn admin_section_is_resolved() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
    assert_eq!(c.admin, AdminConfig::default());
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[admin]\ntoken_file = \"admin.token\"\nallowed_hosts = [\"Gw.NS.svc.\"]\nmetrics_require_token = true\n"),
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(
        c.admin.token_file.as_deref(),
        Some(Path::new("/x/admin.token"))
    );
    assert_eq!(c.admin.allowed_hosts, ["gw.ns.svc"]);
    assert!(c.admin.metrics_require_token);
    assert_eq!(c.admin_listen, DEFAULT_ADMIN_LISTEN.parse().ok());
    let e = GatewayConfig::embedded(Path::new("/d"));
    assert_eq!(
        e.admin.token_file.as_deref(),
        Some(Path::new("/d/admin.token"))
    );
}

#[test]
fn revocation_section_is_normalised_and_checked() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
    assert_eq!(c.revocation, RevocationConfig::default());
    assert!(c.revocation.close_revoked_connections);
    assert!(c.users[0].crls.is_empty());
    assert!(!c.users[0].direct_issuer_only);
    let fp = "AB:".repeat(31) + "AB";
    let c = GatewayConfig::from_toml_str(
        &format!(
            "{}crls = [\"u.crl\"]\n[revocation]\ncrls = [\"all.crl\"]\ndeny_serials = [\"0x00:1A:2b\"]\ndeny_fingerprints = [\"{fp}\"]\nclose_revoked_connections = false\n",
            MINIMAL.trim_end().to_owned() + "\n"
        ),
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(c.users[0].crls, [Path::new("/x/u.crl")]);
    assert_eq!(c.revocation.crls, [Path::new("/x/all.crl")]);
    assert_eq!(c.revocation.deny_serials, ["1a2b"]);
    assert_eq!(c.revocation.deny_fingerprints, ["ab".repeat(32)]);
    assert!(!c.revocation.close_revoked_connections);
    assert!(error_of(&format!(
        "{MINIMAL}[revocation]\ndeny_serials = [\"xyz\"]\n"
    ))
    .starts_with("revocation.deny_serials[0]"));
    assert!(error_of(&format!(
        "{MINIMAL}[revocation]\ndeny_fingerprints = [\"abcd\"]\n"
    ))
    .starts_with("revocation.deny_fingerprints[0]"));
}

#[test]
fn direct_issuer_only_is_read_per_user() {
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}direct_issuer_only = true\n"),
        Path::new("/x"),
    )
    .unwrap();
    assert!(c.users[0].direct_issuer_only);
    assert!(
        error_of(&format!("{MINIMAL}direct_issuer_only = \"maybe\"\n"))
            .contains("direct_issuer_only")
    );
}

#[test]
fn pkcs11_backend_is_validated() {
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[backend]\nkind = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kmip\"\npin_env = \"PIN\"\n"),
        Path::new("/x"),
    )
    .unwrap();
    match c.backend {
        BackendConfig::Pkcs11 {
            token_label,
            pool_size,
            ..
        } => {
            assert_eq!(token_label, "kmip");
            assert_eq!(pool_size, DEFAULT_PKCS11_POOL_SIZE);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// `normalize_serial` keeps the configuration independent of the PKI module: it must read a
/// serial exactly as `pki::Serial::from_hex` does.
#[test]
fn serials_are_normalised_as_the_pki_reads_them() {
    let cases = [
        "0x00:1A:2b".to_owned(),
        " 0X7f ".to_owned(),
        "1".to_owned(),
        "abc".to_owned(),
        "0".to_owned(),
        "00:00".to_owned(),
        String::new(),
        "0x".to_owned(),
        "xyz".to_owned(),
        "1:2:3".to_owned(),
        "7f".repeat(20),
        "80".repeat(20),
        "80".repeat(19),
        "00".repeat(21) + "01",
        "00".repeat(22) + "01",
        "ff".repeat(21),
    ];
    for s in &cases {
        assert_eq!(
            normalize_serial(s),
            crate::tooling::pki::Serial::from_hex(s)
                .ok()
                .map(|s| s.to_hex()),
            "{s:?}"
        );
    }
}

/// A postgres backend with its required keys; `extra` goes into `[backend]` before the KEK.
fn postgres(extra: &str) -> String {
    format!(
        "{MINIMAL}[backend]\nkind = \"postgres\"\nurl = \"postgresql://kmip@db1:5432,db2:5432/kmip?target_session_attrs=read-write\"\nca = \"pg-ca.pem\"\n{extra}[backend.kek]\nkind = \"file\"\nfile = \"kek.hex\"\n"
    )
}

#[test]
fn postgres_backend_gets_defaults_and_resolved_paths() {
    let c = GatewayConfig::from_toml_str(&postgres(""), Path::new("/etc/kg")).unwrap();
    match c.backend {
        BackendConfig::Postgres {
            url,
            password,
            ca,
            pool_size,
            acquire_timeout,
            connect_timeout,
            read_your_writes,
            kek,
            previous_keks,
        } => {
            assert!(url.starts_with("postgresql://kmip@db1:5432,db2:5432/"));
            assert_eq!(password, PasswordConfig::None);
            assert_eq!(ca.as_deref(), Some(Path::new("/etc/kg/pg-ca.pem")));
            assert_eq!(pool_size, DEFAULT_PG_POOL_SIZE);
            assert_eq!(acquire_timeout, DEFAULT_PG_ACQUIRE_TIMEOUT);
            assert_eq!(connect_timeout, DEFAULT_PG_CONNECT_TIMEOUT);
            assert_eq!(read_your_writes, ReadYourWrites::Request);
            assert_eq!(kek, KekConfig::File("/etc/kg/kek.hex".into()));
            assert!(previous_keks.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn postgres_backend_reads_every_key() {
    let text = format!(
        "{}[[backend.previous_keks]]\nkind = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kek\"\npin_file = \"pin\"\nkey_label = \"kek-2025\"\n[[backend.previous_keks]]\nkind = \"file\"\nenv = \"OLD_KEK\"\n",
        postgres(
            "password_env = \"PGPW\"\npool_size = 3\nacquire_timeout_ms = 700\nconnect_timeout_ms = 900\nread_your_writes = \"connection\"\n"
        )
    );
    let c = GatewayConfig::from_toml_str(&text, Path::new("/etc/kg")).unwrap();
    let BackendConfig::Postgres {
        password,
        pool_size,
        acquire_timeout,
        connect_timeout,
        read_your_writes,
        previous_keks,
        ..
    } = c.backend
    else {
        panic!("not postgres");
    };
    assert_eq!(password, PasswordConfig::Env("PGPW".into()));
    assert_eq!(pool_size, 3);
    assert_eq!(acquire_timeout, Duration::from_millis(700));
    assert_eq!(connect_timeout, Duration::from_millis(900));
    assert_eq!(read_your_writes, ReadYourWrites::Connection);
    assert_eq!(
        previous_keks,
        vec![
            KekConfig::Pkcs11 {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                token_label: "kek".into(),
                pin: PinConfig::File("/etc/kg/pin".into()),
                key_label: "kek-2025".into(),
            },
            KekConfig::Env("OLD_KEK".into()),
        ]
    );
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[backend]\nkind = \"postgres\"\nurl = \"postgres://kmip@127.0.0.1/kmip?sslmode=disable\"\npassword_file = \"/run/pw\"\n[backend.kek]\nkind = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"PIN\"\nkey_label = \"k\"\n"),
        Path::new("/x"),
    )
    .unwrap();
    let BackendConfig::Postgres { password, ca, .. } = c.backend else {
        panic!("not postgres");
    };
    assert_eq!(password, PasswordConfig::File("/run/pw".into()));
    assert_eq!(ca, None, "no CA needed with sslmode=disable");
}

#[test]
fn postgres_backend_refusals_name_the_key() {
    let url_line =
        "url = \"postgresql://kmip@db1:5432,db2:5432/kmip?target_session_attrs=read-write\"\n";
    let refusals: Vec<(String, &str)> = vec![
        // No URL, or one that is not a libpq URI or names no host.
        (postgres("").replace(url_line, ""), "backend.url"),
        (postgres("").replace("postgresql://kmip@db1", "mysql://kmip@db1"), "backend.url"),
        (postgres("").replace("kmip@db1:5432,db2:5432", "kmip@"), "backend.url"),
        // A password in the URL.
        (postgres("").replace("kmip@db1", "kmip:hunter2@db1"), "backend.url"),
        (postgres("").replace("read-write", "read-write&password=hunter2"), "backend.url"),
        // TLS: a CA is needed unless TLS is off, and pointless when it is.
        (postgres("").replace("ca = \"pg-ca.pem\"\n", ""), "backend.ca"),
        (postgres("").replace("read-write", "read-write&sslmode=disable"), "backend.ca"),
        (postgres("password_file = \"a\"\npassword_env = \"B\"\n"), "backend.password_file"),
        (postgres("pool_size = 0\n"), "backend.pool_size"),
        (postgres("acquire_timeout_ms = 0\n"), "backend.acquire_timeout_ms"),
        (postgres("connect_timeout_ms = 0\n"), "backend.connect_timeout_ms"),
        (postgres("read_your_writes = \"never\"\n"), "backend.read_your_writes"),
        // Keys of the other kinds.
        (postgres("master_key_file = \"k\"\n"), "backend.master_key_file"),
        (postgres("head_file = \"h\"\n"), "backend.head_file"),
        (postgres("module = \"/m.so\"\n"), "backend.module"),
        (postgres("pin_env = \"P\"\n"), "backend.pin_file/pin_env"),
        // The KEK.
        (
            postgres("").split("[backend.kek]").next().unwrap().to_owned(),
            "backend.kek",
        ),
        (postgres("").replace("kind = \"file\"", "kind = \"vault\""), "backend.kek.kind"),
        (postgres("").replace("file = \"kek.hex\"", "file = \"kek.hex\"\nenv = \"K\""), "backend.kek.file"),
        (postgres("").replace("file = \"kek.hex\"\n", ""), "backend.kek.file"),
        (postgres("").replace("file = \"kek.hex\"", "file = \"kek.hex\"\nkey_label = \"k\""), "backend.kek.key_label"),
        (
            postgres("").replace(
                "kind = \"file\"\nfile = \"kek.hex\"",
                "kind = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"P\"",
            ),
            "backend.kek.key_label",
        ),
        (
            postgres("").replace(
                "kind = \"file\"\nfile = \"kek.hex\"",
                "kind = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"P\"\nkey_label = \"k\"\nfile = \"f\"",
            ),
            "backend.kek.file",
        ),
        (
            format!("{}[[backend.previous_keks]]\nkind = \"file\"\nfile = \"kek.hex\"\n", postgres("")),
            "backend.previous_keks[0]",
        ),
        (
            format!("{}[[backend.previous_keks]]\nkind = \"file\"\n", postgres("")),
            "backend.previous_keks[0].file",
        ),
    ];
    for (text, key) in refusals {
        let e = error_of(&text);
        assert!(e.starts_with(key), "expected {key}, got: {e}\n{text}");
        assert!(!e.contains("hunter2"), "the error shows the password: {e}");
    }
}

#[test]
fn postgres_keys_are_refused_for_other_backends() {
    for (kind, extra) in [
        ("vault", ""),
        (
            "pkcs11",
            "module = \"/m.so\"\ntoken_label = \"t\"\npin_env = \"P\"\n",
        ),
    ] {
        for (key, line) in [
            ("backend.url", "url = \"postgresql://h/db\"\n"),
            (
                "backend.password_file/password_env",
                "password_env = \"X\"\n",
            ),
            ("backend.ca", "ca = \"c.pem\"\n"),
            ("backend.connect_timeout_ms", "connect_timeout_ms = 5\n"),
            (
                "backend.read_your_writes",
                "read_your_writes = \"request\"\n",
            ),
            (
                "backend.kek",
                "[backend.kek]\nkind = \"file\"\nenv = \"K\"\n",
            ),
            (
                "backend.previous_keks",
                "[[backend.previous_keks]]\nkind = \"file\"\nenv = \"K\"\n",
            ),
        ] {
            let e = error_of(&format!(
                "{MINIMAL}[backend]\nkind = \"{kind}\"\n{extra}{line}"
            ));
            assert!(e.starts_with(key) && e.contains("postgres"), "{kind}: {e}");
        }
    }
    assert!(error_of(&format!("{MINIMAL}[backend]\nkind = \"mysql\"\n")).contains("\"postgres\""));
}

#[test]
fn the_https_listener_is_off_unless_configured() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/etc/kg")).unwrap();
    assert_eq!(c.https_listen, None);
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[https]\nlisten = \"127.0.0.1:8443\"\n"),
        Path::new("/etc/kg"),
    )
    .unwrap();
    assert_eq!(c.https_listen, "127.0.0.1:8443".parse().ok());
    let off = format!("{MINIMAL}[https]\nlisten = \"off\"\n");
    let c = GatewayConfig::from_toml_str(&off, Path::new("/etc/kg")).unwrap();
    assert_eq!(c.https_listen, None);
    let bad = format!("{MINIMAL}[https]\nlisten = \"everywhere\"\n");
    let e = GatewayConfig::from_toml_str(&bad, Path::new("/etc/kg"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("https.listen") && e.contains("'everywhere' is not an address"),
        "{e}"
    );
}

#[test]
fn the_certify_ca_is_read_with_paths_from_the_file_folder() {
    let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
    assert!(c.certify.is_none(), "no [certify]: Certify is refused");
    let c = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[certify]\nca_cert = \"issuing/ca.pem\"\nca_key = \"/k/ca.key\"\n"),
        Path::new("/x"),
    )
    .unwrap();
    let files = c.certify.unwrap();
    assert_eq!(files.cert, Path::new("/x/issuing/ca.pem"));
    assert_eq!(files.key, Path::new("/k/ca.key"));
    let missing_key = GatewayConfig::from_toml_str(
        &format!("{MINIMAL}[certify]\nca_cert = \"ca.pem\"\n"),
        Path::new("/x"),
    );
    assert!(missing_key.is_err());
    // The embedded default certifies with its development issuing CA, not its login CA.
    let e = GatewayConfig::embedded(Path::new("/d"));
    assert_eq!(e.certify.unwrap().cert, Path::new("/d/pki/issuing-ca.pem"));
}

/// A kmip (proxy) backend with its required keys and `extra`.
fn upstream(extra: &str) -> String {
    format!(
        "data_dir = \"/var/lib/kg\"\n{MINIMAL}[backend]\nkind = \"kmip\"\nupstreams = [\"kms1:5696\", \"10.0.0.2:5696\"]\ncert = \"gw.pem\"\nkey = \"gw.key\"\nca = \"kms-ca.pem\"\n{extra}"
    )
}

#[test]
fn kmip_backend_gets_defaults_and_resolved_paths() {
    let c = GatewayConfig::from_toml_str(&upstream(""), Path::new("/etc/kg")).unwrap();
    let BackendConfig::Kmip(u) = c.backend else {
        panic!("unexpected {:?}", c.backend);
    };
    assert_eq!(u.upstreams, ["kms1:5696", "10.0.0.2:5696"]);
    assert_eq!(u.cert, Path::new("/etc/kg/gw.pem"));
    assert_eq!(u.key, Path::new("/etc/kg/gw.key"));
    assert_eq!(u.ca, Path::new("/etc/kg/kms-ca.pem"));
    assert_eq!(u.server_name, None);
    assert_eq!(u.version, None);
    assert_eq!(u.pool_size, DEFAULT_UPSTREAM_POOL_SIZE);
    assert_eq!(u.acquire_timeout, DEFAULT_UPSTREAM_ACQUIRE_TIMEOUT);
    assert_eq!(u.request_timeout, DEFAULT_UPSTREAM_REQUEST_TIMEOUT);
    assert_eq!(u.idle_timeout, DEFAULT_UPSTREAM_IDLE_TIMEOUT);
    assert_eq!(u.refresh_interval, Some(DEFAULT_UPSTREAM_REFRESH_INTERVAL));
    // The mapping vault has a folder and a head of its own; the master key is the vault's.
    assert_eq!(u.map_dir, Path::new("/var/lib/kg/upstream-map"));
    assert_eq!(
        u.map_head,
        Path::new("/var/lib/kg-secrets/upstream-map.head")
    );
    assert_eq!(
        u.master_key,
        MasterKeyConfig::File("/var/lib/kg-secrets/master.key".into())
    );
}

#[test]
fn kmip_backend_reads_every_key() {
    let c = GatewayConfig::from_toml_str(
        &upstream(
            "server_name = \"kms.example.com\"\nversion = \"1.4\"\npool_size = 2\n\
             acquire_timeout_ms = 700\nrequest_timeout_ms = 900\nidle_timeout_ms = 60000\n",
        ),
        Path::new("/etc/kg"),
    )
    .unwrap();
    let BackendConfig::Kmip(u) = c.backend else {
        panic!("unexpected {:?}", c.backend);
    };
    assert_eq!(u.server_name.as_deref(), Some("kms.example.com"));
    assert_eq!(u.version, Some(kmip_wire::model::ProtocolVersion::V1_4));
    assert_eq!(u.pool_size, 2);
    assert_eq!(u.acquire_timeout, Duration::from_millis(700));
    assert_eq!(u.request_timeout, Duration::from_millis(900));
    assert_eq!(u.idle_timeout, Duration::from_secs(60));
}

#[test]
fn kmip_backend_migrate_mode_names_the_vault_a_plain_configuration_would() {
    let mode = |extra: &str| match GatewayConfig::from_toml_str(&upstream(extra), Path::new("/"))
        .unwrap()
        .backend
    {
        BackendConfig::Kmip(u) => u.migrate_to,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(mode(""), None);
    assert_eq!(mode("mode = \"proxy\"\n"), None);
    let BackendConfig::Vault { dir, head, .. } = GatewayConfig::from_toml_str(
        &format!("data_dir = \"/var/lib/kg\"\n{MINIMAL}"),
        Path::new("/"),
    )
    .unwrap()
    .backend
    else {
        panic!("not a vault");
    };
    assert_eq!(
        mode("mode = \"migrate\"\n"),
        Some(MigrateTarget::Vault(LocalVault { dir, head }))
    );
    let e = error_of(&upstream("mode = \"copy\"\n"));
    assert!(e.starts_with("backend.mode") && e.contains("'copy'"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}[backend]\nkind = \"vault\"\nmode = \"migrate\"\n"
    ));
    assert!(
        e.starts_with("backend.mode") && e.contains("kind = \"kmip\""),
        "{e}"
    );
}

/// `[backend.migrate_to]` of a migrating proxy: the keys of a postgres `[backend]`.
const MIGRATE_TO_POSTGRES: &str = "[backend.migrate_to]\nkind = \"postgres\"\n\
    url = \"postgresql://kmip@db1:5432/kmip\"\nca = \"pg-ca.pem\"\npassword_file = \"pg.pw\"\n\
    read_your_writes = \"connection\"\n[backend.migrate_to.kek]\nkind = \"file\"\nfile = \"kek.hex\"\n";

#[test]
fn kmip_backend_migrates_to_the_postgres_backend_the_configuration_becomes() {
    let c = GatewayConfig::from_toml_str(
        &upstream(&format!("mode = \"migrate\"\n{MIGRATE_TO_POSTGRES}")),
        Path::new("/etc/kg"),
    )
    .unwrap();
    // The same table as the [backend] of a plain postgres configuration reads the same.
    let plain = GatewayConfig::from_toml_str(
        &format!(
            "{MINIMAL}{}",
            MIGRATE_TO_POSTGRES.replace("[backend.migrate_to", "[backend")
        ),
        Path::new("/etc/kg"),
    )
    .unwrap();
    assert!(matches!(plain.backend, BackendConfig::Postgres { .. }));
    assert_eq!(
        c.backend.read_your_writes(),
        Some(ReadYourWrites::Connection),
        "the proxy fences like the database's other gateways"
    );
    let BackendConfig::Kmip(u) = c.backend else {
        panic!("unexpected {:?}", c.backend);
    };
    assert_eq!(
        u.migrate_to,
        Some(MigrateTarget::Postgres(Box::new(plain.backend)))
    );
    // The proxy's own keys are still its own: the upstreams' CA is not the database's.
    assert_eq!(u.ca, Path::new("/etc/kg/kms-ca.pem"));
    let proxy = GatewayConfig::from_toml_str(&upstream(""), Path::new("/")).unwrap();
    assert_eq!(proxy.backend.read_your_writes(), None);
    let vault =
        GatewayConfig::from_toml_str(&upstream("mode = \"migrate\"\n"), Path::new("/")).unwrap();
    assert_eq!(vault.backend.read_your_writes(), None);
}

#[test]
fn kmip_backend_migrate_to_refusals_name_the_key() {
    let with = |extra: &str| error_of(&upstream(extra));
    let e = with(MIGRATE_TO_POSTGRES);
    assert!(
        e.starts_with("backend.migrate_to:") && e.contains("mode = \"migrate\""),
        "{e}"
    );
    let e = with(&format!("mode = \"proxy\"\n{MIGRATE_TO_POSTGRES}"));
    assert!(e.starts_with("backend.migrate_to:"), "{e}");
    let migrate = |table: &str| with(&format!("mode = \"migrate\"\n{table}"));
    let e = migrate("[backend.migrate_to]\nkind = \"vault\"\n");
    assert!(
        e.starts_with("backend.migrate_to.kind") && e.contains("leave [backend.migrate_to] out"),
        "{e}"
    );
    let e = migrate("[backend.migrate_to]\nkind = \"pkcs11\"\n");
    assert!(
        e.starts_with("backend.migrate_to.kind") && e.contains("'pkcs11'"),
        "{e}"
    );
    // The postgres parser's refusals, named under the table they are in.
    let (no_kek, _) = MIGRATE_TO_POSTGRES
        .split_once("[backend.migrate_to.kek]")
        .unwrap();
    let e = migrate(no_kek);
    assert!(e.starts_with("backend.migrate_to.kek"), "{e}");
    let e = migrate(&MIGRATE_TO_POSTGRES.replace("kmip@db1", "kmip:secret@db1"));
    assert!(
        e.starts_with("backend.migrate_to.url") && !e.contains("secret@"),
        "{e}"
    );
    let e = migrate(&MIGRATE_TO_POSTGRES.replace("ca = \"pg-ca.pem\"\n", ""));
    assert!(e.starts_with("backend.migrate_to.ca"), "{e}");
    let e = migrate(&MIGRATE_TO_POSTGRES.replace(
        "kind = \"postgres\"\n",
        "kind = \"postgres\"\nupstreams = [\"kms9:5696\"]\n",
    ));
    assert!(
        e.starts_with("backend.migrate_to.upstreams") && e.contains("proxy's [backend]"),
        "{e}"
    );
    let e = migrate(&MIGRATE_TO_POSTGRES.replace(
        "kind = \"postgres\"\n",
        "kind = \"postgres\"\nmaster_key_file = \"m.key\"\n",
    ));
    assert!(e.starts_with("backend.migrate_to.master_key_file"), "{e}");
    let e = migrate(&MIGRATE_TO_POSTGRES.replace(
        "kind = \"postgres\"\n",
        "kind = \"postgres\"\ncolour = \"blue\"\n",
    ));
    assert!(e.contains("colour"), "{e}");
    // The database's keys in the proxy's own [backend] point at the table they belong in.
    let e = with("mode = \"migrate\"\nurl = \"postgresql://kmip@db1/kmip\"\n");
    assert!(
        e.starts_with("backend.url") && e.contains("[backend.migrate_to]"),
        "{e}"
    );
    for kind in ["vault", "postgres"] {
        let e = error_of(&format!(
            "{MINIMAL}[backend]\nkind = \"{kind}\"\n{MIGRATE_TO_POSTGRES}"
        ));
        assert!(
            e.starts_with("backend.migrate_to:") && e.contains("kind = \"kmip\""),
            "{kind}: {e}"
        );
    }
}

#[test]
fn kmip_backend_refresh_interval_is_off_at_zero_and_bounded_below() {
    let interval =
        |extra: &str| match GatewayConfig::from_toml_str(&upstream(extra), Path::new("/"))
            .unwrap()
            .backend
        {
            BackendConfig::Kmip(u) => u.refresh_interval,
            other => panic!("unexpected {other:?}"),
        };
    assert_eq!(interval("refresh_interval_ms = 0\n"), None);
    assert_eq!(
        interval("refresh_interval_ms = 250\n"),
        Some(Duration::from_millis(250))
    );
    let floor = MIN_UPSTREAM_REFRESH_INTERVAL.as_millis();
    assert_eq!(
        interval(&format!("refresh_interval_ms = {floor}\n")),
        Some(MIN_UPSTREAM_REFRESH_INTERVAL)
    );
    let e = error_of(&upstream(&format!("refresh_interval_ms = {}\n", floor - 1)));
    assert!(
        e.starts_with("backend.refresh_interval_ms")
            && e.contains("minimum")
            && e.contains("use 0"),
        "{e}"
    );
    // Another backend has no upstream to refresh from.
    for kind in ["vault", "postgres"] {
        let e = error_of(&format!(
            "{MINIMAL}[backend]\nkind = \"{kind}\"\nrefresh_interval_ms = 1000\n"
        ));
        assert!(
            e.starts_with("backend.refresh_interval_ms") && e.contains("kind = \"kmip\""),
            "{kind}: {e}"
        );
    }
}

#[test]
fn kmip_backend_refusals_name_the_key_and_the_fix() {
    for (toml, key, says) in [
        (
            upstream("").replace("upstreams = [\"kms1:5696\", \"10.0.0.2:5696\"]\n", ""),
            "backend.upstreams",
            "missing",
        ),
        (
            upstream("").replace("\"kms1:5696\", \"10.0.0.2:5696\"", ""),
            "backend.upstreams",
            "missing",
        ),
        (
            upstream("").replace("kms1:5696", "kms1"),
            "backend.upstreams",
            "'kms1' is not host:port",
        ),
        (
            upstream("").replace("kms1:5696", "kms1:0"),
            "backend.upstreams",
            "not host:port",
        ),
        (
            upstream("").replace("cert = \"gw.pem\"\n", ""),
            "backend.cert",
            "missing",
        ),
        (
            upstream("").replace("key = \"gw.key\"\n", ""),
            "backend.key",
            "missing",
        ),
        (
            upstream("").replace("ca = \"kms-ca.pem\"\n", ""),
            "backend.ca",
            "missing",
        ),
        (upstream("version = \"3.0\"\n"), "backend.version", "'3.0'"),
        (
            upstream("pool_size = 0\n"),
            "backend.pool_size",
            "greater than zero",
        ),
        (
            upstream("request_timeout_ms = 0\n"),
            "backend.request_timeout_ms",
            "greater than zero",
        ),
        (
            upstream("server_name = \" \"\n"),
            "backend.server_name",
            "empty",
        ),
        (
            upstream("module = \"/usr/lib/p11.so\"\n"),
            "backend.module",
            "kind = \"pkcs11\"",
        ),
        (
            upstream("url = \"postgresql://db/kmip\"\n"),
            "backend.url",
            "kind = \"postgres\"",
        ),
    ] {
        let e = error_of(&toml);
        assert!(e.starts_with(key), "{key}: {e}");
        assert!(e.contains(says), "{key}: {e}");
    }
    let many = (0..=MAX_UPSTREAMS)
        .map(|i| format!("\"kms{i}:5696\""))
        .collect::<Vec<_>>()
        .join(", ");
    let e = error_of(&upstream("").replace("\"kms1:5696\", \"10.0.0.2:5696\"", &many));
    assert!(
        e.starts_with("backend.upstreams") && e.contains("at most"),
        "{e}"
    );
}
