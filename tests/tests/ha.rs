//! Two gateways on one PostgreSQL database (issue 14), each with its own data folder, both
//! started from the same configuration but for that: what a client acknowledged by one sees at
//! once on the other (Get, Get Attributes, Locate; Destroy), one new Name created concurrently
//! on both makes one object, an attribute change on one invalidates the other's cached Locate
//! (through a fence, and through the follower alone), Usage Limits are charged exactly across
//! both, `/readyz` follows the database, and `/keys` lists the other gateway's objects or
//! refuses (503) while the database is out of reach.

use kmip_e2e::ha::{eventually, uid, Site};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Ttlv, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_on_one_gateway_is_at_once_visible_on_the_other() {
    let site = Site::start("request");
    let mut a = site.connect(&site.a).await;
    let mut b = site.connect(&site.b).await;
    // B's Locate answer for the Name is cached before A creates it.
    assert!(b.by_name("disk-1").await.is_empty());
    let key = a.created("disk-1", Vec::new()).await;
    // Immediately, with no time for the follower: on the open connection, and a new one.
    let got = b
        .ok(RequestPayload::Get(GetRequest {
            unique_identifier: Some(key.clone()),
            key_format_type: None,
            key_wrap_type: None,
            key_compression_type: None,
            key_wrapping_specification: None,
        }))
        .await;
    assert!(matches!(got, ResponsePayload::Get(_)), "{got:?}");
    let attrs = b
        .ok(RequestPayload::GetAttributes(GetAttributesRequest {
            unique_identifier: Some(key.clone()),
            names: Vec::new(),
        }))
        .await;
    assert!(
        matches!(attrs, ResponsePayload::GetAttributes(_)),
        "{attrs:?}"
    );
    assert_eq!(
        b.by_name("disk-1").await,
        vec![key.clone()],
        "{}",
        site.logs()
    );
    let mut fresh = site.connect(&site.b).await;
    assert_eq!(fresh.by_name("disk-1").await, vec![key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_destroyed_on_one_gateway_is_not_located_on_the_other() {
    let site = Site::start("request");
    let mut a = site.connect(&site.a).await;
    let mut b = site.connect(&site.b).await;
    let key = a.created("short-lived", Vec::new()).await;
    assert_eq!(b.by_name("short-lived").await, vec![key.clone()]);
    a.ok(RequestPayload::Destroy(uid(&key))).await;
    assert!(b.by_name("short-lived").await.is_empty(), "{}", site.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_name_created_on_both_gateways_at_once_makes_one_object() {
    let site = Site::start("request");
    let mut a = site.connect(&site.a).await;
    let mut b = site.connect(&site.b).await;
    for round in 0..10 {
        let name = format!("volume-{round}");
        let (on_a, on_b) = tokio::join!(a.create(&name, Vec::new()), b.create(&name, Vec::new()));
        let made: Vec<&ResponseBatchItem> = [&on_a, &on_b]
            .into_iter()
            .filter(|i| i.result_status == ResultStatus::Success)
            .collect();
        assert_eq!(made.len(), 1, "{name}: {on_a:?} {on_b:?}\n{}", site.logs());
        let refused = if on_a.result_status == ResultStatus::Success {
            &on_b
        } else {
            &on_a
        };
        assert_eq!(
            refused.result_reason,
            Some(ResultReason::NonUniqueNameAttribute),
            "{refused:?}"
        );
        assert_eq!(a.by_name(&name).await.len(), 1);
        assert_eq!(b.by_name(&name).await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attribute_change_on_one_gateway_invalidates_the_others_cached_locate() {
    let site = Site::start("request");
    let mut a = site.connect(&site.a).await;
    let mut b = site.connect(&site.b).await;
    let key = a.created("grouped", Vec::new()).await;
    // Computed twice on A: the second answer comes from its cache.
    assert!(a.by_group("backups").await.is_empty());
    assert!(a.by_group("backups").await.is_empty());
    b.ok(RequestPayload::AddAttribute(AttributeRequest {
        unique_identifier: Some(key.clone()),
        attribute: Attribute::text(tags::OBJECT_GROUP, "backups"),
    }))
    .await;
    assert_eq!(a.by_group("backups").await, vec![key], "{}", site.logs());
}

/// With `read_your_writes = "connection"` an open connection does not catch up per message:
/// the follower alone brings the other gateway's change (and its invalidation) within
/// FOLLOW_INTERVAL of a notification, or of no notification at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_applies_the_other_gateways_writes_without_a_fence() {
    let site = Site::start("connection");
    let mut a = site.connect(&site.a).await;
    let mut b = site.connect(&site.b).await;
    let key = a.created("followed", Vec::new()).await;
    assert!(a.by_group("followed-group").await.is_empty());
    b.ok(RequestPayload::AddAttribute(AttributeRequest {
        unique_identifier: Some(key.clone()),
        attribute: Attribute::text(tags::OBJECT_GROUP, "followed-group"),
    }))
    .await;
    let a = tokio::sync::Mutex::new(a);
    let seen = eventually(|| async {
        a.lock().await.by_group("followed-group").await == vec![key.clone()]
    })
    .await;
    assert!(seen, "A never applied B's change\n{}", site.logs());
    let (code, metrics) = site.a.admin_get("/metrics");
    assert_eq!(code, 200);
    for metric in ["kmip_store_feed_changes_total", "kmip_store_fence_seconds"] {
        assert!(metrics.contains(metric), "{metric} missing:\n{metrics}");
    }
}

/// Two Encrypts on two gateways charge two uses, never one: a key allowed ten uses serves
/// exactly ten of twelve concurrent Encrypts spread over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_limits_are_charged_exactly_across_gateways() {
    let site = Site::start("request");
    let mut a = site.connect(&site.a).await;
    let limits = Value::Structure(vec![
        Ttlv::new(tags::USAGE_LIMITS_TOTAL, Value::LongInteger(10)),
        // Usage Limits Unit Object: one use per operation.
        Ttlv::new(tags::USAGE_LIMITS_UNIT, Value::Enumeration(2)),
    ]);
    let key = a
        .created("limited", vec![Attribute::new(tags::USAGE_LIMITS, limits)])
        .await;
    a.ok(RequestPayload::Activate(uid(&key))).await;
    let encrypt = RequestPayload::Encrypt(CryptoRequest {
        unique_identifier: Some(key.clone()),
        cryptographic_parameters: Some(CryptographicParameters {
            block_cipher_mode: Some(BlockCipherMode::Cbc),
            padding_method: Some(PaddingMethod::Pkcs5),
            ..CryptographicParameters::default()
        }),
        data: Some(SecretBytes::from_slice(b"sixteen bytes!!!")),
        ..CryptoRequest::default()
    });
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut client = site
            .connect(if i % 2 == 0 { &site.a } else { &site.b })
            .await;
        let encrypt = encrypt.clone();
        tasks.push(tokio::spawn(async move { client.call(encrypt).await }));
    }
    let mut served = 0;
    for task in tasks {
        let item = task.await.unwrap();
        match item.result_status {
            ResultStatus::Success => served += 1,
            _ => assert_eq!(
                item.result_reason,
                Some(ResultReason::PermissionDenied),
                "only an exhausted limit refuses: {item:?}"
            ),
        }
    }
    assert_eq!(served, 10, "{}", site.logs());
}

/// `/readyz` answers 503 while the database is down, and 200 again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let site = Site::start("request");
    assert_eq!(site.a.admin_get("/readyz").0, 200, "{}", site.logs());
    site.pg.stop();
    let down = eventually(|| async { site.a.admin_get("/readyz").0 == 503 }).await;
    assert!(
        down,
        "still ready with the database stopped\n{}",
        site.logs()
    );
    // A request fails its item, and the connection stays usable.
    let mut b = site.connect(&site.b).await;
    let item = b
        .call(RequestPayload::Locate(LocateRequest {
            maximum_items: None,
            offset_items: None,
            storage_status_mask: None,
            object_group_member: None,
            attributes: Vec::new(),
        }))
        .await;
    assert_eq!(
        item.result_reason,
        Some(ResultReason::GeneralFailure),
        "{item:?}"
    );
    site.pg.restart();
    let up = eventually(|| async { site.a.admin_get("/readyz").0 == 200 }).await;
    assert!(
        up,
        "not ready again after the database came back\n{}",
        site.logs()
    );
    assert!(b.by_name("anything").await.is_empty());
}

/// `/keys` on B lists what A created a moment before, and with the database stopped answers
/// 503 rather than a list that may miss the other gateway's writes: it catches up first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_on_one_gateway_list_the_others_objects_or_refuse() {
    let site = Site::start("request");
    let mut a = site.connect(&site.a).await;
    let key = a.created("listed", Vec::new()).await;
    let token = site.b.admin_token();
    let (code, body) = site.b.admin_request("GET", "/keys", Some(&token));
    assert_eq!(code, 200, "{body}\n{}", site.logs());
    assert!(body.contains(&key), "{body}");
    site.pg.stop();
    let (code, body) = site.b.admin_request("GET", "/keys", Some(&token));
    assert_eq!(code, 503, "{body}\n{}", site.logs());
}
