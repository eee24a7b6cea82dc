//! Operation semantics through the dispatcher, on a real file vault in a temporary folder.

use crate::config::LimitsConfig;
use crate::identity::Identity;
use crate::kmip::access::{owner_only, Access};
use crate::kmip::dispatch::{ConnContext, Dispatcher, Outcome};
use crate::kmip::store::Store;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Value};
use std::sync::Arc;

fn dispatcher_over(store: Arc<Store>, limits: LimitsConfig) -> Dispatcher {
    let policy = owner_only(["purefa".to_owned(), "other".to_owned()].into_iter()).unwrap();
    Dispatcher::new(
        super::Ops::new(
            store,
            Arc::new(Access::new(policy)),
            crate::config::LocateCacheConfig {
                max_entries: 100,
                ..Default::default()
            },
        )
        .with_limits(&limits),
        limits,
        None,
    )
}

struct Harness {
    dispatcher: Dispatcher,
    conn: ConnContext,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    harness_with(LimitsConfig::default()).await
}

async fn harness_with(limits: LimitsConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("vault"), MasterKeySource::VaultDir).unwrap();
    let store = Arc::new(Store::open(Arc::new(vault)).await.unwrap());
    Harness {
        dispatcher: dispatcher_over(store, limits),
        conn: ConnContext::new(
            1,
            "127.0.0.1:1".parse().unwrap(),
            Identity {
                user: "purefa".into(),
                subject: "CN=purefa".into(),
                serial_hex: "01".into(),
                fingerprint: "00".into(),
            },
        ),
        _dir: dir,
    }
}

impl Harness {
    async fn send(
        &self,
        version: ProtocolVersion,
        items: Vec<RequestBatchItem>,
    ) -> ResponseMessage {
        let msg = RequestMessage {
            header: RequestHeader::new(version),
            items,
        };
        let bytes = msg.to_ttlv().to_bytes().unwrap();
        let Outcome::Respond(out) = self.dispatcher.handle(&self.conn, bytes).await else {
            panic!("connection closed");
        };
        ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap()
    }

    async fn one(&self, version: ProtocolVersion, payload: RequestPayload) -> ResponseBatchItem {
        let mut r = self
            .send(version, vec![RequestBatchItem::new(payload)])
            .await;
        assert_eq!(r.items.len(), 1);
        r.items.remove(0)
    }

    async fn create(&self, version: ProtocolVersion, name: Option<&str>) -> String {
        let mut attributes = vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
        ];
        attributes.extend(name.map(|n| Attribute::name(&Name::new(n))));
        let item = self
            .one(
                version,
                RequestPayload::Create(CreateRequest {
                    templates: Vec::new(),
                    object_type: ObjectType::SymmetricKey,
                    attributes,
                }),
            )
            .await;
        match item.payload {
            Some(ResponsePayload::Create(c)) => c.unique_identifier,
            other => panic!("create failed: {:?} {:?}", item.result_reason, other),
        }
    }
}

fn uid_req(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

fn get_req(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        key_format_type: None,
        key_wrap_type: None,
        key_compression_type: None,
        key_wrapping_specification: None,
    })
}

fn revoke_req(uid: &str, code: RevocationReasonCode) -> RequestPayload {
    RequestPayload::Revoke(RevokeRequest {
        unique_identifier: Some(uid.to_owned()),
        revocation_reason: RevocationReason {
            code,
            message: None,
        },
        compromise_occurrence_date: None,
    })
}

#[tokio::test]
async fn lifecycle_follows_the_state_machine_with_version_specific_reasons() {
    for (version, destroyed_reason, wrong_state_reason) in [
        (
            ProtocolVersion::V1_4,
            ResultReason::ItemNotFound,
            ResultReason::PermissionDenied,
        ),
        (
            ProtocolVersion::V2_1,
            ResultReason::ObjectDestroyed,
            ResultReason::WrongKeyLifecycleState,
        ),
    ] {
        let h = harness().await;
        let uid = h.create(version, Some("rdl-key")).await;
        let got = h.one(version, get_req(&uid)).await;
        match got.payload {
            Some(ResponsePayload::Get(g)) => {
                let kb = g.object.key_block().unwrap();
                assert_eq!(kb.key_bytes().unwrap().len(), 32);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.one(version, RequestPayload::Activate(uid_req(&uid)))
                .await
                .result_status,
            ResultStatus::Success
        );
        let d = h.one(version, RequestPayload::Destroy(uid_req(&uid))).await;
        assert_eq!(
            d.result_reason,
            Some(wrong_state_reason),
            "an Active key cannot be destroyed"
        );
        let r = h
            .one(
                version,
                revoke_req(&uid, RevocationReasonCode::CessationOfOperation),
            )
            .await;
        assert_eq!(r.result_status, ResultStatus::Success);
        assert_eq!(
            h.one(version, RequestPayload::Destroy(uid_req(&uid)))
                .await
                .result_status,
            ResultStatus::Success
        );
        let g = h.one(version, get_req(&uid)).await;
        assert_eq!(g.result_reason, Some(destroyed_reason));
        let ga = h
            .one(
                version,
                RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(uid.clone()),
                    names: vec![AttributeName::Tag(tags::STATE)],
                }),
            )
            .await;
        match ga.payload {
            Some(ResponsePayload::GetAttributes(a)) => {
                assert_eq!(
                    a.attributes[0].value,
                    Value::Enumeration(State::Destroyed.to_u32())
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn revoke_for_compromise_marks_the_key_compromised() {
    let h = harness().await;
    let uid = h.create(ProtocolVersion::V1_4, None).await;
    h.one(
        ProtocolVersion::V1_4,
        RequestPayload::Activate(uid_req(&uid)),
    )
    .await;
    h.one(
        ProtocolVersion::V1_4,
        revoke_req(&uid, RevocationReasonCode::KeyCompromise),
    )
    .await;
    let obj = h.dispatcher.ops().store.get(&uid).unwrap();
    assert_eq!(obj.enum_of(tags::STATE), Some(State::Compromised.to_u32()));
}

#[tokio::test]
async fn vcenter_batch_of_three_add_attributes_and_unknown_custom_attribute() {
    let h = harness().await;
    let v = ProtocolVersion::V1_1;
    let uid = h.create(v, None).await;
    let product = AttributeName::Vendor {
        vendor: "x".into(),
        name: "Product_Version".into(),
    };
    let ga = h
        .one(
            v,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.clone()),
                names: vec![product.clone()],
            }),
        )
        .await;
    assert_eq!(
        ga.result_status,
        ResultStatus::Success,
        "an absent custom attribute is not an error"
    );
    let add = |name: &str, value: &str| {
        let mut item = RequestBatchItem::new(RequestPayload::AddAttribute(AttributeRequest {
            unique_identifier: Some(uid.clone()),
            attribute: Attribute::vendor("x", name, Value::TextString(value.into())),
        }));
        item.unique_batch_item_id = Some(bytes::Bytes::copy_from_slice(name.as_bytes()));
        item
    };
    let resp = h
        .send(
            v,
            vec![
                add("Product_Version", "7.0.3"),
                add("Vendor", "VMware"),
                add("Product", "vCenter"),
            ],
        )
        .await;
    assert_eq!(resp.items.len(), 3);
    for (item, id) in resp
        .items
        .iter()
        .zip(["Product_Version", "Vendor", "Product"])
    {
        assert_eq!(item.result_status, ResultStatus::Success);
        assert_eq!(
            item.unique_batch_item_id.as_deref(),
            Some(id.as_bytes()),
            "Unique Batch Item ID echoed"
        );
    }
    let obj = h.dispatcher.ops().store.get(&uid).unwrap();
    assert_eq!(obj.find(&product).count(), 1);
}

#[tokio::test]
async fn locate_by_name_group_and_paging() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let a = h.create(v, Some("a")).await;
    let _b = h.create(v, Some("b")).await;
    let locate = |attributes: Vec<Attribute>, max: Option<i32>| {
        RequestPayload::Locate(LocateRequest {
            maximum_items: max,
            offset_items: None,
            storage_status_mask: None,
            object_group_member: None,
            attributes,
        })
    };
    let found = |item: ResponseBatchItem| match item.payload {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        found(
            h.one(v, locate(vec![Attribute::name(&Name::new("a"))], None))
                .await
        ),
        vec![a.clone()]
    );
    assert!(found(
        h.one(v, locate(vec![Attribute::name(&Name::new("zzz"))], None))
            .await
    )
    .is_empty());
    assert_eq!(found(h.one(v, locate(vec![], Some(1))).await).len(), 1);
    assert_eq!(found(h.one(v, locate(vec![], None)).await).len(), 2);
}

#[tokio::test]
async fn names_are_unique_among_live_objects() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    h.create(v, Some("dup")).await;
    let item = h
        .one(
            v,
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
                    Attribute::name(&Name::new("dup")),
                ],
            }),
        )
        .await;
    assert_eq!(
        item.result_reason,
        Some(ResultReason::NonUniqueNameAttribute)
    );
}

/// Concurrent Creates with one new Name: the uniqueness check and the write used to be separate
/// steps, so several could pass the check before any was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_new_name_make_one_object() {
    const RACERS: usize = 8;
    let h = Arc::new(harness().await);
    let v = ProtocolVersion::V2_1;
    for round in 0..10 {
        let name = format!("race-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let (h, name, start) = (h.clone(), name.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let create = RequestPayload::Create(CreateRequest {
                        templates: Vec::new(),
                        object_type: ObjectType::SymmetricKey,
                        attributes: vec![
                            Attribute::enumeration(
                                tags::CRYPTOGRAPHIC_ALGORITHM,
                                CryptographicAlgorithm::Aes,
                            ),
                            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                            Attribute::name(&Name::new(&name)),
                        ],
                    });
                    h.one(v, create).await.result_reason
                })
            })
            .collect();
        let mut reasons = Vec::new();
        for r in racers {
            reasons.push(r.await.unwrap());
        }
        assert_eq!(
            reasons.iter().filter(|r| r.is_none()).count(),
            1,
            "round {round}: {reasons:?}"
        );
        assert!(reasons
            .iter()
            .flatten()
            .all(|r| *r == ResultReason::NonUniqueNameAttribute));
        assert_eq!(located(&h.dispatcher, &h.conn, &name).await.len(), 1);
    }
}

/// What is not an attribute is refused where a client sets attributes; custom ones are kept.
#[tokio::test]
async fn only_attributes_can_be_set() {
    let h = harness().await;
    let aes = || {
        vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
        ]
    };
    let not_attributes = [
        Attribute::integer(tags::BATCH_COUNT, 1),
        Attribute::new(Tag(0x54_0001), Value::Integer(1)),
        Attribute {
            name: AttributeName::Unknown("Not An Attribute".into()),
            index: None,
            value: Value::TextString("v".into()),
        },
    ];
    let uid = h.create(ProtocolVersion::V1_4, None).await;
    for (v, junk) in [ProtocolVersion::V1_4, ProtocolVersion::V2_1]
        .into_iter()
        .flat_map(|v| not_attributes.iter().map(move |a| (v, a.clone())))
    {
        let mut attributes = aes();
        attributes.push(junk.clone());
        let create = RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes,
        });
        let add = RequestPayload::AddAttribute(AttributeRequest {
            unique_identifier: Some(uid.clone()),
            attribute: junk.clone(),
        });
        for payload in [create, add] {
            let item = h.one(v, payload).await;
            assert_eq!(
                item.result_reason,
                Some(ResultReason::InvalidField),
                "{v:?} {junk:?}: {:?}",
                item.result_message
            );
        }
    }
    // Custom attributes, and attributes only the other major version defines, are attributes.
    let mut attributes = aes();
    attributes.push(Attribute::text(tags::OPERATION_POLICY_NAME, "default"));
    attributes.push(Attribute::vendor(
        "x",
        "Product_Version",
        Value::TextString("8".into()),
    ));
    let item = h
        .one(
            ProtocolVersion::V1_4,
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes,
            }),
        )
        .await;
    assert_eq!(
        item.result_status,
        ResultStatus::Success,
        "{:?}",
        item.result_message
    );
}

#[tokio::test]
async fn attributes_and_tombstones_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let uid;
    {
        let vault = Vault::open(&path, MasterKeySource::VaultDir).unwrap();
        let store = Arc::new(Store::open(Arc::new(vault)).await.unwrap());
        let h = Harness {
            dispatcher: dispatcher_over(store, LimitsConfig::default()),
            conn: harness().await.conn,
            _dir: tempfile::tempdir().unwrap(),
        };
        uid = h.create(ProtocolVersion::V1_4, Some("kept")).await;
        h.one(
            ProtocolVersion::V1_4,
            RequestPayload::Destroy(uid_req(&uid)),
        )
        .await;
    }
    let vault = Vault::open(&path, MasterKeySource::VaultDir).unwrap();
    let store = Store::open(Arc::new(vault)).await.unwrap();
    let obj = store.get(&uid).unwrap();
    assert_eq!(obj.enum_of(tags::STATE), Some(State::Destroyed.to_u32()));
    assert_eq!(&*obj.owner, "purefa");
    assert!(obj.first(tags::NAME).is_some());
}

#[tokio::test]
async fn an_undecodable_message_is_answered_then_the_connection_closes() {
    let h = harness().await;
    let out = h
        .dispatcher
        .handle(
            &h.conn,
            bytes::Bytes::from_static(&[0x42, 0, 0x78, 0x01, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
        )
        .await;
    assert!(matches!(out, Outcome::RespondAndClose(_)));
}

fn conn_of(user: &str) -> ConnContext {
    ConnContext::new(
        2,
        "127.0.0.1:2".parse().unwrap(),
        Identity {
            user: user.into(),
            subject: format!("CN={user}"),
            serial_hex: "02".into(),
            fingerprint: "01".into(),
        },
    )
}

fn locate_name(name: &str) -> RequestPayload {
    RequestPayload::Locate(LocateRequest {
        maximum_items: None,
        offset_items: None,
        storage_status_mask: None,
        object_group_member: None,
        attributes: vec![Attribute::name(&Name::new(name))],
    })
}

async fn located(d: &Dispatcher, conn: &ConnContext, name: &str) -> Vec<String> {
    let msg = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V1_4),
        items: vec![RequestBatchItem::new(locate_name(name))],
    };
    let Outcome::Respond(out) = d.handle(conn, msg.to_ttlv().to_bytes().unwrap()).await else {
        panic!("closed");
    };
    let mut r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    match r.items.remove(0).payload {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn another_user_sees_nothing_and_gets_item_not_found() {
    let h = harness().await;
    let uid = h.create(ProtocolVersion::V1_4, Some("mine")).await;
    let other = conn_of("other");
    assert!(located(&h.dispatcher, &other, "mine").await.is_empty());
    assert_eq!(
        located(&h.dispatcher, &h.conn, "mine").await,
        vec![uid.clone()]
    );
    let msg = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V1_4),
        items: vec![
            RequestBatchItem::new(get_req(&uid)),
            RequestBatchItem::new(get_req("no-such-uid")),
        ],
    };
    let mut header = msg.header.clone();
    header.batch_error_continuation_option = Some(BatchErrorContinuationOption::Continue);
    let msg = RequestMessage { header, ..msg };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&other, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(r.items[0].result_reason, Some(ResultReason::ItemNotFound));
    assert_eq!(
        (r.items[0].result_reason, r.items[0].result_message.clone()),
        (r.items[1].result_reason, r.items[1].result_message.clone()),
        "an invisible object is indistinguishable from a missing one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_locate_never_misses_an_acknowledged_create_or_returns_a_destroyed_object() {
    let h = Arc::new(harness().await);
    let v = ProtocolVersion::V1_4;
    // Readers hammer Locate for the names being written, keeping the cache warm and racing the
    // writers' invalidations.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (h, stop) = (h.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for i in 0..5 {
                    located(&h.dispatcher, &h.conn, &format!("k{i}")).await;
                }
                n += 1;
            }
            n
        }));
    }
    for round in 0..20 {
        let name = format!("k{}", round % 5);
        let uid = h.create(v, Some(&name)).await;
        assert_eq!(
            located(&h.dispatcher, &h.conn, &name).await,
            vec![uid.clone()],
            "round {round}: Create acknowledged, Locate must find it"
        );
        h.one(v, RequestPayload::Destroy(uid_req(&uid))).await;
        assert!(
            located(&h.dispatcher, &h.conn, &name).await.is_empty(),
            "round {round}: Destroy acknowledged, Locate must not return it"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
}

#[tokio::test]
async fn repeated_locates_are_served_from_the_cache_until_a_relevant_write() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let uid = h.create(v, Some("cached")).await;
    let store = h.dispatcher.ops().store.clone();
    let before = store.generations().current();
    assert_eq!(
        located(&h.dispatcher, &h.conn, "cached").await,
        vec![uid.clone()]
    );
    assert_eq!(
        located(&h.dispatcher, &h.conn, "cached").await,
        vec![uid.clone()]
    );
    // A write to an attribute no Locate depends on here leaves the sequence of relevant changes
    // alone; a Name change invalidates.
    h.one(
        v,
        RequestPayload::AddAttribute(AttributeRequest {
            unique_identifier: Some(uid.clone()),
            attribute: Attribute::text(tags::CONTACT_INFORMATION, "ops@example.com"),
        }),
    )
    .await;
    assert!(store.generations().current() > before);
    assert_eq!(
        located(&h.dispatcher, &h.conn, "cached").await,
        vec![uid.clone()]
    );
    h.one(
        v,
        RequestPayload::ModifyAttribute(ModifyAttributeRequest {
            unique_identifier: Some(uid.clone()),
            current: None,
            attribute: Attribute::name(&Name::new("renamed")),
        }),
    )
    .await;
    assert!(located(&h.dispatcher, &h.conn, "cached").await.is_empty());
    assert_eq!(located(&h.dispatcher, &h.conn, "renamed").await, vec![uid]);
}

#[tokio::test]
async fn name_uniqueness_does_not_reveal_other_users_objects() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    h.create(v, Some("shared-name")).await;
    let other = conn_of("other");
    let msg = RequestMessage {
        header: RequestHeader::new(v),
        items: vec![RequestBatchItem::new(RequestPayload::Create(
            CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
                    Attribute::name(&Name::new("shared-name")),
                ],
            },
        ))],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&other, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(
        r.items[0].result_status,
        ResultStatus::Success,
        "{:?}",
        r.items[0].result_message
    );
}

/// Found by the `request_path` fuzz target: a message the model rejects (Batch Count 10753 for
/// one item) whose header names an unknown version (1.-1543503868) was answered in that version,
/// where every tag is pruned: an empty Response Message the client cannot read.
#[tokio::test]
async fn malformed_message_in_an_unknown_version_is_answered_in_1_0() {
    let h = harness().await;
    let request = hex::decode(
        "42007801000000984200770100000038420069010000002042006a02000000040000000100000000\
         42006b0200000004a40000040000000042000d020000000400002a010000000042000f0100000050\
         42005c05000000040000000b0000000042007901000000384200940700000019\
         64756d6d7920554e495155455f4944454e5449464945525f3000000000000000\
         42000a07000000055374617465000000",
    )
    .unwrap();
    let Outcome::Respond(out) = h.dispatcher.handle(&h.conn, request.into()).await else {
        panic!("connection closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(
        r.header.protocol_version,
        ProtocolVersion { major: 1, minor: 0 }
    );
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].result_status, ResultStatus::OperationFailed);
}

/// Bytes the harness's vault holds on disk: every durable write appends to it.
fn vault_bytes(h: &Harness) -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
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
    walk(&h._dir.path().join("vault"))
}

fn state_of_uid(h: &Harness, uid: &str) -> Option<u32> {
    h.dispatcher
        .ops()
        .store
        .get(uid)
        .and_then(|o| o.enum_of(tags::STATE))
}

fn ctx_of(user: &str, version: ProtocolVersion) -> super::OpContext<'_> {
    super::OpContext::new(user, version, 0)
}

fn add_text(uid: &str, tag: Tag, text: &str) -> RequestPayload {
    RequestPayload::AddAttribute(AttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        attribute: Attribute::text(tag, text),
    })
}

/// Issue 12, item 1: an Undo batch of another user that names the victim's key and fails must
/// neither journal it (so its undo cannot put back a version from before the victim's Revoke)
/// nor write anything (the vault growing only for existing identifiers is an oracle).
#[tokio::test]
async fn an_undo_batch_never_journals_or_restores_an_object_its_caller_cannot_see() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let uid = h.create(v, Some("victim")).await;
    h.one(v, RequestPayload::Activate(uid_req(&uid))).await;
    let ops = h.dispatcher.ops();
    let mut ctx = ctx_of("other", v);
    let mut journal = super::UndoJournal::default();
    let attack = ops
        .execute_undoable(
            &mut ctx,
            revoke_req(&uid, RevocationReasonCode::Unspecified),
            &mut journal,
        )
        .await;
    assert!(
        matches!(attack, Err(super::OpError::NotFound)),
        "{attack:?}"
    );
    // The victim's own Revoke lands while the attacker's batch is still open.
    let revoked = h
        .one(
            v,
            revoke_req(&uid, RevocationReasonCode::CessationOfOperation),
        )
        .await;
    assert_eq!(revoked.result_status, ResultStatus::Success);
    let before = vault_bytes(&h);
    let _ = ops.undo(journal).await;
    assert_eq!(
        state_of_uid(&h, &uid),
        Some(State::Deactivated.to_u32()),
        "the victim's acknowledged Revoke was rolled back by another user's batch"
    );
    assert_eq!(
        vault_bytes(&h),
        before,
        "the attacker's undo wrote to the vault"
    );
}

/// Undo is a compare-and-swap on the version the batch itself wrote: a change made since by
/// someone else stays, and the undo says it is incomplete.
#[tokio::test]
async fn undo_leaves_an_object_changed_since_by_someone_else() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let uid = h.create(v, Some("shared")).await;
    let ops = h.dispatcher.ops();
    let mut ctx = ctx_of("purefa", v);
    let mut journal = super::UndoJournal::default();
    ops.execute_undoable(
        &mut ctx,
        add_text(&uid, tags::CONTACT_INFORMATION, "batch"),
        &mut journal,
    )
    .await
    .unwrap();
    // Another connection changes the object after the batch did.
    let later = h
        .one(v, add_text(&uid, tags::OBJECT_GROUP, "written-later"))
        .await;
    assert_eq!(later.result_status, ResultStatus::Success);
    let outcome = ops.undo(journal).await;
    let obj = ops.store.get(&uid).unwrap();
    assert!(
        obj.all(tags::OBJECT_GROUP)
            .any(|a| a.as_text() == Some("written-later")),
        "undo clobbered a change made after the batch's own: {obj:?}"
    );
    assert!(
        outcome.is_err(),
        "the undo must report that it is incomplete"
    );
}

/// What an Undo batch did itself is rolled back: an attribute it added, an object it created.
#[tokio::test]
async fn an_undo_batch_rolls_back_its_own_changes() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let uid = h.create(v, Some("kept")).await;
    let before = h.dispatcher.ops().store.get(&uid).unwrap();
    let mut header = RequestHeader::new(v);
    header.batch_error_continuation_option = Some(BatchErrorContinuationOption::Undo);
    let msg = RequestMessage {
        header,
        items: vec![
            RequestBatchItem::new(add_text(&uid, tags::CONTACT_INFORMATION, "undone")),
            RequestBatchItem::new(RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
                    Attribute::name(&Name::new("undone-create")),
                ],
            })),
            RequestBatchItem::new(get_req("00000000-0000-4000-8000-000000000000")),
        ],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&h.conn, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    let statuses: Vec<ResultStatus> = r.items.iter().map(|i| i.result_status).collect();
    assert_eq!(
        statuses,
        vec![
            ResultStatus::OperationUndone,
            ResultStatus::OperationUndone,
            ResultStatus::OperationFailed
        ]
    );
    let after = h.dispatcher.ops().store.get(&uid).unwrap();
    assert_eq!(
        after.attributes().collect::<Vec<_>>(),
        before.attributes().collect::<Vec<_>>()
    );
    assert!(located(&h.dispatcher, &h.conn, "undone-create")
        .await
        .is_empty());
    assert_eq!(h.dispatcher.ops().store.len(), 1);
}

/// Fail closed: an operation the policy has no name for, or an object operation whose target is
/// not known, is refused by `authorize` itself, before any state is touched.
#[tokio::test]
async fn authorize_refuses_what_it_cannot_decide() {
    let h = harness().await;
    let ops = h.dispatcher.ops();
    let ctx = ctx_of("purefa", ProtocolVersion::V2_1);
    let unknown = RequestPayload::Unknown {
        op_code: Operation::Other(0x0000_00ff),
        raw: kmip_wire::ttlv::Ttlv::structure(tags::REQUEST_PAYLOAD, Vec::new()),
    };
    assert!(
        matches!(
            ops.authorize(&ctx, &unknown),
            Err(super::OpError::OperationNotSupported)
        ),
        "an operation with no policy mapping was allowed"
    );
    let no_target = RequestPayload::Revoke(RevokeRequest {
        unique_identifier: None,
        revocation_reason: RevocationReason {
            code: RevocationReasonCode::Unspecified,
            message: None,
        },
        compromise_occurrence_date: None,
    });
    assert!(
        matches!(
            ops.authorize(&ctx, &no_target),
            Err(super::OpError::MissingData(_))
        ),
        "an object operation without an identifier was allowed"
    );
    // What needs no object stays open to every user, including one the policy does not list.
    for user in ["purefa", "other", "unlisted"] {
        let ctx = ctx_of(user, ProtocolVersion::V2_1);
        for payload in [
            RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
                versions: Vec::new(),
            }),
            RequestPayload::Query(QueryRequest {
                functions: vec![QueryFunction::QueryOperations],
            }),
        ] {
            assert!(ops.authorize(&ctx, &payload).is_ok(), "{user}: {payload:?}");
        }
    }
}

fn locate_all(maximum_items: Option<i32>, offset_items: Option<i32>) -> RequestPayload {
    RequestPayload::Locate(LocateRequest {
        maximum_items,
        offset_items,
        storage_status_mask: None,
        object_group_member: None,
        attributes: Vec::new(),
    })
}

/// Issue 12, item 3(d): `limits.max_locate_results` caps every Locate answer, whatever Maximum
/// Items asks for (or when it asks for none); Located Items still counts every match.
#[tokio::test]
async fn locate_answers_are_capped_by_max_locate_results() {
    let h = harness_with(LimitsConfig {
        max_locate_results: 3,
        ..LimitsConfig::default()
    })
    .await;
    let v = ProtocolVersion::V2_1;
    for _ in 0..5 {
        h.create(v, None).await;
    }
    for (max, offset, expected) in [
        (None, None, 3),
        (Some(10), None, 3),
        (Some(2), None, 2),
        (None, Some(3), 2),
    ] {
        let item = h.one(v, locate_all(max, offset)).await;
        let Some(ResponsePayload::Locate(l)) = item.payload else {
            panic!("{item:?}");
        };
        assert_eq!(
            l.unique_identifiers.len(),
            expected,
            "max {max:?} offset {offset:?}"
        );
        assert_eq!(l.located_items, Some(5));
    }
}

fn register_secret() -> RequestPayload {
    RequestPayload::Register(RegisterRequest {
        templates: Vec::new(),
        object_type: ObjectType::SecretData,
        attributes: Vec::new(),
        object: ManagedObject::SecretData {
            secret_data_type: SecretDataType::Password,
            key_block: KeyBlock::raw(SecretBytes::from_slice(b"password"), None, None),
        },
    })
}

/// Issue 12, item 3(d): `limits.max_objects_per_user` refuses Create, Register and ReKey beyond
/// the user's live objects, with a reason and a message naming the limit; other users are not
/// affected; destroyed objects and undone creations free their slot; a restart counts again.
#[tokio::test]
async fn objects_per_user_are_capped_by_max_objects_per_user() {
    let h = harness_with(LimitsConfig {
        max_objects_per_user: 2,
        ..LimitsConfig::default()
    })
    .await;
    let v = ProtocolVersion::V2_1;
    let first = h.create(v, None).await;
    h.create(v, None).await;
    let create = RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
        ],
    });
    let rekey = RequestPayload::ReKey(ReKeyRequest {
        unique_identifier: Some(first.clone()),
        ..ReKeyRequest::default()
    });
    for (version, reason) in [
        (v, ResultReason::ServerLimitExceeded),
        (ProtocolVersion::V1_4, ResultReason::GeneralFailure),
    ] {
        for payload in [create.clone(), register_secret(), rekey.clone()] {
            let item = h.one(version, payload).await;
            assert_eq!(
                (item.result_status, item.result_reason),
                (ResultStatus::OperationFailed, Some(reason)),
                "{item:?}"
            );
            let message = item.result_message.unwrap_or_default();
            assert!(
                message.contains("limits.max_objects_per_user (2)"),
                "{message}"
            );
        }
    }
    let store = h.dispatcher.ops().store.clone();
    assert_eq!(
        store.live_objects("purefa"),
        2,
        "refused creations hold no slot"
    );
    assert_eq!(store.len(), 2);

    // Another user has its own quota.
    let other = conn_of("other");
    let msg = RequestMessage {
        header: RequestHeader::new(v),
        items: vec![RequestBatchItem::new(register_secret())],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&other, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(r.items[0].result_status, ResultStatus::Success, "{r:?}");

    // A destroyed object frees its slot; a creation that is undone gives it back.
    let d = h.one(v, RequestPayload::Destroy(uid_req(&first))).await;
    assert_eq!(d.result_status, ResultStatus::Success, "{d:?}");
    assert_eq!(store.live_objects("purefa"), 1);
    let mut header = RequestHeader::new(v);
    header.batch_error_continuation_option = Some(BatchErrorContinuationOption::Undo);
    let undone = RequestMessage {
        header,
        items: vec![
            RequestBatchItem::new(create.clone()),
            RequestBatchItem::new(get_req("00000000-0000-4000-8000-000000000000")),
        ],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&h.conn, undone.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(
        r.items[0].result_status,
        ResultStatus::OperationUndone,
        "{r:?}"
    );
    assert_eq!(store.live_objects("purefa"), 1);
    assert_eq!(
        h.one(v, create.clone()).await.result_status,
        ResultStatus::Success
    );
    assert_eq!(
        h.one(v, create.clone()).await.result_reason,
        Some(ResultReason::ServerLimitExceeded)
    );

    // The counts are rebuilt from the backend at start.
    let Harness {
        dispatcher, _dir, ..
    } = h;
    drop((dispatcher, store));
    let vault = Vault::open(&_dir.path().join("vault"), MasterKeySource::VaultDir).unwrap();
    let reopened = Store::open(Arc::new(vault)).await.unwrap();
    assert_eq!(reopened.live_objects("purefa"), 2);
    assert_eq!(reopened.live_objects("other"), 1);
}

/// A use charged against a key's Usage Limits is not given back by undo: the operation ran (the
/// client has its ciphertext), so an Undo batch must not be a way round the limit.
#[tokio::test]
async fn undo_never_gives_back_a_charged_use() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let limits = Value::Structure(vec![
        kmip_wire::ttlv::Ttlv::new(tags::USAGE_LIMITS_TOTAL, Value::LongInteger(1)),
        // Usage Limits Unit Object: one use per operation.
        kmip_wire::ttlv::Ttlv::new(tags::USAGE_LIMITS_UNIT, Value::Enumeration(2)),
    ]);
    let created = h
        .one(
            v,
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                    Attribute::new(tags::USAGE_LIMITS, limits),
                ],
            }),
        )
        .await;
    let Some(ResponsePayload::Create(c)) = created.payload else {
        panic!("{created:?}");
    };
    let uid = c.unique_identifier;
    h.one(v, RequestPayload::Activate(uid_req(&uid))).await;
    let encrypt = RequestPayload::Encrypt(CryptoRequest {
        unique_identifier: Some(uid.clone()),
        cryptographic_parameters: Some(CryptographicParameters {
            block_cipher_mode: Some(BlockCipherMode::Cbc),
            padding_method: Some(PaddingMethod::Pkcs5),
            ..CryptographicParameters::default()
        }),
        data: Some(SecretBytes::from_slice(b"sixteen bytes!!!")),
        ..CryptoRequest::default()
    });
    let mut header = RequestHeader::new(v);
    header.batch_error_continuation_option = Some(BatchErrorContinuationOption::Undo);
    let batch = RequestMessage {
        header,
        items: vec![
            RequestBatchItem::new(encrypt.clone()),
            RequestBatchItem::new(get_req("00000000-0000-4000-8000-000000000000")),
        ],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&h.conn, batch.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert!(
        matches!(r.items[0].payload, Some(ResponsePayload::Encrypt(_))),
        "{r:?}"
    );
    let again = h.one(v, encrypt).await;
    assert_eq!(
        (again.result_status, again.result_reason),
        (
            ResultStatus::OperationFailed,
            Some(ResultReason::PermissionDenied)
        ),
        "the undone batch gave the charged use back: {again:?}"
    );
}

/// Sends `items` as one Undo batch and returns each item's status.
async fn undo_batch(
    h: &Harness,
    v: ProtocolVersion,
    items: Vec<RequestPayload>,
) -> Vec<ResultStatus> {
    let mut header = RequestHeader::new(v);
    header.batch_error_continuation_option = Some(BatchErrorContinuationOption::Undo);
    let msg = RequestMessage {
        header,
        items: items.into_iter().map(RequestBatchItem::new).collect(),
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&h.conn, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    r.items.iter().map(|i| i.result_status).collect()
}

/// AX-M-1: Destroys inside an Undo batch that succeeds are done.
#[tokio::test]
async fn destroys_in_a_successful_undo_batch_are_done() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let (a, b) = (h.create(v, None).await, h.create(v, None).await);
    let destroy = |u: &str| RequestPayload::Destroy(uid_req(u));
    let statuses = undo_batch(&h, v, vec![destroy(&a), destroy(&b)]).await;
    assert_eq!(statuses, vec![ResultStatus::Success, ResultStatus::Success]);
    for uid in [&a, &b] {
        assert_eq!(state_of_uid(&h, uid), Some(State::Destroyed.to_u32()));
        assert!(h.dispatcher.ops().store.read_material(uid).await.is_err());
    }
}

/// A Destroy of an Undo batch that then fails is undone: the key and its material stay, and
/// an item after the Destroy finds the object destroyed.
#[tokio::test]
async fn a_destroy_in_a_failed_undo_batch_is_undone_and_the_key_kept() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let uid = h.create(v, None).await;
    let material = h.dispatcher.ops().store.read_material(&uid).await.unwrap();
    let statuses = undo_batch(
        &h,
        v,
        vec![
            RequestPayload::Destroy(uid_req(&uid)),
            get_req("00000000-0000-4000-8000-000000000000"),
        ],
    )
    .await;
    assert_eq!(
        statuses,
        vec![ResultStatus::OperationUndone, ResultStatus::OperationFailed]
    );
    assert_eq!(state_of_uid(&h, &uid), Some(State::PreActive.to_u32()));
    let kept = h.dispatcher.ops().store.read_material(&uid).await.unwrap();
    assert_eq!(*kept, *material);
    // Later items of the batch see the object as destroyed; the batch is undone.
    let statuses = undo_batch(
        &h,
        v,
        vec![RequestPayload::Destroy(uid_req(&uid)), get_req(&uid)],
    )
    .await;
    assert_eq!(
        statuses,
        vec![ResultStatus::OperationUndone, ResultStatus::OperationFailed]
    );
    assert_eq!(state_of_uid(&h, &uid), Some(State::PreActive.to_u32()));
    // An Active key is refused at once, as outside a batch.
    let activated = h
        .one(v, RequestPayload::Activate(uid_req(&uid)))
        .await
        .result_status;
    assert_eq!(activated, ResultStatus::Success);
    let statuses = undo_batch(
        &h,
        v,
        vec![get_req(&uid), RequestPayload::Destroy(uid_req(&uid))],
    )
    .await;
    assert_eq!(
        statuses,
        vec![ResultStatus::OperationUndone, ResultStatus::OperationFailed]
    );
}
mod cert_request;
mod export;
mod locate_index;
mod server_attrs;
mod symm;
mod templates;
mod transparent;
mod upstream_state;

mod key_wrap;

#[tokio::test]
async fn certify_without_an_issuing_ca_says_how_to_configure_one() {
    let h = harness().await;
    let key = h.create(ProtocolVersion::V2_1, None).await;
    for payload in [
        RequestPayload::Certify(CertifyRequest {
            unique_identifier: Some(key.clone()),
            ..CertifyRequest::default()
        }),
        RequestPayload::Certify(CertifyRequest {
            certificate_request_type: Some(CertificateRequestType::Pkcs10),
            certificate_request: Some(bytes::Bytes::from_static(b"not a CSR")),
            ..CertifyRequest::default()
        }),
    ] {
        let item = h.one(ProtocolVersion::V2_1, payload).await;
        assert_eq!(item.result_reason, Some(ResultReason::FeatureNotSupported));
        let message = item.result_message.unwrap_or_default();
        assert!(
            message.contains("[certify] ca_cert and ca_key"),
            "{message}"
        );
    }
}

/// Asymmetric keys through the dispatcher: a pair is created linked both ways, signs and
/// verifies; ReKey Key Pair replaces both keys, moves their Names and links old to new.
mod key_pairs {
    use super::*;

    const V: ProtocolVersion = ProtocolVersion::V2_1;

    fn attrs_of(item: ResponseBatchItem) -> Vec<Attribute> {
        match item.payload {
            Some(ResponsePayload::GetAttributes(r)) => r.attributes,
            other => panic!("get attributes failed: {:?} {other:?}", item.result_reason),
        }
    }

    async fn attributes(h: &Harness, uid: &str) -> Vec<Attribute> {
        attrs_of(
            h.one(
                V,
                RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(uid.to_owned()),
                    names: Vec::new(),
                }),
            )
            .await,
        )
    }

    fn links(attrs: &[Attribute]) -> Vec<(LinkType, String)> {
        attrs
            .iter()
            .filter_map(Attribute::as_link)
            .map(|l| (l.link_type, l.linked_object_identifier))
            .collect()
    }

    fn names(attrs: &[Attribute]) -> Vec<String> {
        attrs
            .iter()
            .filter_map(Attribute::as_name)
            .map(|n| n.value)
            .collect()
    }

    async fn pair(h: &Harness) -> CreateKeyPairResponse {
        let item = h
            .one(
                V,
                RequestPayload::CreateKeyPair(CreateKeyPairRequest {
                    common_templates: Vec::new(),
                    private_key_templates: Vec::new(),
                    public_key_templates: Vec::new(),
                    common_attributes: vec![
                        Attribute::enumeration(
                            tags::CRYPTOGRAPHIC_ALGORITHM,
                            CryptographicAlgorithm::Ec,
                        ),
                        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                        Attribute::datetime(tags::ACTIVATION_DATE, 1),
                    ],
                    private_key_attributes: vec![Attribute::name(&Name::new("pair-private"))],
                    public_key_attributes: vec![Attribute::name(&Name::new("pair-public"))],
                }),
            )
            .await;
        match item.payload {
            Some(ResponsePayload::CreateKeyPair(r)) => r,
            other => panic!(
                "create key pair failed: {:?} {other:?}",
                item.result_message
            ),
        }
    }

    fn ecdsa() -> Option<CryptographicParameters> {
        Some(CryptographicParameters {
            hashing_algorithm: Some(HashingAlgorithm::Sha256),
            ..Default::default()
        })
    }

    async fn sign_and_verify(h: &Harness, p: &CreateKeyPairResponse) -> ValidityIndicator {
        let data = SecretBytes::from_slice(b"payload");
        let item = h
            .one(
                V,
                RequestPayload::Sign(SignRequest {
                    unique_identifier: Some(p.private_key_unique_identifier.clone()),
                    cryptographic_parameters: ecdsa(),
                    data: Some(data.clone()),
                    ..Default::default()
                }),
            )
            .await;
        let Some(ResponsePayload::Sign(signed)) = item.payload else {
            panic!("sign failed: {:?}", item.result_message);
        };
        let item = h
            .one(
                V,
                RequestPayload::SignatureVerify(SignRequest {
                    unique_identifier: Some(p.public_key_unique_identifier.clone()),
                    cryptographic_parameters: ecdsa(),
                    data: Some(data),
                    signature_data: signed.signature_data,
                    ..Default::default()
                }),
            )
            .await;
        match item.payload {
            Some(ResponsePayload::SignatureVerify(v)) => v.validity_indicator,
            other => panic!("verify failed: {:?} {other:?}", item.result_message),
        }
    }

    #[tokio::test]
    async fn a_pair_is_linked_signs_and_verifies() {
        let h = harness().await;
        let p = pair(&h).await;
        let private = attributes(&h, &p.private_key_unique_identifier).await;
        let public = attributes(&h, &p.public_key_unique_identifier).await;
        assert_eq!(
            links(&private),
            vec![(
                LinkType::PublicKeyLink,
                p.public_key_unique_identifier.clone()
            )]
        );
        assert_eq!(
            links(&public),
            vec![(
                LinkType::PrivateKeyLink,
                p.private_key_unique_identifier.clone()
            )]
        );
        assert_eq!(sign_and_verify(&h, &p).await, ValidityIndicator::Valid);
        // The public key does not sign.
        let item = h
            .one(
                V,
                RequestPayload::Sign(SignRequest {
                    unique_identifier: Some(p.public_key_unique_identifier.clone()),
                    cryptographic_parameters: ecdsa(),
                    data: Some(SecretBytes::from_slice(b"x")),
                    ..Default::default()
                }),
            )
            .await;
        assert_eq!(item.result_status, ResultStatus::OperationFailed);
    }

    #[tokio::test]
    async fn rekey_key_pair_replaces_both_keys() {
        let h = harness().await;
        let old = pair(&h).await;
        let item = h
            .one(
                V,
                RequestPayload::ReKeyKeyPair(ReKeyKeyPairRequest {
                    unique_identifier: Some(old.private_key_unique_identifier.clone()),
                    public_key_attributes: vec![Attribute::integer(
                        tags::CRYPTOGRAPHIC_USAGE_MASK,
                        0x02,
                    )],
                    ..Default::default()
                }),
            )
            .await;
        let Some(ResponsePayload::ReKeyKeyPair(new)) = item.payload else {
            panic!("rekey key pair failed: {:?}", item.result_message);
        };
        assert_ne!(
            new.private_key_unique_identifier,
            old.private_key_unique_identifier
        );
        let new_private = attributes(&h, &new.private_key_unique_identifier).await;
        let new_public = attributes(&h, &new.public_key_unique_identifier).await;
        let old_private = attributes(&h, &old.private_key_unique_identifier).await;
        assert_eq!(names(&new_private), vec!["pair-private"]);
        assert_eq!(names(&new_public), vec!["pair-public"]);
        assert!(names(&old_private).is_empty());
        assert!(links(&new_private).contains(&(
            LinkType::ReplacedObjectLink,
            old.private_key_unique_identifier.clone()
        )));
        assert!(links(&new_private).contains(&(
            LinkType::PublicKeyLink,
            new.public_key_unique_identifier.clone()
        )));
        assert!(links(&old_private).contains(&(
            LinkType::ReplacementObjectLink,
            new.private_key_unique_identifier.clone()
        )));
        assert_eq!(
            new_public
                .iter()
                .find(|a| a.is(tags::CRYPTOGRAPHIC_USAGE_MASK))
                .and_then(Attribute::as_int),
            Some(0x02),
            "the request's attributes win"
        );
        // Like ReKey's, the new keys start Pre-Active: their dates are not the old keys'.
        for uid in [
            &new.private_key_unique_identifier,
            &new.public_key_unique_identifier,
        ] {
            let item = h.one(V, RequestPayload::Activate(uid_req(uid))).await;
            assert_eq!(item.result_status, ResultStatus::Success);
        }
        assert_eq!(sign_and_verify(&h, &new).await, ValidityIndicator::Valid);
    }
}

/// KMIP 1.x Templates are registered, got back, located by type and destroyed; a 2.x client
/// can register none.
#[tokio::test]
async fn templates_are_kept_for_1x_clients_only() {
    let h = harness().await;
    let inside = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
    ];
    let register = RequestPayload::Register(RegisterRequest {
        templates: Vec::new(),
        object_type: ObjectType::Template,
        attributes: vec![Attribute::name(&Name::new("tape-template"))],
        object: ManagedObject::Template {
            attributes: inside.clone(),
        },
    });
    let refused = h.one(ProtocolVersion::V2_1, register.clone()).await;
    assert_eq!(refused.result_status, ResultStatus::OperationFailed);
    let v = ProtocolVersion::V1_4;
    let item = h.one(v, register).await;
    let Some(ResponsePayload::Register(r)) = item.payload else {
        panic!(
            "register failed: {:?} {:?}",
            item.result_reason, item.result_message
        );
    };
    let uid = r.unique_identifier;
    let got = h.one(v, get_req(&uid)).await;
    let Some(ResponsePayload::Get(g)) = got.payload else {
        panic!(
            "get failed: {:?} {:?}",
            got.result_reason, got.result_message
        );
    };
    assert_eq!(g.object, ManagedObject::Template { attributes: inside });
    let by_type = h
        .one(
            v,
            RequestPayload::Locate(LocateRequest {
                attributes: vec![Attribute::enumeration(
                    tags::OBJECT_TYPE,
                    ObjectType::Template,
                )],
                ..LocateRequest::default()
            }),
        )
        .await;
    let Some(ResponsePayload::Locate(l)) = by_type.payload else {
        panic!("locate failed");
    };
    assert_eq!(l.unique_identifiers, vec![uid.clone()]);
    let destroyed = h.one(v, RequestPayload::Destroy(uid_req(&uid))).await;
    assert_eq!(destroyed.result_status, ResultStatus::Success);
}

/// Archive and Recover: every object stays on-line, so both answer for a live object and leave
/// it usable; a missing or destroyed object is answered as by the other object operations.
#[tokio::test]
async fn archive_and_recover_keep_a_live_object_online() {
    let h = harness().await;
    for v in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
        let uid = h.create(v, None).await;
        for op in [RequestPayload::Archive, RequestPayload::Recover] {
            let item = h.one(v, op(uid_req(&uid))).await;
            assert_eq!(item.result_status, ResultStatus::Success, "{v:?}");
        }
        assert_eq!(
            h.one(v, get_req(&uid)).await.result_status,
            ResultStatus::Success
        );
        let missing = h
            .one(
                v,
                RequestPayload::Archive(uid_req("00000000-0000-4000-8000-000000000000")),
            )
            .await;
        let absent = "00000000-0000-4000-8000-000000000000";
        let get_missing = h.one(v, get_req(absent)).await;
        assert_eq!(missing.result_reason, get_missing.result_reason, "{v:?}");
        h.one(v, RequestPayload::Destroy(uid_req(&uid))).await;
        let gone = h.one(v, RequestPayload::Recover(uid_req(&uid))).await;
        assert_eq!(gone.result_status, ResultStatus::OperationFailed);
    }
}

/// Obtain Lease grants no lease limit (Lease Time 0) and names the object's Last Change Date;
/// a destroyed object gets no lease.
#[tokio::test]
async fn obtain_lease_grants_no_limit_for_a_live_object_only() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let uid = h.create(v, None).await;
    let changed = h
        .dispatcher
        .ops()
        .store
        .get(&uid)
        .and_then(|o| {
            o.first(tags::LAST_CHANGE_DATE)
                .and_then(|a| a.as_datetime())
        })
        .unwrap();
    let item = h.one(v, RequestPayload::ObtainLease(uid_req(&uid))).await;
    let Some(ResponsePayload::ObtainLease(lease)) = item.payload else {
        panic!("obtain lease failed: {:?}", item.result_message);
    };
    assert_eq!(
        lease,
        ObtainLeaseResponse {
            unique_identifier: uid.clone(),
            lease_time: 0,
            last_change_date: changed,
        }
    );
    h.one(v, RequestPayload::Destroy(uid_req(&uid))).await;
    let refused = h.one(v, RequestPayload::ObtainLease(uid_req(&uid))).await;
    assert_eq!(refused.result_status, ResultStatus::OperationFailed);
}

/// Get Usage Allocation takes the requested units from an Active protecting key's Usage
/// Limits, refuses more than remain, and refuses a key without Usage Limits or not Active.
#[tokio::test]
async fn get_usage_allocation_reserves_units_of_the_usage_limits() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let limits = Value::Structure(vec![
        kmip_wire::ttlv::Ttlv::new(tags::USAGE_LIMITS_TOTAL, Value::LongInteger(100)),
        // Usage Limits Unit Byte.
        kmip_wire::ttlv::Ttlv::new(tags::USAGE_LIMITS_UNIT, Value::Enumeration(1)),
    ]);
    let mut attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
    ];
    let create = |attributes: Vec<Attribute>| {
        RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes,
        })
    };
    let unlimited = match h.one(v, create(attributes.clone())).await.payload {
        Some(ResponsePayload::Create(c)) => c.unique_identifier,
        other => panic!("{other:?}"),
    };
    attributes.push(Attribute::new(tags::USAGE_LIMITS, limits));
    let uid = match h.one(v, create(attributes)).await.payload {
        Some(ResponsePayload::Create(c)) => c.unique_identifier,
        other => panic!("{other:?}"),
    };
    let allocate = |uid: &str, count: i64| {
        RequestPayload::GetUsageAllocation(GetUsageAllocationRequest {
            unique_identifier: Some(uid.to_owned()),
            usage_limits_count: count,
        })
    };
    let status = |item: ResponseBatchItem| item.result_status;
    // Pre-Active: no allocation.
    assert_eq!(
        status(h.one(v, allocate(&uid, 10)).await),
        ResultStatus::OperationFailed
    );
    for u in [&uid, &unlimited] {
        h.one(v, RequestPayload::Activate(uid_req(u))).await;
    }
    assert_eq!(
        status(h.one(v, allocate(&unlimited, 1)).await),
        ResultStatus::OperationFailed
    );
    assert_eq!(
        status(h.one(v, allocate(&uid, 0)).await),
        ResultStatus::OperationFailed
    );
    assert_eq!(
        status(h.one(v, allocate(&uid, 60)).await),
        ResultStatus::Success
    );
    assert_eq!(
        status(h.one(v, allocate(&uid, 41)).await),
        ResultStatus::OperationFailed
    );
    assert_eq!(
        status(h.one(v, allocate(&uid, 40)).await),
        ResultStatus::Success
    );
    assert_eq!(
        status(h.one(v, allocate(&uid, 1)).await),
        ResultStatus::OperationFailed
    );
}

/// Nothing is ever outstanding: Poll names no operation (Item Not Found in 1.x, Invalid
/// Asynchronous Correlation Value in 2.x) and Cancel answers Unavailable for the value it names.
#[tokio::test]
async fn poll_and_cancel_find_no_outstanding_operation() {
    let h = harness().await;
    let acv = bytes::Bytes::from_static(b"\x01\x02");
    let request = AsyncRequest {
        asynchronous_correlation_value: acv.clone(),
    };
    for (v, reason) in [
        (ProtocolVersion::V1_4, ResultReason::ItemNotFound),
        (
            ProtocolVersion::V2_1,
            ResultReason::InvalidAsynchronousCorrelationValue,
        ),
    ] {
        let polled = h.one(v, RequestPayload::Poll(request.clone())).await;
        assert_eq!(polled.result_status, ResultStatus::OperationFailed);
        assert_eq!(polled.result_reason, Some(reason), "{v:?}");
        let canceled = h.one(v, RequestPayload::Cancel(request.clone())).await;
        assert_eq!(
            canceled.payload,
            Some(ResponsePayload::Cancel(CancelResponse {
                asynchronous_correlation_value: acv.clone(),
                cancellation_result: 5,
            })),
            "{v:?}"
        );
    }
}

/// Adjust Attribute changes the one instance a client may write, and refuses a server one.
#[tokio::test]
async fn adjust_attribute_moves_a_client_attribute_and_spares_server_ones() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let uid = h.create(v, None).await;
    let counter = AttributeName::Vendor {
        vendor: "x".into(),
        name: "uses".into(),
    };
    let adjust = |name: AttributeName, by: i32| {
        RequestPayload::AdjustAttribute(AdjustAttributeRequest {
            unique_identifier: Some(uid.clone()),
            name,
            adjustment_type: 1,
            adjustment_value: Some(Value::Integer(by)),
        })
    };
    for _ in 0..2 {
        let item = h.one(v, adjust(counter.clone(), 5)).await;
        assert_eq!(
            item.result_status,
            ResultStatus::Success,
            "{:?}",
            item.result_message
        );
    }
    let stored = h.dispatcher.ops().store.get(&uid).unwrap();
    let values: Vec<Value> = stored.find(&counter).map(|a| a.value).collect();
    assert_eq!(values, vec![Value::Integer(10)]);
    let refused = h
        .one(v, adjust(AttributeName::Tag(tags::CRYPTOGRAPHIC_LENGTH), 1))
        .await;
    assert_eq!(refused.result_status, ResultStatus::OperationFailed);
}

mod stream;
