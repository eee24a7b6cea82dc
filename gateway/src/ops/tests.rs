//! Operation semantics through the dispatcher, on a real file vault in a temporary folder.

use crate::access::{owner_only, Access};
use crate::config::LimitsConfig;
use crate::dispatch::{ConnContext, Dispatcher, Outcome};
use crate::store::Store;
use crate::tls::Identity;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Value};
use std::sync::Arc;

fn dispatcher_over(store: Arc<Store>) -> Dispatcher {
    let policy = owner_only(["purefa".to_owned(), "other".to_owned()].into_iter()).unwrap();
    Dispatcher::new(
        super::Ops::new(
            store,
            Arc::new(Access::new(policy)),
            crate::config::LocateCacheConfig {
                max_entries: 100,
                ..Default::default()
            },
        ),
        LimitsConfig::default(),
        None,
    )
}

struct Harness {
    dispatcher: Dispatcher,
    conn: ConnContext,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("vault"), MasterKeySource::VaultDir).unwrap();
    let store = Arc::new(Store::open(Arc::new(vault)).await.unwrap());
    Harness {
        dispatcher: dispatcher_over(store),
        conn: ConnContext {
            conn_id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
            identity: Identity {
                user: "purefa".into(),
                subject: "CN=purefa".into(),
                serial_hex: "01".into(),
                fingerprint: "00".into(),
            },
        },
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
            dispatcher: dispatcher_over(store),
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
    assert_eq!(obj.owner, "purefa");
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
    ConnContext {
        conn_id: 2,
        peer: "127.0.0.1:2".parse().unwrap(),
        identity: Identity {
            user: user.into(),
            subject: format!("CN={user}"),
            serial_hex: "02".into(),
            fingerprint: "01".into(),
        },
    }
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
