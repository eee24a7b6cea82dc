//! The configuration file as serde reads it: every key optional where a default exists, unknown
//! keys refused. Validation turns it into the types of the sibling modules.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) users: Vec<RawUser>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    pub(super) backend: Option<RawBackend>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) https: Option<RawHttps>,
    pub(super) revocation: Option<RawRevocation>,
    pub(super) pki: Option<RawPki>,
    pub(super) certify: Option<RawCertify>,
    /// Access policy embedded in this file (`[[policy.users]]`, `[[policy.rules]]`, …).
    pub(super) policy: Option<kmip_policy::PolicyConfig>,
    /// Or: a standalone policy file (see `deploy/config/policy.example.toml`).
    pub(super) policy_file: Option<PathBuf>,
    pub(super) locate_cache: Option<RawLocateCache>,
    pub(super) audit: Option<RawAudit>,
    pub(super) capture_dir: Option<PathBuf>,
    pub(super) log: Option<RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) name: String,
    pub(super) cas: Vec<PathBuf>,
    #[serde(default)]
    pub(super) crls: Vec<PathBuf>,
    pub(super) direct_issuer_only: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_message_size: Option<usize>,
    pub(super) max_depth: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_source: Option<usize>,
    pub(super) max_batch_items: Option<usize>,
    pub(super) handshake_timeout_ms: Option<u64>,
    pub(super) read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) shutdown_grace_ms: Option<u64>,
    pub(super) max_locate_results: Option<usize>,
    pub(super) max_objects_per_user: Option<usize>,
    pub(super) max_handshakes: Option<usize>,
    pub(super) max_handshakes_per_source: Option<usize>,
    pub(super) max_inflight_request_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) kind: String,
    pub(super) master_key_file: Option<PathBuf>,
    pub(super) master_key_env: Option<String>,
    pub(super) head_file: Option<PathBuf>,
    pub(super) module: Option<PathBuf>,
    pub(super) token_label: Option<String>,
    pub(super) pin_file: Option<PathBuf>,
    pub(super) pin_env: Option<String>,
    pub(super) pool_size: Option<u32>,
    pub(super) acquire_timeout_ms: Option<u64>,
    /// `kind = "postgres"`: see `config/postgres.rs`.
    pub(super) url: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) password_env: Option<String>,
    pub(super) ca: Option<PathBuf>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) read_your_writes: Option<String>,
    pub(super) kek: Option<RawKek>,
    #[serde(default)]
    pub(super) previous_keks: Vec<RawKek>,
    /// `kind = "kmip"`: see `config/upstream.rs`.
    pub(super) upstreams: Option<Vec<String>>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) server_name: Option<String>,
    pub(super) version: Option<String>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) refresh_interval_ms: Option<u64>,
    pub(super) mode: Option<String>,
    /// `kind = "kmip"`, `mode = "migrate"`: `[backend.migrate_to]`, the database new objects go
    /// to, with the keys of a `kind = "postgres"` `[backend]` (`config/upstream.rs`).
    pub(super) migrate_to: Option<Box<RawBackend>>,
}

/// `[backend.kek]` and `[[backend.previous_keks]]`: a key encryption key of the postgres backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKek {
    pub(super) kind: String,
    pub(super) file: Option<PathBuf>,
    pub(super) env: Option<String>,
    pub(super) module: Option<PathBuf>,
    pub(super) token_label: Option<String>,
    pub(super) pin_file: Option<PathBuf>,
    pub(super) pin_env: Option<String>,
    pub(super) key_label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) enabled: Option<bool>,
    pub(super) dir: Option<PathBuf>,
    pub(super) max_file_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocateCache {
    pub(super) max_entries: Option<usize>,
    pub(super) max_bytes: Option<usize>,
}

/// `[https]`: KMIP over HTTPS (`POST /kmip`), off unless `listen` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttps {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) metrics_require_token: Option<bool>,
    #[serde(default)]
    pub(super) allowed_hosts: Vec<String>,
}

/// `[revocation]`: CRLs for every user and a deny-list checked after the handshake.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    #[serde(default)]
    pub(super) crls: Vec<PathBuf>,
    #[serde(default)]
    pub(super) deny_serials: Vec<String>,
    #[serde(default)]
    pub(super) deny_fingerprints: Vec<String>,
    pub(super) close_revoked_connections: Option<bool>,
    pub(super) require_crl: Option<bool>,
}

/// `[pki]`: the gateway's own CA folder (`kmip-gateway pki --dir`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPki {
    pub(super) dir: Option<PathBuf>,
}

/// `[certify]`: the CA that signs the certificates KMIP Certify issues.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertify {
    pub(super) ca_cert: PathBuf,
    pub(super) ca_key: PathBuf,
}

/// `[log]`: the form of the gateway's log lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
}
