//! A KMIP proxy's refresher applying what the upstream says of an object
//! (`Ops::apply_upstream_lifecycle`), through the store, on the file vault.

use super::*;
use crate::kmip::ops::{Refreshed, UpstreamLifecycle};

const V: ProtocolVersion = ProtocolVersion::V2_1;

async fn active_key(h: &Harness) -> String {
    let uid = h.create(V, Some("refreshed")).await;
    let item = h.one(V, RequestPayload::Activate(uid_req(&uid))).await;
    assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
    uid
}

fn state_of(h: &Harness, uid: &str) -> Option<State> {
    h.dispatcher
        .ops()
        .store
        .get(uid)
        .and_then(|o| o.enum_of(tags::STATE))
        .map(State::from_u32)
}

fn seen(attrs: Vec<Attribute>) -> UpstreamLifecycle {
    UpstreamLifecycle::Seen(attrs)
}

async fn locate_state(h: &Harness, state: State) -> Vec<String> {
    let item = h
        .one(
            V,
            RequestPayload::Locate(LocateRequest {
                attributes: vec![Attribute::enumeration(tags::STATE, state)],
                ..LocateRequest::default()
            }),
        )
        .await;
    match item.payload {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("Locate failed: {other:?}"),
    }
}

#[tokio::test]
async fn only_an_explicit_revocation_or_destruction_upstream_changes_the_object() {
    let h = harness().await;
    let ops = h.dispatcher.ops();
    let uid = active_key(&h).await;
    // Cached before the change: the store's write must invalidate it.
    assert!(locate_state(&h, State::Deactivated).await.is_empty());
    // Nothing reported, Active, Pre-Active: no news.
    for nothing in [
        seen(Vec::new()),
        seen(vec![Attribute::enumeration(tags::STATE, State::Active)]),
        seen(vec![Attribute::enumeration(tags::STATE, State::PreActive)]),
    ] {
        assert_eq!(
            ops.apply_upstream_lifecycle(&uid, nothing, 100)
                .await
                .unwrap(),
            Refreshed::Unchanged
        );
        assert_eq!(state_of(&h, &uid), Some(State::Active));
    }
    let revoked = seen(vec![
        Attribute::enumeration(tags::STATE, State::Deactivated),
        Attribute::datetime(tags::DEACTIVATION_DATE, 50),
    ]);
    assert_eq!(
        ops.apply_upstream_lifecycle(&uid, revoked.clone(), 100)
            .await
            .unwrap(),
        Refreshed::Revoked(State::Deactivated)
    );
    assert_eq!(state_of(&h, &uid), Some(State::Deactivated));
    assert_eq!(
        locate_state(&h, State::Deactivated).await,
        vec![uid.clone()]
    );
    // Seen again: already there.
    assert_eq!(
        ops.apply_upstream_lifecycle(&uid, revoked, 100)
            .await
            .unwrap(),
        Refreshed::Unchanged
    );
    assert_eq!(
        ops.apply_upstream_lifecycle(&uid, UpstreamLifecycle::Gone, 100)
            .await
            .unwrap(),
        Refreshed::Destroyed
    );
    assert_eq!(state_of(&h, &uid), Some(State::Destroyed));
    assert!(matches!(
        ops.store.read_material(&uid).await,
        Err(kmip_backends::BackendError::NotFound(_))
    ));
    assert_eq!(
        ops.apply_upstream_lifecycle(&uid, UpstreamLifecycle::Gone, 100)
            .await
            .unwrap(),
        Refreshed::Unchanged
    );
    // An object the gateway does not have: nothing to do.
    assert_eq!(
        ops.apply_upstream_lifecycle("no-such-object", UpstreamLifecycle::Gone, 100)
            .await
            .unwrap(),
        Refreshed::Unchanged
    );
}
