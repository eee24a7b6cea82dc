//! Model fuzz target: whatever TTLV decodes is offered to the KMIP request and response models.
//! Neither may panic, and whatever they accept must encode again and parse back to an equal
//! value (the model's writer and reader agree on everything the reader lets in). A request item
//! whose payload the model rejects keeps only the reason and is written with an empty payload
//! (which an operation whose fields are all optional accepts): only its other fields must survive.
//! A response is written without the tags its version does not define (by design: a server must
//! not send them), so there the check is that the writer's output reads back and is written
//! again unchanged.
#![no_main]

use bytes::Bytes;
use kmip_wire::model::{RequestBatchItem, RequestMessage, ResponseMessage};
use kmip_wire::ttlv::{decode, Limits, Ttlv};
use libfuzzer_sys::fuzz_target;

/// Encodes `ttlv` to bytes and decodes them again: the model's output must be valid TTLV.
fn through_bytes(ttlv: &Ttlv) -> Ttlv {
    let bytes = ttlv.to_bytes().expect("a model's TTLV encodes");
    decode(&bytes, &Limits::default()).expect("an encoded model decodes")
}

/// Equal, except that a rejected payload matches whatever its empty rewrite reads as.
fn same_item(original: &RequestBatchItem, again: &RequestBatchItem) -> bool {
    original.operation == again.operation
        && original.unique_batch_item_id == again.unique_batch_item_id
        && original.ephemeral == again.ephemeral
        && match (&original.payload, &again.payload) {
            (Ok(x), Ok(y)) => x == y,
            (Ok(_), Err(_)) => false,
            (Err(_), _) => true,
        }
}

fuzz_target!(|data: &[u8]| {
    let Ok(ttlv) = decode(&Bytes::copy_from_slice(data), &Limits::default()) else {
        return;
    };
    if let Ok(req) = RequestMessage::from_ttlv(&ttlv) {
        let again = RequestMessage::from_ttlv(&through_bytes(&req.to_ttlv()))
            .unwrap_or_else(|e| panic!("re-encoded request does not parse: {e}\n{req:?}"));
        assert!(
            again.header == req.header
                && again.items.len() == req.items.len()
                && req
                    .items
                    .iter()
                    .zip(&again.items)
                    .all(|(o, a)| same_item(o, a)),
            "request changed through to_ttlv/from_ttlv\n{req:?}\n{again:?}"
        );
    }
    if let Ok(resp) = ResponseMessage::from_ttlv(&ttlv) {
        let written = through_bytes(&resp.to_ttlv());
        let again = ResponseMessage::from_ttlv(&written)
            .unwrap_or_else(|e| panic!("re-encoded response does not parse: {e}\n{resp:?}"));
        assert_eq!(
            again.to_ttlv(),
            written,
            "response written differently the second time\n{resp:?}\n{again:?}"
        );
    }
});
