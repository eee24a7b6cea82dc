//! The splitting arithmetic of Create Split Key and Join Split Key, pure and over bytes: XOR
//! (every part needed) and Shamir's polynomial sharing over GF(2^8), byte by byte, or GF(2^16),
//! two bytes at a time, in the fields KMIP 2.1 §13.1 defines: GF(2^8) modulo
//! x^8 + x^4 + x^3 + x^2 + 1 (285), and GF(2^16) = GF(2^8)[y]/(y^2 + y + 0x3A), an element uy + v
//! written as the bytes u, v. A part's x coordinate is its Key Part Identifier. The caller
//! supplies the randomness, so the functions are deterministic and testable.

use zeroize::Zeroizing;

/// The methods this server computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Xor,
    Gf256,
    Gf65536,
}

impl Method {
    /// Bytes per field element (the secret is shared piece by piece).
    pub(crate) fn piece(self) -> usize {
        match self {
            Method::Xor | Method::Gf256 => 1,
            Method::Gf65536 => 2,
        }
    }

    fn mul(self, a: u16, b: u16) -> u16 {
        match self {
            Method::Gf65536 => mul16(a, b),
            Method::Xor | Method::Gf256 => u16::from(mul(a as u8, b as u8)),
        }
    }

    fn inverse(self, a: u16) -> u16 {
        match self {
            Method::Gf65536 => inverse16(a),
            Method::Xor | Method::Gf256 => u16::from(inverse(a as u8)),
        }
    }
}

/// How many random bytes [`split`] takes for a secret of `len` bytes.
pub(crate) fn random_len(method: Method, len: usize, parts: u8, threshold: u8) -> usize {
    match method {
        Method::Xor => len * usize::from(parts.saturating_sub(1)),
        Method::Gf256 | Method::Gf65536 => len * usize::from(threshold.saturating_sub(1)),
    }
}

/// Splits `secret` into `parts` shares, the share of Key Part Identifier `i` at index `i - 1`.
/// The caller checks 1 ≤ threshold ≤ parts (threshold = parts for XOR), that the secret is a
/// whole number of [`Method::piece`]s, and passes exactly [`random_len`] bytes of `random`.
pub(crate) fn split(
    method: Method,
    secret: &[u8],
    parts: u8,
    threshold: u8,
    random: &[u8],
) -> Vec<Zeroizing<Vec<u8>>> {
    let len = secret.len();
    if method == Method::Xor {
        let mut shares: Vec<Zeroizing<Vec<u8>>> = random
            .chunks_exact(len.max(1))
            .take(usize::from(parts) - 1)
            .map(|c| Zeroizing::new(c.to_vec()))
            .collect();
        let mut last = Zeroizing::new(secret.to_vec());
        for s in &shares {
            xor_into(&mut last, s);
        }
        shares.push(last);
        return shares;
    }
    let piece = method.piece();
    (1..=parts)
        .map(|x| {
            let mut share = Zeroizing::new(Vec::with_capacity(len));
            for j in (0..len).step_by(piece) {
                // Horner's rule from the highest coefficient down to the secret.
                let mut y = 0u16;
                for k in (1..usize::from(threshold)).rev() {
                    y = method.mul(y, u16::from(x)) ^ element(random, (k - 1) * len + j, piece);
                }
                y = method.mul(y, u16::from(x)) ^ element(secret, j, piece);
                push_element(&mut share, y, piece);
            }
            share
        })
        .collect()
}

/// Joins shares given as (Key Part Identifier, bytes). The caller checks that the identifiers
/// are distinct and non-zero, the lengths equal and whole pieces, and that there are enough.
pub(crate) fn join(method: Method, shares: &[(u8, &[u8])]) -> Zeroizing<Vec<u8>> {
    let len = shares.first().map_or(0, |s| s.1.len());
    if method == Method::Xor {
        let mut secret = Zeroizing::new(vec![0u8; len]);
        for (_, s) in shares {
            xor_into(&mut secret, s);
        }
        return secret;
    }
    let piece = method.piece();
    // The Lagrange basis polynomial of each share, at 0: Π x_j / (x_j - x_i).
    let bases: Vec<u16> = shares
        .iter()
        .enumerate()
        .map(|(i, (xi, _))| {
            let mut basis = 1u16;
            for (j, (xj, _)) in shares.iter().enumerate() {
                if i != j {
                    let (xi, xj) = (u16::from(*xi), u16::from(*xj));
                    basis = method.mul(basis, method.mul(xj, method.inverse(xj ^ xi)));
                }
            }
            basis
        })
        .collect();
    let mut secret = Zeroizing::new(Vec::with_capacity(len));
    for j in (0..len).step_by(piece) {
        let mut y = 0u16;
        for ((_, share), basis) in shares.iter().zip(&bases) {
            y ^= method.mul(element(share, j, piece), *basis);
        }
        push_element(&mut secret, y, piece);
    }
    secret
}

/// The field element of `piece` bytes at `at` (big-endian: u, then v).
fn element(bytes: &[u8], at: usize, piece: usize) -> u16 {
    if piece == 2 {
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    } else {
        u16::from(bytes[at])
    }
}

fn push_element(out: &mut Vec<u8>, e: u16, piece: usize) {
    if piece == 2 {
        out.extend_from_slice(&e.to_be_bytes());
    } else {
        out.push(e as u8);
    }
}

fn xor_into(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// Multiplication in GF(2^8) modulo 285, without branches on the operands (they are key bytes).
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        p ^= a & (b & 1).wrapping_neg();
        let carry = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1d & carry);
        b >>= 1;
    }
    p
}

/// The multiplicative inverse in GF(2^8), a^254 (0 for 0).
fn inverse(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u8;
    while e > 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

/// The m of GF(2^16) = GF(2^8)[y]/(y^2 + y + m).
const M: u8 = 0x3a;

/// (ry + s)(uy + v) = ((r + s)(u + v) + sv) y + (rum + sv), since y^2 = y + m. KMIP 2.1 §13.1
/// prints the constant term as ru + svm, which is not that field (y · y would be y + 1); its
/// inverse formula holds only for this product, which the tests check.
fn mul16(a: u16, b: u16) -> u16 {
    let [r, s] = a.to_be_bytes();
    let [u, v] = b.to_be_bytes();
    let sv = mul(s, v);
    let high = mul(r ^ s, u ^ v) ^ sv;
    let low = mul(mul(r, u), M) ^ sv;
    u16::from_be_bytes([high, low])
}

/// (uy + v)^-1 = u d^-1 y + (u + v) d^-1, d = (u + v) v + m u^2 — KMIP 2.1 §13.1.
fn inverse16(a: u16) -> u16 {
    let [u, v] = a.to_be_bytes();
    let d = mul(u ^ v, v) ^ mul(M, mul(u, u));
    let d_inv = inverse(d);
    u16::from_be_bytes([mul(u, d_inv), mul(u ^ v, d_inv)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares_of(parts: &[Zeroizing<Vec<u8>>], ids: &[u8]) -> Vec<(u8, Vec<u8>)> {
        ids.iter()
            .map(|&i| (i, parts[usize::from(i) - 1].to_vec()))
            .collect()
    }

    fn joined(method: Method, shares: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let refs: Vec<(u8, &[u8])> = shares.iter().map(|(i, s)| (*i, s.as_slice())).collect();
        join(method, &refs).to_vec()
    }

    #[test]
    fn gf256_is_the_field_modulo_285() {
        // x^7 · x = x^8 = x^4 + x^3 + x^2 + 1.
        assert_eq!(mul(0x80, 0x02), 0x1d);
        assert_eq!(mul(0xff, 0x02), 0xe3);
        // 2 generates the multiplicative group: its powers cover all 255 non-zero elements.
        let mut seen = std::collections::HashSet::new();
        let mut p = 1u8;
        for _ in 0..255 {
            seen.insert(p);
            p = mul(p, 2);
        }
        assert_eq!((seen.len(), p), (255, 1));
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "{a}");
        }
    }

    #[test]
    fn gf65536_multiplication_and_inverse_agree() {
        // y^2 = y + m, so y · y = (1, m).
        assert_eq!(mul16(0x0100, 0x0100), 0x0100 | u16::from(M));
        // Every non-zero element has the inverse §13.1 gives: y^2 + y + m is irreducible.
        for a in 1..=u16::MAX {
            assert_eq!(mul16(a, inverse16(a)), 1, "{a:#06x}");
        }
        // Spot checks of the field laws on elements with both bytes set.
        let (a, b, c) = (0x1234, 0xabcd, 0x0f0e);
        assert_eq!(mul16(a, b), mul16(b, a));
        assert_eq!(mul16(mul16(a, b), c), mul16(a, mul16(b, c)));
        assert_eq!(mul16(a, b ^ c), mul16(a, b) ^ mul16(a, c));
    }

    #[test]
    fn a_known_two_of_three_split() {
        // f(x) = 0x2a + 0x07·x: f(1) = 0x2d, f(2) = 0x2a ^ 0x0e = 0x24, f(3) = 0x2a ^ 0x09 = 0x23.
        let parts = split(Method::Gf256, &[0x2a], 3, 2, &[0x07]);
        let bytes: Vec<u8> = parts.iter().map(|p| p[0]).collect();
        assert_eq!(bytes, vec![0x2d, 0x24, 0x23]);
    }

    proptest! {
        #[test]
        fn any_threshold_subset_of_a_shamir_split_joins(
            pieces in proptest::collection::vec(any::<u16>(), 1..24),
            wide in any::<bool>(),
            parts in 2u8..8,
            threshold_seed in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let method = if wide { Method::Gf65536 } else { Method::Gf256 };
            let secret: Vec<u8> = pieces.iter().flat_map(|p| p.to_be_bytes()).collect();
            let threshold = 1 + threshold_seed % parts;
            let random: Vec<u8> = (0..random_len(method, secret.len(), parts, threshold))
                .map(|i| (seed.wrapping_mul(i as u64 + 7) >> 13) as u8)
                .collect();
            let split = split(method, &secret, parts, threshold, &random);
            prop_assert_eq!(split.len(), usize::from(parts));
            // Every window of `threshold` consecutive identifiers (cyclically) and all parts.
            for start in 1..=parts {
                let ids: Vec<u8> = (0..threshold).map(|k| (start - 1 + k) % parts + 1).collect();
                prop_assert_eq!(joined(method, &shares_of(&split, &ids)), secret.clone());
            }
            let all: Vec<u8> = (1..=parts).collect();
            prop_assert_eq!(joined(method, &shares_of(&split, &all)), secret.clone());
            if threshold > 1 {
                // One part short of the threshold interpolates to another value unless the
                // top coefficient is zero.
                let ids: Vec<u8> = (1..threshold).collect();
                let top = &random[(usize::from(threshold) - 2) * secret.len()..];
                if top.iter().any(|b| *b != 0) {
                    prop_assert_ne!(joined(method, &shares_of(&split, &ids)), secret.clone());
                }
            }
        }

        #[test]
        fn fewer_than_threshold_shamir_parts_fit_every_secret(
            secret in any::<u8>(),
            other in any::<u8>(),
            random in proptest::collection::vec(any::<u8>(), 2),
        ) {
            // 2 of a 3-threshold split: for any other secret there is a polynomial through the
            // same two points, so the parts say nothing about the secret (perfect secrecy).
            let split = split(Method::Gf256, &[secret], 3, 3, &random);
            let known = [(1u8, split[0][0]), (2u8, split[1][0])];
            let mut fits = false;
            for third in 0..=255u8 {
                let shares = [(1u8, vec![known[0].1]), (2u8, vec![known[1].1]), (3u8, vec![third])];
                if joined(Method::Gf256, &shares) == vec![other] {
                    fits = true;
                }
            }
            prop_assert!(fits);
            let two = [(1u8, vec![known[0].1]), (2u8, vec![known[1].1])];
            if random[1] != 0 {
                prop_assert_ne!(joined(Method::Gf256, &two), vec![secret]);
            }
        }

        #[test]
        fn xor_needs_every_part(
            secret in proptest::collection::vec(any::<u8>(), 1..48),
            parts in 2u8..6,
            fill in any::<u8>(),
        ) {
            let random: Vec<u8> = (0..random_len(Method::Xor, secret.len(), parts, parts))
                .map(|i| fill ^ (i as u8).wrapping_mul(31) ^ 0x5c)
                .collect();
            let split = split(Method::Xor, &secret, parts, parts, &random);
            let all: Vec<u8> = (1..=parts).collect();
            prop_assert_eq!(joined(Method::Xor, &shares_of(&split, &all)), secret.clone());
            let missing_last: Vec<u8> = (1..parts).collect();
            // Without the last part the join is the XOR of the random parts, not the secret,
            // unless the last part happens to be all zeros.
            if split[usize::from(parts) - 1].iter().any(|b| *b != 0) {
                prop_assert_ne!(joined(Method::Xor, &shares_of(&split, &missing_last)), secret);
            }
        }
    }
}
