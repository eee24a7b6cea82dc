//! The one Common Name rule. The gateway maps a client certificate's subject Common Name to a
//! user, so the CA here refuses to issue, and the listener refuses to accept, a subject that
//! does not carry exactly one plain, printable name. Pure: no I/O, no clock.

use x509_parser::x509::X509Name;

/// RFC 5280 `ub-common-name`: the longest Common Name X.509 allows.
pub const MAX_COMMON_NAME_LEN: usize = 64;

/// Why a subject's Common Name cannot name a client (or a CA).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommonNameError {
    #[error("the subject has no Common Name")]
    Missing,
    #[error("the subject has {0} Common Names where exactly one is required")]
    Multiple(usize),
    /// Not one of the string types X.509 names use for text, or not valid UTF-8.
    #[error("the Common Name is not a readable string")]
    Unreadable,
    /// Empty or only whitespace.
    #[error("the Common Name is empty")]
    Empty,
    #[error("the Common Name is longer than {MAX_COMMON_NAME_LEN} bytes")]
    TooLong,
    #[error("the Common Name contains control characters")]
    ControlCharacters,
    /// Carries the name: by the time it is checked for `*` it is short and printable.
    #[error("the Common Name '{0}' is a wildcard: a client identity must name one client")]
    Wildcard(String),
    #[error("the Common Name has leading or trailing whitespace")]
    SurroundingWhitespace,
}

/// Checks one Common Name: not blank, at most [`MAX_COMMON_NAME_LEN`] bytes, no control
/// characters, no `*` anywhere, no surrounding whitespace. The order decides which reason a
/// name with several faults gets.
pub fn check_common_name(common_name: &str) -> Result<(), CommonNameError> {
    if common_name.trim().is_empty() {
        return Err(CommonNameError::Empty);
    }
    if common_name.len() > MAX_COMMON_NAME_LEN {
        return Err(CommonNameError::TooLong);
    }
    if common_name.chars().any(char::is_control) {
        return Err(CommonNameError::ControlCharacters);
    }
    if common_name.contains('*') {
        return Err(CommonNameError::Wildcard(common_name.to_owned()));
    }
    if common_name.trim() != common_name {
        return Err(CommonNameError::SurroundingWhitespace);
    }
    Ok(())
}

/// The Common Name of `subject` (a certificate's or a CSR's): exactly one, readable, and
/// passing [`check_common_name`].
pub fn subject_common_name<'a>(subject: &X509Name<'a>) -> Result<&'a str, CommonNameError> {
    let mut names = subject.iter_common_name();
    let only = match (names.next(), names.next()) {
        (None, _) => return Err(CommonNameError::Missing),
        (Some(only), None) => only,
        (Some(_), Some(_)) => return Err(CommonNameError::Multiple(2 + names.count())),
    };
    let common_name = only.as_str().map_err(|_| CommonNameError::Unreadable)?;
    check_common_name(common_name)?;
    Ok(common_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;

    const UTF8_STRING: u8 = 0x0c;
    const PRINTABLE_STRING: u8 = 0x13;
    const BMP_STRING: u8 = 0x1e;
    /// id-at-commonName (2.5.4.3) and id-at-organizationName (2.5.4.10).
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 128, "short-form lengths only");
        let mut out = vec![tag, content.len() as u8];
        out.extend_from_slice(content);
        out
    }

    /// The DER of a Name with one attribute per (type, string tag, value), each in its own RDN.
    fn name_der(attributes: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut rdns = Vec::new();
        for (oid, string_tag, value) in attributes {
            let mut atv = tlv(0x06, oid);
            atv.extend(tlv(*string_tag, value));
            rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
        }
        tlv(0x30, &rdns)
    }

    fn common_name_of(attributes: &[(&[u8], u8, &[u8])]) -> Result<String, CommonNameError> {
        let der = name_der(attributes);
        let (rest, name) = X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        subject_common_name(&name).map(str::to_owned)
    }

    #[test]
    fn plain_names_pass() {
        for name in [
            "purefa",
            "vCenter 7",
            "array-01.example.net",
            "Ünïcode",
            &"a".repeat(64),
        ] {
            check_common_name(name).unwrap();
        }
        assert_eq!(
            common_name_of(&[(O, UTF8_STRING, b"Pure"), (CN, PRINTABLE_STRING, b"purefa")]),
            Ok("purefa".into())
        );
    }

    #[test]
    fn exactly_one_common_name_is_required() {
        assert_eq!(
            common_name_of(&[(O, UTF8_STRING, b"Pure")]),
            Err(CommonNameError::Missing)
        );
        assert_eq!(
            common_name_of(&[(CN, UTF8_STRING, b"purefa"), (CN, UTF8_STRING, b"admin")]),
            Err(CommonNameError::Multiple(2))
        );
        // The same name twice is still two: which one names the client would be a guess.
        let three = [(CN, UTF8_STRING, &b"purefa"[..]); 3];
        assert_eq!(common_name_of(&three), Err(CommonNameError::Multiple(3)));
    }

    #[test]
    fn unreadable_common_names_are_refused() {
        assert_eq!(
            common_name_of(&[(CN, UTF8_STRING, b"pure\xfffa")]),
            Err(CommonNameError::Unreadable)
        );
        // BMPString (UTF-16) is not read as text: its bytes would spell another name.
        assert_eq!(
            common_name_of(&[(CN, BMP_STRING, b"\0p\0u\0r\0e")]),
            Err(CommonNameError::Unreadable)
        );
    }

    #[test]
    fn empty_long_control_wildcard_and_padded_names_are_refused() {
        let cases: &[(&str, CommonNameError)] = &[
            ("", CommonNameError::Empty),
            ("   ", CommonNameError::Empty),
            (&"a".repeat(65), CommonNameError::TooLong),
            ("pure\nfa", CommonNameError::ControlCharacters),
            ("purefa\0", CommonNameError::ControlCharacters),
            ("pure\u{7f}fa", CommonNameError::ControlCharacters),
            ("*", CommonNameError::Wildcard("*".into())),
            (
                "*.arrays.example",
                CommonNameError::Wildcard("*.arrays.example".into()),
            ),
            ("pure*", CommonNameError::Wildcard("pure*".into())),
            (" purefa", CommonNameError::SurroundingWhitespace),
            ("purefa\u{a0}", CommonNameError::SurroundingWhitespace),
        ];
        for (name, want) in cases {
            assert_eq!(check_common_name(name).as_ref(), Err(want), "{name:?}");
        }
        // A subject's only Common Name gets the same verdict.
        assert_eq!(
            common_name_of(&[(CN, UTF8_STRING, b"*.example")]),
            Err(CommonNameError::Wildcard("*.example".into()))
        );
        assert_eq!(
            common_name_of(&[(CN, UTF8_STRING, b"")]),
            Err(CommonNameError::Empty)
        );
    }
}
