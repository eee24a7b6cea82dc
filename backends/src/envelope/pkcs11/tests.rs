//! The PKCS#11 KEK against a real SoftHSM2 token, made by `deploy/softhsm/setup-token.sh` with
//! its keys made by `deploy/softhsm/create-kek.sh`.
//!
//! PKCS#11 state is per process and SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`, so every
//! test takes [`SERIAL`], points `SOFTHSM2_CONF` at its own token folder, and closes its KEK
//! (which finalises the module) before releasing it. Serial also because the object counts
//! see every session object of the process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use super::*;

// One definition of the module path for every crate's tests.
#[path = "../../../../tests/src/softhsm_module.rs"]
#[allow(unreachable_pub)] // shared with the test crates, where it is public
mod softhsm_module;
use softhsm_module::softhsm_module;

const TOKEN: &str = "kek-test";

static SERIAL: Mutex<()> = Mutex::new(());

struct Hsm {
    dir: tempfile::TempDir,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/softhsm")
        .join(name)
}

impl Hsm {
    /// A fresh token made by setup-token.sh, with the KEKs `kek-a` and `kek-b` made by
    /// create-kek.sh (the second run of which must leave the key alone).
    fn new() -> Hsm {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script("setup-token.sh"))
            .arg(dir.path())
            .arg(TOKEN)
            .env("SOFTHSM2_MODULE", softhsm_module())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = String::from_utf8(out.stdout).unwrap();
        let conf = conf
            .trim()
            .strip_prefix("SOFTHSM2_CONF=")
            .unwrap()
            .to_owned();
        // Safe here: tests are serialised and no other thread of this crate reads it.
        std::env::set_var("SOFTHSM2_CONF", conf);
        let hsm = Hsm { dir };
        for label in ["kek-a", "kek-b", "kek-a"] {
            hsm.create_kek(label).unwrap();
        }
        hsm
    }

    fn create_kek(&self, label: &str) -> Result<(), String> {
        let out = Command::new(script("create-kek.sh"))
            .arg(self.dir.path())
            .args([TOKEN, label])
            .env("SOFTHSM2_MODULE", softhsm_module())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr)
        }
    }

    fn pin(&self) -> Zeroizing<String> {
        Zeroizing::new(std::fs::read_to_string(self.dir.path().join("user.pin")).unwrap())
    }

    async fn open(&self, label: &str) -> Result<Pkcs11Kek, BackendError> {
        Pkcs11Kek::open(&softhsm_module(), TOKEN, self.pin(), label).await
    }

    /// A session pool on the token outside any KEK, to make and count objects.
    async fn token(&self) -> Token {
        Token::open(Pkcs11Config {
            module_path: softhsm_module(),
            token_label: TOKEN.into(),
            pin: self.pin(),
            pool_size: 1,
            acquire_timeout: KEK_ACQUIRE_TIMEOUT,
        })
        .await
        .unwrap()
    }
}

async fn close_token(token: Token) {
    let owner = token.owner();
    drop(token);
    Token::closed(owner).await;
}

/// Every object this process can see on the token: token objects and live session objects.
async fn count_objects(token: &Token) -> usize {
    token
        .with_session(|s| s.find_objects(&[]).map(|v| v.len()).map_err(p11_error))
        .await
        .unwrap()
}

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

fn data_key(n: u8) -> Vec<u8> {
    (0..KEY_LEN as u8).map(|i| i.wrapping_mul(31) ^ n).collect()
}

#[test]
fn wraps_and_unwraps_in_the_token_and_leaves_only_the_kek() {
    run(|hsm| async move {
        let probe = hsm.token().await;
        let before = count_objects(&probe).await;
        let kek = hsm.open("kek-a").await.unwrap();
        assert_eq!(kek.id(), format!("pkcs11:{TOKEN}/kek-a"));
        for n in 0..8 {
            let key = data_key(n);
            let wrapped = kek.wrap(&key).await.unwrap();
            // RFC 5649: one 8-byte block more than the 32-byte key.
            assert_eq!(wrapped.len(), KEY_LEN + 8);
            assert!(!wrapped.windows(8).any(|w| key.windows(8).any(|k| k == w)));
            assert_eq!(&kek.unwrap(&wrapped).await.unwrap()[..], &key[..]);
        }
        // No data key object stayed behind (session objects included), and the KEK is there.
        assert_eq!(count_objects(&probe).await, before);
        let again = hsm.open("kek-a").await.unwrap();
        let wrapped = kek.wrap(&data_key(9)).await.unwrap();
        assert_eq!(&again.unwrap(&wrapped).await.unwrap()[..], &data_key(9)[..]);
        again.close().await;
        kek.close().await;
        close_token(probe).await;
    });
}

#[test]
fn another_kek_or_altered_bytes_cannot_unwrap() {
    run(|hsm| async move {
        let a = hsm.open("kek-a").await.unwrap();
        let b = hsm.open("kek-b").await.unwrap();
        assert_ne!(a.id(), b.id());
        let wrapped = a.wrap(&data_key(1)).await.unwrap();
        assert!(matches!(
            b.unwrap(&wrapped).await,
            Err(BackendError::IntegrityCheckFailed)
        ));
        let mut altered = wrapped.clone();
        altered[KEY_LEN] ^= 1;
        assert!(matches!(
            a.unwrap(&altered).await,
            Err(BackendError::IntegrityCheckFailed)
        ));
        assert!(matches!(
            a.unwrap(&wrapped[..8]).await,
            Err(BackendError::IntegrityCheckFailed)
        ));
        a.close().await;
        b.close().await;
    });
}

#[test]
fn concurrent_unwraps_use_several_sessions_and_all_succeed() {
    run(|hsm| async move {
        let probe = hsm.token().await;
        let before = count_objects(&probe).await;
        let kek = hsm.open("kek-a").await.unwrap();
        let mut wrapped = Vec::new();
        for n in 0..32 {
            wrapped.push(kek.wrap(&data_key(n)).await.unwrap());
        }
        // All polled before any finishes: each needs a session while the others hold theirs.
        let unwrapped = futures_util::future::join_all(wrapped.iter().map(|w| kek.unwrap(w))).await;
        for (n, key) in unwrapped.into_iter().enumerate() {
            assert_eq!(&key.unwrap()[..], &data_key(n as u8)[..]);
        }
        let sessions = kek.token.pool.state().connections;
        assert!(
            sessions > 1 && sessions <= KEK_POOL_SIZE,
            "{sessions} sessions"
        );
        assert_eq!(count_objects(&probe).await, before);
        kek.close().await;
        close_token(probe).await;
    });
}

/// Makes an AES-256 token key labelled `label` that may wrap and unwrap.
async fn make_kek(token: &Token, label: &'static str) {
    token
        .with_session(move |s| {
            s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::ValueLen(32.into()),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                ],
            )
            .map_err(p11_error)
        })
        .await
        .unwrap();
}

#[test]
fn a_stale_handle_is_found_again_by_label() {
    run(|hsm| async move {
        let probe = hsm.token().await;
        let kek = hsm.open("kek-a").await.unwrap();
        let old = kek.wrap(&data_key(1)).await.unwrap();
        // The key under the label is replaced: the handle the KEK holds is no longer valid.
        probe
            .with_session(|s| {
                let found = s
                    .find_objects(&[Attribute::Label(b"kek-a".to_vec())])
                    .map_err(p11_error)?;
                for h in found {
                    s.destroy_object(h).map_err(p11_error)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        make_kek(&probe, "kek-a").await;
        let new = kek.wrap(&data_key(2)).await.unwrap();
        assert_eq!(&kek.unwrap(&new).await.unwrap()[..], &data_key(2)[..]);
        // What the old key wrapped is lost with it.
        assert!(matches!(
            kek.unwrap(&old).await,
            Err(BackendError::IntegrityCheckFailed)
        ));
        kek.close().await;
        close_token(probe).await;
    });
}

#[test]
fn open_refuses_a_missing_duplicate_or_unfit_key_saying_why() {
    run(|hsm| async move {
        let token = hsm.token().await;
        // Keys create-kek.sh would refuse to make: no wrap, AES-128, generic secret, a twin.
        let made: Vec<(&str, KeyType, u64, bool)> = vec![
            ("no-wrap", KeyType::AES, 32, false),
            ("aes-128", KeyType::AES, 16, true),
            ("generic", KeyType::GENERIC_SECRET, 32, true),
            ("kek-b", KeyType::AES, 32, true),
        ];
        for (label, key_type, len, wrap) in made {
            token
                .with_session(move |s| {
                    let mechanism = if key_type == KeyType::AES {
                        Mechanism::AesKeyGen
                    } else {
                        Mechanism::GenericSecretKeyGen
                    };
                    s.generate_key(
                        &mechanism,
                        &[
                            Attribute::Class(ObjectClass::SECRET_KEY),
                            Attribute::KeyType(key_type),
                            Attribute::Token(true),
                            Attribute::Private(true),
                            Attribute::Sensitive(true),
                            Attribute::ValueLen(len.into()),
                            Attribute::Label(label.as_bytes().to_vec()),
                            Attribute::Wrap(wrap),
                            Attribute::Unwrap(wrap),
                        ],
                    )
                    .map_err(p11_error)
                })
                .await
                .unwrap();
        }
        let error = |label: &'static str| {
            let hsm = &hsm;
            async move { hsm.open(label).await.err().unwrap().to_string() }
        };
        let e = error("absent").await;
        assert!(
            e.contains("\"absent\"") && e.contains("create-kek.sh"),
            "{e}"
        );
        let e = error("no-wrap").await;
        assert!(e.contains("CKA_WRAP"), "{e}");
        for label in ["aes-128", "generic"] {
            let e = error(label).await;
            assert!(e.contains(label) && e.contains("not an AES-256 key"), "{e}");
        }
        let e = error("kek-b").await;
        assert!(e.contains("2 secret keys") && e.contains("unique"), "{e}");
        // The script refuses a label another kind of key holds, and a duplicated one.
        let e = hsm.create_kek("generic").unwrap_err();
        assert!(e.contains("not an AES-256 key"), "{e}");
        let e = hsm.create_kek("kek-b").unwrap_err();
        assert!(e.contains("several objects"), "{e}");
        close_token(token).await;
    });
}
