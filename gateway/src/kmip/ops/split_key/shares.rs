//! The splitting arithmetic of Create Split Key and Join Split Key, pure and over bytes:
//! XOR (every part needed) and Shamir's polynomial sharing over GF(2^8), byte by byte, with the
//! AES field polynomial x^8 + x^4 + x^3 + x + 1 (KMIP 2.1 §13.1). The caller supplies the
//! randomness, so the functions are deterministic and testable.

use zeroize::Zeroizing;

/// The methods this server computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Xor,
    Gf256,
}

/// How many random bytes [`split`] takes for a secret of `len` bytes.
pub(crate) fn random_len(method: Method, len: usize, parts: u8, threshold: u8) -> usize {
    match method {
        Method::Xor => len * usize::from(parts.saturating_sub(1)),
        Method::Gf256 => len * usize::from(threshold.saturating_sub(1)),
    }
}

/// Splits `secret` into `parts` shares, the share of Key Part Identifier `i` at index `i - 1`.
/// The caller checks 1 ≤ threshold ≤ parts (threshold = parts for XOR) and passes exactly
/// [`random_len`] bytes of `random`.
pub(crate) fn split(
    method: Method,
    secret: &[u8],
    parts: u8,
    threshold: u8,
    random: &[u8],
) -> Vec<Zeroizing<Vec<u8>>> {
    let len = secret.len();
    match method {
        Method::Xor => {
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
            shares
        }
        Method::Gf256 => (1..=parts)
            .map(|x| {
                Zeroizing::new(
                    (0..len)
                        .map(|j| {
                            // Horner's rule from the highest coefficient down to the secret.
                            let mut y = 0u8;
                            for k in (1..usize::from(threshold)).rev() {
                                y = mul(y, x) ^ random[(k - 1) * len + j];
                            }
                            mul(y, x) ^ secret[j]
                        })
                        .collect(),
                )
            })
            .collect(),
    }
}

/// Joins shares given as (Key Part Identifier, bytes). The caller checks that the identifiers
/// are distinct and non-zero, the lengths equal, and that there are enough of them.
pub(crate) fn join(method: Method, shares: &[(u8, &[u8])]) -> Zeroizing<Vec<u8>> {
    let len = shares.first().map_or(0, |s| s.1.len());
    let mut secret = Zeroizing::new(vec![0u8; len]);
    match method {
        Method::Xor => {
            for (_, s) in shares {
                xor_into(&mut secret, s);
            }
        }
        Method::Gf256 => {
            for (i, (xi, yi)) in shares.iter().enumerate() {
                // The Lagrange basis polynomial of share i, at 0: Π x_j / (x_j - x_i).
                let mut basis = 1u8;
                for (j, (xj, _)) in shares.iter().enumerate() {
                    if i != j {
                        basis = mul(basis, mul(*xj, inverse(xj ^ xi)));
                    }
                }
                for (out, y) in secret.iter_mut().zip(yi.iter()) {
                    *out ^= mul(*y, basis);
                }
            }
        }
    }
    secret
}

fn xor_into(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// Multiplication in GF(2^8) without branches on the operands (they are key bytes).
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        p ^= a & (b & 1).wrapping_neg();
        let carry = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    p
}

/// The multiplicative inverse, a^254 (0 for 0).
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
    fn field_arithmetic_matches_the_aes_field() {
        // FIPS 197 §4.2: {57} • {83} = {c1}, and {53} • {ca} = {01}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x53, 0xca), 0x01);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "{a}");
        }
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
            secret in proptest::collection::vec(any::<u8>(), 1..48),
            parts in 2u8..8,
            threshold_seed in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let threshold = 1 + threshold_seed % parts;
            let random: Vec<u8> = (0..random_len(Method::Gf256, secret.len(), parts, threshold))
                .map(|i| (seed.wrapping_mul(i as u64 + 7) >> 13) as u8)
                .collect();
            let split = split(Method::Gf256, &secret, parts, threshold, &random);
            prop_assert_eq!(split.len(), usize::from(parts));
            // Every window of `threshold` consecutive identifiers (cyclically) and all parts.
            for start in 1..=parts {
                let ids: Vec<u8> = (0..threshold).map(|k| (start - 1 + k) % parts + 1).collect();
                prop_assert_eq!(joined(Method::Gf256, &shares_of(&split, &ids)), secret.clone());
            }
            let all: Vec<u8> = (1..=parts).collect();
            prop_assert_eq!(joined(Method::Gf256, &shares_of(&split, &all)), secret.clone());
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
