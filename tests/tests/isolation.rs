//! Tenant isolation against the real binary over real TLS: two users, each trusted through its
//! own CA, under the default owner-only policy. Every operation one sends at the other's key is
//! answered exactly as for an identifier no object has and changes nothing, in a plain request
//! and in a batch with Batch Error Continuation Option *Undo*; such a batch writes nothing, so
//! the vault's size tells nothing about which identifiers exist.

use kmip_e2e::{aes256_key_of, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_gateway::tooling::pki;
use kmip_wire::model::{
    Attribute, AttributeName, AttributeRequest, BatchErrorContinuationOption, BlockCipherMode,
    CertifyRequest, CheckRequest, CreateRequest, CreateSplitKeyRequest, CryptoRequest,
    CryptographicAlgorithm, CryptographicParameters, DeleteAttributeRequest,
    DiscoverVersionsRequest, GetAttributesRequest, GetRequest, JoinSplitKeyRequest, KmipEnum,
    LocateRequest, MacRequest, ModifyAttributeRequest, Name, ObjectType, PaddingMethod,
    ProtocolVersion, QueryFunction, QueryRequest, ReKeyRequest, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload,
    ResultReason, ResultStatus, RevocationReason, RevocationReasonCode, RevokeRequest, SecretBytes,
    SplitKeyMethod, State, UidRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

const V14: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
const V21: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };
/// The owner of the key under attack, and the other tenant.
const VICTIM: &str = "tenant-a";
const ATTACKER: &str = "tenant-b";
/// An identifier no object has: the reference answer for a missing object.
const MISSING_UID: &str = "00000000-0000-4000-8000-000000000000";

/// A server CA and certificate, one CA per tenant with one client certificate each, and a
/// configuration with no policy (each user manages only what it created).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let server_ca = pki::init_ca("kmip-gateway server CA", 30).unwrap();
        std::fs::write(site.path("server-ca.pem"), &server_ca.cert_pem).unwrap();
        let server = pki::issue_server_cert(
            &server_ca,
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            30,
        )
        .unwrap();
        std::fs::write(site.path("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(site.path("server.key"), server.key_pem.as_bytes()).unwrap();
        let mut users = String::new();
        for user in [VICTIM, ATTACKER] {
            let ca = pki::init_ca(&format!("{user} CA"), 30).unwrap();
            std::fs::write(site.path(&format!("{user}-ca.pem")), &ca.cert_pem).unwrap();
            let c = pki::issue_client_cert(&ca, user, 30).unwrap();
            std::fs::write(site.path(&format!("{user}.pem")), &c.cert_pem).unwrap();
            std::fs::write(site.path(&format!("{user}.key")), c.key_pem.as_bytes()).unwrap();
            users.push_str(&format!(
                "[[users]]\nname = \"{user}\"\ncas = [{:?}]\n",
                site.path(&format!("{user}-ca.pem"))
            ));
        }
        // Certify's own CA, so that Certify and Re-certify reach the object they name.
        let issuing = pki::init_ca("issuing CA", 30).unwrap();
        std::fs::write(site.path("issuing.pem"), &issuing.cert_pem).unwrap();
        std::fs::write(site.path("issuing.key"), issuing.key_pem.as_bytes()).unwrap();
        std::fs::write(
            site.config(),
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\n\
                 [certify]\nca_cert = {issuing_cert:?}\nca_key = {issuing_key:?}\n{users}",
                data = site.path("data"),
                cert = site.path("server.pem"),
                key = site.path("server.key"),
                issuing_cert = site.path("issuing.pem"),
                issuing_key = site.path("issuing.key"),
            ),
        )
        .unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start_with(&GatewayOptions {
            admin: false,
            extra_args: vec!["--config".into(), self.config().display().to_string()],
            env: Vec::new(),
            ..Default::default()
        })
    }

    /// Bytes of the vault on disk: every durable write appends to its log.
    fn vault_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        walk(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        }
        walk(&self.path("data").join("vault"))
    }

    async fn connect(&self, gw: &GatewayProcess, user: &str, version: ProtocolVersion) -> Client {
        let tls = ClientTls::from_files(
            &self.path("server-ca.pem"),
            &self.path(&format!("{user}.pem")),
            &self.path(&format!("{user}.key")),
        )
        .unwrap();
        let mut conn = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}\n{}", gw.log()));
        conn.set_timeout(Duration::from_secs(10));
        Client { conn, version }
    }
}

/// One open connection speaking one protocol version.
struct Client {
    conn: KmipClient,
    version: ProtocolVersion,
}

impl Client {
    async fn batch(
        &mut self,
        option: Option<BatchErrorContinuationOption>,
        payloads: Vec<RequestPayload>,
    ) -> Vec<ResponseBatchItem> {
        let mut header = RequestHeader::new(self.version);
        header.batch_error_continuation_option = option;
        let request = RequestMessage {
            header,
            items: payloads.into_iter().map(RequestBatchItem::new).collect(),
        };
        let reply = self
            .conn
            .call(&request.to_ttlv())
            .await
            .expect("the connection stays open and answers");
        ResponseMessage::from_ttlv(&reply)
            .expect("a Response Message")
            .items
    }

    async fn call(&mut self, payload: RequestPayload) -> ResponseBatchItem {
        let mut items = self.batch(None, vec![payload]).await;
        assert_eq!(items.len(), 1);
        items.remove(0)
    }

    async fn ok(&mut self, payload: RequestPayload) -> ResponsePayload {
        let item = self.call(payload).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
        item.payload.expect("a payload")
    }

    /// An active AES-256 key for encryption, decryption and MAC, with a Name, an Object Group
    /// and a Contact Information for the attribute operations to aim at.
    async fn active_key(&mut self, name: &str) -> String {
        let created = self
            .ok(RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x8c),
                    Attribute::name(&Name::new(name)),
                    Attribute::text(tags::OBJECT_GROUP, name),
                    Attribute::text(tags::CONTACT_INFORMATION, "storage-team"),
                ],
            }))
            .await;
        let ResponsePayload::Create(c) = created else {
            panic!("Create {name}: {created:?}");
        };
        self.ok(RequestPayload::Activate(uid_request(&c.unique_identifier)))
            .await;
        c.unique_identifier
    }

    async fn attributes(&mut self, uid: &str) -> Vec<Attribute> {
        match self.ok(get_attributes(uid)).await {
            ResponsePayload::GetAttributes(a) => a.attributes,
            other => panic!("GetAttributes {uid}: {other:?}"),
        }
    }

    async fn state(&mut self, uid: &str) -> Value {
        self.attributes(uid)
            .await
            .into_iter()
            .find(|a| a.is(tags::STATE))
            .map(|a| a.value)
            .unwrap_or_else(|| panic!("{uid} has no State"))
    }

    async fn key(&mut self, uid: &str) -> Vec<u8> {
        let item = self.call(get(uid)).await;
        aes256_key_of(&item, uid)
    }

    fn not_found(&self) -> ResultReason {
        if self.version.major >= 2 {
            ResultReason::ObjectNotFound
        } else {
            ResultReason::ItemNotFound
        }
    }
}

fn uid_request(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

fn export(uid: &str) -> RequestPayload {
    RequestPayload::Export(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

fn get_attributes(uid: &str) -> RequestPayload {
    RequestPayload::GetAttributes(GetAttributesRequest {
        unique_identifier: Some(uid.to_owned()),
        names: Vec::new(),
    })
}

fn get_attribute_list(uid: &str) -> RequestPayload {
    RequestPayload::GetAttributeList(uid_request(uid))
}

fn add_attribute(uid: &str) -> RequestPayload {
    RequestPayload::AddAttribute(AttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        attribute: Attribute::text(tags::OBJECT_GROUP, "taken-over"),
    })
}

fn modify_attribute(uid: &str) -> RequestPayload {
    RequestPayload::ModifyAttribute(ModifyAttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        current: None,
        attribute: Attribute::text(tags::CONTACT_INFORMATION, "attacker"),
    })
}

fn delete_attribute(uid: &str) -> RequestPayload {
    RequestPayload::DeleteAttribute(DeleteAttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        name: AttributeName::Tag(tags::CONTACT_INFORMATION),
        index: None,
        current: None,
    })
}

fn set_attribute(uid: &str) -> RequestPayload {
    RequestPayload::SetAttribute(AttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        attribute: Attribute::text(tags::CONTACT_INFORMATION, "attacker"),
    })
}

fn activate(uid: &str) -> RequestPayload {
    RequestPayload::Activate(uid_request(uid))
}

fn revoke(uid: &str) -> RequestPayload {
    RequestPayload::Revoke(RevokeRequest {
        unique_identifier: Some(uid.to_owned()),
        revocation_reason: RevocationReason {
            code: RevocationReasonCode::KeyCompromise,
            message: None,
        },
        compromise_occurrence_date: None,
    })
}

fn destroy(uid: &str) -> RequestPayload {
    RequestPayload::Destroy(uid_request(uid))
}

fn rekey(uid: &str) -> RequestPayload {
    RequestPayload::ReKey(ReKeyRequest {
        unique_identifier: Some(uid.to_owned()),
        ..ReKeyRequest::default()
    })
}

fn certify(uid: &str) -> RequestPayload {
    RequestPayload::Certify(CertifyRequest {
        unique_identifier: Some(uid.to_owned()),
        attributes: vec![Attribute::text(tags::CERTIFICATE_SUBJECT_CN, "probe")],
        ..CertifyRequest::default()
    })
}

fn recertify(uid: &str) -> RequestPayload {
    RequestPayload::ReCertify(CertifyRequest {
        unique_identifier: Some(uid.to_owned()),
        ..CertifyRequest::default()
    })
}

fn check(uid: &str) -> RequestPayload {
    RequestPayload::Check(CheckRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_usage_mask: Some(0x0c),
        ..CheckRequest::default()
    })
}

fn cbc() -> Option<CryptographicParameters> {
    Some(CryptographicParameters {
        block_cipher_mode: Some(BlockCipherMode::Cbc),
        padding_method: Some(PaddingMethod::Pkcs5),
        cryptographic_algorithm: Some(CryptographicAlgorithm::Aes),
        ..CryptographicParameters::default()
    })
}

fn encrypt(uid: &str) -> RequestPayload {
    RequestPayload::Encrypt(CryptoRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_parameters: cbc(),
        data: Some(SecretBytes::from_slice(b"attacker plaintext")),
        ..CryptoRequest::default()
    })
}

fn decrypt(uid: &str) -> RequestPayload {
    RequestPayload::Decrypt(CryptoRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_parameters: cbc(),
        data: Some(SecretBytes::from_slice(&[0x5a; 32])),
        iv_counter_nonce: Some(bytes::Bytes::from_static(&[0; 16])),
        ..CryptoRequest::default()
    })
}

fn mac(uid: &str) -> RequestPayload {
    RequestPayload::Mac(MacRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_parameters: Some(CryptographicParameters {
            cryptographic_algorithm: Some(CryptographicAlgorithm::HmacSha256),
            ..CryptographicParameters::default()
        }),
        data: Some(SecretBytes::from_slice(b"attacker data")),
        ..MacRequest::default()
    })
}

fn locate_uid(uid: &str) -> RequestPayload {
    RequestPayload::Locate(LocateRequest {
        attributes: vec![Attribute::text(tags::UNIQUE_IDENTIFIER, uid)],
        ..LocateRequest::default()
    })
}

fn query() -> RequestPayload {
    RequestPayload::Query(QueryRequest {
        functions: vec![QueryFunction::QueryOperations],
    })
}

fn create_split_key(uid: &str) -> RequestPayload {
    RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
        object_type: ObjectType::SplitKey,
        unique_identifier: Some(uid.to_owned()),
        split_key_parts: 2,
        split_key_threshold: 2,
        split_key_method: SplitKeyMethod::Xor,
        prime_field_size: None,
        attributes: Vec::new(),
    })
}

fn join_split_key(uid: &str) -> RequestPayload {
    RequestPayload::JoinSplitKey(JoinSplitKeyRequest {
        object_type: ObjectType::SymmetricKey,
        unique_identifiers: vec![uid.to_owned()],
        secret_data_type: None,
        attributes: Vec::new(),
    })
}

/// Builds a request aimed at one object.
type Probe = fn(&str) -> RequestPayload;

/// Every operation the gateway implements that names an object (Create, Register, Query and
/// Discover Versions name none; Locate is aimed by the identifier as a filter).
const PROBES: [(&str, Probe); 21] = [
    ("Get", get),
    ("Export", export),
    ("GetAttributes", get_attributes),
    ("GetAttributeList", get_attribute_list),
    ("AddAttribute", add_attribute),
    ("ModifyAttribute", modify_attribute),
    ("DeleteAttribute", delete_attribute),
    ("SetAttribute", set_attribute),
    ("Activate", activate),
    ("Revoke", revoke),
    ("Destroy", destroy),
    ("ReKey", rekey),
    ("Certify", certify),
    ("ReCertify", recertify),
    ("Check", check),
    ("Encrypt", encrypt),
    ("Decrypt", decrypt),
    ("MAC", mac),
    ("Locate", locate_uid),
    ("CreateSplitKey", create_split_key),
    ("JoinSplitKey", join_split_key),
];

/// Issue 12, item 2: user B sends every operation at user A's key, alone and in an Undo batch;
/// each answer is the whole answer for an identifier that does not exist, and A's key (its
/// attributes and its material) is unchanged afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_on_another_users_key_answers_as_for_a_missing_one() {
    let site = Site::new();
    let gw = site.start();
    for version in [V14, V21] {
        let mut owner = site.connect(&gw, VICTIM, version).await;
        let mut other = site.connect(&gw, ATTACKER, version).await;
        let uid = owner
            .active_key(&format!("a-key-{}.{}", version.major, version.minor))
            .await;
        // The first Get clears Fresh: take the reference after it.
        let material = owner.key(&uid).await;
        let attributes = owner.attributes(&uid).await;

        for (what, probe) in PROBES {
            let on_hidden = other.call(probe(&uid)).await;
            let on_missing = other.call(probe(MISSING_UID)).await;
            assert_eq!(
                on_hidden, on_missing,
                "{what} at {version:?}: another user's key must answer exactly as a missing one"
            );
            if what == "Locate" {
                assert_eq!(
                    on_hidden.result_status,
                    ResultStatus::Success,
                    "{on_hidden:?}"
                );
                let Some(ResponsePayload::Locate(l)) = &on_hidden.payload else {
                    panic!("Locate: {on_hidden:?}");
                };
                assert!(l.unique_identifiers.is_empty(), "{on_hidden:?}");
            } else {
                assert_eq!(
                    (on_hidden.result_status, on_hidden.result_reason),
                    (ResultStatus::OperationFailed, Some(other.not_found())),
                    "{what} at {version:?}: {on_hidden:?}"
                );
            }
            let undo = Some(BatchErrorContinuationOption::Undo);
            let on_hidden = other.batch(undo, vec![query(), probe(&uid)]).await;
            let on_missing = other.batch(undo, vec![query(), probe(MISSING_UID)]).await;
            assert_eq!(
                on_hidden, on_missing,
                "{what} at {version:?} in an Undo batch: answered unlike a missing key"
            );
        }
        // Operations that name no object keep working for the other user.
        other.ok(query()).await;
        other
            .ok(RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
                versions: Vec::new(),
            }))
            .await;

        assert_eq!(owner.attributes(&uid).await, attributes, "{version:?}");
        assert_eq!(owner.key(&uid).await, material, "{version:?}");
        assert_eq!(
            owner.state(&uid).await,
            Value::Enumeration(State::Active.to_u32())
        );
    }
}

/// Issue 12, item 1: B knows A's identifier and sends Undo batches that name it and fail. A's
/// acknowledged Revoke stands, also after a restart, and B's batches write nothing: the vault does
/// not grow, exactly as for an identifier no object has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_batch_of_another_user_leaves_the_victims_key_and_the_vault_alone() {
    let site = Site::new();
    let mut gw = site.start();
    let mut owner = site.connect(&gw, VICTIM, V21).await;
    let uid = owner.active_key("a-revoked-key").await;
    owner
        .ok(RequestPayload::Revoke(RevokeRequest {
            unique_identifier: Some(uid.clone()),
            revocation_reason: RevocationReason {
                code: RevocationReasonCode::CessationOfOperation,
                message: None,
            },
            compromise_occurrence_date: None,
        }))
        .await;
    let revoked = owner.attributes(&uid).await;
    let deactivated = Value::Enumeration(State::Deactivated.to_u32());
    assert_eq!(owner.state(&uid).await, deactivated);

    let vault_before = site.vault_bytes();
    let undo = Some(BatchErrorContinuationOption::Undo);
    for version in [V14, V21] {
        let mut other = site.connect(&gw, ATTACKER, version).await;
        for target in [uid.as_str(), MISSING_UID] {
            // The victim's key named first (the batch stops there) and after an item that
            // succeeded (whose undo must not reach the victim's key either).
            for batch in [
                vec![activate(target), query()],
                vec![query(), activate(target)],
                vec![query(), modify_attribute(target)],
                vec![get_attributes(target), query()],
            ] {
                let items = other.batch(undo, batch).await;
                let failed = items.last().expect("an answer");
                assert_eq!(
                    (failed.result_status, failed.result_reason),
                    (ResultStatus::OperationFailed, Some(other.not_found())),
                    "{items:?}"
                );
            }
        }
        let on_hidden = other.batch(undo, vec![query(), activate(&uid)]).await;
        let on_missing = other
            .batch(undo, vec![query(), activate(MISSING_UID)])
            .await;
        assert_eq!(on_hidden, on_missing, "{version:?}");
    }
    assert_eq!(
        site.vault_bytes(),
        vault_before,
        "another user's failed Undo batches wrote to the vault"
    );
    assert_eq!(owner.attributes(&uid).await, revoked);
    let material = owner.key(&uid).await;

    drop(owner);
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(30)).is_some(),
        "{}",
        gw.log()
    );
    drop(gw);
    let gw = site.start();
    let mut owner = site.connect(&gw, VICTIM, V21).await;
    assert_eq!(owner.state(&uid).await, deactivated, "after a restart");
    assert_eq!(owner.key(&uid).await, material);
}
