//! `kmip-gateway pki ...`: a one-root CA kept in a folder, standing in for the KMES CA of the
//! FlashArray guide (no intermediates: the array does not support them).
//!
//! Folder layout: `ca.pem`, `ca.key` (0600 root, whatever `--group` says), `crl.pem` (rewritten on every revocation with an
//! incremented CRL number), `server.pem`/`server.key` (the listener's certificate, when issued
//! here) and `ca-state.json`: the CRL number, the index of issued certificates and the revoked
//! serials. The state file is written before the CRL, so it is always the source of truth:
//! `pki crl` rebuilds the CRL from it. With `--group` (the service's group) the folder is 0750
//! and the listener's key 0640, both root:GROUP; a rewritten file keeps its owner and mode.

use super::{read_limited, write_atomic, Access, CliError};
use kmip_gateway::tooling::pki::{
    describe_cert, init_ca_with_key, issue_server_cert_with_key, make_crl, server_csr_with_key,
    sign_csr, subject_alt_names, CaBundle, KeyType, Serial, MAX_PEM_LEN,
};
use serde::{Deserialize, Serialize};
use std::fs::DirBuilder;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca.key";
pub(crate) const CRL: &str = "crl.pem";
pub(crate) const STATE: &str = "ca-state.json";
pub(crate) const SERVER_CERT: &str = "server.pem";
pub(crate) const SERVER_KEY: &str = "server.key";
pub(crate) const SERVER_CSR: &str = "server.csr";
/// Default CA lifetime: ten years, as a KMES root typically gets.
pub(crate) const DEFAULT_CA_DAYS: u32 = 3650;
/// Default leaf lifetime: 825 days, the longest common TLS clients still accept.
pub(crate) const DEFAULT_LEAF_DAYS: u32 = 825;
/// A CRL's `nextUpdate` distance. Longer than the 30-day expiry warning so a fresh CRL does not
/// warn; the gateway keeps using a CRL past it (and warns), `pki crl` renews it.
pub(crate) const CRL_VALIDITY_DAYS: i64 = 180;
/// Largest state file read: the index of a CA that issued a few thousand certificates.
const MAX_STATE_LEN: u64 = 16 * 1024 * 1024;
/// The CA key: only root (the operator) ever reads it, whatever `--group` says.
const CA_KEY_ACCESS: Access = Access {
    mode: 0o600,
    group_mode: 0o600,
    group: None,
};
/// The listener's key: 0600 for the user running the command; with `--group`, 0640
/// root:GROUP, so the service reads it but cannot rewrite it (a compromised gateway cannot
/// replace its own key) and a renewal as root needs no chown.
const KEY_MODE: u32 = 0o600;
const KEY_GROUP_MODE: u32 = 0o640;
const PUBLIC_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;
/// The CA folder with `--group`: the service may enter it to read the listener's files and the
/// CRL; the CA key inside stays 0600 root.
const DIR_GROUP_MODE: u32 = 0o750;

/// `ca-state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CaState {
    pub crl_number: u64,
    #[serde(default)]
    pub issued: Vec<IssuedEntry>,
    #[serde(default)]
    pub revoked: Vec<RevokedEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct IssuedEntry {
    pub serial: String,
    pub common_name: String,
    /// "client" or "server".
    pub kind: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub issued_at: i64,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RevokedEntry {
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
}

/// A CA folder.
pub(crate) struct CaDir {
    pub dir: PathBuf,
    /// The service's group (`--group`): the files the gateway reads are made readable to it.
    pub group: Option<u32>,
}

/// How the files the gateway reads are written: keys 0600, or 0640 root:GROUP with a group.
fn key_access(group: Option<u32>) -> Access {
    Access {
        mode: KEY_MODE,
        group_mode: KEY_GROUP_MODE,
        group,
    }
}

fn public_access(group: Option<u32>) -> Access {
    Access {
        mode: PUBLIC_MODE,
        group_mode: PUBLIC_MODE,
        group,
    }
}

/// How a key's permissions are shown in a command's output.
fn key_note(group: Option<u32>) -> String {
    match group {
        Some(gid) => format!("0640, group {gid}"),
        None => "0600".into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_text(path: &Path) -> Result<String, CliError> {
    String::from_utf8(read_limited(path, MAX_PEM_LEN as u64)?).map_err(|_| CliError::State {
        path: path.to_path_buf(),
        problem: "not text (PEM expected)".into(),
    })
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

impl CaDir {
    pub(crate) fn new(dir: &Path, group: Option<u32>) -> CaDir {
        CaDir {
            dir: dir.to_path_buf(),
            group,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `pki init-ca`: a new root CA, an empty CRL and the state file. Never overwrites a CA.
    pub(crate) fn init(
        &self,
        common_name: &str,
        days: u32,
        key_type: KeyType,
    ) -> Result<String, CliError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        if let Some(gid) = self.group {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&self.dir, None, Some(gid)).map_err(io_err(&self.dir))?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(DIR_GROUP_MODE))
                .map_err(io_err(&self.dir))?;
        }
        for name in [CA_CERT, CA_KEY, STATE] {
            if self.path(name).exists() {
                return Err(CliError::Refused(format!(
                    "{} already exists: this folder already holds a CA",
                    self.path(name).display()
                )));
            }
        }
        let ca = init_ca_with_key(common_name, days, key_type)?;
        write_atomic(&self.path(CA_KEY), ca.key_pem.as_bytes(), CA_KEY_ACCESS)?;
        write_atomic(
            &self.path(CA_CERT),
            ca.cert_pem.as_bytes(),
            public_access(self.group),
        )?;
        let mut state = CaState::default();
        self.publish_crl(&ca, &mut state)?;
        let info = describe_cert(&ca.cert_pem)?;
        Ok(format!(
            "CA '{common_name}' created in {}\n  certificate {} (serial {}, valid until {})\n  key         {} (0600, {key_type})\n  CRL         {}\n",
            self.dir.display(),
            self.path(CA_CERT).display(),
            info.serial_hex,
            info.not_after,
            self.path(CA_KEY).display(),
            self.path(CRL).display(),
        ))
    }

    fn load_ca(&self) -> Result<CaBundle, CliError> {
        Ok(CaBundle {
            cert_pem: read_text(&self.path(CA_CERT))?,
            key_pem: Zeroizing::new(read_text(&self.path(CA_KEY))?),
        })
    }

    pub(crate) fn load_state(&self) -> Result<CaState, CliError> {
        let path = self.path(STATE);
        let bytes = read_limited(&path, MAX_STATE_LEN)?;
        serde_json::from_slice(&bytes).map_err(|e| CliError::State {
            path,
            problem: e.to_string(),
        })
    }

    fn save_state(&self, state: &CaState) -> Result<(), CliError> {
        let path = self.path(STATE);
        let json = serde_json::to_vec_pretty(state).map_err(|e| CliError::State {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        write_atomic(&path, &json, public_access(self.group))
    }

    /// Bumps the CRL number, saves the state, then writes `crl.pem` listing every revoked serial.
    fn publish_crl(&self, ca: &CaBundle, state: &mut CaState) -> Result<u64, CliError> {
        state.crl_number += 1;
        let now = OffsetDateTime::now_utc();
        let mut revoked = Vec::with_capacity(state.revoked.len());
        for r in &state.revoked {
            let when = OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now);
            revoked.push((Serial::from_hex(&r.serial)?, when));
        }
        let crl = make_crl(
            ca,
            &revoked,
            now,
            now + time::Duration::days(CRL_VALIDITY_DAYS),
            state.crl_number,
        )?;
        self.save_state(state)?;
        write_atomic(&self.path(CRL), crl.as_bytes(), public_access(self.group))?;
        Ok(state.crl_number)
    }

    fn record(
        &self,
        state: &mut CaState,
        cert_pem: &str,
        kind: &str,
        file: &Path,
    ) -> Result<(), CliError> {
        let info = describe_cert(cert_pem)?;
        state.issued.push(IssuedEntry {
            serial: info.serial_hex,
            common_name: info.subject_cn.unwrap_or_default(),
            kind: kind.to_string(),
            not_after: info.not_after.unix_timestamp(),
            issued_at: OffsetDateTime::now_utc().unix_timestamp(),
            file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
        });
        self.save_state(state)
    }

    /// `pki sign-csr`: signs a client's CSR (the array's), keeping its Common Name.
    pub(crate) fn sign_csr(&self, csr: &Path, out: &Path, days: u32) -> Result<String, CliError> {
        let ca = self.load_ca()?;
        let mut state = self.load_state()?;
        let csr_pem = read_text(csr)?;
        let serial = Serial::random()?;
        let cert = sign_csr(&ca, &csr_pem, days, &serial)?;
        let kept = keep_previous(out, None)?;
        write_atomic(out, cert.as_bytes(), public_access(self.group))?;
        self.record(&mut state, &cert, "client", out)?;
        let info = describe_cert(&cert)?;
        Ok(format!(
            "signed: CN={} serial {} valid until {} -> {}\n  SANs        {}\n{}",
            info.subject_cn.unwrap_or_default(),
            info.serial_hex,
            info.not_after,
            out.display(),
            san_list(&cert)?,
            kept.unwrap_or_default()
        ))
    }

    /// `pki server-cert`: the listener's certificate and key from this CA, written key first.
    pub(crate) fn server_cert(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        days: u32,
        key_type: KeyType,
        cert_out: &Path,
        key_out: &Path,
    ) -> Result<String, CliError> {
        let ca = self.load_ca()?;
        let mut state = self.load_state()?;
        let issued = issue_server_cert_with_key(&ca, dns, ips, days, key_type)?;
        let kept = keep_previous(cert_out, Some(key_out))?;
        write_atomic(key_out, issued.key_pem.as_bytes(), key_access(self.group))?;
        write_atomic(
            cert_out,
            issued.cert_pem.as_bytes(),
            public_access(self.group),
        )?;
        self.record(&mut state, &issued.cert_pem, "server", cert_out)?;
        let info = describe_cert(&issued.cert_pem)?;
        Ok(format!(
            "server certificate CN={} serial {} valid until {}\n  SANs        {}\n  certificate {}\n  key         {} ({}, {key_type})\n{}",
            info.subject_cn.unwrap_or_default(),
            info.serial_hex,
            info.not_after,
            san_list(&issued.cert_pem)?,
            cert_out.display(),
            key_out.display(),
            key_mode_now(key_out, self.group),
            kept.unwrap_or_default()
        ))
    }

    /// `pki revoke --serial`: the serial, if this CA issued it (it is in the index). Revoking a
    /// serial this CA never issued would change nothing the gateway checks, and is most likely a
    /// typo or another CA's certificate.
    pub(crate) fn issued_serial(&self, text: &str) -> Result<Serial, CliError> {
        let serial = Serial::from_hex(text)?;
        let hex = serial.to_hex();
        if !self.load_state()?.issued.iter().any(|i| i.serial == hex) {
            return Err(CliError::Refused(format!(
                "serial {hex} was not issued by the CA in {} (it is not in {STATE}; see `pki \
                 list`): nothing revoked. Another CA's certificate is revoked by that CA, or \
                 refused with [revocation] deny_serials",
                self.dir.display()
            )));
        }
        Ok(serial)
    }

    /// The CA's subject as the gateway reports its CRLs' issuers (`GET /revocation`).
    pub(crate) fn ca_subject(&self) -> Result<String, CliError> {
        use rustls_pki_types::pem::PemObject;
        let path = self.path(CA_CERT);
        let pem = read_text(&path)?;
        let bad = || CliError::State {
            path: path.clone(),
            problem: "not a readable CA certificate".into(),
        };
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| bad())?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| bad())?;
        Ok(cert.subject().to_string())
    }

    /// `pki revoke`: adds the serial to the revoked list and publishes a new CRL.
    pub(crate) fn revoke(&self, serial: &Serial) -> Result<String, CliError> {
        let ca = self.load_ca()?;
        let mut state = self.load_state()?;
        let hex = serial.to_hex();
        if state.revoked.iter().any(|r| r.serial == hex) {
            return Ok(format!("serial {hex} was already revoked; CRL unchanged\n"));
        }
        let known = state.issued.iter().any(|i| i.serial == hex);
        state.revoked.push(RevokedEntry {
            serial: hex.clone(),
            revoked_at: OffsetDateTime::now_utc().unix_timestamp(),
        });
        let number = self.publish_crl(&ca, &mut state)?;
        Ok(format!(
            "revoked serial {hex}{}; {} rewritten (CRL number {number})\n",
            if known {
                ""
            } else {
                " (not in this CA's index)"
            },
            self.path(CRL).display()
        ))
    }

    /// `pki crl`: republishes the CRL (new number, `nextUpdate` pushed out).
    pub(crate) fn renew_crl(&self) -> Result<String, CliError> {
        let ca = self.load_ca()?;
        let mut state = self.load_state()?;
        let number = self.publish_crl(&ca, &mut state)?;
        Ok(format!(
            "{} rewritten (CRL number {number}, {} revoked)\n",
            self.path(CRL).display(),
            state.revoked.len()
        ))
    }

    /// The serial of a certificate file, checking this CA issued it (revoking another CA's serial
    /// here would do nothing).
    pub(crate) fn serial_of_cert(&self, cert: &Path) -> Result<Serial, CliError> {
        let ca_pem = read_text(&self.path(CA_CERT))?;
        let cert_pem = read_text(cert)?;
        let ca_info = describe_cert(&ca_pem)?;
        let info = describe_cert(&cert_pem)?;
        let issued_here = pem_issuer_matches(&cert_pem, &ca_pem);
        if !issued_here {
            return Err(CliError::Refused(format!(
                "{} was not issued by the CA in {} ({})",
                cert.display(),
                self.dir.display(),
                ca_info.subject_cn.unwrap_or_default()
            )));
        }
        Ok(Serial::from_hex(&info.serial_hex)?)
    }

    /// `pki list`: one line per issued certificate.
    pub(crate) fn list(&self, json: bool) -> Result<String, CliError> {
        let state = self.load_state()?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let revoked = |s: &str| state.revoked.iter().any(|r| r.serial == s);
        if json {
            let rows: Vec<_> = state
                .issued
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "common_name": i.common_name, "kind": i.kind, "serial": i.serial,
                        "not_after": i.not_after, "revoked": revoked(&i.serial),
                        "expired": i.not_after <= now, "file": i.file,
                    })
                })
                .collect();
            return Ok(serde_json::Value::Array(rows).to_string() + "\n");
        }
        let mut out = format!(
            "{:<24} {:<7} {:<34} {:<21} {}\n",
            "COMMON NAME", "KIND", "SERIAL", "EXPIRES", "STATUS"
        );
        for i in &state.issued {
            let status = if revoked(&i.serial) {
                "revoked"
            } else if i.not_after <= now {
                "expired"
            } else {
                "valid"
            };
            out.push_str(&format!(
                "{:<24} {:<7} {:<34} {:<21} {}\n",
                i.common_name,
                i.kind,
                i.serial,
                date(i.not_after),
                status
            ));
        }
        out.push_str(&format!(
            "CRL number {}, {} revoked\n",
            state.crl_number,
            state.revoked.len()
        ));
        Ok(out)
    }
}

/// The key's mode and group as written (a renewal keeps the old file's), for the output.
fn key_mode_now(key: &Path, group: Option<u32>) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(key) {
        Ok(m) => format!("{:04o}, uid {} gid {}", m.mode() & 0o7777, m.uid(), m.gid()),
        Err(_) => key_note(group),
    }
}

/// `pki revoke`: revokes a certificate this CA issued (by `--serial` from its index, or `--cert`
/// checked by issuer and signature), then, with `--config`, says whether the running gateway
/// enforces it; anything but "enforced" is a failure, so a script cannot take a revocation
/// that does nothing for one that works.
pub(crate) fn revoke_command(
    ca: &CaDir,
    serial: Option<&str>,
    cert: Option<&Path>,
    config: Option<&Path>,
    admin: Option<String>,
) -> Result<String, CliError> {
    let serial = match (serial, cert) {
        (Some(s), _) => ca.issued_serial(s)?,
        (None, Some(c)) => ca.serial_of_cert(c)?,
        (None, None) => return Err(CliError::Refused("give --serial or --cert".into())),
    };
    let out = ca.revoke(&serial)?;
    let Some(config) = config else {
        return Ok(format!(
            "{out}not checked: give --config GATEWAY.toml to check that the running gateway \
             enforces it\n"
        ));
    };
    use super::remote::{revocation_enforcement, Enforcement};
    let crl = ca.path(CRL);
    let reload = format!("`kmip-gateway reload --config {}`", config.display());
    let verdict = match revocation_enforcement(config, admin, &ca.ca_subject()?, &serial.to_hex()) {
        Enforcement::Enforced { crl } => {
            return Ok(format!(
                "{out}enforced: the running gateway refuses serial {serial} (CRL {})\n",
                crl.display()
            ))
        }
        Enforcement::NotConfigured => format!(
            "not enforced: the gateway's config does not include this CA's CRL; set [pki] dir = \
             \"{}\" in {}, then {reload}",
            ca.dir.display(),
            config.display()
        ),
        Enforcement::Stale { crl: theirs } => format!(
            "not enforced: the gateway reads a CRL of this CA at {} that does not list this \
             serial; point it at {} ([pki] dir), then {reload}",
            theirs.display(),
            crl.display()
        ),
        Enforcement::ReloadFailed(e) => format!(
            "not enforced: the gateway's reload failed and its previous CRLs stay in force: {e}"
        ),
        Enforcement::Unreachable(e) => {
            format!("gateway not reachable ({e}): run {reload} once it runs")
        }
    };
    Err(CliError::Refused(format!("{out}{verdict}")))
}

/// A certificate's SANs for the printout (`none` when it has none).
fn san_list(cert_pem: &str) -> Result<String, CliError> {
    let names = subject_alt_names(cert_pem)?;
    Ok(if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    })
}

/// Before a renewal replaces `cert` (and `key`, for a listener certificate), keeps the current
/// files as `<file>.<old serial>.bak`, so the old certificate can be put back if a client does
/// not accept the new one. The backup is a hard link: the same file, so the same owner and mode,
/// and the new file is written beside it and renamed over the name. Returns the printout line.
fn keep_previous(cert: &Path, key: Option<&Path>) -> Result<Option<String>, CliError> {
    if !cert.exists() {
        return Ok(None);
    }
    let serial = describe_cert(&read_text(cert)?)
        .map_err(|e| {
            CliError::Refused(format!(
                "{} exists but is not a certificate ({e}): move it away or choose another output",
                cert.display()
            ))
        })?
        .serial_hex;
    let mut kept = Vec::new();
    for file in std::iter::once(cert).chain(key.filter(|k| k.exists())) {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| CliError::Refused(format!("{}: not a file path", file.display())))?;
        let backup = file.with_file_name(format!("{name}.{serial}.bak"));
        match std::fs::hard_link(file, &backup) {
            Ok(()) => {}
            // Kept by an earlier run that stopped before the renewal (serials are unique).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CliError::Io {
                    path: backup,
                    source,
                })
            }
        }
        kept.push(backup.display().to_string());
    }
    Ok(Some(format!(
        "  previous    serial {serial} kept as {}\n",
        kept.join(", ")
    )))
}

/// Whether the certificate's issuer is the CA's subject and the CA's key signed it.
fn pem_issuer_matches(cert_pem: &str, ca_pem: &str) -> bool {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let (Ok(cert), Ok(ca)) = (
        CertificateDer::from_pem_slice(cert_pem.as_bytes()),
        CertificateDer::from_pem_slice(ca_pem.as_bytes()),
    ) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert.as_ref()),
        x509_parser::parse_x509_certificate(ca.as_ref()),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// `pki server-cert --csr-only`: a key and CSR for a CA that is not this tool.
pub(crate) fn server_csr_files(
    dns: &[String],
    ips: &[IpAddr],
    key_type: KeyType,
    csr_out: &Path,
    key_out: &Path,
    group: Option<u32>,
) -> Result<String, CliError> {
    let csr = server_csr_with_key(dns, ips, key_type)?;
    write_atomic(key_out, csr.key_pem.as_bytes(), key_access(group))?;
    write_atomic(csr_out, csr.csr_pem.as_bytes(), public_access(group))?;
    Ok(format!(
        "CSR {} and key {} ({}, {key_type}) written: have your CA sign the CSR (serverAuth), then set [tls] cert/key\n",
        csr_out.display(),
        key_out.display(),
        key_mode_now(key_out, group)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_gateway::tooling::pki::{init_ca, issue_client_cert};

    #[test]
    fn init_sign_revoke_list_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CaDir::new(&tmp.path().join("ca"), None);
        ca.init("Pure Storage FlashArray", 365, KeyType::P256)
            .unwrap();
        assert!(
            ca.init("again", 365, KeyType::P256).is_err(),
            "never overwrites a CA"
        );
        assert_eq!(ca.load_state().unwrap().crl_number, 1);

        let bundle = ca.load_ca().unwrap();
        let client = issue_client_cert(&bundle, "purefa", 30).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "purefa");
        let csr = tmp.path().join("purefa.csr");
        std::fs::write(&csr, params.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
        let out = tmp.path().join("purefa.pem");
        ca.sign_csr(&csr, &out, 30).unwrap();
        let serial = ca.serial_of_cert(&out).unwrap();

        ca.revoke(&serial).unwrap();
        assert!(ca.revoke(&serial).unwrap().contains("already"));
        let state = ca.load_state().unwrap();
        assert_eq!(state.crl_number, 2);
        assert_eq!(state.revoked.len(), 1);
        let listing = ca.list(false).unwrap();
        assert!(
            listing.contains("purefa") && listing.contains("revoked"),
            "{listing}"
        );
        let crl_pem = std::fs::read(ca.path(CRL)).unwrap();
        let crl = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&crl_pem);
        use rustls_pki_types::pem::PemObject;
        let crl = crl.unwrap();
        use x509_parser::prelude::FromDer;
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref())
                .unwrap();
        let listed: Vec<_> = parsed
            .iter_revoked_certificates()
            .map(|r| Serial::from_bytes(r.raw_serial()).unwrap())
            .collect();
        assert_eq!(listed, [serial]);

        // A certificate of another CA is refused by --cert.
        let other = init_ca("other", 30).unwrap();
        let foreign = issue_client_cert(&other, "purefa", 30).unwrap();
        let foreign_path = tmp.path().join("foreign.pem");
        std::fs::write(&foreign_path, &foreign.cert_pem).unwrap();
        assert!(ca.serial_of_cert(&foreign_path).is_err());
        let own_path = tmp.path().join("own.pem");
        std::fs::write(&own_path, &client.cert_pem).unwrap();
        ca.serial_of_cert(&own_path).unwrap();
    }

    #[test]
    fn revoke_refuses_a_serial_this_ca_never_issued_and_says_when_unchecked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let ca = CaDir::new(&dir, None);
        ca.init("Pure Storage FlashArray", 365, KeyType::P256)
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "purefa");
        let csr = tmp.path().join("purefa.csr");
        std::fs::write(&csr, params.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
        let out = tmp.path().join("purefa.pem");
        ca.sign_csr(&csr, &out, 30).unwrap();

        let foreign = Serial::random().unwrap().to_hex();
        let e = revoke_command(&ca, Some(&foreign), None, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&foreign)
                && e.contains("not issued by the CA")
                && e.contains("nothing revoked"),
            "{e}"
        );
        assert!(ca.load_state().unwrap().revoked.is_empty());
        assert_eq!(ca.load_state().unwrap().crl_number, 1, "no CRL written");

        let own = ca.load_state().unwrap().issued[0].serial.clone();
        let done = revoke_command(&ca, Some(&own.to_uppercase()), None, None, None).unwrap();
        assert!(
            done.contains("revoked serial") && done.contains("not checked"),
            "{done}"
        );
        assert!(ca.ca_subject().unwrap().contains("Pure Storage FlashArray"));
    }

    #[test]
    fn the_development_pki_can_revoke_its_client_certificate() {
        use kmip_gateway::tooling::pki::{dev_pki, DEV_CLIENT_CERT};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        dev_pki(&dir).unwrap();
        let ca = CaDir::new(&dir, None);
        let out = revoke_command(&ca, None, Some(&dir.join(DEV_CLIENT_CERT)), None, None).unwrap();
        assert!(out.contains("CRL number 2"), "{out}");
        assert_eq!(ca.load_state().unwrap().revoked.len(), 1);
    }
}
