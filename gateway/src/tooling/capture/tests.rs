//! Tests of the wire capture: redaction, rendering, replay placeholders and the files.

use super::render::{file_name_part, xml_comment, MAX_USER_IN_FILE_NAME};
use super::*;
use kmip_wire::model::{
    Attribute, CreateRequest, CryptographicAlgorithm, ObjectType, ProtocolVersion,
    RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
};
use kmip_wire::names::tag_name;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{ItemType, Tag, Ttlv, Value};
use kmip_wire::xml::to_xml_string;
use std::os::unix::fs::PermissionsExt;

/// Distinctive secrets: no run of 4 of their bytes occurs by chance in a rendering.
const KEY: [u8; 32] = [
    0xA7, 0x13, 0xC9, 0x5E, 0x0B, 0xF2, 0x6D, 0x88, 0x31, 0xE4, 0x7A, 0x9C, 0x02, 0xBD, 0x56, 0xEF,
    0x4A, 0x91, 0x2C, 0xD3, 0x68, 0x07, 0xFB, 0x15, 0xB0, 0x4E, 0x8F, 0x23, 0xDA, 0x79, 0xC6, 0x5B,
];
const PASSWORD: &str = "Zq9xWv7KpL3mT8sN";

fn secret_bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ 0x5A)
        .collect()
}

fn bs(tag: Tag, b: &[u8]) -> Ttlv {
    Ttlv::new(tag, Value::ByteString(Bytes::copy_from_slice(b)))
}

/// A response-shaped tree carrying every kind of secret the gateway handles.
fn secret_tree() -> (Ttlv, Vec<Vec<u8>>) {
    let iv = secret_bytes(1, 12);
    let data = secret_bytes(2, 48);
    let tag = secret_bytes(3, 16);
    let modulus = secret_bytes(4, 256);
    let exponent = secret_bytes(5, 256);
    let opaque = secret_bytes(6, 20);
    let vendor = secret_bytes(7, 24);
    let cert = secret_bytes(8, 40);
    let tree = Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![
            Ttlv::structure(
                tags::CREDENTIAL,
                vec![Ttlv::structure(
                    tags::CREDENTIAL_VALUE,
                    vec![
                        Ttlv::new(tags::USERNAME, Value::TextString("purefa".into())),
                        Ttlv::new(tags::PASSWORD, Value::TextString(PASSWORD.into())),
                    ],
                )],
            ),
            Ttlv::structure(
                tags::KEY_BLOCK,
                vec![
                    Ttlv::new(tags::KEY_FORMAT_TYPE, Value::Enumeration(1)),
                    Ttlv::structure(tags::KEY_VALUE, vec![bs(tags::KEY_MATERIAL, &KEY)]),
                ],
            ),
            Ttlv::structure(
                tags::KEY_MATERIAL,
                vec![
                    Ttlv::new(
                        tags::MODULUS,
                        Value::BigInteger(Bytes::from(modulus.clone())),
                    ),
                    Ttlv::new(
                        tags::PRIVATE_EXPONENT,
                        Value::BigInteger(Bytes::from(exponent.clone())),
                    ),
                ],
            ),
            bs(tags::IV_COUNTER_NONCE, &iv),
            bs(tags::DATA, &data),
            bs(tags::AUTHENTICATED_ENCRYPTION_TAG, &tag),
            bs(tags::OPAQUE_DATA_VALUE, &opaque),
            bs(tags::CERTIFICATE_VALUE, &cert),
            bs(Tag(0x54_0001), &vendor),
            Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString("uid-7".into())),
        ],
    );
    let secrets = vec![
        KEY.to_vec(),
        PASSWORD.as_bytes().to_vec(),
        iv,
        data,
        tag,
        modulus,
        exponent,
        opaque,
        vendor,
        cert,
    ];
    (tree, secrets)
}

/// Fails if any 4-byte run of `secret` appears in `out` raw, or in hex (either case).
fn assert_absent(out: &str, secret: &[u8], what: &str) {
    let lower = out.to_ascii_lowercase();
    for w in secret.windows(4) {
        assert!(
            !out.as_bytes().windows(4).any(|o| o == w),
            "{what}: raw secret bytes {w:02x?} in:\n{out}"
        );
        assert!(
            !lower.contains(&hex::encode(w)),
            "{what}: secret bytes {w:02x?} in hex in:\n{out}"
        );
    }
}

#[test]
fn no_secret_byte_sequence_reaches_text_or_xml() {
    let (tree, secrets) = secret_tree();
    let shown = redact(&tree);
    let text = text_tree(&shown);
    let mut n = 0;
    let xml = xml_tree(&shown, &mut n);
    for s in &secrets {
        assert_absent(&text, s, "text");
        assert_absent(&xml, s, "xml");
    }
    assert_eq!(n, secrets.len(), "one placeholder per secret value");
    // What is not secret stays visible.
    assert!(text.contains("Username [TextString] \"purefa\""), "{text}");
    assert!(text.contains("UniqueIdentifier [TextString] \"uid-7\""));
    assert!(text.contains("KeyFormatType [Enumeration] Raw"), "{text}");
    assert!(text.contains("KeyMaterial [ByteString] <redacted 32 bytes>"));
    assert!(text.contains("Modulus [BigInteger] <redacted 256 bytes>"));
    assert!(text.contains("Password [TextString] <redacted 16 bytes>"));
    assert!(text.contains("0x540001 [ByteString] <redacted 24 bytes>"));
    assert!(xml.contains(r#"<KeyMaterial type="ByteString" value="$REDACTED_32_BYTES_"#));
    assert!(xml.contains(r#"<TTLV tag="0x540001" type="ByteString" value="$REDACTED_24"#));
}

#[test]
fn xml_capture_parses_with_placeholders_of_the_right_types() {
    let (tree, _) = secret_tree();
    let mut n = 0;
    let xml = xml_tree(&redact(&tree), &mut n);
    let node = kmip_wire::xml::parse_template(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let mut found = Vec::new();
    node.for_each_placeholder(&mut |p, t| found.push((p.0.clone(), t)));
    assert_eq!(found.len(), n);
    assert!(found.contains(&("REDACTED_32_BYTES_1".into(), ItemType::ByteString)));
    assert!(found.contains(&("REDACTED_256_BYTES_2".into(), ItemType::BigInteger)));
    assert!(found.contains(&("REDACTED_16_BYTES_0".into(), ItemType::TextString)));
}

#[test]
fn a_message_without_secrets_is_written_as_the_wire_crate_writes_it() {
    let msg = RequestMessage {
        header: RequestHeader::new(ProtocolVersion { major: 1, minor: 4 }),
        items: vec![RequestBatchItem::new(RequestPayload::Create(
            CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                ],
            },
        ))],
    }
    .to_ttlv();
    let shown = redact(&msg);
    assert_eq!(shown, Shown::Plain(&msg));
    let mut n = 0;
    assert_eq!(xml_tree(&shown, &mut n), to_xml_string(&msg));
    let text = text_tree(&shown);
    assert!(text.contains("Operation [Enumeration] Create"), "{text}");
    // 1.x attribute values are named by their Attribute Name.
    assert!(text.contains("AttributeValue [Enumeration] AES"), "{text}");
    assert!(
        text.contains("AttributeValue [Integer] Encrypt | Decrypt (12)"),
        "{text}"
    );
}

#[test]
fn identifiers_and_times_the_server_chose_become_placeholders() {
    let uid = |u: &str| Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(u.into()));
    let payload =
        |tag, uids: &[&str]| Ttlv::structure(tag, uids.iter().map(|u| uid(u)).collect::<Vec<_>>());
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let mut state = ReplayState::default();
    let mut n = 0;
    let mut xml = |t: &Ttlv, response: bool, state: &mut ReplayState| {
        xml_tree(&replay_form(t, response, at, state), &mut n)
    };
    // Named by the client first: kept (the server never returned it in this capture).
    let old = xml(&payload(tags::REQUEST_PAYLOAD, &["old"]), false, &mut state);
    assert!(old.contains(r#"value="old""#), "{old}");
    let located = xml(
        &payload(tags::RESPONSE_PAYLOAD, &["a", "b", "a", "old"]),
        true,
        &mut state,
    );
    for (i, u) in ["a", "b", "a", "old"].iter().enumerate() {
        let want = format!("$UNIQUE_IDENTIFIER_{}", [0, 1, 0, 2][i]);
        assert_eq!(
            located.lines().nth(i + 1).map(|l| l.contains(&want)),
            Some(true),
            "{u}: {located}"
        );
    }
    let get = xml(&payload(tags::REQUEST_PAYLOAD, &["b"]), false, &mut state);
    assert!(get.contains("$UNIQUE_IDENTIFIER_1"), "{get}");
    // The client sets an Activation Date; the server answers with it and its own dates.
    let date = |tag, secs| Ttlv::new(tag, Value::DateTime(secs));
    let client_date = 2_000_000_000 - 60;
    let sent = xml(
        &Ttlv::structure(
            tags::REQUEST_PAYLOAD,
            vec![date(tags::ACTIVATION_DATE, client_date)],
        ),
        false,
        &mut state,
    );
    assert!(!sent.contains("$NOW"), "{sent}");
    let t = Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![
            date(tags::TIME_STAMP, 2_000_000_000),
            Ttlv::structure(
                tags::ATTRIBUTE,
                vec![
                    Ttlv::new(
                        tags::ATTRIBUTE_NAME,
                        Value::TextString("Unique Identifier".into()),
                    ),
                    Ttlv::new(tags::ATTRIBUTE_VALUE, Value::TextString("b".into())),
                ],
            ),
            date(tags::ACTIVATION_DATE, client_date),
            date(tags::INITIAL_DATE, 2_000_000_000 - 5),
            date(tags::LAST_CHANGE_DATE, 2_000_000_000),
            date(tags::DEACTIVATION_DATE, 1_000_000_000),
            bs(tags::KEY_MATERIAL, &KEY),
        ],
    );
    let out = xml(&t, true, &mut state);
    let line = |tag| {
        let name = tag_name(tag).unwrap();
        out.lines()
            .find(|l| l.contains(&format!("<{name} ")))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    assert!(
        line(tags::TIME_STAMP).contains("2033-05-18T03:33:20+00:00"),
        "{out}"
    );
    assert!(
        line(tags::ATTRIBUTE_VALUE).contains("$UNIQUE_IDENTIFIER_1"),
        "{out}"
    );
    assert!(
        line(tags::ACTIVATION_DATE).contains("2033-05-18T03:32:20"),
        "{out}"
    );
    assert!(
        line(tags::INITIAL_DATE).contains(r#"value="$NOW-5""#),
        "{out}"
    );
    assert!(
        line(tags::LAST_CHANGE_DATE).contains(r#"value="$NOW""#),
        "{out}"
    );
    assert!(
        line(tags::DEACTIVATION_DATE).contains("2001-09-09"),
        "{out}"
    );
    assert!(out.contains("$REDACTED_32_BYTES_"), "{out}");
    // What the runner reads back: placeholders of the right types.
    let node = kmip_wire::xml::parse_template(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let mut found = Vec::new();
    node.for_each_placeholder(&mut |p, t| found.push((p.0.clone(), t)));
    assert!(
        found.contains(&("NOW-5".into(), ItemType::DateTime)),
        "{found:?}"
    );
    // The text form keeps the real values.
    assert!(text_tree(&redact(&t)).contains(r#"AttributeValue [TextString] "b""#));
}

#[test]
fn comments_and_file_names_are_safe() {
    assert_eq!(xml_comment("a---b"), "<!-- a- - -b -->\n");
    let c = xml_comment("x--y----z-");
    assert!(!c[5..c.len() - 5].contains("--"), "{c}");
    assert_eq!(file_name_part("purefa"), "purefa");
    assert_eq!(file_name_part("../etc/passwd"), "_.._etc_passwd");
    assert_eq!(file_name_part(""), "_");
    assert_eq!(
        file_name_part(&"é".repeat(100)).len(),
        MAX_USER_IN_FILE_NAME
    );
}

fn identity() -> crate::identity::Identity {
    crate::identity::Identity {
        user: "purefa".into(),
        subject: "CN=purefa".into(),
        serial_hex: "1a2b".into(),
        fingerprint: "00".repeat(32),
    }
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn writes_private_files_that_stay_valid_xml_between_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("capture");
    let cap = Capture::start(&dir, Limits::default()).unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let (tree, secrets) = secret_tree();
    let request = Ttlv::structure(
        tags::REQUEST_MESSAGE,
        vec![Ttlv::new(tags::BATCH_COUNT, Value::Integer(1))],
    )
    .to_bytes()
    .unwrap();
    let response = tree.to_bytes().unwrap();
    let mut conn = cap.connection(7, "127.0.0.1:4000".parse().unwrap(), &identity());
    conn.request(&request);
    conn.response(&response);
    assert!(cap.flush(Duration::from_secs(10)));
    let xml = files_in(&dir, "xml");
    assert_eq!(xml.len(), 1);
    let name = xml[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-7-purefa.xml"), "{name}");
    let doc = std::fs::read_to_string(&xml[0]).unwrap();
    let nodes = kmip_wire::xml::parse_document(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    assert_eq!(nodes.len(), 2);
    // Undecodable bytes: left out of both files, the XML still pairs up and parses.
    conn.request(&Bytes::from_static(&[
        0x42, 0x00, 0x78, 0x01, 0, 0, 0, 8, 1, 2,
    ]));
    conn.response(&request);
    conn.closed("client closed");
    assert!(cap.flush(Duration::from_secs(10)));
    let doc = std::fs::read_to_string(&xml[0]).unwrap();
    assert_eq!(kmip_wire::xml::parse_document(&doc).unwrap().len(), 2);
    let text_path = xml[0].with_extension("txt");
    let text = std::fs::read_to_string(&text_path).unwrap();
    assert!(text.contains("--- #0 request"), "{text}");
    assert!(text.contains("--- #1 response"), "{text}");
    assert!(text.contains("undecodable TTLV"), "{text}");
    assert!(text.contains("--- closed (client closed)"), "{text}");
    for s in &secrets {
        assert_absent(&text, s, "text file");
        assert_absent(&doc, s, "xml file");
    }
    for p in [&xml[0], &text_path] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

#[test]
fn lost_records_are_marked_and_unpaired_requests_left_out_of_the_xml() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = Capture::start(tmp.path(), Limits::default()).unwrap();
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![])
        .to_bytes()
        .unwrap();
    let response = Ttlv::structure(tags::RESPONSE_MESSAGE, vec![])
        .to_bytes()
        .unwrap();
    let mut conn = cap.connection(1, "127.0.0.1:4000".parse().unwrap(), &identity());
    conn.request(&request);
    // As if the queue had dropped the response and the next request.
    conn.next_seq += 2;
    conn.response(&response);
    conn.request(&request);
    conn.response(&response);
    assert!(cap.flush(Duration::from_secs(10)));
    let xml = files_in(tmp.path(), "xml");
    let doc = std::fs::read_to_string(&xml[0]).unwrap();
    let nodes = kmip_wire::xml::parse_document(&doc).unwrap();
    let order: Vec<Tag> = nodes.iter().map(|n| n.tag).collect();
    assert_eq!(
        order,
        [tags::REQUEST_MESSAGE, tags::RESPONSE_MESSAGE],
        "{doc}"
    );
    let text = std::fs::read_to_string(xml[0].with_extension("txt")).unwrap();
    assert!(text.contains("!!! 2 message(s) not captured"), "{text}");
}

#[test]
fn a_failed_file_creation_is_counted_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = Capture::start(tmp.path(), Limits::default()).unwrap();
    let mut conn = cap.connection(1, "127.0.0.1:4000".parse().unwrap(), &identity());
    // The folder goes away: the connection's capture stops, the writer keeps going.
    std::fs::remove_dir_all(tmp.path()).unwrap();
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![])
        .to_bytes()
        .unwrap();
    conn.request(&request);
    conn.response(&request);
    assert!(cap.flush(Duration::from_secs(10)));
    assert!(conn.files.state.lock().unwrap().stopped);
}
