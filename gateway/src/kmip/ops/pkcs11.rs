//! The KMIP 2.1 PKCS#11 operation (§6.1.37): the gateway answers, as a PKCS#11 library of its
//! own, the functions it can answer truthfully without exposing a token: C_Initialize,
//! C_GetInfo and C_Finalize. Every other function is PKCS#11 Invalid Function.

use bytes::Bytes;
use kmip_wire::model::{Pkcs11Request, Pkcs11Response};
use kmip_wire::ttlv::Value;

use super::error::OpError;

/// PKCS#11 Function codes (KMIP 2.1 §11.40, the PKCS#11 function list order).
const C_INITIALIZE: u32 = 0x01;
const C_FINALIZE: u32 = 0x02;
const C_GET_INFO: u32 = 0x03;

/// CKR_OK.
const CKR_OK: u32 = 0;

/// The interface the server speaks: absent means the default one (the spec's V3.0 interface),
/// and PKCS#11 3.0 names that interface "PKCS 11".
const DEFAULT_INTERFACE: &str = "PKCS 11";

/// Length of the correlation value C_Initialize hands out (random, 128 bits).
const CORRELATION_LEN: usize = 16;

/// The Cryptoki version CK_INFO reports: the PKCS#11 profile encodes CK_INFO as in v2.40.
const CRYPTOKI_VERSION: [u8; 2] = [2, 40];
/// CK_INFO's blank-padded text fields are 32 bytes (PKCS#11 v2.40 §3.1).
const CK_TEXT_LEN: usize = 32;
const MANUFACTURER: &str = "kmip-gateway";
const LIBRARY_DESCRIPTION: &str = "KMIP gateway PKCS#11 operation";
/// CK_FLAGS is a CK_ULONG, written as 8 bytes (the profile's encoding; the vector's bytes).
const CK_ULONG_LEN: usize = 8;

/// Runs one PKCS#11 function call.
pub(super) fn pkcs11(r: Pkcs11Request) -> Result<Pkcs11Response, OpError> {
    if let Some(interface) = r.interface.as_deref().filter(|i| *i != DEFAULT_INTERFACE) {
        return Err(OpError::Pkcs11InvalidInterface(format!(
            "interface {interface:?} is not offered: omit it or name {DEFAULT_INTERFACE:?}"
        )));
    }
    let answer = |output_parameters, correlation_value| Pkcs11Response {
        interface: r.interface.clone(),
        function: r.function.clone(),
        output_parameters,
        correlation_value,
        return_code: CKR_OK,
    };
    match r.function {
        Value::Enumeration(C_INITIALIZE) => Ok(answer(None, Some(correlation_value()?))),
        Value::Enumeration(C_GET_INFO) => Ok(answer(Some(ck_info()), None)),
        Value::Enumeration(C_FINALIZE) => Ok(answer(None, None)),
        other => Err(OpError::Pkcs11InvalidFunction(format!(
            "function {other:?} is not offered: this server answers C_Initialize, C_GetInfo \
             and C_Finalize only"
        ))),
    }
}

fn correlation_value() -> Result<Bytes, OpError> {
    let mut value = [0u8; CORRELATION_LEN];
    aws_lc_rs::rand::fill(&mut value).map_err(|_| {
        OpError::Backend(kmip_backends::BackendError::Crypto(
            "the random generator failed".into(),
        ))
    })?;
    Ok(Bytes::copy_from_slice(&value))
}

/// The gateway's CK_INFO, packed: cryptokiVersion, manufacturerID, flags (0),
/// libraryDescription, libraryVersion (the gateway's major.minor).
pub(super) fn ck_info() -> Bytes {
    let mut out = Vec::with_capacity(2 + CK_TEXT_LEN + CK_ULONG_LEN + CK_TEXT_LEN + 2);
    out.extend_from_slice(&CRYPTOKI_VERSION);
    out.extend_from_slice(&blank_padded(MANUFACTURER));
    out.extend_from_slice(&[0; CK_ULONG_LEN]);
    out.extend_from_slice(&blank_padded(LIBRARY_DESCRIPTION));
    out.push(version_part(env!("CARGO_PKG_VERSION_MAJOR")));
    out.push(version_part(env!("CARGO_PKG_VERSION_MINOR")));
    Bytes::from(out)
}

fn blank_padded(text: &str) -> [u8; CK_TEXT_LEN] {
    let mut field = [b' '; CK_TEXT_LEN];
    let len = text.len().min(CK_TEXT_LEN);
    field[..len].copy_from_slice(&text.as_bytes()[..len]);
    field
}

/// A CK_VERSION byte; a part above 255 saturates (CK_BYTE cannot hold it).
fn version_part(part: &str) -> u8 {
    part.parse::<u8>().unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: Value, interface: Option<&str>) -> Result<Pkcs11Response, OpError> {
        pkcs11(Pkcs11Request {
            interface: interface.map(str::to_owned),
            function,
            correlation_value: None,
            input_parameters: None,
        })
    }

    #[test]
    fn initialize_hands_out_a_fresh_correlation_value() {
        let a = call(Value::Enumeration(C_INITIALIZE), None).unwrap();
        let b = call(Value::Enumeration(C_INITIALIZE), None).unwrap();
        assert_eq!(a.return_code, CKR_OK);
        let (a, b) = (a.correlation_value.unwrap(), b.correlation_value.unwrap());
        assert_eq!(a.len(), CORRELATION_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn get_info_is_a_packed_ck_info_of_the_gateway() {
        let r = call(Value::Enumeration(C_GET_INFO), Some(DEFAULT_INTERFACE)).unwrap();
        let info = r.output_parameters.unwrap();
        assert_eq!(info.len(), 76);
        assert_eq!(info[..2], [2, 40]);
        assert_eq!(&info[2..34], b"kmip-gateway                    ");
        assert_eq!(info[34..42], [0; 8]);
        assert!(info[42..74].starts_with(b"KMIP gateway"));
        assert_eq!(r.interface.as_deref(), Some(DEFAULT_INTERFACE));
        let finalize = call(Value::Enumeration(C_FINALIZE), None).unwrap();
        assert_eq!(
            (finalize.output_parameters, finalize.return_code),
            (None, CKR_OK)
        );
    }

    #[test]
    fn other_functions_and_interfaces_are_refused() {
        // C_GetSlotList, and a vendor function.
        for f in [
            Value::Enumeration(0x05),
            Value::Integer(0x8000_0001_u32 as i32),
        ] {
            assert!(matches!(
                call(f, None),
                Err(OpError::Pkcs11InvalidFunction(_))
            ));
        }
        assert!(matches!(
            call(Value::Enumeration(C_GET_INFO), Some("Vendor X")),
            Err(OpError::Pkcs11InvalidInterface(_))
        ));
    }
}
