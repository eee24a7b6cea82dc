//! The codec round trip (XML → TTLV → decode → XML) on every OASIS test vector file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use kmip_wire::compare::codec_roundtrip_document;

/// The codec round trip of one vector file (the wire crate reads no files); errors name it.
fn codec_roundtrip_file(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    codec_roundtrip_document(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn vectors_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kmip-vectors");
    assert!(
        dir.is_dir(),
        "the OASIS KMIP test vectors are missing: expected them in {} (shared/kmip-vectors beside \
         the repository)",
        dir.display()
    );
    dir
}

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            xml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "xml") {
            out.push(p);
        }
    }
}

#[test]
fn every_vector_file_round_trips_through_the_codec() {
    let mut files = Vec::new();
    xml_files(&vectors_dir(), &mut files);
    assert!(
        files.len() >= 150,
        "only {} vector files found",
        files.len()
    );
    let mut messages = 0;
    let mut failures = Vec::new();
    for f in &files {
        match codec_roundtrip_file(f) {
            Ok(n) => {
                assert!(n >= 2, "{}: no messages", f.display());
                messages += n;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(messages > 2000, "only {messages} messages");
}

#[test]
fn roundtrip_reports_the_message_and_path_of_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.xml");
    let msg = r#"<RequestMessage>
  <RequestHeader>
    <ProtocolVersion>
      <ProtocolVersionMajor type="Integer" value="1"/>
      <ProtocolVersionMinor type="Integer" value="4"/>
    </ProtocolVersion>
    <BatchCount type="Integer" value="1"/>
  </RequestHeader>
  <BatchItem>
    <Operation type="Enumeration" value="OPERATION"/>
    <RequestPayload>
      <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
    </RequestPayload>
  </BatchItem>
</RequestMessage>"#;
    let doc = |op: &str| {
        format!(
            "<KMIP>\n{}\n{}\n</KMIP>\n",
            msg.replace("OPERATION", "Get"),
            msg.replace("OPERATION", op)
        )
    };
    std::fs::write(&good, doc("Destroy")).unwrap();
    assert_eq!(codec_roundtrip_file(&good), Ok(2));
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, doc("Explode")).unwrap();
    let e = codec_roundtrip_file(&bad).unwrap_err();
    assert!(e.contains("message 1"), "{e}");
    assert!(e.contains("/RequestMessage/BatchItem/Operation"), "{e}");
    assert!(codec_roundtrip_file(&dir.path().join("missing.xml")).is_err());
}

/// Every attribute a client sets in the OASIS vectors (Create, Create Key Pair, Register, Re-key,
/// Add, Set and Modify Attribute) names an attribute: the server's refusal of things that are not
/// attributes (`AttributeName::is_attribute`) turns away nothing a conformant client sends.
#[test]
fn every_attribute_clients_set_in_the_vectors_is_an_attribute() {
    use kmip_wire::model::{AttributeName, RequestMessage, RequestPayload};
    use kmip_wire::xml::{parse_document, Bindings};

    let mut files = Vec::new();
    xml_files(&vectors_dir(), &mut files);
    let (mut checked, mut refused) = (0, Vec::new());
    for f in &files {
        for node in parse_document(&std::fs::read_to_string(f).unwrap()).unwrap() {
            let b = Bindings::dummies(&node);
            let Ok(request) = RequestMessage::from_ttlv(&node.to_ttlv(&b).unwrap()) else {
                continue;
            };
            for item in request.items {
                let names: Vec<AttributeName> = match item.payload {
                    Ok(RequestPayload::Create(r)) => r.attributes,
                    Ok(RequestPayload::Register(r)) => r.attributes,
                    Ok(RequestPayload::ReKey(r)) => r.attributes,
                    Ok(RequestPayload::CreateKeyPair(r)) => r
                        .common_attributes
                        .into_iter()
                        .chain(r.private_key_attributes)
                        .chain(r.public_key_attributes)
                        .collect(),
                    Ok(RequestPayload::AddAttribute(r) | RequestPayload::SetAttribute(r)) => {
                        vec![r.attribute]
                    }
                    Ok(RequestPayload::ModifyAttribute(r)) => vec![r.attribute],
                    _ => Vec::new(),
                }
                .into_iter()
                .map(|a| a.name)
                .collect();
                for name in names {
                    checked += 1;
                    if !name.is_attribute() {
                        refused.push(format!("{}: {name:?}", f.display()));
                    }
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} attributes checked");
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}
