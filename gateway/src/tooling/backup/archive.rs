//! The backup archive: named files, encrypted and authenticated under a passphrase. The format
//! is in `docs/operations.md`, "Backup archive format".
//!
//! ```text
//! archive = header ciphertext tag[16]
//! header  = "KMIPBAK\0" version:u32 kdf:u8 m_cost_kib:u32 t_cost:u32 p_cost:u32 salt[16] nonce[12]
//! plain   = count:u32 (name_len:u16 name len:u64 bytes)*
//! ```
//!
//! Key: Argon2id(passphrase, salt, m_cost, t_cost, p_cost) → 32 bytes; AES-256-GCM with the
//! whole header as associated data, so no header field can be changed without the tag failing.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"KMIPBAK\0";
/// The format this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// `kdf` value of Argon2id (version 0x13).
const KDF_ARGON2ID: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 8 + 4 + 1 + 4 + 4 + 4 + SALT_LEN + NONCE_LEN;
/// Most memory an archive's header may ask Argon2 for (4 GiB): a forged header must not make
/// `restore` allocate without bound before the tag is checked.
const MAX_M_COST_KIB: u32 = 4 << 20;
/// Most passes a header may ask for, for the same reason (CPU time).
const MAX_T_COST: u32 = 64;
/// Most lanes a header may ask for.
const MAX_P_COST: u32 = 16;
/// Shortest passphrase accepted when writing: a backup holds the master key, so its passphrase
/// is what stands between a stolen archive and every key.
pub(crate) const MIN_PASSPHRASE_CHARS: usize = 16;

/// Argon2id cost of a new archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// What `backup` uses: 256 MiB, 3 passes (about a second on one core): costly to guess at
/// scale, cheap once per backup.
pub const DEFAULT_KDF_COST: KdfCost = KdfCost {
    m_cost_kib: 256 << 10,
    t_cost: 3,
    p_cost: 1,
};

/// Why an archive was refused. Messages never contain the passphrase or contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ArchiveError {
    #[error("not a kmip-gateway backup archive")]
    NotAnArchive,
    #[error("archive format version {0}: this kmip-gateway reads version {VERSION}; restore with the version that wrote it or a newer one")]
    Version(u32),
    #[error("the archive's key derivation parameters are unknown or out of bounds")]
    Kdf,
    #[error("wrong passphrase, or the archive was altered or damaged (it does not authenticate)")]
    Authentication,
    #[error("the archive's contents are malformed")]
    Malformed,
    #[error("the passphrase has {0} characters; at least {MIN_PASSPHRASE_CHARS} are required")]
    WeakPassphrase(usize),
    #[error("randomness or key derivation failed: {0}")]
    Crypto(String),
}

/// One file of an archive: a name (`vault/vault.log`, `config/gateway.toml`, …) and its bytes.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) bytes: Zeroizing<Vec<u8>>,
}

fn derive(passphrase: &[u8], salt: &[u8], cost: KdfCost) -> Result<LessSafeKey, ArchiveError> {
    let params = argon2::Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(32))
        .map_err(|_| ArchiveError::Kdf)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, &mut key[..])
        .map_err(|e| ArchiveError::Crypto(e.to_string()))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key[..])
        .map_err(|_| ArchiveError::Crypto("AES-256-GCM key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Encrypts `entries` to `passphrase`.
pub(crate) fn seal(
    entries: &[Entry],
    passphrase: &[u8],
    cost: KdfCost,
) -> Result<Vec<u8>, ArchiveError> {
    let chars = String::from_utf8_lossy(passphrase).chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(ArchiveError::WeakPassphrase(chars));
    }
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut salt)
        .and_then(|()| aws_lc_rs::rand::fill(&mut nonce))
        .map_err(|_| ArchiveError::Crypto("no randomness".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(KDF_ARGON2ID);
    for v in [cost.m_cost_kib, cost.t_cost, cost.p_cost] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let mut plain = Zeroizing::new(Vec::new());
    let count = u32::try_from(entries.len()).map_err(|_| ArchiveError::Malformed)?;
    plain.extend_from_slice(&count.to_le_bytes());
    for e in entries {
        let name_len = u16::try_from(e.name.len()).map_err(|_| ArchiveError::Malformed)?;
        plain.extend_from_slice(&name_len.to_le_bytes());
        plain.extend_from_slice(e.name.as_bytes());
        plain.extend_from_slice(&(e.bytes.len() as u64).to_le_bytes());
        plain.extend_from_slice(&e.bytes);
    }
    let key = derive(passphrase, &salt, cost)?;
    let mut sealed = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&out[..]),
        &mut sealed,
    )
    .map_err(|_| ArchiveError::Crypto("AES-256-GCM seal".into()))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Reads a little-endian u32 at `at`.
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks and decrypts an archive: format, version, KDF bounds, then the tag over everything.
pub(crate) fn open(archive: &[u8], passphrase: &[u8]) -> Result<Vec<Entry>, ArchiveError> {
    if archive.len() < HEADER_LEN + TAG_LEN || &archive[..8] != MAGIC {
        return Err(ArchiveError::NotAnArchive);
    }
    let version = u32_at(archive, 8).ok_or(ArchiveError::NotAnArchive)?;
    if version != VERSION {
        return Err(ArchiveError::Version(version));
    }
    let cost = KdfCost {
        m_cost_kib: u32_at(archive, 13).ok_or(ArchiveError::Kdf)?,
        t_cost: u32_at(archive, 17).ok_or(ArchiveError::Kdf)?,
        p_cost: u32_at(archive, 21).ok_or(ArchiveError::Kdf)?,
    };
    if archive[12] != KDF_ARGON2ID
        || cost.m_cost_kib > MAX_M_COST_KIB
        || cost.t_cost > MAX_T_COST
        || cost.p_cost > MAX_P_COST
    {
        return Err(ArchiveError::Kdf);
    }
    let salt = &archive[25..25 + SALT_LEN];
    let nonce: [u8; NONCE_LEN] = archive[25 + SALT_LEN..HEADER_LEN]
        .try_into()
        .map_err(|_| ArchiveError::NotAnArchive)?;
    let key = derive(passphrase, salt, cost)?;
    let mut buf = Zeroizing::new(archive[HEADER_LEN..].to_vec());
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&archive[..HEADER_LEN]),
            &mut buf,
        )
        .map_err(|_| ArchiveError::Authentication)?;
    parse(plain)
}

fn parse(plain: &[u8]) -> Result<Vec<Entry>, ArchiveError> {
    let count = u32_at(plain, 0).ok_or(ArchiveError::Malformed)?;
    let mut at = 4usize;
    let mut entries = Vec::new();
    for _ in 0..count {
        let take = |at: &mut usize, n: usize| -> Result<&[u8], ArchiveError> {
            let s = plain.get(*at..at.checked_add(n).ok_or(ArchiveError::Malformed)?);
            *at += n;
            s.ok_or(ArchiveError::Malformed)
        };
        let name_len = u16::from_le_bytes(
            take(&mut at, 2)?
                .try_into()
                .map_err(|_| ArchiveError::Malformed)?,
        );
        let name = std::str::from_utf8(take(&mut at, usize::from(name_len))?)
            .map_err(|_| ArchiveError::Malformed)?
            .to_owned();
        let len = u64::from_le_bytes(
            take(&mut at, 8)?
                .try_into()
                .map_err(|_| ArchiveError::Malformed)?,
        );
        let len = usize::try_from(len).map_err(|_| ArchiveError::Malformed)?;
        let bytes = Zeroizing::new(take(&mut at, len)?.to_vec());
        entries.push(Entry { name, bytes });
    }
    if at != plain.len() {
        return Err(ArchiveError::Malformed);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: the tests are about the format, not the KDF's cost.
    const TEST_COST: KdfCost = KdfCost {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    const PASS: &[u8] = b"correct horse battery staple";

    fn sample() -> Vec<u8> {
        let entries = vec![
            Entry {
                name: "vault/vault.log".into(),
                bytes: Zeroizing::new(b"log bytes".to_vec()),
            },
            Entry {
                name: "secrets/master.key".into(),
                bytes: Zeroizing::new(vec![7u8; 32]),
            },
        ];
        seal(&entries, PASS, TEST_COST).unwrap()
    }

    #[test]
    fn round_trip_keeps_names_and_bytes() {
        let entries = open(&sample(), PASS).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.bytes.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("vault/vault.log", b"log bytes".to_vec()),
                ("secrets/master.key", vec![7u8; 32])
            ]
        );
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let archive = sample();
        for i in 0..archive.len() {
            let mut bad = archive.clone();
            bad[i] ^= 0x01;
            let err = open(&bad, PASS).err();
            assert!(err.is_some(), "byte {i} altered and accepted");
        }
        // A cut archive, too.
        assert!(open(&archive[..archive.len() - 1], PASS).is_err());
    }

    #[test]
    fn a_wrong_passphrase_is_refused() {
        assert_eq!(
            open(&sample(), b"correct horse battery stapler").err(),
            Some(ArchiveError::Authentication)
        );
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut archive = sample();
        archive[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(open(&archive, PASS).err(), Some(ArchiveError::Version(2)));
    }

    #[test]
    fn a_forged_header_cannot_ask_for_unbounded_memory() {
        let mut archive = sample();
        archive[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(open(&archive, PASS).err(), Some(ArchiveError::Kdf));
    }

    #[test]
    fn a_short_passphrase_is_refused_when_writing() {
        assert_eq!(
            seal(&[], b"short", TEST_COST).err(),
            Some(ArchiveError::WeakPassphrase(5))
        );
    }
}
