//! TLS material and client authentication.
//!
//! The handshake verifies the client chain against the union of all users' CAs (and CRLs, when
//! configured); afterwards [`TlsState::authenticate`] maps the certificate to a user the way the
//! FlashArray guide's KMES does: the subject Common Name names the user, and the CA that issued it
//! must be one trusted for *that* user. Every refusal has a distinct [`AuthError`] so operators can
//! tell "cannot authenticate" from "not a known user".
//!
//! A client certificate must carry the clientAuth extended key usage (one with none at all passes
//! webpki, so [`TlsState::authenticate`] refuses it). A user with `direct_issuer_only` accepts
//! only certificates signed by one of its CAs itself, not through an intermediate below them.
//! The CertificateRequest names no CA: the listener is shared by tenants who must not learn each
//! other's CAs, and clients with one certificate (PyKMIP, the array) send it regardless.
//!
//! Revocation: CRLs (per user, `[revocation] crls` and always the `[pki] dir` CA's `crl.pem`,
//! which must exist) are given to both the handshake verifier and the per-user verifiers, and a
//! deny-list of serials/fingerprints is checked in [`TlsState::authenticate`]. Only the
//! end-entity certificate's revocation is checked, and the verifier lets a certificate whose CA
//! has no CRL pass: the FlashArray cannot use intermediates, so the chain is root + leaf and a root
//! (a trust anchor) is never checked against a CRL anyway. Such a CA is never silent, though: the
//! build reports every user CA without a CRL ([`TlsState::warnings`]), and fails on it with
//! `[revocation] require_crl`. Expired CRLs are still used (a stale CRL must not lock the
//! array out at boot): their `next_update` is exported as an expiry instead.
//! Because `authenticate` re-verifies the chain (CRLs included), a revoked client cannot get back
//! in through TLS session resumption, and a reload can re-check open connections with it.
//! What that re-verification finds is remembered per chain (`VerifiedChains`): within one
//! state the CAs, CRLs and users are fixed, so the verdict can only change with the time, whose
//! window is checked at every use, and the deny-lists, which are checked every time. A reload
//! builds a new state and forgets them.
//!
//! - this file: the state built from the configuration ([`TlsState::build`]) and the mapping of a
//!   verified chain to a user ([`TlsState::authenticate`]).
//! - `material`: reading certificates, keys, CAs and CRLs; their subjects and expiries.
//! - `refusal`: why a client is refused ([`AuthError`], [`handshake_failure_label`]).
//! - `suites`: the cipher suites and groups offered, by the server key's type.

mod material;
mod refusal;
mod suites;
#[cfg(test)]
mod tests;

pub use material::{
    cert_subject_and_expiry, load_certs, subject_alt_names, CrlInForce, Expiry, ExpiryKind,
};
pub use refusal::{handshake_failure_label, AuthError};
pub use suites::crypto_provider;
use suites::{server_crypto_provider, ServerKeyKind};

use crate::config::{valid_user_name, GatewayConfig};
use crate::identity::Identity;
use material::{check_server_cert, crl_issuer, load_key, subject_of, Loaded};
use refusal::chain_refusal;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// How far ahead an expiring certificate or CRL is warned about in the log: time enough to renew
/// it before the array raises its alert (or loses its key at the next boot).
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier for {who}: {problem}")]
    Verifier { who: String, problem: String },
    #[error("[revocation] require_crl is set and {0}")]
    NoCrl(String),
}

/// How one user's certificates are verified.
struct UserAuth {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The user trusts exactly the handshake's CAs and CRLs, so a full handshake has already
    /// run this user's verification (the common single-CA deployment).
    same_as_handshake: bool,
    /// `[[users]] direct_issuer_only`.
    direct_issuer_only: bool,
}

/// TLS 1.3 tickets sent after each handshake. A client uses one per reconnection and gets one
/// back, which keeps it resuming; rustls' default of 2 costs a second ticket's key derivation,
/// encryption and write on every connection (~5 % of a health check's CPU), for tickets that
/// the client's cache mostly drops.
const TLS13_TICKETS_PER_HANDSHAKE: usize = 1;

/// At most this many chains' identities are remembered per TLS state: bounds the memory a client
/// presenting many valid certificates can take. A full table is emptied, which only costs the
/// signature checks again.
const MAX_VERIFIED_CHAINS: usize = 4096;

/// When a chain that verified stays valid: the latest `notBefore` and the earliest `notAfter` of
/// the certificates the client sent (Unix seconds). The path webpki built uses some of them and
/// a trust anchor, whose dates webpki does not check, so within this window the same path
/// verifies again: its signatures do not depend on the time, nor do the state's CRLs, which are
/// used even when expired (no `enforce_revocation_expiration`).
#[derive(Clone, Copy)]
struct ValidWindow {
    not_before: u64,
    not_after: u64,
}

impl ValidWindow {
    /// The window of `chain`, or `None` when one of its certificates does not parse here.
    fn of(chain: &[CertificateDer<'_>]) -> Option<ValidWindow> {
        let mut window = ValidWindow {
            not_before: 0,
            not_after: u64::MAX,
        };
        for der in chain {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let validity = cert.validity();
            let not_before = u64::try_from(validity.not_before.timestamp()).unwrap_or(0);
            let not_after = u64::try_from(validity.not_after.timestamp()).ok()?;
            window.not_before = window.not_before.max(not_before);
            window.not_after = window.not_after.min(not_after);
        }
        Some(window)
    }

    fn contains(&self, now: UnixTime) -> bool {
        (self.not_before..=self.not_after).contains(&now.as_secs())
    }
}

/// Chains this state has authenticated, keyed by a digest of the whole chain, with the identity
/// each maps to: its user's verifier (and, with `direct_issuer_only`, the direct-issuer check)
/// passed, and the certificate's EKU, Common Name and user were accepted. All of that depends
/// only on the chain and this state, except the dates.
#[derive(Default)]
struct VerifiedChains(Mutex<HashMap<[u8; 32], (ValidWindow, Identity)>>);

impl VerifiedChains {
    fn key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
        let mut digest = Sha256::new();
        for der in chain {
            // Length-prefixed, so that two different chains never hash the same bytes.
            digest.update((der.len() as u64).to_be_bytes());
            digest.update(der.as_ref());
        }
        digest.finalize().into()
    }

    /// The identity `key`'s chain was authenticated as, if `now` is within its window.
    fn identity(&self, key: &[u8; 32], now: UnixTime) -> Option<Identity> {
        // A panic while holding this lock cannot leave the map inconsistent: its verdicts stay
        // usable.
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(key)
            .filter(|(window, _)| window.contains(now))
            .map(|(_, identity)| identity.clone())
    }

    fn remember(&self, key: [u8; 32], window: ValidWindow, identity: Identity) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= MAX_VERIFIED_CHAINS {
            map.clear();
        }
        map.insert(key, (window, identity));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Everything TLS-related built from the configuration; replaced whole on reload.
pub struct TlsState {
    pub server_config: Arc<ServerConfig>,
    users: HashMap<String, UserAuth>,
    deny_serials: HashSet<String>,
    deny_fingerprints: HashSet<String>,
    /// The server certificate, the CAs and the CRLs this state was built from.
    pub expiries: Vec<Expiry>,
    /// The server key's kind, which decides the TLS 1.2 suites offered.
    pub(crate) server_key: ServerKeyKind,
    /// The listener certificate's subject alternative names (`DNS:…`, `IP:…`).
    pub server_alt_names: Vec<String>,
    /// Findings that do not stop the gateway (a user CA without a CRL when `require_crl` is
    /// off): logged at start and reload, printed by `check-config`.
    pub warnings: Vec<String>,
    /// Every CRL enforced, with its revoked serials (`GET /revocation`).
    pub crls_in_force: Vec<CrlInForce>,
    /// What [`TlsState::authenticate`] found for each chain: resumed sessions and reconnecting
    /// clients present the same chain again.
    verified: VerifiedChains,
}

/// One finding per CA of `user` that none of `crls` covers: certificates it issued cannot be
/// revoked (only denied by serial or fingerprint).
fn cas_without_crl(
    user: &str,
    cas: &[CertificateDer<'static>],
    ca_paths: &[std::path::PathBuf],
    crls: &[CertificateRevocationListDer<'static>],
) -> Vec<String> {
    let issuers: HashSet<Vec<u8>> = crls.iter().filter_map(|c| crl_issuer(c.as_ref())).collect();
    cas.iter()
        .zip(ca_paths)
        .filter_map(|(ca, path)| {
            let (raw, subject) = subject_of(ca.as_ref())?;
            (!issuers.contains(&raw)).then(|| {
                format!(
                    "user '{user}': its CA '{subject}' ({}) has no CRL in force, so its \
                     certificates cannot be revoked (the gateway does no OCSP); set [pki] dir to \
                     that CA's folder, or add its CRL to [revocation] crls or the user's crls",
                    path.display()
                )
            })
        })
        .collect()
}

/// A client verifier trusting `roots` and checking `crls`; `who` names it in errors.
fn verifier(
    roots: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
    who: &str,
) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    let problem = |problem: String| TlsSetupError::Verifier {
        who: who.to_string(),
        problem,
    };
    let mut store = RootCertStore::empty();
    for cert in roots {
        store
            .add(cert.clone())
            .map_err(|e| problem(format!("not a usable CA certificate: {e}")))?;
    }
    // No CA names in the CertificateRequest: with several tenants behind one listener, the
    // default (every trust anchor's subject) would tell each tenant every other tenant's CAs.
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), crypto_provider())
            .clear_root_hint_subjects();
    if !crls.is_empty() {
        // See the module comment for why these two.
        builder = builder
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    builder.build().map_err(|e| problem(e.to_string()))
}

/// The listener's certificate chain with its key, checked to belong together, and the key's kind.
fn certified_key(
    cfg: &GatewayConfig,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(CertifiedKey, ServerKeyKind), TlsSetupError> {
    let bad_key = |problem: String| TlsSetupError::File {
        path: cfg.tls.key.display().to_string(),
        problem,
    };
    let certified = CertifiedKey::from_der(chain, key, &crypto_provider()).map_err(|e| {
        bad_key(format!(
            "not usable as the listener's key ({e}): use an RSA key of 2048 bits or more, or an \
             ECDSA (P-256, P-384) key, e.g. `kmip-gateway pki server-cert --key-type rsa2048`"
        ))
    })?;
    let algorithm = certified.key.algorithm();
    let kind = ServerKeyKind::of(algorithm).ok_or_else(|| {
        bad_key(format!(
            "a {algorithm:?} key, for which no offered TLS suite exists: use an RSA or ECDSA key"
        ))
    })?;
    Ok((certified, kind))
}

/// A set of DER encodings, to compare trust configurations.
fn der_set<'a>(items: impl Iterator<Item = &'a [u8]>) -> std::collections::BTreeSet<&'a [u8]> {
    items.collect()
}

impl TlsState {
    /// Builds the complete TLS state, or says which file is wrong. `previous` keeps session
    /// resumption (cache and ticket keys) across reloads.
    pub fn build(
        cfg: &GatewayConfig,
        previous: Option<&TlsState>,
    ) -> Result<TlsState, TlsSetupError> {
        let chain = load_certs(&cfg.tls.cert)?;
        let server_der = chain.first().cloned().ok_or_else(|| TlsSetupError::File {
            path: cfg.tls.cert.display().to_string(),
            problem: "contains no certificate".into(),
        })?;
        let key = load_key(&cfg.tls.key)?;
        let (certified, server_key) = certified_key(cfg, chain.clone(), key)?;
        let mut loaded = Loaded::default();
        let (server_subject, server_not_after) = chain
            .first()
            .and_then(|c| cert_subject_and_expiry(c))
            .ok_or_else(|| TlsSetupError::File {
                path: cfg.tls.cert.display().to_string(),
                problem: "the server certificate cannot be parsed".into(),
            })?;
        check_server_cert(server_der.as_ref(), &cfg.tls.cert)?;
        let mut all_cas = Vec::new();
        for user in &cfg.users {
            for path in &user.cas {
                all_cas.extend(loaded.cas(path)?);
            }
        }
        let mut global_crls = Vec::new();
        for path in &cfg.revocation.crls {
            global_crls.extend(loaded.crls(path, &all_cas)?);
        }
        // The gateway's own CA: its CRL is always enforced, and its absence is an error.
        if let (Some(dir), Some((ca_path, crl_path))) = (&cfg.pki_dir, cfg.pki_files()) {
            let pki_ca = loaded.cas(&ca_path)?;
            if !crl_path.exists() {
                return Err(TlsSetupError::File {
                    path: crl_path.display().to_string(),
                    problem: format!(
                        "missing: [pki] dir is this CA folder, whose CRL is always enforced;                          write it with `kmip-gateway pki crl --dir {}`",
                        dir.display()
                    ),
                });
            }
            global_crls.extend(loaded.crls(&crl_path, &pki_ca)?);
        }
        let mut all_crls = global_crls.clone();
        let mut per_user = Vec::with_capacity(cfg.users.len());
        let mut unrevocable = Vec::new();
        for user in &cfg.users {
            let mut cas = Vec::new();
            let mut ca_paths = Vec::new();
            for path in &user.cas {
                let certs = loaded.cas(path)?;
                ca_paths.extend(certs.iter().map(|_| path.clone()));
                cas.extend(certs);
            }
            let mut crls = global_crls.clone();
            for path in &user.crls {
                let own = loaded.crls(path, &cas)?;
                all_crls.extend(own.iter().cloned());
                crls.extend(own);
            }
            unrevocable.extend(cas_without_crl(&user.name, &cas, &ca_paths, &crls));
            let v = verifier(&cas, crls.clone(), &format!("user '{}'", user.name))?;
            per_user.push((user.name.clone(), v, cas, crls, user.direct_issuer_only));
        }
        if cfg.revocation.require_crl && !unrevocable.is_empty() {
            return Err(TlsSetupError::NoCrl(unrevocable.join("; ")));
        }
        let mut users = HashMap::with_capacity(per_user.len());
        let all_ca_set = der_set(all_cas.iter().map(|c| c.as_ref()));
        let all_crl_set = der_set(all_crls.iter().map(|c| c.as_ref()));
        for (name, verifier, cas, crls, direct_issuer_only) in per_user {
            let same_as_handshake = der_set(cas.iter().map(|c| c.as_ref())) == all_ca_set
                && der_set(crls.iter().map(|c| c.as_ref())) == all_crl_set;
            users.insert(
                name,
                UserAuth {
                    verifier,
                    same_as_handshake,
                    direct_issuer_only,
                },
            );
        }
        let handshake_verifier = verifier(&all_cas, all_crls, "all users")?;
        let mut expiries = vec![Expiry {
            kind: ExpiryKind::Server,
            subject: server_subject,
            not_after: server_not_after,
            path: cfg.tls.cert.clone(),
        }];
        expiries.append(&mut loaded.expiries);
        let mut sc = ServerConfig::builder_with_provider(server_crypto_provider(server_key))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(handshake_verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        match previous {
            Some(prev) => {
                sc.session_storage = prev.server_config.session_storage.clone();
                sc.ticketer = prev.server_config.ticketer.clone();
            }
            None => {
                sc.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
            }
        }
        sc.send_tls13_tickets = TLS13_TICKETS_PER_HANDSHAKE;
        Ok(TlsState {
            server_alt_names: subject_alt_names(server_der.as_ref()),
            warnings: unrevocable,
            crls_in_force: loaded.in_force,
            server_config: Arc::new(sc),
            users,
            deny_serials: cfg.revocation.deny_serials.iter().cloned().collect(),
            deny_fingerprints: cfg.revocation.deny_fingerprints.iter().cloned().collect(),
            expiries,
            server_key,
            verified: VerifiedChains::default(),
        })
    }

    /// Whether `user` is a configured user (one a client certificate can log in as).
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Maps a verified client chain to a configured user. `full_handshake`: this state's own
    /// verifier checked the chain just now (not a resumed session, not a re-check after reload).
    pub fn authenticate(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        full_handshake: bool,
    ) -> Result<Identity, AuthError> {
        self.authenticate_at(chain, full_handshake, UnixTime::now())
    }

    /// [`TlsState::authenticate`] at the time `now`.
    fn authenticate_at(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        full_handshake: bool,
        now: UnixTime,
    ) -> Result<Identity, AuthError> {
        let chain = chain.unwrap_or(&[]);
        let key = VerifiedChains::key(chain);
        if let Some(identity) = self.verified.identity(&key, now) {
            self.check_denied(&identity.serial_hex, &identity.fingerprint)?;
            return Ok(identity);
        }
        let end_entity = chain.first().ok_or(AuthError::NoCertificate)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(end_entity).map_err(|_| AuthError::Unparsable)?;
        // webpki lets a certificate without any EKU through (RFC 5280: no restriction), so any
        // certificate a tenant's CA ever issued, for a web server say, could otherwise log in.
        match cert.extended_key_usage() {
            Ok(Some(eku)) if eku.value.client_auth => {}
            Ok(_) => return Err(AuthError::MissingClientAuthEku),
            Err(_) => return Err(AuthError::Unparsable),
        }
        // The same Common Name rule the CA applies when it issues (`tooling::pki`).
        let cn = crate::tooling::pki::subject_common_name(cert.subject())
            .map_err(AuthError::from)?
            .to_owned();
        let serial_hex = crate::tooling::pki::Serial::from_bytes(cert.raw_serial())
            .map(|s| s.to_hex())
            .unwrap_or_else(|_| hex::encode(cert.raw_serial()));
        let fingerprint = hex::encode(Sha256::digest(end_entity.as_ref()));
        self.check_denied(&serial_hex, &fingerprint)?;
        if !valid_user_name(&cn) {
            return Err(AuthError::UnknownUser(cn));
        }
        let user = self
            .users
            .get(&cn)
            .ok_or_else(|| AuthError::UnknownUser(cn.clone()))?;
        self.check_chain(user, chain, full_handshake, &cn, now)?;
        let identity = Identity {
            user: cn,
            subject: cert.subject().to_string(),
            serial_hex,
            fingerprint,
        };
        if let Some(window) = ValidWindow::of(chain) {
            self.verified.remember(key, window, identity.clone());
        }
        Ok(identity)
    }

    /// Refuses a certificate the deny-lists name.
    fn check_denied(&self, serial_hex: &str, fingerprint: &str) -> Result<(), AuthError> {
        if self.deny_serials.contains(serial_hex) || self.deny_fingerprints.contains(fingerprint) {
            return Err(AuthError::Denied {
                serial: serial_hex.to_owned(),
            });
        }
        Ok(())
    }

    /// Verifies `chain` for `user` (named `cn`), unless the handshake just did.
    fn check_chain(
        &self,
        user: &UserAuth,
        chain: &[CertificateDer<'_>],
        full_handshake: bool,
        cn: &str,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let (end_entity, intermediates) = chain.split_first().ok_or(AuthError::NoCertificate)?;
        let handshake_verified = full_handshake && user.same_as_handshake;
        if !handshake_verified {
            user.verifier
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(|e| chain_refusal(&e, cn))?;
        }
        if user.direct_issuer_only {
            // Without the intermediates the client sent, only a certificate signed by one of the
            // user's CAs itself can verify; the chain as a whole passed above.
            user.verifier
                .verify_client_cert(end_entity, &[], now)
                .map_err(|_| AuthError::IndirectIssuer {
                    user: cn.to_owned(),
                })?;
        }
        Ok(())
    }
}
