//! TTLV decode and encode of two typical responses: a Get of an AES-256 Raw Symmetric Key and a
//! Locate returning 100 identifiers. Run: `cargo bench -p kmip-wire --bench codec`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kmip_wire::xml::parse_node;
use kmip_wire::{decode, Limits, Ttlv};

const HEADER: &str = r#"<ResponseHeader>
    <ProtocolVersion>
      <ProtocolVersionMajor type="Integer" value="2"/>
      <ProtocolVersionMinor type="Integer" value="1"/>
    </ProtocolVersion>
    <TimeStamp type="DateTime" value="2024-05-01T12:00:00+00:00"/>
    <BatchCount type="Integer" value="1"/>
  </ResponseHeader>"#;

fn get_response() -> Ttlv {
    let xml = format!(
        r#"<ResponseMessage>{HEADER}
  <BatchItem>
    <Operation type="Enumeration" value="Get"/>
    <ResultStatus type="Enumeration" value="Success"/>
    <ResponsePayload>
      <ObjectType type="Enumeration" value="SymmetricKey"/>
      <UniqueIdentifier type="TextString" value="1f165d65-fc6e-4b3f-9a1d-2c4e5b7a9d10"/>
      <SymmetricKey>
        <KeyBlock>
          <KeyFormatType type="Enumeration" value="Raw"/>
          <KeyValue>
            <KeyMaterial type="ByteString" value="{}"/>
          </KeyValue>
          <CryptographicAlgorithm type="Enumeration" value="AES"/>
          <CryptographicLength type="Integer" value="256"/>
        </KeyBlock>
      </SymmetricKey>
    </ResponsePayload>
  </BatchItem>
</ResponseMessage>"#,
        "a5".repeat(32)
    );
    parse_node(&xml)
        .and_then(|n| n.to_ttlv(&Default::default()))
        .unwrap()
}

fn locate_response(n: usize) -> Ttlv {
    let ids: String = (0..n)
        .map(|i| {
            format!(
                r#"<UniqueIdentifier type="TextString" value="00000000-0000-4000-8000-{i:012}"/>"#
            )
        })
        .collect();
    let xml = format!(
        r#"<ResponseMessage>{HEADER}
  <BatchItem>
    <Operation type="Enumeration" value="Locate"/>
    <ResultStatus type="Enumeration" value="Success"/>
    <ResponsePayload>
      <LocatedItems type="Integer" value="{n}"/>
      {ids}
    </ResponsePayload>
  </BatchItem>
</ResponseMessage>"#
    );
    parse_node(&xml)
        .and_then(|n| n.to_ttlv(&Default::default()))
        .unwrap()
}

fn bench_message(c: &mut Criterion, name: &str, msg: &Ttlv) {
    let bytes = msg.to_bytes().unwrap();
    let limits = Limits::default();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| decode(black_box(&bytes), &limits).unwrap())
    });
    g.bench_function("encode", |b| b.iter(|| black_box(msg).to_bytes().unwrap()));
    g.finish();
}

fn codec(c: &mut Criterion) {
    bench_message(c, "get_response_aes256_raw", &get_response());
    bench_message(c, "locate_response_100_ids", &locate_response(100));
}

criterion_group!(benches, codec);
criterion_main!(benches);
