//! AES Key Wrap (NIST SP 800-38F KW, RFC 3394) and Key Wrap with Padding (KWP, RFC 5649) with
//! key bytes the gateway holds: how Get wraps a key with another (KMIP Key Wrapping
//! Specification, Block Cipher Mode NIST Key Wrap / AES Key Wrap Padding).

use aws_lc_rs::key_wrap::{AesKek, KeyWrap, KeyWrapPadded, AES_128, AES_256};
use zeroize::Zeroizing;

use crate::{BackendError, CipherOutput, CipherRequest};

/// KW adds one 8-byte integrity block; KWP adds it and pads to a multiple of 8 bytes.
const WRAP_OVERHEAD: usize = 8;
/// KW wraps whole 64-bit semiblocks, at least two (SP 800-38F §6.2).
const KW_SEMIBLOCK: usize = 8;

fn kek(key: &[u8]) -> Result<AesKek, BackendError> {
    let cipher = match key.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => {
            return Err(BackendError::Unsupported(format!(
                "AES key wrap with a {}-bit key: only 128- and 256-bit wrapping keys are supported",
                n * 8
            )))
        }
    };
    AesKek::new(cipher, key).map_err(|_| BackendError::Crypto("AES key wrap key setup".into()))
}

fn no_iv(req: &CipherRequest) -> Result<(), BackendError> {
    if req.iv.is_some() || req.aad.is_some() || req.tag.is_some() {
        return Err(BackendError::InvalidInput(
            "AES key wrap takes no IV, additional data or tag".into(),
        ));
    }
    Ok(())
}

/// Wraps `req.data` with the AES key `key`; `pad` selects KWP (any length) over KW.
pub(crate) fn wrap(
    key: &[u8],
    req: &CipherRequest,
    pad: bool,
) -> Result<CipherOutput, BackendError> {
    no_iv(req)?;
    let data = &req.data[..];
    if !pad && (data.len() < 2 * KW_SEMIBLOCK || !data.len().is_multiple_of(KW_SEMIBLOCK)) {
        return Err(BackendError::InvalidInput(format!(
            "AES key wrap without padding needs a multiple of {KW_SEMIBLOCK} bytes, at least {}; \
             {} given (use AES Key Wrap Padding)",
            2 * KW_SEMIBLOCK,
            data.len()
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; data.len() + 2 * WRAP_OVERHEAD]);
    let failed = |_| BackendError::Crypto("AES key wrap".into());
    let len = if pad {
        kek(key)?
            .wrap_with_padding(data, &mut out)
            .map_err(failed)?
            .len()
    } else {
        kek(key)?.wrap(data, &mut out).map_err(failed)?.len()
    };
    out.truncate(len);
    Ok(CipherOutput {
        data: out,
        generated_iv: None,
        tag: None,
    })
}

/// Unwraps `req.data`; a wrong key or altered data fails the integrity check.
pub(crate) fn unwrap(
    key: &[u8],
    req: &CipherRequest,
    pad: bool,
) -> Result<CipherOutput, BackendError> {
    no_iv(req)?;
    let data = &req.data[..];
    let mut out = Zeroizing::new(vec![0u8; data.len()]);
    let failed = |_| BackendError::InvalidInput("AES key unwrap: integrity check failed".into());
    let len = if pad {
        kek(key)?
            .unwrap_with_padding(data, &mut out)
            .map_err(failed)?
            .len()
    } else {
        kek(key)?.unwrap(data, &mut out).map_err(failed)?.len()
    };
    out.truncate(len);
    Ok(CipherOutput {
        data: out,
        generated_iv: None,
        tag: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CipherMode;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn req(pad: bool, data: &[u8]) -> CipherRequest {
        CipherRequest {
            mode: CipherMode::AesKeyWrap { pad },
            data: Zeroizing::new(data.to_vec()),
            iv: None,
            aad: None,
            tag: None,
        }
    }

    /// RFC 3394 §4.6: 256 bits of key data with a 256-bit KEK.
    #[test]
    fn kw_matches_rfc3394() {
        let kek = h("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let plain = h("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let wrapped = wrap(&kek, &req(false, &plain), false).unwrap();
        assert_eq!(
            *wrapped.data,
            h("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
        );
        let back = unwrap(&kek, &req(false, &wrapped.data), false).unwrap();
        assert_eq!(*back.data, plain);
    }

    /// RFC 5649 §6: 20 bytes of key data with a 192-bit KEK is not supported here, so the
    /// padded mode is checked by round trip and by tamper detection with a 128-bit KEK.
    #[test]
    fn kwp_round_trips_and_detects_tampering() {
        let kek = [7u8; 16];
        let plain = [1u8; 20];
        let mut wrapped = wrap(&kek, &req(true, &plain), true).unwrap();
        assert_eq!(wrapped.data.len(), 32);
        let back = unwrap(&kek, &req(true, &wrapped.data), true).unwrap();
        assert_eq!(*back.data, plain);
        wrapped.data[3] ^= 1;
        assert!(unwrap(&kek, &req(true, &wrapped.data), true).is_err());
    }

    #[test]
    fn refuses_what_kw_cannot_wrap() {
        assert!(wrap(&[0u8; 16], &req(false, &[0u8; 20]), false).is_err());
        assert!(matches!(
            wrap(&[0u8; 24], &req(false, &[0u8; 16]), false),
            Err(BackendError::Unsupported(_))
        ));
        let mut with_iv = req(false, &[0u8; 16]);
        with_iv.iv = Some(vec![0; 8]);
        assert!(wrap(&[0u8; 16], &with_iv, false).is_err());
    }
}
