//! The development PKI of the embedded default configuration: a CA, a server certificate for
//! `localhost`, a client certificate for the FlashArray's usual Common Name and the CA's CRL,
//! written once.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::issue::{init_ca, issue_client_cert, issue_server_cert, make_crl};
use super::{CaBundle, PkiError};

/// File names and identities of the development PKI written by [`dev_pki`].
pub const DEV_CA_CERT: &str = "ca.pem";
pub const DEV_CA_KEY: &str = "ca.key";
pub const DEV_SERVER_CERT: &str = "server.pem";
pub const DEV_SERVER_KEY: &str = "server.key";
pub const DEV_CLIENT_CERT: &str = "client-purefa.pem";
pub const DEV_CLIENT_KEY: &str = "client-purefa.key";
/// The development CA's CRL: the embedded default's `[pki] dir` is this folder, whose CRL the
/// gateway enforces (and refuses to start without).
pub const DEV_CRL: &str = "crl.pem";
/// The CA folder's state file (`kmip-gateway pki`: CRL number, issued and revoked serials).
pub const DEV_CA_STATE: &str = "ca-state.json";
/// The development issuing CA of Certify: its own key pair, trusted for no login.
pub const DEV_ISSUING_CA_CERT: &str = "issuing-ca.pem";
pub const DEV_ISSUING_CA_KEY: &str = "issuing-ca.key";
pub const DEV_ISSUING_CA_COMMON_NAME: &str = "kmip-gateway development issuing CA";
/// `nextUpdate` distance of the development CRL, as `pki crl` gives a CA folder's.
pub const DEV_CRL_VALIDITY_DAYS: i64 = 180;
pub const DEV_CA_COMMON_NAME: &str = "kmip-gateway development CA";
/// The Common Name a FlashArray uses in its certificate (`purecert create ... --common-name purefa`).
pub const DEV_CLIENT_COMMON_NAME: &str = "purefa";
pub const DEV_CA_VALIDITY_DAYS: u32 = 3650;
/// 825 days: the longest leaf validity common TLS clients still accept.
pub const DEV_LEAF_VALIDITY_DAYS: u32 = 825;
/// Mode of private key files: readable by their owner only.
const KEY_FILE_MODE: u32 = 0o600;
const CERT_FILE_MODE: u32 = 0o644;
const DEV_DIR_MODE: u32 = 0o700;

/// The development PKI on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevPki {
    pub dir: PathBuf,
    /// `false` when all files were already there and nothing was written.
    pub created: bool,
}

impl DevPki {
    pub fn path(&self, file_name: &str) -> PathBuf {
        self.dir.join(file_name)
    }
}

/// Creates the development PKI in `dir` unless it already exists: a CA, a server
/// certificate for `localhost` and 127.0.0.1, and a client certificate for
/// [`DEV_CLIENT_COMMON_NAME`]. Never overwrites a file; if only some of the files
/// exist, refuses and names them.
pub fn dev_pki(dir: &Path) -> Result<DevPki, PkiError> {
    const FILES: [&str; 6] = [
        DEV_CA_CERT,
        DEV_CA_KEY,
        DEV_SERVER_CERT,
        DEV_SERVER_KEY,
        DEV_CLIENT_CERT,
        DEV_CLIENT_KEY,
    ];
    DirBuilder::new()
        .recursive(true)
        .mode(DEV_DIR_MODE)
        .create(dir)
        .map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for name in FILES {
        let path = dir.join(name);
        // symlink_metadata: a dangling symlink still counts as present, so it is never written through.
        match fs::symlink_metadata(&path) {
            Ok(_) => present.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(name),
            Err(source) => return Err(PkiError::Io { path, source }),
        }
    }
    let result = DevPki {
        dir: dir.to_path_buf(),
        created: missing.len() == FILES.len(),
    };
    if present.len() == FILES.len() {
        // A development PKI written before the gateway enforced its CRL, or before Certify,
        // has neither yet.
        write_crl_if_missing(dir)?;
        write_issuing_ca_if_missing(dir)?;
        return Ok(result);
    }
    if !present.is_empty() {
        return Err(PkiError::PartialDevPki {
            dir: dir.to_path_buf(),
            present,
            missing,
        });
    }

    let ca = init_ca(DEV_CA_COMMON_NAME, DEV_CA_VALIDITY_DAYS)?;
    let server = issue_server_cert(
        &ca,
        &["localhost".to_owned()],
        &[IpAddr::from([127, 0, 0, 1])],
        DEV_LEAF_VALIDITY_DAYS,
    )?;
    let client = issue_client_cert(&ca, DEV_CLIENT_COMMON_NAME, DEV_LEAF_VALIDITY_DAYS)?;
    let outputs: [(&str, &[u8], u32); 6] = [
        (DEV_CA_CERT, ca.cert_pem.as_bytes(), CERT_FILE_MODE),
        (DEV_CA_KEY, ca.key_pem.as_bytes(), KEY_FILE_MODE),
        (DEV_SERVER_CERT, server.cert_pem.as_bytes(), CERT_FILE_MODE),
        (DEV_SERVER_KEY, server.key_pem.as_bytes(), KEY_FILE_MODE),
        (DEV_CLIENT_CERT, client.cert_pem.as_bytes(), CERT_FILE_MODE),
        (DEV_CLIENT_KEY, client.key_pem.as_bytes(), KEY_FILE_MODE),
    ];
    let mut written = Vec::new();
    for (name, contents, mode) in outputs {
        let path = dir.join(name);
        if let Err(e) = write_new_file(&path, contents, mode) {
            // Leave no half-made PKI behind. Only files this call created are
            // removed; a failure to remove one changes nothing about the error to report.
            for done in &written {
                let _ = fs::remove_file(done);
            }
            return Err(e);
        }
        written.push(path);
    }
    write_crl_if_missing(dir)?;
    write_issuing_ca_if_missing(dir)?;
    Ok(result)
}

/// Writes the development issuing CA (Certify's) unless both its files exist; refuses when only
/// one does.
fn write_issuing_ca_if_missing(dir: &Path) -> Result<(), PkiError> {
    let files = [DEV_ISSUING_CA_CERT, DEV_ISSUING_CA_KEY];
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for name in files {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => present.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(name),
            Err(source) => return Err(PkiError::Io { path, source }),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !present.is_empty() {
        return Err(PkiError::PartialDevPki {
            dir: dir.to_path_buf(),
            present,
            missing,
        });
    }
    let ca = init_ca(DEV_ISSUING_CA_COMMON_NAME, DEV_CA_VALIDITY_DAYS)?;
    write_new_file(
        &dir.join(DEV_ISSUING_CA_KEY),
        ca.key_pem.as_bytes(),
        KEY_FILE_MODE,
    )?;
    write_new_file(
        &dir.join(DEV_ISSUING_CA_CERT),
        ca.cert_pem.as_bytes(),
        CERT_FILE_MODE,
    )
}

/// Writes an empty CRL of the development CA (CRL number 1) unless `crl.pem` exists, and the
/// state file `kmip-gateway pki revoke --dir` keeps beside it (CRL number 1, nothing issued or
/// revoked: `cli::pki::CaState`) unless that exists.
fn write_crl_if_missing(dir: &Path) -> Result<(), PkiError> {
    let missing = |path: &Path| match fs::symlink_metadata(path) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    };
    let state = dir.join(DEV_CA_STATE);
    if missing(&state)? {
        let json = serde_json::json!({ "crl_number": 1, "issued": [], "revoked": [] });
        write_new_file(&state, json.to_string().as_bytes(), CERT_FILE_MODE)?;
    }
    let path = dir.join(DEV_CRL);
    if !missing(&path)? {
        return Ok(());
    }
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
    };
    let ca = CaBundle {
        cert_pem: read(DEV_CA_CERT)?,
        key_pem: zeroize::Zeroizing::new(read(DEV_CA_KEY)?),
    };
    let now = time::OffsetDateTime::now_utc();
    let crl = make_crl(
        &ca,
        &[],
        now,
        now + time::Duration::days(DEV_CRL_VALIDITY_DAYS),
        1,
    )?;
    write_new_file(&path, crl.as_bytes(), CERT_FILE_MODE)
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    // create_new: fails if anything (even a symlink) appeared at the path since the check.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}
