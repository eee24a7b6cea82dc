//! The Quantum Safe attribute (KMIP 2.x): a client that sets it requires the new key to resist a
//! quantum adversary, and a key that would not is refused rather than stored with a false flag.

use super::OpError;
use kmip_backends::KeyAlgorithm;
use kmip_wire::model::Attribute;
use kmip_wire::spec::tags;

/// The least symmetric key length that is quantum safe: Grover's search halves a symmetric key's
/// strength, so 256 bits keep the 128-bit security level.
const MIN_QUANTUM_SAFE_SYMMETRIC_BITS: i32 = 256;

/// Refuses a key of `algorithm` and `bits` when `attrs` ask for a Quantum Safe object and it is
/// not one.
pub(super) fn check_quantum_safe(
    attrs: &[Attribute],
    algorithm: KeyAlgorithm,
    bits: i32,
) -> Result<(), OpError> {
    let required = attrs
        .iter()
        .find(|a| a.is(tags::QUANTUM_SAFE))
        .and_then(Attribute::as_bool)
        == Some(true);
    if required && bits < MIN_QUANTUM_SAFE_SYMMETRIC_BITS {
        return Err(OpError::NotQuantumSafe(format!(
            "a {algorithm:?} key of {bits} bits is not quantum safe: ask for \
             {MIN_QUANTUM_SAFE_SYMMETRIC_BITS} bits or more, or leave Quantum Safe unset"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::ttlv::Value;

    #[test]
    fn only_a_required_quantum_safe_key_below_256_bits_is_refused() {
        let qs = |b| vec![Attribute::new(tags::QUANTUM_SAFE, Value::Boolean(b))];
        assert!(matches!(
            check_quantum_safe(&qs(true), KeyAlgorithm::Aes, 128),
            Err(OpError::NotQuantumSafe(_))
        ));
        assert!(check_quantum_safe(&qs(true), KeyAlgorithm::Aes, 256).is_ok());
        assert!(check_quantum_safe(&qs(false), KeyAlgorithm::Aes, 128).is_ok());
        assert!(check_quantum_safe(&[], KeyAlgorithm::Aes, 128).is_ok());
    }
}
