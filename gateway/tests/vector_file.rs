//! Reading OASIS vector files for the conformance runner: `kmip-wire` parses text and reads no
//! files, so the checks on the file itself (missing, too large) are the runner's.

use kmip_gateway::client::conformance::read_vector_file;
use kmip_wire::xml::{XmlError, MAX_XML_SIZE};

#[test]
fn a_missing_or_oversized_vector_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.xml");
    let e = read_vector_file(&missing).unwrap_err();
    assert!(
        matches!(e, XmlError::Io { ref file, .. } if file.ends_with("missing.xml")),
        "{e}"
    );
    let big = dir.path().join("big.xml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_XML_SIZE as u64 + 1)
        .unwrap();
    let e = read_vector_file(&big).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
    let ok = dir.path().join("ok.xml");
    std::fs::write(&ok, "<KMIP/>").unwrap();
    assert_eq!(read_vector_file(&ok).unwrap(), "<KMIP/>");
}
