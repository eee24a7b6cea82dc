//! The postgres backend's schema and KEK commands and its envelope encryption, end to end (real
//! binary, real PostgreSQL, real SoftHSM2; skipped without root, which PostgreSQL's service
//! user needs): `migrate-schema` (dry run, apply, current), `kek rotate` while a gateway
//! serves, a gateway whose KEK sits on a SoftHSM token (Destroy leaves nothing the old wrapped
//! data key opens), and autovacuum reclaiming a destroyed key's old row version.

use kmip_backends::envelope::{FileKek, Kek, Pkcs11Kek};
use kmip_backends::postgres::open_sealed;
use kmip_backends::{KeyAlgorithm, KeySpec, ObjectKind};
use kmip_e2e::accounts::is_root;
use kmip_e2e::postgres::PgCluster;
use kmip_e2e::{
    aes256_key_of, binary_path, softhsm_module, workspace_root, Backend, GatewayHome,
    GatewayOptions, GatewayProcess,
};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a condition that depends on another process (autovacuum, a rotation) may take:
/// generous, for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(120);

const KEK1_HEX: &str = "8f6a1c0e4b2d9a7753e1f0c4d8b6a2e19c3f5d7b0a4e6c8d2f1b3a5c7e9d0f2a";
const KEK2_HEX: &str = "0b1d3f5a7c9e2b4d6f8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f4a6c8e1b3d";

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root to run PostgreSQL as the service user");
        return true;
    }
    false
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Writes a 0600 file of the home.
fn private_file(home: &GatewayHome, name: &str, text: &str) -> PathBuf {
    let path = home.dir().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(
        &path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    path
}

/// The home's `[backend]` section (URL, password) with `kek_tables` in place of its file KEK.
fn backend_with_keks(home: &GatewayHome, kek_tables: &str) -> String {
    let section = home.postgres_backend_section();
    let base = &section[..section.find("[backend.kek]").unwrap()];
    format!("{base}{kek_tables}")
}

fn file_kek(table: &str, path: &Path) -> String {
    format!(
        "[{table}]\nkind = \"file\"\nfile = {:?}\n",
        path.display().to_string()
    )
}

fn file_kek_id(hex: &str) -> String {
    FileKek::from_hex("test", hex).unwrap().id().to_owned()
}

/// `kmip-gateway ARGS`: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary_path("kmip-gateway"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every row of every table of the database as text (bytea as hex), to search for bytes.
fn dump(pg: &PgCluster) -> String {
    let tables = pg.psql(
        "SELECT string_agg(quote_ident(table_name), ' ') FROM information_schema.tables \
         WHERE table_schema = 'public'",
    );
    assert!(tables.contains("kmip_objects"), "{tables}");
    tables
        .split(' ')
        .map(|t| {
            pg.psql(&format!(
                "SELECT coalesce(string_agg(t::text, ' '), '') FROM {t} t"
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase()
}

/// One open connection, speaking KMIP 2.1.
struct Client {
    conn: KmipClient,
}

impl Client {
    async fn connect(home: &GatewayHome, gw: &GatewayProcess) -> Client {
        let tls = ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key())
            .unwrap();
        let mut conn = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", gw.log()));
        conn.set_timeout(Duration::from_secs(30));
        Client { conn }
    }

    async fn call(&mut self, payload: RequestPayload) -> ResponseBatchItem {
        let request = RequestMessage {
            header: RequestHeader::new(ProtocolVersion::V2_1),
            items: vec![RequestBatchItem::new(payload)],
        };
        let reply = self.conn.call(&request.to_ttlv()).await.unwrap();
        ResponseMessage::from_ttlv(&reply).unwrap().items.remove(0)
    }

    async fn create(&mut self, name: &str) -> String {
        let item = self
            .call(RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                    Attribute::name(&Name::new(name)),
                ],
            }))
            .await;
        match item.payload {
            Some(ResponsePayload::Create(c)) if item.result_status == ResultStatus::Success => {
                c.unique_identifier
            }
            _ => panic!("create failed: {item:?}"),
        }
    }

    async fn get(&mut self, uid: &str) -> Vec<u8> {
        let item = self
            .call(RequestPayload::Get(GetRequest {
                unique_identifier: Some(uid.to_owned()),
                key_format_type: None,
                key_wrap_type: None,
                key_compression_type: None,
                key_wrapping_specification: None,
            }))
            .await;
        aes256_key_of(&item, uid)
    }

    async fn destroy(&mut self, uid: &str) {
        let item = self
            .call(RequestPayload::Destroy(UidRequest {
                unique_identifier: Some(uid.to_owned()),
            }))
            .await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
    }
}

#[test]
fn migrate_schema_shows_then_applies_the_pending_migrations_on_postgres_only() {
    if skip() {
        return;
    }
    let home = GatewayHome::new(Backend::Postgres);
    let pg = home.postgres().unwrap();
    let config = home.config_path().display().to_string();
    let no_tables = "SELECT to_regclass('kmip_objects') IS NULL \
                     AND to_regclass('kmip_schema_migrations') IS NULL";

    // The schema needs the database only: a KEK this host cannot open does not stop it.
    home.set_postgres(&backend_with_keks(
        &home,
        "[backend.kek]\nkind = \"file\"\nenv = \"KMIP_E2E_KEK_NOT_ON_THIS_HOST\"\n",
    ));
    let (code, out, err) = cli(&["migrate-schema", "--config", &config, "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(
        out.contains("-- version 1: ") && out.contains("CREATE TABLE kmip_objects ("),
        "{out}"
    );
    assert!(
        out.contains("-- version 2: ") && out.contains("autovacuum"),
        "{out}"
    );
    assert_eq!(pg.psql(no_tables), "t", "a dry run creates nothing");

    let (code, out, err) = cli(&["migrate-schema", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied schema migration 1: "), "{out}");
    assert!(out.contains("applied schema migration 2: "), "{out}");
    assert_eq!(pg.psql(no_tables), "f");
    assert_eq!(
        pg.psql(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM kmip_schema_migrations"
        ),
        "1,2"
    );

    for args in [vec!["--dry-run"], vec![]] {
        let mut all = vec!["migrate-schema", "--config", &config];
        all.extend(args);
        let (code, out, err) = cli(&all);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("nothing to apply"), "{out}");
        assert!(!out.contains("CREATE"), "{out}");
    }

    // A configuration of another backend is refused, saying why, before anything is touched.
    let vault = home.dir().join("vault.toml");
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    std::fs::write(&vault, &text[..text.find("[backend]").unwrap()]).unwrap();
    let vault = vault.display().to_string();
    for args in [
        vec!["migrate-schema", "--config", &vault, "--dry-run"],
        vec!["kek", "rotate", "--config", &vault],
    ] {
        let (code, out, err) = cli(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("postgres backend only") && err.contains(&vault),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotate_moves_every_data_key_to_the_new_kek_while_a_gateway_serves() {
    if skip() {
        return;
    }
    let home = GatewayHome::new(Backend::Postgres);
    let pg = home.postgres().unwrap();
    let kek1 = private_file(&home, "kek1.hex", KEK1_HEX);
    let kek2 = private_file(&home, "kek2.hex", KEK2_HEX);
    let (id1, id2) = (file_kek_id(KEK1_HEX), file_kek_id(KEK2_HEX));

    // Gateway A under KEK1: three keys, one destroyed.
    home.set_postgres(&backend_with_keks(&home, &file_kek("backend.kek", &kek1)));
    let mut keys = Vec::new();
    {
        let a = home.start();
        let mut c = Client::connect(&home, &a).await;
        for i in 0..3 {
            let uid = c.create(&format!("key-{i}")).await;
            let bytes = c.get(&uid).await;
            keys.push((uid, bytes));
        }
        c.destroy(&keys[2].0).await;
        keys.pop();
    }
    assert_eq!(
        pg.psql("SELECT DISTINCT kek_id FROM kmip_objects WHERE kek_id IS NOT NULL"),
        id1
    );

    // Gateway B: KEK2 current, KEK1 previous; it creates one key under KEK2, and serves
    // while `kek rotate` runs.
    home.set_postgres(&backend_with_keks(
        &home,
        &format!(
            "{}{}",
            file_kek("backend.kek", &kek2),
            file_kek("[backend.previous_keks]", &kek1)
        ),
    ));
    let b = home.start();
    let mut c = Client::connect(&home, &b).await;
    let uid = c.create("key-b").await;
    let bytes = c.get(&uid).await;
    keys.push((uid, bytes));
    let mut rotate = Command::new(binary_path("kmip-gateway"))
        .args(["kek", "rotate", "--batch", "1", "--config"])
        .arg(home.config_path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + DEADLINE;
    while rotate.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "kek rotate did not finish");
        for (uid, bytes) in &keys {
            assert_eq!(&c.get(uid).await, bytes, "served during the rotation");
        }
    }
    let out = rotate.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "rewrapped 2 data key(s) under {id2}; 1 were under it already"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("Next: remove [[backend.previous_keks]]") && stdout.contains(&id1),
        "{stdout}"
    );
    assert_eq!(
        pg.psql("SELECT DISTINCT kek_id FROM kmip_objects WHERE kek_id IS NOT NULL"),
        id2
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM kmip_objects WHERE kek_id IS NOT NULL"),
        keys.len().to_string()
    );
    drop(c);
    drop(b);

    // Only KEK2: every key is served, with the same bytes.
    home.set_postgres(&backend_with_keks(&home, &file_kek("backend.kek", &kek2)));
    {
        let gw = home.start();
        let mut c = Client::connect(&home, &gw).await;
        for (uid, bytes) in &keys {
            assert_eq!(&c.get(uid).await, bytes);
        }
    }

    // Only KEK1: refused at start, naming the KEK it lacks.
    home.set_postgres(&backend_with_keks(&home, &file_kek("backend.kek", &kek1)));
    let failure = home
        .try_start_with(&GatewayOptions::default())
        .err()
        .expect("a gateway without the data keys' KEK must not start");
    assert!(
        failure.log.contains(&id2) && failure.log.contains("backend.previous_keks"),
        "{}",
        failure.log
    );
}

/// Makes a SoftHSM token in `dir` and a KEK on it with the project's scripts; returns the
/// `SOFTHSM2_CONF` path.
fn token_with_kek(dir: &Path, token: &str, key: &str) -> PathBuf {
    let script = |name: &str| workspace_root().join("deploy/softhsm").join(name);
    let out = Command::new("bash")
        .arg(script("setup-token.sh"))
        .arg(dir)
        .arg(token)
        .env_remove("KMIP_SOFTHSM_PIN")
        .env_remove("KMIP_SOFTHSM_SO_PIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let conf = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("SOFTHSM2_CONF="))
        .map(PathBuf::from)
        .unwrap();
    let out = Command::new("bash")
        .arg(script("create-kek.sh"))
        .arg(dir)
        .arg(token)
        .arg(key)
        .env_remove("KMIP_SOFTHSM_PIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    conf
}

fn key_spec(row: &[&str]) -> KeySpec {
    KeySpec {
        algorithm: match row[0] {
            "1" => KeyAlgorithm::Aes,
            "2" => KeyAlgorithm::HmacSha256,
            other => panic!("algorithm code {other}"),
        },
        bits: row[1].parse().unwrap(),
        extractable: row[2] == "t",
        sensitive: row[3] == "t",
        label: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_softhsm_kek_a_destroyed_key_leaves_nothing_its_old_data_key_opens() {
    if skip() {
        return;
    }
    const TOKEN: &str = "kek-token";
    const KEY_LABEL: &str = "kek-1";
    let home = GatewayHome::new(Backend::Postgres);
    let pg = home.postgres().unwrap();
    let hsm = home.dir().join("hsm");
    let conf = token_with_kek(&hsm, TOKEN, KEY_LABEL);
    home.set_postgres(&backend_with_keks(
        &home,
        &format!(
            "[backend.kek]\nkind = \"pkcs11\"\nmodule = {:?}\ntoken_label = {TOKEN:?}\n\
             pin_file = {:?}\nkey_label = {KEY_LABEL:?}\n",
            softhsm_module().display().to_string(),
            hsm.join("user.pin").display().to_string(),
        ),
    ));
    let gw = home.start_with(&GatewayOptions {
        env: vec![("SOFTHSM2_CONF".into(), conf.display().to_string())],
        ..GatewayOptions::default()
    });
    let mut c = Client::connect(&home, &gw).await;
    let kept = c.create("kept").await;
    let uid = c.create("doomed").await;
    let key = c.get(&uid).await;
    let kept_key = c.get(&kept).await;

    let row = pg.psql(&format!(
        "SELECT kek_id, encode(wrapped_key, 'hex'), encode(sealed, 'hex'), algorithm, bits, \
         extractable, sensitive FROM kmip_objects WHERE uid = '{uid}'"
    ));
    let row: Vec<&str> = row.split('|').collect();
    assert_eq!(row[0], format!("pkcs11:{TOKEN}/{KEY_LABEL}"));
    let (wrapped, sealed) = (unhex(row[1]), unhex(row[2]));
    assert!(wrapped.len() >= 32 && sealed.len() > key.len(), "{row:?}");
    let spec = key_spec(&row[3..]);
    let before = dump(pg);
    for k in [&key, &kept_key] {
        assert!(
            !before.contains(&hex(k)),
            "key bytes in clear in the database"
        );
    }

    c.destroy(&uid).await;
    assert_eq!(
        pg.psql(&format!(
            "SELECT sealed IS NULL AND wrapped_key IS NULL AND kek_id IS NULL \
             FROM kmip_objects WHERE uid = '{uid}'"
        )),
        "t"
    );

    // The old wrapped key, unwrapped through the token (as from an old backup).
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let pin = std::fs::read_to_string(hsm.join("user.pin")).unwrap();
    let kek = Pkcs11Kek::open(
        &softhsm_module(),
        TOKEN,
        Zeroizing::new(pin.trim().to_owned()),
        KEY_LABEL,
    )
    .await
    .unwrap();
    let data_key = kek.unwrap(&wrapped).await.unwrap();
    // It is the real data key: it opens the captured sealed material to the key Get returned.
    let opened = open_sealed(
        &data_key,
        &uid,
        ObjectKind::SymmetricKey,
        Some(&spec),
        &sealed,
    )
    .unwrap();
    assert_eq!(&opened[..], &key[..]);

    // Nothing left in the database holds the sealed material, the wrapped key or the key.
    let after = dump(pg);
    for (what, bytes) in [
        ("sealed material", &sealed),
        ("wrapped key", &wrapped),
        ("key", &key),
    ] {
        assert!(
            !after.contains(&hex(bytes)),
            "the destroyed {what} is still stored"
        );
    }
    // And no sealed value that remains opens under the old data key, as its own object or as
    // the destroyed one.
    let rows = pg.psql(
        "SELECT uid, kind, algorithm, bits, extractable, sensitive, encode(sealed, 'hex') \
         FROM kmip_objects WHERE sealed IS NOT NULL",
    );
    let mut remaining = 0;
    for line in rows.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let kind = ObjectKind::from_code(f[1].parse().unwrap()).unwrap();
        let own = (!f[2].is_empty()).then(|| key_spec(&f[2..6]));
        let value = unhex(f[6]);
        assert!(open_sealed(&data_key, f[0], kind, own.as_ref(), &value).is_err());
        assert!(open_sealed(
            &data_key,
            &uid,
            ObjectKind::SymmetricKey,
            Some(&spec),
            &value
        )
        .is_err());
        remaining += 1;
    }
    assert_eq!(remaining, 1, "the kept key's row: {rows}");
    assert_eq!(c.get(&kept).await, kept_key, "the kept key is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autovacuum_removes_a_destroyed_keys_old_row_version() {
    if skip() {
        return;
    }
    let home = GatewayHome::new(Backend::Postgres);
    let pg = home.postgres().unwrap();
    // A naptime of a second, so that the test waits for autovacuum's next round, not a minute.
    pg.psql("ALTER SYSTEM SET autovacuum_naptime = '1s'");
    pg.psql("SELECT pg_reload_conf()");
    pg.psql("CREATE EXTENSION pageinspect");
    let gw = home.start();
    let mut c = Client::connect(&home, &gw).await;
    let uid = c.create("doomed").await;
    let wrapped = pg.psql(&format!(
        "SELECT encode(wrapped_key, 'hex') FROM kmip_objects WHERE uid = '{uid}'"
    ));
    assert_eq!(
        pg.psql("SELECT reloptions::text FROM pg_class WHERE relname = 'kmip_objects'"),
        "{autovacuum_vacuum_scale_factor=0,autovacuum_vacuum_threshold=0}"
    );
    c.destroy(&uid).await;
    // Row versions (live or dead) in the table's pages that still hold the wrapped key.
    let holding = format!(
        "SELECT count(*) FROM generate_series(0, pg_relation_size('kmip_objects') / \
         current_setting('block_size')::int - 1) AS p, \
         LATERAL heap_page_items(get_raw_page('kmip_objects', p::int)) AS h \
         WHERE h.t_data IS NOT NULL AND position('\\x{wrapped}'::bytea IN h.t_data) > 0"
    );
    let end = Instant::now() + DEADLINE;
    while pg.psql(&holding) != "0" {
        assert!(
            Instant::now() < end,
            "the old row version with the wrapped key is still in kmip_objects:\n{}",
            pg.psql("SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'kmip_objects'")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
