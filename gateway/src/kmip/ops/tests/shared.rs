//! Two gateways on one shared backend (the store's in-memory stand-in for PostgreSQL): what a
//! client acknowledged by one sees on the other, when the fence runs, a fence that fails, and
//! Name uniqueness across them.

use crate::config::{LimitsConfig, LocateCacheConfig, ReadYourWrites};
use crate::identity::Identity;
use crate::kmip::access::{owner_only, Access};
use crate::kmip::dispatch::{ConnContext, Dispatcher, Outcome};
use crate::kmip::ops::{OpContext, OpError, Ops};
use crate::kmip::store::tests::shared::{Db, Instance};
use crate::kmip::store::Store;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

struct Gateway {
    backend: Arc<Instance>,
    dispatcher: Dispatcher,
}

async fn gateway(db: &Arc<Db>, mode: ReadYourWrites) -> Gateway {
    let backend = Arc::new(Instance::new(db, false));
    let store = Arc::new(Store::open(backend.clone()).await.unwrap());
    let policy = owner_only(["purefa".to_owned()].into_iter()).unwrap();
    let ops = Ops::new(
        store,
        Arc::new(Access::new(policy)),
        LocateCacheConfig::default(),
    );
    Gateway {
        backend,
        dispatcher: Dispatcher::new(ops, LimitsConfig::default(), None).with_read_your_writes(mode),
    }
}

fn conn(id: u64) -> ConnContext {
    ConnContext::new(
        id,
        "127.0.0.1:1".parse().unwrap(),
        Identity {
            user: "purefa".into(),
            subject: "CN=purefa".into(),
            serial_hex: "01".into(),
            fingerprint: "00".into(),
        },
    )
}

async fn send(
    g: &Gateway,
    conn: &ConnContext,
    payloads: Vec<RequestPayload>,
) -> Vec<ResponseBatchItem> {
    let msg = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V2_1),
        items: payloads.into_iter().map(RequestBatchItem::new).collect(),
    };
    let Outcome::Respond(out) = g
        .dispatcher
        .handle(conn, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("the connection was closed");
    };
    ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap())
        .unwrap()
        .items
}

fn create(name: &str) -> RequestPayload {
    RequestPayload::Create(CreateRequest {
        object_type: ObjectType::SymmetricKey,
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
            Attribute::name(&Name::new(name)),
        ],
    })
}

fn locate(name: &str) -> RequestPayload {
    RequestPayload::Locate(LocateRequest {
        maximum_items: None,
        offset_items: None,
        storage_status_mask: None,
        object_group_member: None,
        attributes: vec![Attribute::name(&Name::new(name))],
    })
}

async fn created(g: &Gateway, name: &str) -> String {
    match send(g, &conn(99), vec![create(name)])
        .await
        .remove(0)
        .payload
    {
        Some(ResponsePayload::Create(c)) => c.unique_identifier,
        other => panic!("create failed: {other:?}"),
    }
}

async fn located(g: &Gateway, conn: &ConnContext, name: &str) -> Vec<String> {
    match send(g, conn, vec![locate(name)]).await.remove(0).payload {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("locate failed: {other:?}"),
    }
}

/// Created on A, then at once (no follower runs here) Get, Get Attributes and Locate on B.
#[tokio::test]
async fn a_write_acknowledged_by_one_gateway_is_seen_by_the_next_request_on_another() {
    let db = Arc::new(Db::default());
    let a = gateway(&db, ReadYourWrites::Request).await;
    let b = gateway(&db, ReadYourWrites::Request).await;
    let on_b = conn(1);
    assert!(
        located(&b, &on_b, "disk-1").await.is_empty(),
        "cached: nothing"
    );
    let uid = created(&a, "disk-1").await;
    let items = send(
        &b,
        &on_b,
        vec![
            RequestPayload::Get(GetRequest {
                unique_identifier: Some(uid.clone()),
                key_format_type: None,
                key_wrap_type: None,
                key_compression_type: None,
                key_wrapping_specification: None,
            }),
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.clone()),
                names: Vec::new(),
            }),
        ],
    )
    .await;
    for item in &items {
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
    }
    assert_eq!(located(&b, &on_b, "disk-1").await, vec![uid]);
}

/// `connection` mode: one catch-up when a connection starts, none for its later messages.
#[tokio::test]
async fn connection_mode_catches_up_once_per_connection() {
    let db = Arc::new(Db::default());
    let a = gateway(&db, ReadYourWrites::Request).await;
    let b = gateway(&db, ReadYourWrites::Connection).await;
    let first = conn(1);
    assert!(located(&b, &first, "n").await.is_empty());
    let uid = created(&a, "n").await;
    assert!(
        located(&b, &first, "n").await.is_empty(),
        "an open connection does not catch up again"
    );
    assert_eq!(located(&b, &conn(2), "n").await, vec![uid.clone()]);
    assert_eq!(
        located(&b, &first, "n").await,
        vec![uid],
        "applied for everyone"
    );
}

/// A fence that cannot reach the database fails every item with General Failure and keeps
/// the connection; the next message catches up.
#[tokio::test]
async fn a_failed_fence_fails_the_items_not_the_connection() {
    let db = Arc::new(Db::default());
    let a = gateway(&db, ReadYourWrites::Request).await;
    let b = gateway(&db, ReadYourWrites::Request).await;
    let uid = created(&a, "n").await;
    b.backend.unreachable.store(true, Ordering::SeqCst);
    let on_b = conn(1);
    let items = send(&b, &on_b, vec![locate("n"), locate("m")]).await;
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(item.result_status, ResultStatus::OperationFailed);
        assert_eq!(item.result_reason, Some(ResultReason::GeneralFailure));
    }
    b.backend.unreachable.store(false, Ordering::SeqCst);
    assert_eq!(located(&b, &on_b, "n").await, vec![uid]);
}

/// The Name check catches up under the cluster-wide Name lock, whatever the message's fence
/// saw: B refuses a Name A gave meanwhile.
#[tokio::test]
async fn a_name_given_on_another_gateway_is_not_given_again() {
    let db = Arc::new(Db::default());
    let a = gateway(&db, ReadYourWrites::Request).await;
    let b = gateway(&db, ReadYourWrites::Request).await;
    created(&a, "shared-name").await;
    // Straight to the operation layer, as if B's message fence ran before A's commit.
    let mut ctx = OpContext::new("purefa", ProtocolVersion::V2_1, 0);
    let r = b
        .dispatcher
        .ops()
        .execute(&mut ctx, create("shared-name"))
        .await;
    assert!(matches!(r, Err(OpError::NonUniqueName(_))), "{r:?}");
}

/// While another gateway holds a Name, a Create with it waits.
#[tokio::test]
async fn a_create_waits_for_the_cluster_wide_name_lock() {
    let db = Arc::new(Db::default());
    let b = Arc::new(gateway(&db, ReadYourWrites::Request).await);
    let held = db.names.clone().lock_owned().await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { created(&b, "n").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "created while another gateway held the Name"
    );
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("released, the Create goes on")
        .unwrap();
}
