//! End-to-end tests of certificates against the real binary: PyKMIP registers an X.509
//! certificate, gets it back byte for byte and locates it by its derived attributes (KMIP 1.2
//! and 2.0, on every backend); Certify issues certificates for an `openssl req` CSR and for a
//! registered Public Key, which `openssl verify` accepts against the issuing CA.

use kmip_e2e::{
    backend_tests, workspace_root, Backend, GatewayHome, GatewayOptions, GatewayProcess,
};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_gateway::tooling::pki::{self, CertProfile, IssueOptions, Serial};
use kmip_wire::model::{
    Attribute, AttributeName, CertificateRequestType, CertifyRequest, CryptographicAlgorithm,
    GetAttributesRequest, GetRequest, KeyBlock, KeyFormatType, KeyValue, Link, LinkType,
    LocateRequest, ManagedObject, Name, ObjectType, ProtocolVersion, RegisterRequest,
    RequestBatchItem, RequestHeader, RequestMessage, RequestPayload, ResponseMessage,
    ResponsePayload, ResultReason, ResultStatus, SecretBytes,
};
use kmip_wire::spec::tags;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions PyKMIP speaks that differ in how attributes are encoded.
const VERSIONS: [&str; 2] = ["1.2", "2.0"];

/// The Python interpreter with PyKMIP (`$KMIP_PYTHON`, else the workspace venv).
fn python() -> PathBuf {
    let path = std::env::var_os("KMIP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.is_file(),
        "no Python for the PyKMIP tests at {}: set KMIP_PYTHON",
        path.display()
    );
    path
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs one flow of certificates.py; panics with its report and the gateway log unless it ran
/// to its end.
fn run_flow(gw: &GatewayProcess, version: &str, flow: &str, args: &[(&str, String)]) -> Value {
    let conf = gw.dir().join("pykmip.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").unwrap();
    }
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/python/certificates.py"))
        .args(["--host", "127.0.0.1", "--port"])
        .arg(gw.addr().port().to_string())
        .arg("--ca")
        .arg(gw.ca_cert())
        .arg("--cert")
        .arg(gw.client_cert())
        .arg("--key")
        .arg(gw.client_key())
        .arg("--config-file")
        .arg(&conf)
        .args(["--version", version, "--flow", flow])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in args {
        cmd.arg(k).arg(v);
    }
    let out = cmd.output().expect("run certificates.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    match report {
        Some(r) if out.status.success() && r.get("error").is_none() => r,
        _ => panic!(
            "flow {flow} at KMIP {version} failed.\nreport: {stdout}\npython stderr:\n{}\n\
             gateway log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        ),
    }
}

/// A certificate with a known serial and issuer, as DER in a file under `dir`.
struct TestCertificate {
    file: PathBuf,
    der: Vec<u8>,
    issuer_dn: Vec<u8>,
    serial: Vec<u8>,
}

fn test_certificate(dir: &Path, serial: &[u8]) -> TestCertificate {
    let ca = pki::init_ca("Certificates Test CA", 30).unwrap();
    let mut options = IssueOptions::new(Some("array-01".into()), CertProfile::Client, 30).unwrap();
    options.serial = Serial::from_bytes(serial).unwrap();
    let leaf = pki::issue_cert(&ca, &options).unwrap();
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
    // The CA's name is one Common Name, so its DER (the leaf's issuer DN) is known here
    // without parsing the certificate: SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, UTF8String } } }.
    let cn = b"Certificates Test CA";
    let mut issuer_dn = vec![
        0x30, 0x1f, 0x31, 0x1d, 0x30, 0x1b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x14,
    ];
    issuer_dn.extend_from_slice(cn);
    assert!(
        ca_der.windows(issuer_dn.len()).any(|w| w == issuer_dn),
        "the CA's certificate holds the expected DN"
    );
    let file = dir.join(format!("cert-{}.der", hex(serial)));
    std::fs::write(&file, &der).unwrap();
    TestCertificate {
        file,
        der,
        issuer_dn,
        serial: serial.to_vec(),
    }
}

backend_tests! {
    /// Register, Get (the exact DER) and Locate by Certificate Type and Length, by the X.509
    /// Certificate Identifier and, in 1.x, by the text Certificate Identifier.
    fn pykmip_register_get_locate(backend) {
        let gw = GatewayProcess::start_backend(backend);
        for (i, v) in VERSIONS.iter().enumerate() {
            let serial = [0x0a, 0x0b, 0x10 + i as u8];
            let cert = test_certificate(gw.dir(), &serial);
            let serial_text = u32::from_be_bytes([0, serial[0], serial[1], serial[2]]).to_string();
            let r = run_flow(&gw, v, "register_get_locate", &[
                ("--cert-file", cert.file.display().to_string()),
                ("--tag", format!("{}-{v}", backend.name())),
                ("--issuer-dn", hex(&cert.issuer_dn)),
                ("--serial", hex(&cert.serial)),
                ("--serial-text", serial_text),
                ("--issuer-text", "CN=Certificates Test CA".into()),
            ]);
            let ctx = format!("KMIP {v}: {r}");
            let uid = r["uid"].as_str().unwrap();
            assert_eq!(r["got_type"], "X509Certificate", "{ctx}");
            assert_eq!(r["got_der"], hex(&cert.der), "Get answers the registered bytes: {ctx}");
            assert_eq!(r["locate_type_length_name"], json!([uid]), "{ctx}");
            assert_eq!(r["locate_wrong_length"], json!([]), "{ctx}");
            assert_eq!(r["locate_x509_identifier"], json!([uid]), "{ctx}");
            assert_eq!(r["locate_x509_other_serial"], json!([]), "{ctx}");
            if !v.starts_with('2') {
                assert_eq!(r["locate_1x_identifier"], json!([uid]), "{ctx}");
            }
        }
    }
}

// --- Certify ---------------------------------------------------------------------------------

/// Runs `openssl` with `args` in `dir`; panics with its output unless it succeeds.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `openssl verify` accepts `cert` (PEM) against `ca` alone.
fn openssl_verifies(dir: &Path, ca: &Path, cert: &str) -> bool {
    Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .arg(cert)
        .current_dir(dir)
        .output()
        .expect("run openssl verify")
        .status
        .success()
}

fn one_item(version: ProtocolVersion, payload: RequestPayload) -> kmip_wire::ttlv::Ttlv {
    RequestMessage {
        header: RequestHeader::new(version),
        items: vec![RequestBatchItem::new(payload)],
    }
    .to_ttlv()
}

/// Sends one single-item request on a new connection and returns its answer.
fn call(
    gw: &GatewayProcess,
    version: ProtocolVersion,
    payload: RequestPayload,
) -> kmip_wire::model::ResponseBatchItem {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tls =
            ClientTls::from_files(&gw.ca_cert(), &gw.client_cert(), &gw.client_key()).unwrap();
        let mut client = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .unwrap();
        let response = client.call(&one_item(version, payload)).await.unwrap();
        let mut msg = ResponseMessage::from_ttlv(&response).unwrap();
        msg.items.remove(0)
    })
}

fn uid_of(item: &kmip_wire::model::ResponseBatchItem, ctx: &str) -> String {
    match &item.payload {
        Some(
            ResponsePayload::Certify(r)
            | ResponsePayload::Register(r)
            | ResponsePayload::ReCertify(r),
        ) if item.result_status == ResultStatus::Success => r.unique_identifier.clone(),
        _ => panic!("{ctx}: {item:?}"),
    }
}

/// Gets certificate `uid` and writes it as PEM to `dir/name`; returns the path's name.
fn get_certificate_pem(
    gw: &GatewayProcess,
    version: ProtocolVersion,
    uid: &str,
    dir: &Path,
    name: &str,
) -> String {
    let got = call(
        gw,
        version,
        RequestPayload::Get(GetRequest {
            unique_identifier: Some(uid.to_owned()),
            ..GetRequest::default()
        }),
    );
    let der = match got.payload {
        Some(ResponsePayload::Get(g)) => match g.object {
            ManagedObject::Certificate { value, .. } => value.to_vec(),
            other => panic!("Get {uid}: not a certificate: {other:?}"),
        },
        other => panic!("Get {uid}: {other:?} ({:?})", got.result_reason),
    };
    std::fs::write(dir.join(format!("{name}.der")), &der).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            &format!("{name}.der"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    format!("{name}.pem")
}

fn certify_csr(request: Vec<u8>, kind: CertificateRequestType, name: &str) -> RequestPayload {
    RequestPayload::Certify(CertifyRequest {
        certificate_request_type: Some(kind),
        certificate_request: Some(request.into()),
        attributes: vec![Attribute::name(&Name::new(name))],
        ..CertifyRequest::default()
    })
}

backend_tests! {
    /// Certify of a CSR made by `openssl req` (PEM at 1.4, PKCS#10 DER at 2.1): the certificate
    /// verifies against the issuing CA and not against the CA that logs clients in, and carries
    /// the CSR's subject and alternative name; a CSR with a broken signature is refused.
    fn certify_an_openssl_csr(backend) {
        let gw = GatewayProcess::start_backend(backend);
        let dir = gw.dir().to_path_buf();
        openssl(&dir, &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "array.key",
            "-subj", "/CN=array-02/O=Example", "-addext", "subjectAltName=DNS:array-02.example",
            "-out", "array.csr",
        ]);
        openssl(&dir, &["req", "-in", "array.csr", "-outform", "DER", "-out", "array.csr.der"]);
        let issuing_ca = gw.pki_dir().join("issuing-ca.pem");
        let cases = [
            (ProtocolVersion::V1_4, "array.csr", CertificateRequestType::Pem),
            (ProtocolVersion::V2_1, "array.csr.der", CertificateRequestType::Pkcs10),
        ];
        for (version, file, kind) in cases {
            let ctx = format!("{version:?} {kind:?}");
            let csr = std::fs::read(dir.join(file)).unwrap();
            let name = format!("issued-{}-{}", version.major, version.minor);
            let item = call(&gw, version, certify_csr(csr.clone(), kind, &name));
            let uid = uid_of(&item, &ctx);
            let pem = get_certificate_pem(&gw, version, &uid, &dir, &name);
            assert!(openssl_verifies(&dir, &issuing_ca, &pem), "{ctx}: openssl verify");
            assert!(
                !openssl_verifies(&dir, &gw.ca_cert(), &pem),
                "{ctx}: the login CA must not have signed it"
            );
            let text = openssl(&dir, &["x509", "-in", &pem, "-noout", "-subject", "-ext", "subjectAltName"]);
            assert!(text.contains("CN=array-02") || text.contains("CN = array-02"), "{ctx}: {text}");
            assert!(text.contains("DNS:array-02.example"), "{ctx}: {text}");
            let ours = openssl(&dir, &["x509", "-in", &pem, "-noout", "-pubkey"]);
            let theirs = openssl(&dir, &["pkey", "-in", "array.key", "-pubout"]);
            assert_eq!(ours, theirs, "{ctx}: the certificate is for the CSR's key");

            if version.is_v2() {
                // The same CSR kept as a Certificate Request object and certified by its
                // identifier; naming it and sending a CSR as well is refused.
                let stored = call(&gw, version, RequestPayload::Register(RegisterRequest {
                    object_type: ObjectType::CertificateRequest,
                    attributes: Vec::new(),
                    templates: Vec::new(),
                    object: ManagedObject::CertificateRequest {
                        certificate_request_type: kind,
                        value: csr.clone().into(),
                    },
                }));
                let csr_uid = uid_of(&stored, &ctx);
                let by_uid = |request: Option<Vec<u8>>, name: &str| {
                    RequestPayload::Certify(CertifyRequest {
                        certificate_request_unique_identifier: Some(csr_uid.clone()),
                        certificate_request_type: request.as_ref().map(|_| kind),
                        certificate_request: request.map(Into::into),
                        attributes: vec![Attribute::name(&Name::new(name))],
                        ..CertifyRequest::default()
                    })
                };
                let item = call(&gw, version, by_uid(None, "issued-from-stored"));
                let from_stored = uid_of(&item, &ctx);
                let pem = get_certificate_pem(&gw, version, &from_stored, &dir, "from-stored");
                assert!(openssl_verifies(&dir, &issuing_ca, &pem), "{ctx}: stored CSR");
                let ours = openssl(&dir, &["x509", "-in", &pem, "-noout", "-pubkey"]);
                let theirs = openssl(&dir, &["pkey", "-in", "array.key", "-pubout"]);
                assert_eq!(ours, theirs, "{ctx}: the stored CSR's key");
                let both = call(&gw, version, by_uid(Some(csr.clone()), "both"));
                assert_eq!(both.result_reason, Some(ResultReason::InvalidField), "{ctx}");
            }

            // A CSR whose signature does not verify is refused, and nothing is stored.
            let mut broken = std::fs::read(dir.join("array.csr.der")).unwrap();
            let last = broken.len() - 1;
            broken[last] ^= 0x01;
            let refused = call(&gw, version, certify_csr(broken, CertificateRequestType::Pkcs10, "refused"));
            assert_eq!(refused.result_status, ResultStatus::OperationFailed, "{ctx}");
            let reason = if version.is_v2() { ResultReason::InvalidCsr } else { ResultReason::InvalidField };
            assert_eq!(refused.result_reason, Some(reason), "{ctx}: {refused:?}");
        }
    }
}

/// Certify of a registered Public Key (SubjectPublicKeyInfo DER): the certificate names the
/// subject the request gives, is for that key, verifies against the issuing CA, and the key and
/// the certificate are linked both ways.
#[test]
fn certify_a_registered_public_key() {
    let gw = GatewayProcess::start();
    let dir = gw.dir().to_path_buf();
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ],
    );
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            "ec.key",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "ec.pub.der",
        ],
    );
    let spki = std::fs::read(dir.join("ec.pub.der")).unwrap();
    let version = ProtocolVersion::V2_1;
    let registered = call(
        &gw,
        version,
        RequestPayload::Register(RegisterRequest {
            templates: Vec::new(),
            object_type: ObjectType::PublicKey,
            attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x02)],
            object: ManagedObject::PublicKey(KeyBlock {
                key_format_type: KeyFormatType::X509,
                key_compression_type: None,
                key_value: KeyValue::Material(SecretBytes::from_slice(&spki)),
                cryptographic_algorithm: Some(CryptographicAlgorithm::Ecdsa),
                cryptographic_length: Some(256),
                key_wrapping_data: None,
            }),
        }),
    );
    let key = uid_of(&registered, "Register the public key");

    let without_subject = call(
        &gw,
        version,
        RequestPayload::Certify(CertifyRequest {
            unique_identifier: Some(key.clone()),
            ..CertifyRequest::default()
        }),
    );
    assert_eq!(
        without_subject.result_reason,
        Some(ResultReason::InvalidField),
        "{without_subject:?}"
    );

    let item = call(
        &gw,
        version,
        RequestPayload::Certify(CertifyRequest {
            unique_identifier: Some(key.clone()),
            attributes: vec![
                Attribute::text(tags::CERTIFICATE_SUBJECT_CN, "hsm-client-7"),
                Attribute::text(tags::CERTIFICATE_SUBJECT_O, "Example"),
                Attribute::name(&Name::new("device-cert")),
            ],
            ..CertifyRequest::default()
        }),
    );
    let cert = uid_of(&item, "Certify the public key");
    let pem = get_certificate_pem(&gw, version, &cert, &dir, "for-key");
    assert!(openssl_verifies(
        &dir,
        &gw.pki_dir().join("issuing-ca.pem"),
        &pem
    ));
    let subject = openssl(&dir, &["x509", "-in", &pem, "-noout", "-subject"]);
    assert!(
        subject.contains("hsm-client-7") && subject.contains("Example"),
        "{subject}"
    );
    let ours = openssl(&dir, &["x509", "-in", &pem, "-noout", "-pubkey"]);
    let theirs = openssl(&dir, &["pkey", "-in", "ec.key", "-pubout"]);
    assert_eq!(ours, theirs);

    let links = |uid: &str| -> Vec<Link> {
        let got = call(
            &gw,
            version,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.to_owned()),
                names: vec![AttributeName::Tag(tags::LINK)],
            }),
        );
        match got.payload {
            Some(ResponsePayload::GetAttributes(r)) => {
                r.attributes.iter().filter_map(Attribute::as_link).collect()
            }
            other => panic!("GetAttributes {uid}: {other:?}"),
        }
    };
    assert_eq!(
        links(&key),
        vec![Link {
            link_type: LinkType::CertificateLink,
            linked_object_identifier: cert.clone()
        }]
    );
    assert_eq!(
        links(&cert),
        vec![Link {
            link_type: LinkType::PublicKeyLink,
            linked_object_identifier: key.clone()
        }]
    );

    // Re-certify renews it for the same key and subject: the new certificate takes the Name,
    // the two are linked as replacement and replaced, and the key's link moves to the new one.
    let renewed = call(
        &gw,
        version,
        RequestPayload::ReCertify(CertifyRequest {
            unique_identifier: Some(cert.clone()),
            ..CertifyRequest::default()
        }),
    );
    let new_cert = uid_of(&renewed, "Re-certify");
    assert_ne!(new_cert, cert);
    let pem = get_certificate_pem(&gw, version, &new_cert, &dir, "renewed");
    assert!(openssl_verifies(
        &dir,
        &gw.pki_dir().join("issuing-ca.pem"),
        &pem
    ));
    let subject = openssl(&dir, &["x509", "-in", &pem, "-noout", "-subject"]);
    assert!(
        subject.contains("hsm-client-7") && subject.contains("Example"),
        "{subject}"
    );
    assert_eq!(
        openssl(&dir, &["x509", "-in", &pem, "-noout", "-pubkey"]),
        theirs
    );
    let link = |link_type, to: &str| Link {
        link_type,
        linked_object_identifier: to.to_owned(),
    };
    assert_eq!(
        links(&key),
        vec![link(LinkType::CertificateLink, &new_cert)]
    );
    assert_eq!(
        links(&cert),
        vec![
            link(LinkType::PublicKeyLink, &key),
            link(LinkType::ReplacementObjectLink, &new_cert),
        ]
    );
    assert_eq!(
        links(&new_cert),
        vec![
            link(LinkType::PublicKeyLink, &key),
            link(LinkType::ReplacedObjectLink, &cert),
        ]
    );
    let located = call(
        &gw,
        version,
        RequestPayload::Locate(LocateRequest {
            attributes: vec![Attribute::name(&Name::new("device-cert"))],
            ..LocateRequest::default()
        }),
    );
    match located.payload {
        Some(ResponsePayload::Locate(l)) => {
            assert_eq!(l.unique_identifiers, vec![new_cert.clone()])
        }
        other => panic!("Locate: {other:?}"),
    }

    // Register of a certificate with a Public Key Link: the key's Certificate Link follows it;
    // a link to no visible Public Key is refused.
    let register_linked = |to: &str| {
        RequestPayload::Register(RegisterRequest {
            templates: Vec::new(),
            object_type: ObjectType::Certificate,
            attributes: vec![Attribute::link(&link(LinkType::PublicKeyLink, to))],
            object: ManagedObject::Certificate {
                certificate_type: kmip_wire::model::CertificateType::X509,
                value: std::fs::read(dir.join("for-key.der")).unwrap().into(),
            },
        })
    };
    let imported = uid_of(
        &call(&gw, version, register_linked(&key)),
        "Register with a link",
    );
    assert_eq!(
        links(&key),
        vec![link(LinkType::CertificateLink, &imported)]
    );
    let dangling = call(&gw, version, register_linked("no-such-key"));
    assert_eq!(
        dangling.result_reason,
        Some(ResultReason::InvalidField),
        "{dangling:?}"
    );
    let to_a_certificate = call(&gw, version, register_linked(&cert));
    assert_eq!(
        to_a_certificate.result_reason,
        Some(ResultReason::InvalidField)
    );
}

/// A `[certify]` CA that logs clients in is refused at start, naming the problem: a certificate
/// a client obtains through Certify must never open a connection.
#[test]
fn a_login_ca_is_refused_as_the_issuing_ca() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(config.contains("issuing-ca.pem"), "{config}");
    let config = config
        .replace("issuing-ca.pem", "ca.pem")
        .replace("issuing-ca.key", "ca.key");
    std::fs::write(home.config_path(), config).unwrap();
    match home.try_start_with(&GatewayOptions::default()) {
        Ok(_) => panic!("a gateway whose issuing CA is its login CA started"),
        Err(f) => assert!(
            f.log.contains("[certify] issuing CA") && f.log.contains("trusted for client logins"),
            "{}",
            f.log
        ),
    }
}
