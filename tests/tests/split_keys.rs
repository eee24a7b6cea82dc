//! Split keys through the real gateway on every backend: Create Split Key (Shamir over GF(2^8)
//! and XOR) stores parts whose Get answers join — computed here, independently of the server —
//! to the key Join Split Key makes; too few parts, a part named twice and parts of two splits
//! are refused; another user can neither join nor see the parts; an existing key is split and
//! joined back; PGP Keys and registered Split Keys come back as registered.

use kmip_e2e::{backend_tests, Backend, GatewayHome, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_gateway::tooling::pki;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use std::path::{Path, PathBuf};
use std::time::Duration;

const V21: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };
const V14: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
const OTHER: &str = "tenant-b";

/// A gateway on `backend` whose users are the home's `purefa` and [`OTHER`] (its own CA, in
/// `other`).
fn start(backend: Backend, other: &Path) -> (GatewayHome, GatewayProcess) {
    let ca = pki::init_ca(&format!("{OTHER} CA"), 30).unwrap();
    std::fs::write(other.join("ca.pem"), &ca.cert_pem).unwrap();
    let c = pki::issue_client_cert(&ca, OTHER, 30).unwrap();
    std::fs::write(other.join("client.pem"), &c.cert_pem).unwrap();
    std::fs::write(other.join("client.key"), c.key_pem.as_bytes()).unwrap();
    let other_user = format!(
        "\n[[users]]\nname = \"{OTHER}\"\ncas = [{:?}]\n",
        other.join("ca.pem")
    );
    let home = GatewayHome::new(backend);
    let gw = match backend {
        Backend::Vault => {
            let pki_dir = home.pki_dir();
            pki::dev_pki(&pki_dir).unwrap();
            let config = home.dir().join("gateway.toml");
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
                     [tls]\ncert = {cert:?}\nkey = {key:?}\n\
                     [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n{other_user}",
                    data = home.data_dir(),
                    cert = pki_dir.join("server.pem"),
                    key = pki_dir.join("server.key"),
                    ca = home.ca_cert(),
                ),
            )
            .unwrap();
            GatewayProcess::start_with(&GatewayOptions {
                extra_args: vec!["--config".into(), config.display().to_string()],
                ..GatewayOptions::default()
            })
        }
        _ => {
            let mut text = std::fs::read_to_string(home.config_path()).unwrap();
            text.push_str(&other_user);
            std::fs::write(home.config_path(), text).unwrap();
            home.start()
        }
    };
    (home, gw)
}

struct Client {
    conn: KmipClient,
    version: ProtocolVersion,
}

impl Client {
    async fn connect(gw: &GatewayProcess, ca: PathBuf, cert: PathBuf, key: PathBuf) -> Client {
        let tls = ClientTls::from_files(&ca, &cert, &key).unwrap();
        let mut conn = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", gw.log()));
        conn.set_timeout(Duration::from_secs(30));
        Client { conn, version: V21 }
    }

    async fn call(&mut self, payload: RequestPayload) -> ResponseBatchItem {
        let request = RequestMessage {
            header: RequestHeader::new(self.version),
            items: vec![RequestBatchItem::new(payload)],
        };
        let reply = self.conn.call(&request.to_ttlv()).await.unwrap();
        ResponseMessage::from_ttlv(&reply).unwrap().items.remove(0)
    }

    async fn ok(&mut self, payload: RequestPayload) -> ResponsePayload {
        let item = self.call(payload).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
        item.payload.expect("a payload")
    }

    async fn fails(&mut self, payload: RequestPayload, reason: ResultReason) -> String {
        let item = self.call(payload).await;
        assert_eq!(
            item.result_status,
            ResultStatus::OperationFailed,
            "{item:?}"
        );
        assert_eq!(item.result_reason, Some(reason), "{item:?}");
        item.result_message.unwrap_or_default()
    }

    async fn split(
        &mut self,
        parts: i32,
        threshold: i32,
        method: SplitKeyMethod,
        of: Option<&str>,
    ) -> Vec<String> {
        let answer = self
            .ok(RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
                object_type: ObjectType::SplitKey,
                unique_identifier: of.map(str::to_owned),
                split_key_parts: parts,
                split_key_threshold: threshold,
                split_key_method: method,
                prime_field_size: None,
                attributes: aes256(),
            }))
            .await;
        let ResponsePayload::CreateSplitKey(r) = answer else {
            panic!("{answer:?}");
        };
        assert_eq!(r.unique_identifiers.len(), parts as usize);
        r.unique_identifiers
    }

    async fn join(&mut self, parts: &[&String]) -> ResponseBatchItem {
        self.call(join_request(parts)).await
    }

    async fn joined(&mut self, parts: &[&String]) -> String {
        let item = self.join(parts).await;
        match item.payload {
            Some(ResponsePayload::JoinSplitKey(r)) => r.unique_identifier,
            _ => panic!("Join Split Key: {item:?}"),
        }
    }

    async fn get(&mut self, uid: &str) -> ManagedObject {
        match self
            .ok(RequestPayload::Get(GetRequest {
                unique_identifier: Some(uid.to_owned()),
                ..GetRequest::default()
            }))
            .await
        {
            ResponsePayload::Get(g) => g.object,
            other => panic!("{other:?}"),
        }
    }

    async fn key(&mut self, uid: &str) -> Vec<u8> {
        let object = self.get(uid).await;
        object
            .key_block()
            .and_then(KeyBlock::key_bytes)
            .map(|b| b.as_slice().to_vec())
            .unwrap_or_else(|| panic!("{object:?}"))
    }

    async fn part(&mut self, uid: &str) -> SplitKey {
        match self.get(uid).await {
            ManagedObject::SplitKey(s) => s,
            other => panic!("{other:?}"),
        }
    }
}

fn aes256() -> Vec<Attribute> {
    vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
    ]
}

fn join_request(parts: &[&String]) -> RequestPayload {
    RequestPayload::JoinSplitKey(JoinSplitKeyRequest {
        object_type: ObjectType::SymmetricKey,
        unique_identifiers: parts.iter().map(|p| p.to_string()).collect(),
        secret_data_type: None,
        attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c)],
    })
}

/// GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1 (KMIP 2.1 §13.1), written here apart from the
/// server's.
fn gf_mul(a: u8, b: u8) -> u8 {
    let (mut a, mut b, mut p) = (a as u16, b, 0u16);
    while b != 0 {
        if b & 1 == 1 {
            p ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= 0x11d;
        }
        b >>= 1;
    }
    p as u8
}

fn gf_inv(a: u8) -> u8 {
    (1..=255u8).find(|b| gf_mul(a, *b) == 1).unwrap()
}

/// The secret at x = 0 of the polynomial through the parts (Lagrange interpolation).
fn shamir(parts: &[SplitKey]) -> Vec<u8> {
    let bytes = |p: &SplitKey| p.key_block.key_bytes().unwrap().as_slice().to_vec();
    let len = bytes(&parts[0]).len();
    let mut out = vec![0u8; len];
    for (i, pi) in parts.iter().enumerate() {
        let xi = pi.key_part_identifier as u8;
        let mut basis = 1u8;
        for (j, pj) in parts.iter().enumerate() {
            if i != j {
                let xj = pj.key_part_identifier as u8;
                basis = gf_mul(basis, gf_mul(xj, gf_inv(xj ^ xi)));
            }
        }
        for (o, y) in out.iter_mut().zip(bytes(pi)) {
            *o ^= gf_mul(y, basis);
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

backend_tests! {
    /// Split, join and their refusals; another user's parts are out of reach.
    fn split_and_join(backend) {
        let other = tempfile::tempdir().unwrap();
        let (home, gw) = start(backend, other.path());
        runtime().block_on(async {
            let mut a =
                Client::connect(&gw, home.ca_cert(), home.client_cert(), home.client_key()).await;
            let mut b = Client::connect(
                &gw,
                home.ca_cert(),
                other.path().join("client.pem"),
                other.path().join("client.key"),
            )
            .await;

            // Shamir, 2 of 3: every pair joins to the key the parts interpolate to.
            let p = a.split(3, 2, SplitKeyMethod::PolynomialSharingGf28, None).await;
            let mut parts = Vec::new();
            for (i, uid) in p.iter().enumerate() {
                let part = a.part(uid).await;
                assert_eq!(part.key_part_identifier, i as i32 + 1);
                assert_eq!((part.split_key_parts, part.split_key_threshold), (3, 2));
                assert_eq!(part.key_block.key_bytes().unwrap().len(), 32);
                parts.push(part);
            }
            let ResponsePayload::GetAttributes(rng) = a
                .ok(RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(p[0].clone()),
                    names: vec![
                        AttributeName::Tag(tags::RANDOM_NUMBER_GENERATOR),
                        AttributeName::Tag(tags::LINK),
                    ],
                }))
                .await
            else {
                panic!("Get Attributes");
            };
            assert!(
                rng.attributes.iter().any(|x| x.is(tags::RANDOM_NUMBER_GENERATOR)),
                "the server generated the part: {rng:?}"
            );
            assert!(!rng.attributes.iter().any(|x| x.is(tags::LINK)), "part 1 links nothing");
            let ResponsePayload::GetAttributes(link) = a
                .ok(RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(p[1].clone()),
                    names: vec![AttributeName::Tag(tags::LINK)],
                }))
                .await
            else {
                panic!("Get Attributes");
            };
            assert_eq!(
                link.attributes.iter().filter_map(Attribute::as_link).collect::<Vec<_>>(),
                vec![Link { link_type: LinkType::PreviousLink, linked_object_identifier: p[0].clone() }],
                "part 2 follows part 1"
            );
            let secret = shamir(&parts[..2]);
            assert_eq!(shamir(&parts[1..]), secret, "the parts lie on one polynomial");
            assert_ne!(shamir(&parts[..1]), secret, "one part alone is not the key");
            for pair in [[&p[0], &p[1]], [&p[0], &p[2]], [&p[1], &p[2]]] {
                let joined = a.joined(&pair).await;
                assert_eq!(a.key(&joined).await, secret);
            }
            let all = a.joined(&[&p[2], &p[0], &p[1]]).await;
            assert_eq!(a.key(&all).await, secret);

            // The joined key is a working AES key of the split's algorithm and length.
            let joined = a.joined(&[&p[0], &p[1]]).await;
            let ResponsePayload::GetAttributes(attrs) = a
                .ok(RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(joined.clone()),
                    names: vec![
                        AttributeName::Tag(tags::CRYPTOGRAPHIC_ALGORITHM),
                        AttributeName::Tag(tags::CRYPTOGRAPHIC_LENGTH),
                    ],
                }))
                .await
            else {
                panic!("Get Attributes");
            };
            assert!(attrs.attributes.iter().any(|x| x.is(tags::CRYPTOGRAPHIC_LENGTH)
                && x.as_int() == Some(256)), "{attrs:?}");

            // Refusals.
            let too_few = a.fails(join_request(&[&p[0]]), ResultReason::InvalidField).await;
            assert!(too_few.contains("needs 2 parts"), "{too_few}");
            a.fails(join_request(&[&p[0], &p[0]]), ResultReason::InvalidField).await;
            let q = a.split(3, 2, SplitKeyMethod::PolynomialSharingGf28, None).await;
            let mixed = a.fails(join_request(&[&p[0], &q[1]]), ResultReason::InvalidField).await;
            assert!(mixed.contains("one split"), "{mixed}");
            a.fails(join_request(&[&p[0], &joined]), ResultReason::InvalidObjectType).await;

            // Another user joins none of them, alone or with its own parts, and sees none:
            // answered exactly as for an identifier no object has.
            let missing = [
                "00000000-0000-4000-8000-000000000000".to_owned(),
                "00000000-0000-4000-8000-000000000001".to_owned(),
            ];
            let absent = b.join(&[&missing[0], &missing[1]]).await;
            let theirs = b.join(&[&p[0], &p[1]]).await;
            assert_eq!(theirs.result_reason, Some(ResultReason::ObjectNotFound), "{theirs:?}");
            assert_eq!(theirs.result_message, absent.result_message);
            let own = b.split(3, 2, SplitKeyMethod::PolynomialSharingGf28, None).await;
            let mixed = b.join(&[&own[0], &p[1]]).await;
            assert_eq!(mixed.result_reason, Some(ResultReason::ObjectNotFound), "{mixed:?}");
            let get = b.call(RequestPayload::Get(GetRequest {
                unique_identifier: Some(p[0].clone()),
                ..GetRequest::default()
            })).await;
            assert_eq!(get.result_reason, Some(ResultReason::ObjectNotFound), "{get:?}");
            // And the owner cannot join the other user's parts either.
            let reverse = a.join(&[&own[0], &own[1]]).await;
            assert_eq!(reverse.result_reason, Some(ResultReason::ObjectNotFound), "{reverse:?}");
            let own_joined = b.joined(&[&own[0], &own[2]]).await;
            assert_eq!(b.key(&own_joined).await.len(), 32);

            // XOR: every part is needed, and the parts XOR to the key.
            let x = a.split(3, 3, SplitKeyMethod::Xor, None).await;
            let mut xor = vec![0u8; 32];
            for uid in &x {
                let part = a.part(uid).await;
                for (o, y) in xor.iter_mut().zip(part.key_block.key_bytes().unwrap().as_slice()) {
                    *o ^= y;
                }
            }
            let joined = a.joined(&[&x[0], &x[1], &x[2]]).await;
            assert_eq!(a.key(&joined).await, xor);
            a.fails(join_request(&[&x[0], &x[1]]), ResultReason::InvalidField).await;
            let bad = RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
                object_type: ObjectType::SplitKey,
                unique_identifier: None,
                split_key_parts: 3,
                split_key_threshold: 2,
                split_key_method: SplitKeyMethod::Xor,
                prime_field_size: None,
                attributes: aes256(),
            });
            a.fails(bad, ResultReason::InvalidField).await;
            let prime = RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
                object_type: ObjectType::SplitKey,
                unique_identifier: None,
                split_key_parts: 3,
                split_key_threshold: 2,
                split_key_method: SplitKeyMethod::PolynomialSharingPrimeField,
                prime_field_size: Some(vec![0, 0, 0, 0, 0, 0, 0, 0xfb].into()),
                attributes: aes256(),
            });
            a.fails(prime, ResultReason::FeatureNotSupported).await;

            // GF(2^16): any two of three parts join to the same key, and one does not.
            let w = a.split(3, 2, SplitKeyMethod::PolynomialSharingGf216, None).await;
            let k = a.joined(&[&w[0], &w[1]]).await;
            let key = a.key(&k).await;
            assert_eq!(key.len(), 32);
            let k = a.joined(&[&w[2], &w[0]]).await;
            assert_eq!(a.key(&k).await, key);
            a.fails(join_request(&[&w[1]]), ResultReason::InvalidField).await;

            // An existing key, split and joined back.
            let ResponsePayload::Create(created) = a
                .ok(RequestPayload::Create(CreateRequest { templates: Vec::new(),
                    object_type: ObjectType::SymmetricKey,
                    attributes: aes256(),
                }))
                .await
            else {
                panic!("Create");
            };
            let original = a.key(&created.unique_identifier).await;
            for method in [
                SplitKeyMethod::Xor,
                SplitKeyMethod::PolynomialSharingGf28,
                SplitKeyMethod::PolynomialSharingGf216,
            ] {
                let s = a.split(2, 2, method, Some(&created.unique_identifier)).await;
                let back = a.joined(&[&s[1], &s[0]]).await;
                assert_eq!(a.key(&back).await, original, "{method:?}");
            }
            // Another user may not split it.
            let theirs = b.call(RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
                object_type: ObjectType::SplitKey,
                unique_identifier: Some(created.unique_identifier.clone()),
                split_key_parts: 2,
                split_key_threshold: 2,
                split_key_method: SplitKeyMethod::Xor,
                prime_field_size: None,
                attributes: Vec::new(),
            })).await;
            assert_eq!(theirs.result_reason, Some(ResultReason::ObjectNotFound), "{theirs:?}");

            // A key that may not leave its backend is not split.
            let mut locked = aes256();
            locked.push(Attribute::boolean(tags::EXTRACTABLE, false));
            let ResponsePayload::Create(locked) = a
                .ok(RequestPayload::Create(CreateRequest { templates: Vec::new(),
                    object_type: ObjectType::SymmetricKey,
                    attributes: locked,
                }))
                .await
            else {
                panic!("Create");
            };
            a.fails(
                RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
                    object_type: ObjectType::SplitKey,
                    unique_identifier: Some(locked.unique_identifier.clone()),
                    split_key_parts: 2,
                    split_key_threshold: 2,
                    split_key_method: SplitKeyMethod::Xor,
                    prime_field_size: None,
                    attributes: Vec::new(),
                }),
                ResultReason::NotExtractable,
            )
            .await;
        });
    }
}

backend_tests! {
    /// Registered PGP Keys and Split Keys come back as registered (1.4 and 2.1), are found by
    /// Object Type, and are destroyed.
    fn registered_objects_round_trip(backend) {
        let other = tempfile::tempdir().unwrap();
        let (home, gw) = start(backend, other.path());
        runtime().block_on(async {
            let mut a =
                Client::connect(&gw, home.ca_cert(), home.client_cert(), home.client_key()).await;
            let pgp = ManagedObject::PgpKey {
                pgp_key_version: 4,
                key_block: KeyBlock {
                    key_format_type: KeyFormatType::Opaque,
                    ..KeyBlock::raw(
                        SecretBytes::from_slice(b"\x99\x01\x0d\x04 an OpenPGP public key packet"),
                        None,
                        None,
                    )
                },
            };
            let split = ManagedObject::SplitKey(SplitKey {
                split_key_parts: 3,
                key_part_identifier: 2,
                split_key_threshold: 2,
                split_key_method: SplitKeyMethod::PolynomialSharingGf28,
                prime_field_size: None,
                key_block: KeyBlock::raw(
                    SecretBytes::from_slice(&[7u8; 16]),
                    Some(CryptographicAlgorithm::Aes),
                    Some(128),
                ),
            });
            for version in [V14, V21] {
                a.version = version;
                for object in [&pgp, &split] {
                    let ResponsePayload::Register(r) = a
                        .ok(RequestPayload::Register(RegisterRequest { templates: Vec::new(),
                            object_type: object.object_type(),
                            attributes: Vec::new(),
                            object: object.clone(),
                        }))
                        .await
                    else {
                        panic!("Register");
                    };
                    assert_eq!(&a.get(&r.unique_identifier).await, object, "{version:?}");
                    let ResponsePayload::Locate(found) = a
                        .ok(RequestPayload::Locate(LocateRequest {
                            attributes: vec![Attribute::enumeration(
                                tags::OBJECT_TYPE,
                                object.object_type(),
                            )],
                            ..LocateRequest::default()
                        }))
                        .await
                    else {
                        panic!("Locate");
                    };
                    assert!(found.unique_identifiers.contains(&r.unique_identifier));
                    a.ok(RequestPayload::Destroy(UidRequest {
                        unique_identifier: Some(r.unique_identifier.clone()),
                    }))
                    .await;
                }
            }
            // A part that could never be joined is refused at Register.
            let ManagedObject::SplitKey(mut bad) = split.clone() else { unreachable!() };
            bad.key_part_identifier = 4;
            a.fails(
                RequestPayload::Register(RegisterRequest { templates: Vec::new(),
                    object_type: ObjectType::SplitKey,
                    attributes: Vec::new(),
                    object: ManagedObject::SplitKey(bad),
                }),
                ResultReason::InvalidField,
            )
            .await;
        });
    }
}
