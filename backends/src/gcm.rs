//! AES-GCM with a nonce of any length (NIST SP 800-38D §7.1: the pre-counter block J0 is the
//! GHASH of a nonce other than 96 bits), for the nonces aws-lc-rs' AEAD does not take: it takes
//! 96-bit ones only, and KMIP clients send others (the OASIS vectors use 64-bit nonces).

use aws_lc_rs::cipher::{self, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time;
use zeroize::Zeroizing;

use crate::BackendError;

/// The AES block and GHASH block length (bytes).
const BLOCK: usize = 16;
/// The longest nonce accepted (bytes): longer ones add nothing (GHASH compresses them) and
/// only cost hashing time.
pub(crate) const MAX_NONCE_LEN: usize = 128;
/// The reduction constant R of GF(2^128) in GCM's bit order.
const R: u128 = 0xE1 << 120;

/// `X·Y` in GCM's GF(2^128), without secret-dependent branches.
fn gf_mul(x: u128, y: u128) -> u128 {
    let mut z = 0u128;
    let mut v = y;
    for i in 0..128 {
        let bit = (x >> (127 - i)) & 1;
        z ^= v & 0u128.wrapping_sub(bit);
        let lsb = v & 1;
        v = (v >> 1) ^ (R & 0u128.wrapping_sub(lsb));
    }
    z
}

/// GHASH state: absorbs byte strings zero-padded to whole blocks.
struct Ghash {
    h: u128,
    y: u128,
}

impl Ghash {
    fn absorb(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(BLOCK) {
            let mut block = [0u8; BLOCK];
            block[..chunk.len()].copy_from_slice(chunk);
            self.absorb_block(u128::from_be_bytes(block));
        }
    }

    fn absorb_block(&mut self, block: u128) {
        self.y = gf_mul(self.y ^ block, self.h);
    }

    /// The final block: the two lengths in bits.
    fn finish(mut self, a_len: usize, b_len: usize) -> u128 {
        let bits = |n: usize| (n as u128) * 8;
        self.absorb_block((bits(a_len) << 64) | bits(b_len));
        self.y
    }
}

/// AES encryption of whole blocks with the key (ECB over the counter blocks).
struct Aes(EncryptingKey);

impl Aes {
    fn new(key: &[u8]) -> Result<Aes, BackendError> {
        let alg = match key.len() {
            16 => &cipher::AES_128,
            24 => &cipher::AES_192,
            32 => &cipher::AES_256,
            n => {
                return Err(BackendError::InvalidInput(format!(
                    "a {}-bit key is not an AES key",
                    n * 8
                )))
            }
        };
        let failed = |_| BackendError::Crypto("AES key setup failed".into());
        Ok(Aes(EncryptingKey::ecb(
            UnboundCipherKey::new(alg, key).map_err(failed)?,
        )
        .map_err(failed)?))
    }

    fn encrypt(&self, blocks: &mut [u8]) -> Result<(), BackendError> {
        self.0
            .less_safe_encrypt(blocks, EncryptionContext::None)
            .map(|_| ())
            .map_err(|_| BackendError::Crypto("AES encryption failed".into()))
    }

    fn block(&self, b: u128) -> Result<u128, BackendError> {
        let mut bytes = b.to_be_bytes();
        self.encrypt(&mut bytes)?;
        Ok(u128::from_be_bytes(bytes))
    }
}

/// inc32: the low 32 bits count, modulo 2^32.
fn inc32(cb: u128) -> u128 {
    let low = (cb as u32).wrapping_add(1);
    (cb & !u128::from(u32::MAX)) | u128::from(low)
}

/// GCTR from counter block `icb` over `data`, in place.
fn gctr(aes: &Aes, icb: u128, data: &mut [u8]) -> Result<(), BackendError> {
    let blocks = data.len().div_ceil(BLOCK);
    let mut stream = Zeroizing::new(vec![0u8; blocks * BLOCK]);
    let mut cb = icb;
    for chunk in stream.chunks_mut(BLOCK) {
        chunk.copy_from_slice(&cb.to_be_bytes());
        cb = inc32(cb);
    }
    aes.encrypt(&mut stream)?;
    data.iter_mut()
        .zip(stream.iter())
        .for_each(|(d, k)| *d ^= k);
    Ok(())
}

/// The hash key and the pre-counter block J0 of `nonce`.
fn setup(aes: &Aes, nonce: &[u8]) -> Result<(u128, u128), BackendError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(BackendError::InvalidInput(format!(
            "GCM nonce must be 1 to {MAX_NONCE_LEN} bytes, got {}",
            nonce.len()
        )));
    }
    let h = aes.block(0)?;
    let j0 = if nonce.len() == 12 {
        let mut b = [0u8; BLOCK];
        b[..12].copy_from_slice(nonce);
        b[BLOCK - 1] = 1;
        u128::from_be_bytes(b)
    } else {
        let mut g = Ghash { h, y: 0 };
        g.absorb(nonce);
        g.finish(0, nonce.len())
    };
    Ok((h, j0))
}

fn full_tag(
    aes: &Aes,
    h: u128,
    j0: u128,
    aad: &[u8],
    ct: &[u8],
) -> Result<[u8; BLOCK], BackendError> {
    let mut g = Ghash { h, y: 0 };
    g.absorb(aad);
    g.absorb(ct);
    let s = g.finish(aad.len(), ct.len());
    Ok((aes.block(j0)? ^ s).to_be_bytes())
}

/// Encrypts `data` in place; returns the full 16-byte tag (callers truncate it).
pub(crate) fn seal(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; BLOCK], BackendError> {
    let aes = Aes::new(key)?;
    let (h, j0) = setup(&aes, nonce)?;
    gctr(&aes, inc32(j0), data)?;
    full_tag(&aes, h, j0, aad, data)
}

/// Checks `tag` (a prefix of the full tag) over the ciphertext, then decrypts `data` in place.
pub(crate) fn open(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), BackendError> {
    let aes = Aes::new(key)?;
    let (h, j0) = setup(&aes, nonce)?;
    let full = full_tag(&aes, h, j0, aad, data)?;
    if tag.is_empty()
        || tag.len() > BLOCK
        || constant_time::verify_slices_are_equal(&full[..tag.len()], tag).is_err()
    {
        return Err(BackendError::IntegrityCheckFailed);
    }
    gctr(&aes, inc32(j0), data)
}

/// AES-GCM encryption fed in parts: each part's ciphertext is returned at once (GCTR is a
/// keystream), GHASH absorbs it as it goes, and `finish` gives the tag of the whole message.
pub(crate) struct GcmSealer {
    aes: Aes,
    j0: u128,
    /// The next counter block whose keystream has not been made yet.
    counter: u128,
    ghash: Ghash,
    aad_len: usize,
    ct_len: usize,
    /// Keystream left over from the last block a part ended inside.
    keystream: Zeroizing<[u8; BLOCK]>,
    keystream_used: usize,
    /// Ciphertext not yet a whole GHASH block.
    partial: [u8; BLOCK],
    partial_len: usize,
}

impl GcmSealer {
    pub(crate) fn new(key: &[u8], nonce: &[u8], aad: &[u8]) -> Result<GcmSealer, BackendError> {
        let aes = Aes::new(key)?;
        let (h, j0) = setup(&aes, nonce)?;
        let mut ghash = Ghash { h, y: 0 };
        ghash.absorb(aad);
        Ok(GcmSealer {
            aes,
            j0,
            counter: inc32(j0),
            ghash,
            aad_len: aad.len(),
            ct_len: 0,
            keystream: Zeroizing::new([0; BLOCK]),
            keystream_used: BLOCK,
            partial: [0; BLOCK],
            partial_len: 0,
        })
    }

    /// Encrypts one part in place.
    pub(crate) fn update(&mut self, data: &mut [u8]) -> Result<(), BackendError> {
        let mut rest = &mut data[..];
        // First the keystream a previous part left.
        let take = rest.len().min(BLOCK - self.keystream_used);
        let (head, tail) = rest.split_at_mut(take);
        head.iter_mut()
            .zip(&self.keystream[self.keystream_used..])
            .for_each(|(d, k)| *d ^= k);
        self.keystream_used += take;
        rest = tail;
        // Whole blocks in one batch; a final partial block keeps its unused keystream.
        let whole = rest.len() / BLOCK * BLOCK;
        let (blocks, last) = rest.split_at_mut(whole);
        gctr(&self.aes, self.counter, blocks)?;
        for _ in 0..whole / BLOCK {
            self.counter = inc32(self.counter);
        }
        if !last.is_empty() {
            let mut ks = self.counter.to_be_bytes();
            self.aes.encrypt(&mut ks)?;
            self.keystream.copy_from_slice(&ks);
            ks.fill(0);
            self.counter = inc32(self.counter);
            last.iter_mut()
                .zip(self.keystream.iter())
                .for_each(|(d, k)| *d ^= k);
            self.keystream_used = last.len();
        }
        self.absorb(data);
        Ok(())
    }

    fn absorb(&mut self, ct: &[u8]) {
        self.ct_len += ct.len();
        let mut rest = ct;
        if self.partial_len > 0 {
            let take = rest.len().min(BLOCK - self.partial_len);
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&rest[..take]);
            self.partial_len += take;
            rest = &rest[take..];
            if self.partial_len < BLOCK {
                return;
            }
            self.ghash.absorb_block(u128::from_be_bytes(self.partial));
            self.partial_len = 0;
        }
        let whole = rest.len() / BLOCK * BLOCK;
        self.ghash.absorb(&rest[..whole]);
        let last = &rest[whole..];
        self.partial[..last.len()].copy_from_slice(last);
        self.partial_len = last.len();
    }

    /// The full 16-byte tag (callers truncate it).
    pub(crate) fn finish(mut self) -> Result<[u8; BLOCK], BackendError> {
        if self.partial_len > 0 {
            let partial = self.partial;
            self.ghash.absorb(&partial[..self.partial_len]);
        }
        let s = self.ghash.finish(self.aad_len, self.ct_len);
        Ok((self.aes.block(self.j0)? ^ s).to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    const KEY: &str = "feffe9928665731c6d6a8f9467308308";
    const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const PLAIN: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 4 (96-bit nonce),
    /// 5 (64-bit nonce) and 6 (480-bit nonce), AES-128.
    #[test]
    fn matches_the_gcm_specification_test_cases() {
        let cases = [
            (
                "cafebabefacedbaddecaf888",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                 21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                "cafebabefacedbad",
                "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423\
                 73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598",
                "3612d2e79e3b0785561be14aaca2fccb",
            ),
            (
                "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728\
                 c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
                "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7\
                 01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5",
                "619cc5aefffe0bfa462af43c1699d050",
            ),
        ];
        for (nonce, ct, tag) in cases {
            let mut data = h(PLAIN);
            let full = seal(&h(KEY), &h(nonce), &h(AAD), &mut data).unwrap();
            assert_eq!(data, h(ct), "nonce {nonce}");
            assert_eq!(full.to_vec(), h(tag), "nonce {nonce}");
            open(&h(KEY), &h(nonce), &h(AAD), &mut data, &full[..8]).unwrap();
            assert_eq!(data, h(PLAIN));
        }
    }

    #[test]
    fn tampering_and_bad_nonces_are_refused() {
        let nonce = h("cafebabefacedbad");
        let mut data = h(PLAIN);
        let tag = seal(&h(KEY), &nonce, &h(AAD), &mut data).unwrap();
        let mut bad = data.clone();
        bad[0] ^= 1;
        assert!(matches!(
            open(&h(KEY), &nonce, &h(AAD), &mut bad, &tag),
            Err(BackendError::IntegrityCheckFailed)
        ));
        assert!(matches!(
            open(&h(KEY), &nonce, b"", &mut data.clone(), &tag),
            Err(BackendError::IntegrityCheckFailed)
        ));
        assert!(matches!(
            seal(&h(KEY), &[], b"", &mut [0u8; 4]),
            Err(BackendError::InvalidInput(_))
        ));
        assert!(matches!(
            seal(&h(KEY), &[0u8; MAX_NONCE_LEN + 1], b"", &mut [0u8; 4]),
            Err(BackendError::InvalidInput(_))
        ));
    }

    #[test]
    fn the_counter_wraps_in_its_low_32_bits_only() {
        assert_eq!(inc32(0x1234_ffff_ffff), 0x1234_0000_0000);
        assert_eq!(inc32(5), 6);
    }

    /// Every split of the McGrew-Viega message into two parts, and into many 1..=17-byte
    /// parts, gives the one-shot ciphertext and tag, for a 64- and a 96-bit nonce.
    #[test]
    fn the_sealer_in_parts_equals_one_shot() {
        let plain = h(PLAIN);
        for nonce in [h("cafebabefacedbad"), h("cafebabefacedbaddecaf888")] {
            let mut whole = plain.clone();
            let tag = seal(&h(KEY), &nonce, &h(AAD), &mut whole).unwrap();
            for split in 0..=plain.len() {
                let mut s = GcmSealer::new(&h(KEY), &nonce, &h(AAD)).unwrap();
                let (mut a, mut b) = (plain[..split].to_vec(), plain[split..].to_vec());
                s.update(&mut a).unwrap();
                s.update(&mut b).unwrap();
                a.extend_from_slice(&b);
                assert_eq!(a, whole, "split {split}");
                assert_eq!(s.finish().unwrap(), tag, "split {split}");
            }
            for step in 1..=17 {
                let mut s = GcmSealer::new(&h(KEY), &nonce, &h(AAD)).unwrap();
                let mut out = Vec::new();
                for chunk in plain.chunks(step) {
                    let mut c = chunk.to_vec();
                    s.update(&mut c).unwrap();
                    out.extend_from_slice(&c);
                }
                assert_eq!(out, whole, "step {step}");
                assert_eq!(s.finish().unwrap(), tag, "step {step}");
            }
        }
    }
}
