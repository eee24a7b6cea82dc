//! The PKCS#11 backend against a real SoftHSM2 token.
//!
//! One test binary on purpose: PKCS#11 state is per process and SoftHSM reads `SOFTHSM2_CONF` at
//! `C_Initialize`, so every test takes [`SERIAL`], points `SOFTHSM2_CONF` at its own temporary
//! token directory, and closes its backend (which finalises the module) before releasing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kmip_backends::error::FailureClass;
use kmip_backends::pkcs11::{PinSource, Pkcs11Backend, Pkcs11Config};
use kmip_backends::{
    Backend, BackendError, CipherMode, CipherRequest, KeyAlgorithm, KeySpec, MacAlgorithm,
    ObjectKind, ObjectRecord, RngInfo,
};
use tempfile::TempDir;
use zeroize::Zeroizing;

// One definition of the module path for every crate's tests; see the file's header.
#[path = "../../tests/src/softhsm_module.rs"]
pub mod softhsm_module;
use softhsm_module::softhsm_module;

const PIN: &str = "1234";
const SO_PIN: &str = "5678";
const LABEL: &str = "kmip-test";
const TIMEOUT: Duration = Duration::from_secs(2);

static SERIAL: Mutex<()> = Mutex::new(());

/// A private SoftHSM token directory with one initialised token.
struct Hsm {
    dir: TempDir,
}

impl Hsm {
    fn new() -> Hsm {
        let installed = Command::new("softhsm2-util").arg("--version").output();
        let module = softhsm_module();
        assert!(
            matches!(&installed, Ok(out) if out.status.success()) && module.is_file(),
            "SoftHSM2 is not installed (softhsm2-util or {} missing): run the install \
             script (apt-get install -y softhsm2 opensc) or set SOFTHSM2_MODULE",
            module.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        // Safe here: tests are serialised and no other thread reads the environment meanwhile.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", LABEL])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Hsm { dir }
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    fn config(&self, pool_size: u32, acquire_timeout: Duration) -> Pkcs11Config {
        Pkcs11Config {
            module_path: softhsm_module(),
            token_label: LABEL.into(),
            pin: Zeroizing::new(PIN.into()),
            pool_size,
            acquire_timeout,
        }
    }

    async fn open(&self) -> Pkcs11Backend {
        Pkcs11Backend::open(self.config(2, TIMEOUT)).await.unwrap()
    }
}

/// Runs one test alone, with its own token, on a two-worker runtime.
fn run<F, Fut>(test: F)
where
    F: FnOnce(Hsm) -> Fut,
    Fut: Future<Output = ()>,
{
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let hsm = Hsm::new();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test(hsm));
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn record(uid: &str, kind: ObjectKind, meta: &[u8]) -> ObjectRecord {
    ObjectRecord {
        uid: uid.into(),
        kind,
        meta: meta.to_vec().into(),
        version: 0,
    }
}

fn aes(bits: u32) -> KeySpec {
    KeySpec {
        algorithm: KeyAlgorithm::Aes,
        bits,
        extractable: true,
        sensitive: false,
        label: None,
    }
}

/// What a separate cryptoki context (not the backend) sees on the token for `uid` (the key's
/// `CKA_ID`, the data objects' `CKA_LABEL`): (class, label, value) of each object. The backend
/// must be closed: PKCS#11 is per process.
fn direct_lookup(uid: &str) -> Vec<(ObjectClass, Vec<u8>, Option<Vec<u8>>)> {
    let ctx = Pkcs11::new(softhsm_module()).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let mut found = Vec::new();
    {
        let session = ctx.open_ro_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::from(PIN)))
            .unwrap();
        let by_id = session
            .find_objects(&[Attribute::Id(uid.as_bytes().to_vec())])
            .unwrap();
        let by_label = session
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Label(uid.as_bytes().to_vec()),
            ])
            .unwrap();
        for handle in by_id.into_iter().chain(by_label) {
            let attrs = session
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Class,
                        AttributeType::Label,
                        AttributeType::Value,
                    ],
                )
                .unwrap();
            let mut class = None;
            let mut label = Vec::new();
            let mut value = None;
            for a in attrs {
                match a {
                    Attribute::Class(c) => class = Some(c),
                    Attribute::Label(l) => label = l,
                    Attribute::Value(v) => value = Some(v),
                    _ => {}
                }
            }
            found.push((class.unwrap(), label, value));
        }
    }
    ctx.finalize().unwrap();
    found
}

#[test]
fn generate_read_destroy_seen_by_an_independent_session() {
    run(|hsm| async move {
        let backend = hsm.open().await;
        assert_eq!(backend.load_all().await.unwrap().len(), 0);
        let mut spec = aes(256);
        spec.label = Some("disk-key-1".into());
        backend
            .generate(
                record("uid-1", ObjectKind::SymmetricKey, b"m1"),
                spec.clone(),
            )
            .await
            .unwrap();
        let key = backend.read_material("uid-1").await.unwrap();
        assert_eq!(key.len(), 32);
        assert!(key.iter().any(|&b| b != 0));
        assert!(matches!(
            backend
                .generate(record("uid-1", ObjectKind::SymmetricKey, b"m1"), spec)
                .await,
            Err(BackendError::AlreadyExists(_))
        ));
        backend.health().await.unwrap();

        // Another process sees the key on disk while the backend runs.
        let listed = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(softhsm_module())
            .args(["--token-label", LABEL, "--login", "--pin", PIN])
            .args(["--list-objects", "--type", "secrkey"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.contains("disk-key-1"), "{listed}");
        assert!(listed.contains(
            &"uid-1"
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        backend.close().await;

        // And a fresh cryptoki context in this process finds both token objects.
        let mut objects = direct_lookup("uid-1");
        objects.sort_by_key(|(class, _, _)| *class == ObjectClass::DATA);
        assert_eq!(objects.len(), 2, "key and metadata companion");
        assert_eq!(objects[0].0, ObjectClass::SECRET_KEY);
        assert_eq!(objects[0].1, b"disk-key-1");
        assert_eq!(objects[0].2.as_deref(), Some(key.as_slice()));
        assert_eq!(objects[1].0, ObjectClass::DATA);
        assert_eq!(objects[1].1, b"uid-1");

        let backend = hsm.open().await;
        assert_eq!(backend.load_all().await.unwrap().len(), 1);
        backend.destroy("uid-1", None, 0).await.unwrap();
        assert!(matches!(
            backend.read_material("uid-1").await,
            Err(BackendError::NotFound(_))
        ));
        assert!(matches!(
            backend.destroy("uid-1", None, 0).await,
            Err(BackendError::NotFound(_))
        ));
        backend.close().await;
        assert!(direct_lookup("uid-1").is_empty());
    });
}

#[test]
fn every_object_and_its_meta_survive_a_restart() {
    run(|hsm| async move {
        let backend = hsm.open().await;
        let hmac = KeySpec {
            algorithm: KeyAlgorithm::HmacSha256,
            bits: 256,
            ..aes(256)
        };
        backend
            .generate(
                record("aes", ObjectKind::SymmetricKey, b"meta-aes"),
                aes(128),
            )
            .await
            .unwrap();
        backend
            .generate(record("hmac", ObjectKind::SymmetricKey, b"meta-hmac"), hmac)
            .await
            .unwrap();
        let imports: [(&str, ObjectKind, &[u8]); 5] = [
            ("sym", ObjectKind::SymmetricKey, &[7u8; 24]),
            ("secret", ObjectKind::SecretData, b"password"),
            (
                "cert",
                ObjectKind::Certificate,
                &[0x30, 0x82, 0x01, 0x00, 9],
            ),
            ("opaque", ObjectKind::OpaqueObject, &[0u8, 1, 2]),
            ("pub", ObjectKind::PublicKey, &[0x30, 0x59, 1]),
        ];
        for (uid, kind, material) in imports {
            backend
                .import(
                    record(uid, kind, format!("meta-{uid}").as_bytes()),
                    Zeroizing::new(material.to_vec()),
                    None,
                )
                .await
                .unwrap();
        }
        let big_meta = vec![0xA5u8; 64 * 1024];
        backend
            .update_meta("secret", big_meta.clone().into(), 0)
            .await
            .unwrap();
        backend
            .update_meta("aes", b"meta-aes-2".to_vec().into(), 0)
            .await
            .unwrap();
        backend
            .destroy("opaque", Some(b"tombstone".to_vec().into()), 0)
            .await
            .unwrap();
        backend.destroy("pub", None, 0).await.unwrap();
        let aes_key = backend.read_material("aes").await.unwrap();
        let hmac_key = backend.read_material("hmac").await.unwrap();
        assert_eq!(hmac_key.len(), 32);
        backend.close().await;

        let backend = hsm.open().await;
        let mut records: Vec<_> = backend
            .load_all()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.uid.to_string(), r.kind, r.meta.to_vec()))
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected = vec![
            (
                "aes".to_string(),
                ObjectKind::SymmetricKey,
                b"meta-aes-2".to_vec(),
            ),
            (
                "cert".into(),
                ObjectKind::Certificate,
                b"meta-cert".to_vec(),
            ),
            (
                "hmac".into(),
                ObjectKind::SymmetricKey,
                b"meta-hmac".to_vec(),
            ),
            (
                "opaque".into(),
                ObjectKind::OpaqueObject,
                b"tombstone".to_vec(),
            ),
            ("secret".into(), ObjectKind::SecretData, big_meta),
            ("sym".into(), ObjectKind::SymmetricKey, b"meta-sym".to_vec()),
        ];
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(records, expected);
        assert_eq!(*backend.read_material("aes").await.unwrap(), *aes_key);
        assert_eq!(*backend.read_material("hmac").await.unwrap(), *hmac_key);
        assert_eq!(*backend.read_material("sym").await.unwrap(), vec![7u8; 24]);
        assert_eq!(*backend.read_material("secret").await.unwrap(), b"password");
        assert_eq!(
            *backend.read_material("cert").await.unwrap(),
            vec![0x30, 0x82, 0x01, 0x00, 9]
        );
        assert!(matches!(
            backend.read_material("opaque").await,
            Err(BackendError::NotFound(_))
        ));
        assert!(matches!(
            backend.read_material("pub").await,
            Err(BackendError::NotFound(_))
        ));
        // A tombstone keeps its uid and can be removed for good.
        assert!(matches!(
            backend
                .import(
                    record("opaque", ObjectKind::OpaqueObject, b""),
                    Zeroizing::new(vec![1]),
                    None
                )
                .await,
            Err(BackendError::AlreadyExists(_))
        ));
        backend.destroy("opaque", None, 0).await.unwrap();
        assert_eq!(backend.load_all().await.unwrap().len(), 5);
        backend.close().await;
    });
}

#[test]
fn open_failures_are_clear_and_never_show_the_pin() {
    run(|hsm| async move {
        let mut config = hsm.config(2, TIMEOUT);
        config.pin = Zeroizing::new("987654".into());
        let err = Pkcs11Backend::open(config).await.unwrap_err().to_string();
        assert!(err.contains("PIN is incorrect"), "{err}");
        assert!(!err.contains("987654"), "{err}");

        let mut config = hsm.config(2, TIMEOUT);
        config.module_path = "/nonexistent/libpkcs11.so".into();
        let err = Pkcs11Backend::open(config).await.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/libpkcs11.so"), "{err}");

        let mut config = hsm.config(2, TIMEOUT);
        config.token_label = "no-such-token".into();
        let err = Pkcs11Backend::open(config).await.unwrap_err().to_string();
        assert!(
            err.contains("no-such-token") && err.contains(LABEL),
            "{err}"
        );
        assert!(!err.contains(PIN), "{err}");

        let mut config = hsm.config(0, TIMEOUT);
        assert!(matches!(
            Pkcs11Backend::open(config).await,
            Err(BackendError::InvalidInput(_))
        ));
        config = hsm.config(2, TIMEOUT);
        let backend = Pkcs11Backend::open(config).await.unwrap();
        // The failed opens left the module usable: the good PIN still logs in.
        backend.health().await.unwrap();
        backend.close().await;
    });
}

#[test]
fn pin_sources_resolve_without_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pin");
    std::fs::write(&file, "1234\n").unwrap();
    // Readable by group or others: refused, naming the file and the fix, never the PIN.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = PinSource::File(file.clone())
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chmod 600") && err.contains("pin") && !err.contains("1234"),
        "{err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(*PinSource::File(file.clone()).resolve().unwrap(), "1234");
    std::fs::write(&file, "").unwrap();
    assert!(PinSource::File(file.clone()).resolve().is_err());
    let missing = PinSource::File(dir.path().join("absent")).resolve();
    assert!(missing.unwrap_err().to_string().contains("absent"));
    let err = PinSource::Env("KMIP_TEST_PIN_THAT_IS_NOT_SET".into())
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("KMIP_TEST_PIN_THAT_IS_NOT_SET"), "{err}");
    let config = Pkcs11Config {
        module_path: softhsm_module(),
        token_label: LABEL.into(),
        pin: Zeroizing::new("s3cret-pin".into()),
        pool_size: 1,
        acquire_timeout: TIMEOUT,
    };
    assert!(!format!("{config:?}").contains("s3cret-pin"));
}

#[test]
fn sensitive_or_unextractable_keys_are_never_returned() {
    run(|hsm| async move {
        let backend = hsm.open().await;
        let sensitive = KeySpec {
            sensitive: true,
            ..aes(256)
        };
        let unextractable = KeySpec {
            extractable: false,
            ..aes(256)
        };
        backend
            .generate(record("s", ObjectKind::SymmetricKey, b""), sensitive)
            .await
            .unwrap();
        backend
            .generate(
                record("u", ObjectKind::SymmetricKey, b""),
                unextractable.clone(),
            )
            .await
            .unwrap();
        backend
            .import(
                record("d", ObjectKind::SecretData, b""),
                Zeroizing::new(b"top secret".to_vec()),
                Some(unextractable),
            )
            .await
            .unwrap();
        for uid in ["s", "u", "d"] {
            assert!(
                matches!(
                    backend.read_material(uid).await,
                    Err(BackendError::NotExtractable(ref u)) if u == uid
                ),
                "{uid}"
            );
        }
        // The key is still usable inside the token.
        let out = backend
            .encrypt(
                "s",
                CipherRequest {
                    mode: CipherMode::Gcm { tag_len: 16 },
                    data: Zeroizing::new(b"hello".to_vec()),
                    iv: None,
                    aad: None,
                    tag: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(out.data.len(), 5);
        // Survives a restart: the protection is the token's, not a cached flag.
        backend.close().await;
        let backend = hsm.open().await;
        backend.load_all().await.unwrap();
        for uid in ["s", "u", "d"] {
            assert!(matches!(
                backend.read_material(uid).await,
                Err(BackendError::NotExtractable(_))
            ));
        }
        backend.close().await;
    });
}

#[test]
fn the_token_wraps_its_keys_and_refuses_an_unextractable_one() {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
    run(|hsm| async move {
        let backend = hsm.open().await;
        for (uid, spec) in [
            ("kek", aes(256)),
            ("key", aes(256)),
            (
                "sensitive",
                KeySpec {
                    sensitive: true,
                    ..aes(256)
                },
            ),
            (
                "locked",
                KeySpec {
                    extractable: false,
                    ..aes(256)
                },
            ),
        ] {
            backend
                .generate(record(uid, ObjectKind::SymmetricKey, b""), spec)
                .await
                .unwrap();
        }
        let kek = backend.read_material("kek").await.unwrap();
        let key = backend.read_material("key").await.unwrap();
        let wrapped = backend.wrap_key("kek", "key", false).await.unwrap();
        assert_eq!(wrapped.len(), key.len() + 8);
        let mut out = vec![0u8; wrapped.len()];
        let unwrapped = AesKek::new(&AES_256, &kek)
            .unwrap()
            .unwrap(&wrapped, &mut out)
            .unwrap();
        assert_eq!(unwrapped, &key[..]);
        let padded = backend.wrap_key("kek", "key", true).await.unwrap();
        assert_eq!(padded.len(), key.len() + 8);
        // CKA_SENSITIVE keeps a key from being read, not from being wrapped: the token decides.
        assert_eq!(
            backend
                .wrap_key("kek", "sensitive", false)
                .await
                .unwrap()
                .len(),
            40
        );
        assert!(matches!(
            backend.wrap_key("kek", "locked", false).await,
            Err(BackendError::NotExtractable(ref u)) if u == "locked"
        ));
        assert!(matches!(
            backend.wrap_key("kek", "missing", false).await,
            Err(BackendError::NotFound(_))
        ));
        backend.close().await;
    });
}

fn req(mode: CipherMode, data: &[u8], iv: Option<&str>) -> CipherRequest {
    CipherRequest {
        mode,
        data: Zeroizing::new(data.to_vec()),
        iv: iv.map(unhex),
        aad: None,
        tag: None,
    }
}

#[test]
fn ciphers_and_hmac_match_known_vectors() {
    run(|hsm| async move {
        let backend = hsm.open().await;
        let import = |uid: &'static str, key: &str, algorithm| {
            let backend = &backend;
            let key = unhex(key);
            async move {
                backend
                    .import(
                        record(uid, ObjectKind::SymmetricKey, b""),
                        Zeroizing::new(key),
                        Some(KeySpec {
                            algorithm,
                            bits: 0,
                            extractable: true,
                            sensitive: false,
                            label: None,
                        }),
                    )
                    .await
                    .unwrap()
            }
        };
        // NIST SP 800-38A F.1.1 / F.2.1 (AES-128 ECB and CBC).
        import(
            "sp800-38a",
            "2b7e151628aed2a6abf7158809cf4f3c",
            KeyAlgorithm::Aes,
        )
        .await;
        let plain = unhex(concat!(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
        ));
        let cbc = unhex(concat!(
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2",
            "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"
        ));
        let ecb = unhex(concat!(
            "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf",
            "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4"
        ));
        let iv = "000102030405060708090a0b0c0d0e0f";
        // With padding a whole block of 0x10 is appended (values checked with openssl enc).
        let cbc_pad_block = unhex("8cb82807230e1321d3fae00d18cc2012");
        let ecb_pad_block = unhex("a254be88e037ddd9d79fb6411c3f9df8");
        let cases = [
            (CipherMode::Cbc { pad: false }, Some(iv), cbc.clone()),
            (
                CipherMode::Cbc { pad: true },
                Some(iv),
                [cbc, cbc_pad_block].concat(),
            ),
            (CipherMode::Ecb { pad: false }, None, ecb.clone()),
            (
                CipherMode::Ecb { pad: true },
                None,
                [ecb, ecb_pad_block].concat(),
            ),
        ];
        for (mode, iv, expected) in cases {
            let out = backend
                .encrypt("sp800-38a", req(mode, &plain, iv))
                .await
                .unwrap();
            assert_eq!(*out.data, expected, "{mode:?}");
            assert!(out.generated_iv.is_none());
            let back = backend
                .decrypt("sp800-38a", req(mode, &expected, iv))
                .await
                .unwrap();
            assert_eq!(*back.data, plain, "{mode:?}");
        }
        // A wrong last block is a padding failure, not a crash or garbage.
        let mut bad = backend
            .encrypt(
                "sp800-38a",
                req(CipherMode::Ecb { pad: true }, b"abc", None),
            )
            .await
            .unwrap()
            .data
            .to_vec();
        bad[0] ^= 1;
        let ecb_bad = backend
            .decrypt("sp800-38a", req(CipherMode::Ecb { pad: false }, &bad, None))
            .await
            .unwrap();
        assert_eq!(ecb_bad.data.len(), 16);
        let mut forged = [0u8; 16];
        forged[15] = 0x20;
        let mut enc_forged = backend
            .encrypt(
                "sp800-38a",
                req(CipherMode::Ecb { pad: false }, &forged, None),
            )
            .await
            .unwrap()
            .data
            .to_vec();
        assert!(matches!(
            backend
                .decrypt(
                    "sp800-38a",
                    req(CipherMode::Ecb { pad: true }, &enc_forged, None)
                )
                .await,
            Err(BackendError::IntegrityCheckFailed)
        ));
        enc_forged.truncate(15);
        assert!(backend
            .decrypt(
                "sp800-38a",
                req(CipherMode::Ecb { pad: false }, &enc_forged, None)
            )
            .await
            .is_err());

        // CBC padding that does not check out.
        let mut bad_cbc = backend
            .encrypt(
                "sp800-38a",
                req(CipherMode::Cbc { pad: false }, &forged, Some(iv)),
            )
            .await
            .unwrap()
            .data
            .to_vec();
        let r = backend
            .decrypt(
                "sp800-38a",
                req(CipherMode::Cbc { pad: true }, &bad_cbc, Some(iv)),
            )
            .await;
        assert!(
            matches!(r, Err(BackendError::IntegrityCheckFailed)),
            "{:?}",
            r.err()
        );
        bad_cbc.truncate(15);
        assert!(backend
            .decrypt(
                "sp800-38a",
                req(CipherMode::Cbc { pad: true }, &bad_cbc, Some(iv))
            )
            .await
            .is_err());

        // GCM spec (McGrew-Viega) test case 4: AES-128, 60-byte plaintext, AAD.
        import("gcm", "feffe9928665731c6d6a8f9467308308", KeyAlgorithm::Aes).await;
        let gcm_plain = unhex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let gcm_cipher = unhex(concat!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        ));
        let gcm_tag = unhex("5bc94fbc3221a5db94fae95ae7121a47");
        let gcm = |data: &[u8], tag: Option<Vec<u8>>| CipherRequest {
            aad: Some(unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")),
            tag,
            ..req(
                CipherMode::Gcm { tag_len: 16 },
                data,
                Some("cafebabefacedbaddecaf888"),
            )
        };
        let out = backend.encrypt("gcm", gcm(&gcm_plain, None)).await.unwrap();
        assert_eq!(*out.data, gcm_cipher);
        assert_eq!(out.tag.as_deref(), Some(gcm_tag.as_slice()));
        let back = backend
            .decrypt("gcm", gcm(&gcm_cipher, Some(gcm_tag.clone())))
            .await
            .unwrap();
        assert_eq!(*back.data, gcm_plain);
        let mut wrong_tag = gcm_tag.clone();
        wrong_tag[0] ^= 0x80;
        let r = backend
            .decrypt("gcm", gcm(&gcm_cipher, Some(wrong_tag)))
            .await;
        assert!(
            matches!(r, Err(BackendError::IntegrityCheckFailed)),
            "{:?}",
            r.err()
        );

        // Generated IVs: the right length, returned, and they decrypt.
        for (mode, iv_len) in [
            (CipherMode::Gcm { tag_len: 12 }, 12),
            (CipherMode::Cbc { pad: true }, 16),
        ] {
            let out = backend
                .encrypt("gcm", req(mode, b"some plaintext", None))
                .await
                .unwrap();
            let iv = out.generated_iv.unwrap();
            assert_eq!(iv.len(), iv_len);
            let back = backend
                .decrypt(
                    "gcm",
                    CipherRequest {
                        mode,
                        data: out.data,
                        iv: Some(iv),
                        aad: None,
                        tag: out.tag,
                    },
                )
                .await
                .unwrap();
            assert_eq!(*back.data, b"some plaintext");
        }
        assert!(matches!(
            backend
                .encrypt("gcm", req(CipherMode::Cbc { pad: false }, b"x", Some("00")))
                .await,
            Err(BackendError::InvalidInput(_))
        ));

        // RFC 4231 test case 2 (key "Jefe"): SoftHSM refuses HMAC-SHA256 keys shorter than 32
        // bytes with CKR_KEY_SIZE_RANGE, which must come back as a classified error.
        import("rfc4231-2", "4a656665", KeyAlgorithm::HmacSha256).await;
        let r = backend
            .mac(
                "rfc4231-2",
                MacAlgorithm::HmacSha256,
                b"what do ya want for nothing?",
            )
            .await;
        assert!(
            matches!(
                &r,
                Err(BackendError::Call { class: FailureClass::InvalidInput, code, .. }) if code == "KeySizeRange"
            ),
            "{r:?}"
        );
        // RFC 4231 test case 6: 131-byte key (checked with openssl dgst -mac HMAC).
        import("rfc4231-6", &"aa".repeat(131), KeyAlgorithm::HmacSha256).await;
        let mac = backend
            .mac(
                "rfc4231-6",
                MacAlgorithm::HmacSha256,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
            )
            .await
            .unwrap();
        assert_eq!(
            mac,
            unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
        // The same key under HMAC-SHA512 (RFC 4231 test case 6).
        let mac = backend
            .mac(
                "rfc4231-6",
                MacAlgorithm::HmacSha512,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
            )
            .await
            .unwrap();
        assert_eq!(
            mac,
            unhex(
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                 6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
            )
        );
        assert!(matches!(
            backend.mac("nope", MacAlgorithm::HmacSha256, b"x").await,
            Err(BackendError::NotFound(_))
        ));
        // Triple DES inside the token: SP 800-67's ECB example, CBC checked with openssl.
        import(
            "tdes",
            "0123456789abcdef23456789abcdef01456789abcdef0123",
            KeyAlgorithm::TripleDes,
        )
        .await;
        let plain = b"The qufck brown fox jump";
        let ecb = backend
            .encrypt("tdes", req(CipherMode::Ecb { pad: false }, plain, None))
            .await
            .unwrap();
        assert_eq!(
            *ecb.data,
            unhex("a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900")
        );
        let iv = Some("0001020304050607");
        let cbc = backend
            .encrypt("tdes", req(CipherMode::Cbc { pad: true }, plain, iv))
            .await
            .unwrap();
        assert_eq!(
            *cbc.data,
            unhex("f368d06f3bbd614e60f2d0245cad3f818d5c69f2cb3fd5c7efa5066e2c4e03b9")
        );
        let back = backend
            .decrypt("tdes", req(CipherMode::Cbc { pad: true }, &cbc.data, iv))
            .await
            .unwrap();
        assert_eq!(&back.data[..], plain);
        let ecb_back = backend
            .decrypt("tdes", req(CipherMode::Ecb { pad: true }, &ecb.data, None))
            .await;
        assert!(matches!(ecb_back, Err(BackendError::IntegrityCheckFailed)));

        // Random bytes and seed come from and go to the token's generator.
        let a = backend.random(32).await.unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, backend.random(32).await.unwrap());
        assert_eq!(backend.seed_random(b"sixteen byte sd!").await.unwrap(), 16);
        assert_eq!(backend.rng(), RngInfo::Token);
        backend.close().await;
    });
}

#[test]
fn an_exhausted_pool_reports_busy_within_the_timeout() {
    run(|hsm| async move {
        let timeout = Duration::from_millis(300);
        let backend = Pkcs11Backend::open(hsm.config(1, timeout)).await.unwrap();
        backend
            .generate(record("k", ObjectKind::SymmetricKey, b""), aes(128))
            .await
            .unwrap();
        let held = backend.reserve_session().await.unwrap();
        let start = Instant::now();
        let result = backend.read_material("k").await;
        let waited = start.elapsed();
        assert!(
            matches!(result, Err(BackendError::Busy(t)) if t == timeout),
            "{:?}",
            result.err()
        );
        // The upper bound only tells a refusal from a hang: a loaded machine may run late.
        assert!(
            waited >= timeout && waited < Duration::from_secs(20),
            "{waited:?}"
        );
        drop(held);
        assert_eq!(backend.read_material("k").await.unwrap().len(), 16);
        backend.close().await;
    });
}

/// SoftHSM reads the token directory at `C_Initialize`. When the files vanish under a running
/// process it marks the token broken (finds return nothing, C_GetTokenInfo and writes fail with
/// CKR_GENERAL_ERROR) and never re-reads them, even once they are back. What must hold: every
/// request fails cleanly, the index is not emptied by the broken token, and closing + reopening
/// the backend (a fresh C_Initialize) after the files are restored recovers every object.
#[test]
fn token_files_removed_while_running_fail_cleanly_then_recover_on_reopen() {
    run(|hsm| async move {
        let backend = hsm.open().await;
        backend
            .generate(record("before", ObjectKind::SymmetricKey, b"m"), aes(128))
            .await
            .unwrap();
        let key = backend.read_material("before").await.unwrap();
        let aside = hsm.dir.path().join("aside");
        std::fs::rename(hsm.tokens(), &aside).unwrap();
        std::fs::create_dir(hsm.tokens()).unwrap();

        assert!(matches!(
            backend.read_material("before").await,
            Err(BackendError::Unavailable(_))
        ));
        assert!(backend
            .generate(record("during", ObjectKind::SymmetricKey, b"m"), aes(128))
            .await
            .is_err());
        assert!(backend
            .update_meta("before", b"x".to_vec().into(), 0)
            .await
            .is_err());
        assert!(matches!(
            backend.health().await,
            Err(BackendError::Unavailable(_))
        ));
        assert!(matches!(
            backend.load_all().await,
            Err(BackendError::Unavailable(_))
        ));

        std::fs::remove_dir(hsm.tokens()).unwrap();
        std::fs::rename(&aside, hsm.tokens()).unwrap();
        // Still broken in this process: SoftHSM does not look at the files again.
        assert!(backend.health().await.is_err());
        assert!(backend.read_material("before").await.is_err());

        backend.close().await;
        let backend = hsm.open().await;
        backend.health().await.unwrap();
        let uids: Vec<_> = backend
            .load_all()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.uid.to_string())
            .collect();
        assert_eq!(uids, ["before"]);
        assert_eq!(*backend.read_material("before").await.unwrap(), *key);
        backend
            .generate(record("after", ObjectKind::SymmetricKey, b"m"), aes(128))
            .await
            .unwrap();
        backend.close().await;
    });
}

/// A logout by anyone in the process logs every session out (PKCS#11 login is per
/// application). The backend must notice, discard its sessions, log in on fresh ones and
/// answer the request, without losing its index.
#[test]
fn sessions_logged_out_underneath_are_replaced() {
    run(|hsm| async move {
        let backend = hsm.open().await;
        backend
            .generate(record("k", ObjectKind::SymmetricKey, b"m"), aes(128))
            .await
            .unwrap();
        let key = backend.read_material("k").await.unwrap();
        {
            // Same process, so the already initialised library: no C_Initialize here.
            let ctx = Pkcs11::new(softhsm_module()).unwrap();
            let slot = ctx
                .get_slots_with_token()
                .unwrap()
                .into_iter()
                .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == LABEL)
                .unwrap();
            let session = ctx.open_ro_session(slot).unwrap();
            session.logout().unwrap();
        }
        assert_eq!(*backend.read_material("k").await.unwrap(), *key);
        let out = backend
            .encrypt("k", req(CipherMode::Ecb { pad: true }, b"x", None))
            .await
            .unwrap();
        assert_eq!(out.data.len(), 16);
        backend.health().await.unwrap();
        assert_eq!(backend.load_all().await.unwrap().len(), 1);
        backend.close().await;
    });
}

/// Reads per test loop in the throughput measurement.
const THROUGHPUT_READS: u32 = 5000;
/// Concurrent readers in the pooled measurement (the pool has as many sessions).
const THROUGHPUT_TASKS: u32 = 4;

/// `C_GetAttributeValue(CKA_VALUE)` in a loop on a session of its own, by a handle found once;
/// returns reads per second. Same process as the backend: the library is initialised and the
/// user logged in already.
fn raw_reads() -> f64 {
    let ctx = Pkcs11::new(softhsm_module()).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let handle = session
        .find_objects(&[Attribute::Id(b"bench".to_vec())])
        .unwrap()[0];
    let start = Instant::now();
    for _ in 0..THROUGHPUT_READS {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Value])
            .unwrap();
        assert!(matches!(&attrs[..], [Attribute::Value(v)] if v.len() == 32));
    }
    f64::from(THROUGHPUT_READS) / start.elapsed().as_secs_f64()
}

/// Measures `read_material` through the backend against a raw `C_GetAttributeValue` loop on
/// the same key. Numbers are printed (`--nocapture`, release build for meaningful values).
#[test]
fn read_material_throughput_against_raw_cryptoki() {
    run(|hsm| async move {
        let backend = std::sync::Arc::new(
            Pkcs11Backend::open(hsm.config(THROUGHPUT_TASKS, TIMEOUT))
                .await
                .unwrap(),
        );
        backend
            .generate(record("bench", ObjectKind::SymmetricKey, b"m"), aes(256))
            .await
            .unwrap();
        let key = backend.read_material("bench").await.unwrap();

        let raw_before = tokio::task::spawn_blocking(raw_reads).await.unwrap();
        let start = Instant::now();
        for _ in 0..THROUGHPUT_READS {
            assert_eq!(*backend.read_material("bench").await.unwrap(), *key);
        }
        let sequential = f64::from(THROUGHPUT_READS) / start.elapsed().as_secs_f64();

        let start = Instant::now();
        let tasks: Vec<_> = (0..THROUGHPUT_TASKS)
            .map(|_| {
                let backend = std::sync::Arc::clone(&backend);
                tokio::spawn(async move {
                    for _ in 0..THROUGHPUT_READS / THROUGHPUT_TASKS {
                        backend.read_material("bench").await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let concurrent = f64::from(THROUGHPUT_READS) / start.elapsed().as_secs_f64();
        let raw_after = tokio::task::spawn_blocking(raw_reads).await.unwrap();
        eprintln!(
            "read_material: raw cryptoki loop {raw_before:.0}/s (before) {raw_after:.0}/s \
             (after), backend sequential {sequential:.0}/s, backend {THROUGHPUT_TASKS} tasks \
             {concurrent:.0}/s"
        );
        assert!(raw_before > 0.0 && raw_after > 0.0 && sequential > 0.0 && concurrent > 0.0);
        std::sync::Arc::try_unwrap(backend).unwrap().close().await;
    });
}
