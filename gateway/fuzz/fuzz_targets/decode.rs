//! Decoder fuzz target: arbitrary bytes must never panic the TTLV decoder; whatever decodes must
//! re-encode to exactly the same bytes (the decoder accepts only canonical encodings) and survive
//! the KMIP XML writer and reader unchanged.
#![no_main]

use bytes::Bytes;
use kmip_wire::ttlv::{message_length, HEADER_LEN};
use kmip_wire::xml::{parse_node, to_xml_string, Bindings};
use kmip_wire::{decode, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Some(header) = data.first_chunk::<HEADER_LEN>() {
        let _ = message_length(header, &limits);
    }
    let buf = Bytes::copy_from_slice(data);
    let Ok(item) = decode(&buf, &limits) else {
        return;
    };
    let again = item.to_bytes().expect("a decoded tree re-encodes");
    assert_eq!(&again[..], data, "re-encoding differs from the input");
    let text = to_xml_string(&item);
    let back = parse_node(&text)
        .and_then(|n| n.to_ttlv(&Bindings::new()))
        .unwrap_or_else(|e| panic!("written XML does not read back: {e}\n{text}"));
    assert_eq!(back, item, "XML round trip changed the tree\n{text}");
});
