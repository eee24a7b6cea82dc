//! Hostile clients against the real `kmip-gateway` binary: bad TLS, bad certificates, malformed
//! and oversized TTLV, slow and idle connections, connection floods.
//!
//! One gateway serves the main suite (so its memory can be compared before and after), with
//! small limits from a configuration file so that timeouts fire within the test's time budget.
//! The bounded-state tests at the end (header-only connections, unknown operation codes as metric
//! labels, handshake slots, large Locate filters) each start their own gateway and wait on its
//! `/metrics` rather than on clocks.
//! Every case asserts the gateway's exact reaction (a Result Reason, or a close with nothing
//! sent) and is followed by a good client that must be served promptly on a fresh connection.
//! Certificates that are untrusted, expired or have a wildcard Common Name are refused in
//! `pykmip.rs` (`authentication_refusals_are_told_apart`); this file adds the missing client
//! certificate and the empty subject.

use bytes::Bytes;
use kmip_e2e::{GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientError, ClientTls, KmipClient};
use kmip_gateway::tooling::pki::{self, CaBundle, CertProfile, IssueOptions};
use kmip_wire::model::{
    Attribute, BatchErrorContinuationOption, LocateRequest, Operation, ProtocolVersion,
    QueryFunction, QueryRequest, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseMessage, ResultReason, ResultStatus,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Ttlv, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `[limits] max_connections` of the suite's gateway: small, so a flood reaches it.
const MAX_CONNECTIONS: usize = 50;
/// `[limits] max_connections_per_source`: room for `IDLE_CONNECTIONS` and a good client from
/// 127.0.0.1, and below `MAX_CONNECTIONS`, so a flood from one source leaves slots to others.
const MAX_CONNECTIONS_PER_SOURCE: usize = 45;
/// Loopback source addresses the global flood is spread over, so that each stays under
/// `MAX_CONNECTIONS_PER_SOURCE` and only the global limit bites (all of 127/8 is loopback).
const FLOOD_SOURCES: u8 = 8;
/// `[limits] read_timeout_ms`: time to finish a message once its first byte arrived.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// `[limits] idle_timeout_ms`: time a connection may wait between requests.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1000);
/// `[limits] handshake_timeout_ms`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);
/// The gateway's default `max_message_size` (1 MiB).
const MAX_MESSAGE_SIZE: usize = 1 << 20;
/// How fast a good client must be served after each case (connect + Query).
const SERVED_WITHIN: Duration = Duration::from_secs(2);
/// Slack for "at once" and for a timeout firing late on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);
/// Connections opened by the flood: well beyond `MAX_CONNECTIONS`.
const FLOOD: usize = 200;
/// Authenticated connections left idle at once (under `MAX_CONNECTIONS`, so the good client
/// still fits).
const IDLE_CONNECTIONS: usize = 40;
/// Memory the whole suite may add to the gateway's resident set. The largest buffers a client
/// can legitimately make the gateway hold are one `MAX_MESSAGE_SIZE` message per connection
/// (50 MiB at `MAX_CONNECTIONS`), plus TLS buffers and allocator retention: 96 MiB covers that
/// with room, while the 4 GiB length claim, or buffers leaked per connection across the ~300
/// connections of the suite, would exceed it.
const RSS_GROWTH_LIMIT_KIB: u64 = 96 * 1024;
/// What one case (the 4 GiB claim) may add to the resident set: it must allocate nothing.
const RSS_CASE_LIMIT_KIB: u64 = 16 * 1024;

/// The suite's gateway and the credentials to talk to it.
struct Suite {
    gw: GatewayProcess,
    pki: PathBuf,
    ca: CaBundle,
    good: ClientTls,
}

impl Suite {
    fn addr(&self) -> String {
        self.gw.addr().to_string()
    }

    async fn connect(&self) -> KmipClient {
        KmipClient::connect(&self.addr(), "localhost", &self.good)
            .await
            .unwrap_or_else(|e| panic!("good client cannot connect: {e}\n{}", self.gw.log()))
    }

    fn rss(&self) -> u64 {
        self.gw.rss_kib().expect("the gateway is running")
    }
}

/// Starts a gateway on a development PKI in `dir` with `limits` (TOML lines of `[limits]`);
/// `admin` also starts the admin listener (for `/metrics`).
fn start_gateway(dir: &Path, limits: &str, admin: bool) -> GatewayProcess {
    let pki_dir = dir.join("pki");
    pki::dev_pki(&pki_dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
             [limits]\n{limits}\n",
            data = dir.join("data"),
            cert = pki_dir.join("server.pem"),
            key = pki_dir.join("server.key"),
            ca = pki_dir.join("ca.pem"),
        ),
    )
    .unwrap();
    GatewayProcess::start_with(&GatewayOptions {
        admin,
        extra_args: vec!["--config".into(), config.display().to_string()],
        // Debug lines say why each connection ended; assertions quote the log.
        env: vec![("KMIP_GATEWAY_LOG".into(), "info,kmip_gateway=debug".into())],
        ..Default::default()
    })
}

/// The development client certificate of `start_gateway`'s PKI.
fn good_client(dir: &Path) -> ClientTls {
    let pki_dir = dir.join("pki");
    ClientTls::from_files(
        &pki_dir.join("ca.pem"),
        &pki_dir.join("client-purefa.pem"),
        &pki_dir.join("client-purefa.key"),
    )
    .unwrap()
}

fn start_suite(dir: &Path) -> Suite {
    // The floods here are about connection slots: the handshake limits are lifted to the
    // connection limits (`handshake_slots_are_capped_per_source_and_in_total` covers them).
    let gw = start_gateway(
        dir,
        &format!(
            "max_connections = {MAX_CONNECTIONS}\n\
             max_connections_per_source = {MAX_CONNECTIONS_PER_SOURCE}\n\
             max_handshakes = {MAX_CONNECTIONS}\n\
             max_handshakes_per_source = {MAX_CONNECTIONS_PER_SOURCE}\n\
             read_timeout_ms = {read}\nidle_timeout_ms = {idle}\nhandshake_timeout_ms = {hs}",
            read = READ_TIMEOUT.as_millis(),
            idle = IDLE_TIMEOUT.as_millis(),
            hs = HANDSHAKE_TIMEOUT.as_millis(),
        ),
        false,
    );
    let pki_dir = dir.join("pki");
    let ca = CaBundle {
        cert_pem: std::fs::read_to_string(pki_dir.join("ca.pem")).unwrap(),
        key_pem: std::fs::read_to_string(pki_dir.join("ca.key"))
            .unwrap()
            .into(),
    };
    let good = good_client(dir);
    Suite {
        gw,
        pki: pki_dir,
        ca,
        good,
    }
}

// --- messages ------------------------------------------------------------------------------------

fn query_payload() -> RequestPayload {
    RequestPayload::Query(QueryRequest {
        functions: vec![QueryFunction::QueryOperations],
    })
}

fn message(payloads: Vec<RequestPayload>) -> RequestMessage {
    RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V1_4),
        items: payloads.into_iter().map(RequestBatchItem::new).collect(),
    }
}

fn bytes_of(ttlv: &Ttlv) -> Vec<u8> {
    ttlv.to_bytes().unwrap().to_vec()
}

fn query_bytes() -> Vec<u8> {
    bytes_of(&message(vec![query_payload()]).to_ttlv())
}

/// One raw TTLV item, value padded to 8 bytes (lengths not checked: callers lie on purpose).
fn raw_item(tag: u32, item_type: u8, length: u32, value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_be_bytes()[1..].to_vec();
    out.push(item_type);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (8 - value.len() % 8) % 8, 0);
    out
}

/// Position of the first item with `tag` and `item_type` in encoded TTLV.
fn find_item(bytes: &[u8], tag: Tag, item_type: u8) -> usize {
    let mut needle = tag.0.to_be_bytes()[1..].to_vec();
    needle.push(item_type);
    bytes
        .windows(4)
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("item {:06x} not in the message", tag.0))
}

/// Sets the length field of the first `tag`/`item_type` item, keeping every byte's position.
fn with_length(mut bytes: Vec<u8>, tag: Tag, item_type: u8, length: u32) -> Vec<u8> {
    let at = find_item(&bytes, tag, item_type);
    bytes[at + 4..at + 8].copy_from_slice(&length.to_be_bytes());
    bytes
}

/// Structures nested `depth` deep (an empty one innermost), under a Request Message tag.
fn nested(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 8);
    for level in 0..depth {
        let inner = (depth - level - 1) * 8;
        out.extend(raw_item(tags::REQUEST_MESSAGE.0, 0x01, inner as u32, &[]));
    }
    out
}

/// Small deterministic generator (xorshift64*): the random-bytes case is reproducible.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn response(bytes: &Bytes) -> ResponseMessage {
    let ttlv = decode(bytes, &Limits::default()).expect("the gateway sent valid TTLV");
    ResponseMessage::from_ttlv(&ttlv).expect("the gateway sent a Response Message")
}

/// The single failure a message-level problem is answered with.
fn sole_failure(bytes: &Bytes) -> ResultReason {
    let msg = response(bytes);
    assert_eq!(msg.items.len(), 1, "one failure item expected: {msg:?}");
    let item = &msg.items[0];
    assert_eq!(item.result_status, ResultStatus::OperationFailed, "{msg:?}");
    item.result_reason
        .expect("a failure carries a Result Reason")
}

// --- reactions ------------------------------------------------------------------------------------

/// Connect + Query on a fresh connection must succeed within `SERVED_WITHIN`.
async fn assert_served(s: &Suite, after: &str) -> Duration {
    let started = Instant::now();
    let outcome = tokio::time::timeout(SERVED_WITHIN, async {
        let mut c = KmipClient::connect(&s.addr(), "localhost", &s.good).await?;
        let reply = c.call(&message(vec![query_payload()]).to_ttlv()).await?;
        Ok::<_, ClientError>(reply)
    })
    .await;
    let reply = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("after {after}: good client failed: {e}\n{}", s.gw.log()),
        Err(_) => panic!(
            "after {after}: good client not served within {SERVED_WITHIN:?}\n{}",
            s.gw.log()
        ),
    };
    let msg = ResponseMessage::from_ttlv(&reply).unwrap();
    assert_eq!(
        msg.items[0].result_status,
        ResultStatus::Success,
        "after {after}: {msg:?}"
    );
    started.elapsed()
}

/// The next read must find the connection closed (no message) within `within`; returns when.
async fn assert_closed(c: &mut KmipClient, within: Duration, case: &str, s: &Suite) -> Duration {
    let started = Instant::now();
    c.set_timeout(within);
    match c.read_message().await {
        Err(ClientError::Io(_)) => started.elapsed(),
        Err(ClientError::Timeout(_)) => panic!(
            "{case}: connection still open after {within:?}\n{}",
            s.gw.log()
        ),
        Err(e) => panic!("{case}: unexpected client error {e}"),
        Ok(m) => panic!(
            "{case}: got a message instead of a close: {:?}",
            response(&m)
        ),
    }
}

/// Sends `bytes` and returns the one response message.
async fn exchange(c: &mut KmipClient, bytes: &[u8], case: &str) -> Bytes {
    c.send_raw(bytes).await.unwrap();
    c.set_timeout(SERVED_WITHIN);
    c.read_message()
        .await
        .unwrap_or_else(|e| panic!("{case}: no response: {e}"))
}

/// The connection must still serve a Query after a failure answer.
async fn assert_kept(c: &mut KmipClient, case: &str) {
    let reply = c
        .call(&message(vec![query_payload()]).to_ttlv())
        .await
        .unwrap_or_else(|e| panic!("{case}: connection not kept: {e}"));
    let msg = ResponseMessage::from_ttlv(&reply).unwrap();
    assert_eq!(msg.items[0].result_status, ResultStatus::Success, "{case}");
}

/// Reads a raw (non-TLS) socket until it closes; what the server sent before closing.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration, case: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => panic!("{case}: socket still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn wait_for_log(s: &Suite, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if s.gw.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// --- cases ----------------------------------------------------------------------------------------

async fn plaintext_on_tls_port(s: &Suite) {
    let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
    tcp.write_all(&query_bytes()).await.unwrap();
    let got = read_until_closed(&mut tcp, SLACK, "plaintext").await;
    // At most a TLS alert record (content type 21), never a KMIP message.
    assert!(
        got.is_empty() || got[0] == 0x15,
        "plaintext: the gateway answered {got:02x?}"
    );
    assert!(
        wait_for_log(s, "reason=\"not_tls\"").await,
        "{}",
        s.gw.log()
    );
}

async fn tls_without_client_certificate(s: &Suite) {
    let mut roots = rustls::RootCertStore::empty();
    for c in kmip_gateway::front::tls::load_certs(&s.pki.join("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(kmip_gateway::front::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = TcpStream::connect(s.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    // Under TLS 1.3 the refusal shows on the first read, not in connect.
    let refused = match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = tls.write_all(&query_bytes()).await;
            let mut buf = [0u8; 64];
            match tokio::time::timeout(SLACK, tls.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => true,
                Ok(Ok(n)) => panic!("no client certificate: answered {:02x?}", &buf[..n]),
                Err(_) => false,
            }
        }
    };
    assert!(refused, "no client certificate: connection left open");
    assert!(
        wait_for_log(s, "reason=\"no_client_certificate\"").await,
        "{}",
        s.gw.log()
    );
}

/// A client certificate from the trusted CA without a usable Common Name must be refused.
async fn certificate_without_common_name(s: &Suite, common_name: Option<&str>, case: &str) {
    let opts = IssueOptions::new(common_name.map(str::to_owned), CertProfile::Client, 30).unwrap();
    let cert = pki::issue_cert(&s.ca, &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("c.pem");
    let key_path = dir.path().join("c.key");
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, cert.key_pem.as_bytes()).unwrap();
    let tls = ClientTls::from_files(&s.pki.join("ca.pem"), &cert_path, &key_path).unwrap();
    let before = s.gw.log().matches("reason=\"empty_common_name\"").count();
    if let Ok(mut c) = KmipClient::connect(&s.addr(), "localhost", &tls).await {
        c.set_timeout(SLACK);
        let outcome = c.call(&message(vec![query_payload()]).to_ttlv()).await;
        assert!(outcome.is_err(), "{case}: answered: {outcome:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.gw.log().matches("reason=\"empty_common_name\"").count() == before {
        assert!(
            Instant::now() < deadline,
            "{case}: no refusal logged\n{}",
            s.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a prefix of a valid request and stops: closed by the read timeout, not earlier.
async fn truncated(s: &Suite, keep: usize, case: &str) {
    let bytes = query_bytes();
    assert!(keep < bytes.len());
    let mut c = s.connect().await;
    c.send_raw(&bytes[..keep]).await.unwrap();
    let waited = assert_closed(&mut c, READ_TIMEOUT + SLACK, case, s).await;
    assert!(
        waited >= READ_TIMEOUT - Duration::from_millis(100),
        "{case}: closed after {waited:?}, before the read timeout"
    );
}

/// A header whose claimed length is over the limit: closed at once, nothing answered, nothing
/// allocated.
async fn oversized_claim(s: &Suite, claimed_body: u32, case: &str) {
    let rss_before = s.rss();
    let mut c = s.connect().await;
    let mut bytes = raw_item(tags::REQUEST_MESSAGE.0, 0x01, claimed_body, &[]);
    bytes.extend_from_slice(&query_bytes()[8..]);
    c.send_raw(&bytes).await.unwrap();
    let waited = assert_closed(&mut c, SLACK, case, s).await;
    assert!(
        waited < READ_TIMEOUT,
        "{case}: closed after {waited:?}: by a timeout, not by the size check"
    );
    let grown = s.rss().saturating_sub(rss_before);
    assert!(
        grown < RSS_CASE_LIMIT_KIB,
        "{case}: the gateway's RSS grew by {grown} KiB"
    );
}

async fn zero_length(s: &Suite) {
    let mut c = s.connect().await;
    let reply = exchange(
        &mut c,
        &raw_item(tags::REQUEST_MESSAGE.0, 0x01, 0, &[]),
        "zero",
    )
    .await;
    assert_eq!(sole_failure(&reply), ResultReason::InvalidMessage);
    assert_kept(&mut c, "zero length").await;
}

async fn wrong_outer_tag(s: &Suite) {
    let mut bytes = query_bytes();
    bytes[..3].copy_from_slice(&tags::RESPONSE_MESSAGE.0.to_be_bytes()[1..]);
    let mut c = s.connect().await;
    let reply = exchange(&mut c, &bytes, "wrong outer tag").await;
    assert_eq!(sole_failure(&reply), ResultReason::InvalidMessage);
    assert_kept(&mut c, "wrong outer tag").await;
}

async fn wrong_outer_type(s: &Suite) {
    let mut c = s.connect().await;
    // An Integer where the Request Message structure belongs: the framing check refuses it.
    c.send_raw(&raw_item(tags::REQUEST_MESSAGE.0, 0x02, 4, &[0, 0, 0, 1]))
        .await
        .unwrap();
    let waited = assert_closed(&mut c, SLACK, "wrong outer type", s).await;
    assert!(
        waited < READ_TIMEOUT,
        "wrong outer type: closed after {waited:?}"
    );
}

/// Bytes that are not valid TTLV: one Invalid Message response, then the connection closes.
async fn undecodable(s: &Suite, bytes: &[u8], case: &str) {
    let mut c = s.connect().await;
    let reply = exchange(&mut c, bytes, case).await;
    assert_eq!(sole_failure(&reply), ResultReason::InvalidMessage, "{case}");
    let waited = assert_closed(&mut c, SLACK, case, s).await;
    assert!(waited < READ_TIMEOUT, "{case}: closed after {waited:?}");
}

async fn invalid_utf8(s: &Suite) {
    let mut msg = message(vec![query_payload()]);
    msg.header.client_correlation_value = Some("ZZZZZZZZ".into());
    let mut bytes = bytes_of(&msg.to_ttlv());
    let at = bytes.windows(8).position(|w| w == b"ZZZZZZZZ").unwrap();
    bytes[at..at + 8].copy_from_slice(&[0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xff]);
    undecodable(s, &bytes, "invalid UTF-8").await;
}

async fn unknown_operation(s: &Suite) {
    let unknown = RequestPayload::Unknown {
        op_code: Operation::Other(0x0000_00ff),
        raw: Ttlv::structure(tags::REQUEST_PAYLOAD, Vec::new()),
    };
    let mut c = s.connect().await;
    let bytes = bytes_of(&message(vec![unknown, query_payload()]).to_ttlv());
    let reply = exchange(&mut c, &bytes, "unknown operation").await;
    let msg = response(&reply);
    assert_eq!(
        msg.items.len(),
        1,
        "the failed first item stops the batch: {msg:?}"
    );
    assert_eq!(
        msg.items[0].result_reason,
        Some(ResultReason::OperationNotSupported),
        "{msg:?}"
    );
    assert_kept(&mut c, "unknown operation").await;
}

/// Tags no KMIP version defines, in the header, the batch item and the payload: ignored (the
/// Query is answered), the connection kept.
async fn unknown_tags(s: &Suite) {
    let mut ttlv = message(vec![query_payload()]).to_ttlv();
    fn visit(t: &mut Ttlv) {
        if let Value::Structure(items) = &mut t.value {
            for i in items.iter_mut() {
                visit(i);
            }
            if t.tag != tags::REQUEST_MESSAGE && t.tag != tags::PROTOCOL_VERSION {
                items.push(Ttlv::new(Tag(0x42_ff01), Value::Integer(7)));
            }
        }
    }
    visit(&mut ttlv);
    let mut c = s.connect().await;
    let reply = exchange(&mut c, &bytes_of(&ttlv), "unknown tags").await;
    let msg = response(&reply);
    assert_eq!(msg.items.len(), 1, "{msg:?}");
    assert_eq!(msg.items[0].result_status, ResultStatus::Success, "{msg:?}");
    assert_kept(&mut c, "unknown tags").await;
}

async fn batch_count_mismatch(s: &Suite) {
    let bytes = query_bytes();
    let at = find_item(&bytes, tags::BATCH_COUNT, 0x02);
    let mut bytes = bytes;
    bytes[at + 8..at + 12].copy_from_slice(&3i32.to_be_bytes());
    let mut c = s.connect().await;
    let reply = exchange(&mut c, &bytes, "batch count mismatch").await;
    assert_eq!(sole_failure(&reply), ResultReason::InvalidMessage);
    assert_kept(&mut c, "batch count mismatch").await;
}

async fn ten_thousand_items(s: &Suite) {
    let bytes = bytes_of(&message((0..10_000).map(|_| query_payload()).collect()).to_ttlv());
    assert!(bytes.len() < MAX_MESSAGE_SIZE, "{} bytes", bytes.len());
    let mut c = s.connect().await;
    let started = Instant::now();
    let reply = exchange(&mut c, &bytes, "10,000 items").await;
    assert_eq!(sole_failure(&reply), ResultReason::InvalidMessage);
    assert!(started.elapsed() < SERVED_WITHIN);
    assert_kept(&mut c, "10,000 items").await;
}

/// Random bytes after the handshake: the connection ends (at most one Invalid Message first).
async fn random_after_handshake(s: &Suite) {
    for seed in [1u64, 0x5eed, 0xdead_beef] {
        let mut c = s.connect().await;
        c.send_raw(&random_bytes(seed, 4096)).await.unwrap();
        c.set_timeout(READ_TIMEOUT + SLACK);
        match c.read_message().await {
            Err(ClientError::Io(_)) => {}
            Ok(m) => {
                assert_eq!(
                    sole_failure(&m),
                    ResultReason::InvalidMessage,
                    "seed {seed}"
                );
                assert_closed(&mut c, SLACK, "random bytes", s).await;
            }
            Err(e) => panic!("random bytes (seed {seed}): {e}\n{}", s.gw.log()),
        }
    }
}

/// One byte every 100 ms: the read timeout counts from the message's first byte, so the
/// connection is closed about `READ_TIMEOUT` after it, however steadily bytes trickle in.
async fn slowloris(s: &Suite) {
    let bytes = query_bytes();
    let mut c = s.connect().await;
    c.set_timeout(Duration::from_millis(100));
    let first = Instant::now();
    let mut sent = 0;
    let closed_after = loop {
        assert!(
            sent < bytes.len(),
            "slowloris: the whole message went through"
        );
        if c.send_raw(&bytes[sent..=sent]).await.is_err() {
            break first.elapsed();
        }
        sent += 1;
        match c.read_message().await {
            Err(ClientError::Timeout(_)) => {}
            Err(_) => break first.elapsed(),
            Ok(m) => panic!("slowloris: answered {:?}", response(&m)),
        }
    };
    assert!(
        closed_after >= READ_TIMEOUT - Duration::from_millis(100)
            && closed_after < READ_TIMEOUT + SLACK,
        "slowloris: closed {closed_after:?} after the first byte ({sent} bytes sent)"
    );
}

/// Authenticated connections that send nothing are closed by the idle timeout; meanwhile a good
/// client is served.
async fn many_idle_connections(s: &Suite) {
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(s.connect().await);
    }
    let opened = Instant::now();
    assert_served(s, "opening idle connections").await;
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in idle {
        tasks.spawn(async move {
            c.set_timeout(IDLE_TIMEOUT + SLACK * 2);
            matches!(c.read_message().await, Err(ClientError::Io(_)))
        });
    }
    let mut closed = 0;
    while let Some(r) = tasks.join_next().await {
        closed += usize::from(r.unwrap());
    }
    let took = opened.elapsed();
    assert_eq!(closed, IDLE_CONNECTIONS, "idle connections not all closed");
    assert!(
        took >= IDLE_TIMEOUT - Duration::from_millis(100),
        "idle connections closed after {took:?}, before the idle timeout"
    );
}

/// Opens `FLOOD` TCP connections that never start TLS, the i-th from `source(i)`; each task
/// reports how long after its own connect the gateway closed it.
async fn flood(
    s: &Suite,
    source: impl Fn(usize) -> IpAddr,
) -> tokio::task::JoinSet<Option<(Instant, Duration)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source(i), 0)).unwrap();
        let mut sock = socket.connect(s.gw.addr()).await.unwrap();
        // Timed from its own connect, so a slow connect loop cannot blur the two groups.
        let connected = Instant::now();
        tasks.spawn(async move {
            let mut buf = [0u8; 16];
            match tokio::time::timeout(HANDSHAKE_TIMEOUT + SLACK * 2, sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => Some((Instant::now(), connected.elapsed())),
                Ok(Ok(_)) | Err(_) => None,
            }
        });
    }
    tasks
}

/// A flood's outcome: connections closed at once, connections held until the handshake
/// timeout, and the most of those held at one moment.
struct FloodOutcome {
    at_once: usize,
    by_timeout: usize,
    most_held_together: usize,
}

/// Sorts the flood's connections into those closed at once and those held until the handshake
/// timeout, and counts how many of the latter were held at one moment: each was held for the
/// timeout before it closed. A loaded machine may accept the flood over more than one timeout,
/// so later connections take the slots the first ones gave back; what the limit promises is
/// how many are held *together*.
async fn closed_at_once_and_by_timeout(
    mut tasks: tokio::task::JoinSet<Option<(Instant, Duration)>>,
    s: &Suite,
) -> FloodOutcome {
    let (mut at_once, mut held_ends) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Some((_, t)) if t < HANDSHAKE_TIMEOUT / 2 => at_once += 1,
            Some((end, t)) if t >= HANDSHAKE_TIMEOUT - Duration::from_millis(100) => {
                held_ends.push(end)
            }
            other => panic!("flood: a connection ended oddly: {other:?}\n{}", s.gw.log()),
        }
    }
    assert_eq!(at_once + held_ends.len(), FLOOD);
    // Held over [end - timeout, end]; a margin keeps a slot given back and taken again in the
    // same instant from counting twice.
    let margin = Duration::from_millis(50);
    let most_held_together = held_ends
        .iter()
        .map(|&at| {
            held_ends
                .iter()
                .filter(|&&end| end > at + margin && end <= at + HANDSHAKE_TIMEOUT)
                .count()
                + 1
        })
        .max()
        .unwrap_or(0);
    FloodOutcome {
        at_once,
        by_timeout: held_ends.len(),
        most_held_together,
    }
}

/// A flood from `FLOOD_SOURCES` sources: connections over `MAX_CONNECTIONS` are closed at once,
/// the rest by the handshake timeout; then good clients are served again.
async fn connection_flood(s: &Suite) -> (usize, usize) {
    let flooded = Instant::now();
    let tasks = flood(s, |i| {
        IpAddr::from([127, 0, 1, 1 + (i % FLOOD_SOURCES as usize) as u8])
    })
    .await;
    let FloodOutcome {
        at_once,
        by_timeout,
        most_held_together,
    } = closed_at_once_and_by_timeout(tasks, s).await;
    assert!(
        most_held_together <= MAX_CONNECTIONS && at_once > 0,
        "flood: {at_once} closed at once, {by_timeout} held until the handshake timeout, \
         {most_held_together} of them together"
    );
    assert!(flooded.elapsed() < HANDSHAKE_TIMEOUT + SLACK * 2);
    (at_once, by_timeout)
}

/// A flood from one other source: beyond `MAX_CONNECTIONS_PER_SOURCE` its connections are
/// closed at once, and while the rest still wait for the handshake timeout a good client from
/// 127.0.0.1 is served (without the per-source limit the flood would hold every slot).
async fn one_source_flood(s: &Suite) -> (usize, usize) {
    // The first connections, which keep their slots, are held at least until then.
    let held_until = Instant::now() + HANDSHAKE_TIMEOUT;
    let tasks = flood(s, |_| IpAddr::from([127, 0, 0, 2])).await;
    assert_served(s, "during a flood from another source").await;
    let served_at = Instant::now();
    let FloodOutcome {
        at_once,
        by_timeout,
        most_held_together,
    } = closed_at_once_and_by_timeout(tasks, s).await;
    assert!(
        most_held_together <= MAX_CONNECTIONS_PER_SOURCE && at_once > 0,
        "flood: {at_once} closed at once, {by_timeout} held until the handshake timeout, \
         {most_held_together} of them together"
    );
    assert!(
        by_timeout > 0 && served_at + Duration::from_millis(100) < held_until,
        "the good client was served after the flood's slots were given back"
    );
    assert!(wait_for_log(s, "connection over the per-source limit closed").await);
    (at_once, by_timeout)
}

#[test]
fn hostile_clients_leave_the_gateway_serving() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = start_suite(dir.path());
    let suite_started = Instant::now();
    runtime.block_on(async {
        assert_served(&s, "start").await;
        let rss_start = s.rss();
        let mut report = Vec::new();
        macro_rules! case {
            ($name:expr, $body:expr) => {{
                let t = Instant::now();
                let note = format!("{:?}", $body.await);
                let case_took = t.elapsed();
                let served = assert_served(&s, $name).await;
                report.push(format!(
                    "{:<40} {:>6} ms  good client {:>4} ms  {}",
                    $name,
                    case_took.as_millis(),
                    served.as_millis(),
                    if note == "()" { String::new() } else { note }
                ));
            }};
        }
        case!("plaintext on the TLS port", plaintext_on_tls_port(&s));
        case!(
            "TLS without client certificate",
            tls_without_client_certificate(&s)
        );
        case!(
            "certificate without Common Name",
            certificate_without_common_name(&s, None, "no CN")
        );
        case!(
            "certificate with empty Common Name",
            certificate_without_common_name(&s, Some(""), "empty CN")
        );
        case!("truncated header", truncated(&s, 5, "truncated header"));
        case!("truncated body", truncated(&s, 40, "truncated body"));
        case!(
            "header claiming 4 GiB",
            oversized_claim(&s, 0xffff_fff8, "4 GiB")
        );
        case!(
            "message over max_message_size",
            oversized_claim(&s, MAX_MESSAGE_SIZE as u32, "1 MiB + 8")
        );
        case!("zero length", zero_length(&s));
        case!("wrong outer tag", wrong_outer_tag(&s));
        case!("wrong outer type", wrong_outer_type(&s));
        case!(
            "1,000-deep nesting",
            undecodable(&s, &nested(1000), "nesting")
        );
        case!(
            "Integer with length 8",
            undecodable(
                &s,
                &with_length(query_bytes(), tags::BATCH_COUNT, 0x02, 8),
                "Integer length"
            )
        );
        case!(
            "Enumeration with length 2",
            undecodable(
                &s,
                &with_length(query_bytes(), tags::OPERATION, 0x05, 2),
                "Enumeration length"
            )
        );
        case!("invalid UTF-8", invalid_utf8(&s));
        case!("unknown operation", unknown_operation(&s));
        case!("unknown tags", unknown_tags(&s));
        case!("batch count mismatch", batch_count_mismatch(&s));
        case!("10,000 batch items", ten_thousand_items(&s));
        case!("random bytes after handshake", random_after_handshake(&s));
        case!("slowloris", slowloris(&s));
        case!("many idle connections", many_idle_connections(&s));
        case!("connection flood", connection_flood(&s));
        case!("connection flood from one source", one_source_flood(&s));
        let rss_end = s.rss();
        eprintln!("hostile suite against pid {}:", s.gw.pid());
        for line in &report {
            eprintln!("  {line}");
        }
        eprintln!(
            "  RSS {} KiB at start, {} KiB at the end (+{} KiB); {:.1} s",
            rss_start,
            rss_end,
            rss_end.saturating_sub(rss_start),
            suite_started.elapsed().as_secs_f64()
        );
        assert!(
            rss_end.saturating_sub(rss_start) < RSS_GROWTH_LIMIT_KIB,
            "the gateway's RSS grew from {rss_start} to {rss_end} KiB"
        );
    });
    let log = s.gw.log();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
    let mut s = s;
    assert!(s.gw.is_running(), "the gateway died:\n{log}");
}

// --- bounded state: one gateway per test, observed through `/metrics` -------------------------

/// How long a wait on the gateway's observable state may take before the test gives up: a guard
/// against hanging, never a claim about speed (every wait ends on a state change, not a clock).
const HANG_GUARD: Duration = Duration::from_secs(120);
/// A timeout no case here reaches: sockets keep their slots and buffers for as long as the test
/// holds them, so what is counted does not depend on the machine's speed.
const NEVER_MS: u64 = 600_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The sum of the samples of `name` (a counter or gauge) carrying every label of `labels`, in a
/// Prometheus text scrape; 0 when there is none.
fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labelled, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| labelled.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

fn scrape(gw: &GatewayProcess) -> String {
    let (code, body) = gw.admin_get("/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// Scrapes `/metrics` until `done` holds; `check` runs on every scrape first (it may fail the
/// test early, e.g. on memory).
async fn wait_for_metrics(
    gw: &GatewayProcess,
    what: &str,
    mut check: impl FnMut(&str),
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let text = scrape(gw);
        check(&text);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}\n{text}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn query_succeeds(gw: &GatewayProcess, tls: &ClientTls, case: &str) {
    let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", tls)
        .await
        .unwrap_or_else(|e| panic!("{case}: good client cannot connect: {e}\n{}", gw.log()));
    c.set_timeout(HANG_GUARD);
    let reply = c
        .call(&message(vec![query_payload()]).to_ttlv())
        .await
        .unwrap_or_else(|e| panic!("{case}: good client not served: {e}\n{}", gw.log()));
    let msg = ResponseMessage::from_ttlv(&reply).unwrap();
    assert_eq!(msg.items[0].result_status, ResultStatus::Success, "{case}");
}

/// Authenticated connections that send only a header announcing a body of the largest size
/// make the gateway hold no body buffer: its memory grows by less than the in-flight byte
/// budget (a small fraction of what the announced bodies add up to), and a good client is
/// served meanwhile.
#[test]
fn headers_announcing_large_bodies_do_not_allocate_them() {
    /// Connections that each announce a `MAX_MESSAGE_SIZE` message and send only its header.
    const HEADERS_ONLY: usize = 120;
    /// `limits.max_inflight_request_bytes` of this gateway: a thirtieth of the announced total.
    const INFLIGHT_BUDGET: usize = 4 << 20;
    /// Allocator and metrics growth besides request buffers.
    const SLACK_KIB: u64 = 8 * 1024;
    let growth_limit_kib = (INFLIGHT_BUDGET / 1024) as u64 + SLACK_KIB;
    assert!(growth_limit_kib * 1024 < (HEADERS_ONLY * MAX_MESSAGE_SIZE) as u64 / 4);
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(
        dir.path(),
        &format!(
            "max_connections = {c}\nmax_connections_per_source = {c}\n\
             max_handshakes_per_source = {c}\nmax_inflight_request_bytes = {INFLIGHT_BUDGET}\n\
             read_timeout_ms = {NEVER_MS}\nidle_timeout_ms = {NEVER_MS}",
            c = HEADERS_ONLY + 10,
        ),
        true,
    );
    let tls = good_client(dir.path());
    runtime().block_on(async {
        let mut held = Vec::new();
        for _ in 0..HEADERS_ONLY {
            let c = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls).await;
            held.push(c.unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.log())));
        }
        query_succeeds(&gw, &tls, "connections opened").await;
        let rss_before = gw.rss_kib().unwrap();
        let header = raw_item(
            tags::REQUEST_MESSAGE.0,
            0x01,
            (MAX_MESSAGE_SIZE - 8) as u32,
            &[],
        );
        for c in &mut held {
            c.send_raw(&header).await.unwrap();
        }
        let growth = |gw: &GatewayProcess| gw.rss_kib().unwrap().saturating_sub(rss_before);
        let check = |_: &str| {
            let grown = growth(&gw);
            assert!(
                grown < growth_limit_kib,
                "{HEADERS_ONLY} headers grew the gateway's RSS by {grown} KiB (limit {growth_limit_kib})"
            );
        };
        let text = wait_for_metrics(&gw, "every header read", &check, |t| {
            metric(t, "kmip_inflight_requests", &[]) >= HEADERS_ONLY as f64
        })
        .await;
        let charged = metric(&text, "kmip_inflight_request_bytes", &[]);
        assert!(
            charged <= INFLIGHT_BUDGET as f64,
            "{charged} bytes charged"
        );
        query_succeeds(&gw, &tls, "headers announcing large bodies").await;
        check("");
        eprintln!(
            "{HEADERS_ONLY} headers announcing {MAX_MESSAGE_SIZE} bytes each: RSS +{} KiB, \
             {charged} bytes charged to the in-flight budget",
            growth(&gw)
        );
    });
}

/// Unknown operation codes all count under `operation="other"`: thousands of distinct codes
/// add a few series to `/metrics`, not one per code.
#[test]
fn unknown_operation_codes_share_one_metric_label() {
    /// Distinct unknown codes per batch, and batches.
    const CODES: u32 = 1_000;
    const BATCHES: u32 = 2;
    /// What `/metrics` may grow by: one counter and one histogram for "other" (pre-fix, each code
    /// added about a kilobyte).
    const GROWTH_LIMIT: usize = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), "", true);
    let tls = good_client(dir.path());
    runtime().block_on(async {
        query_succeeds(&gw, &tls, "start").await;
        let before = scrape(&gw).len();
        let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls)
            .await
            .unwrap();
        c.set_timeout(HANG_GUARD);
        for batch in 0..BATCHES {
            let mut msg = message(
                (0..CODES)
                    .map(|i| RequestPayload::Unknown {
                        op_code: Operation::Other(0x0001_0000 + batch * CODES + i),
                        raw: Ttlv::structure(tags::REQUEST_PAYLOAD, Vec::new()),
                    })
                    .collect(),
            );
            msg.header.batch_error_continuation_option =
                Some(BatchErrorContinuationOption::Continue);
            let reply = c.call(&msg.to_ttlv()).await.unwrap();
            let reply = ResponseMessage::from_ttlv(&reply).unwrap();
            assert_eq!(reply.items.len(), CODES as usize);
            assert!(reply
                .items
                .iter()
                .all(|i| i.result_reason == Some(ResultReason::OperationNotSupported)));
        }
        let text = scrape(&gw);
        assert_eq!(
            metric(&text, "kmip_requests_total", &[("operation", "other")]),
            f64::from(CODES * BATCHES),
            "{text}"
        );
        assert!(
            text.len() < before + GROWTH_LIMIT,
            "/metrics grew from {before} to {} bytes",
            text.len()
        );
    });
}

/// Idle sockets that never start TLS: beyond `max_handshakes_per_source` from their source, and
/// beyond `max_handshakes` in total, they are refused at once and counted, while a good client
/// from another source completes its handshake and is served; slots come back when they close.
#[test]
fn handshake_slots_are_capped_per_source_and_in_total() {
    const PER_SOURCE: usize = 4;
    const TOTAL: usize = 12;
    /// Idle sockets opened from the first source.
    const FROM_ONE: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(
        dir.path(),
        &format!(
            "max_connections = 100\nmax_connections_per_source = 50\n\
             max_handshakes = {TOTAL}\nmax_handshakes_per_source = {PER_SOURCE}\n\
             handshake_timeout_ms = {NEVER_MS}"
        ),
        true,
    );
    let tls = good_client(dir.path());
    let refused = |t: &str, reason: &str| {
        metric(t, "kmip_connections_refused_total", &[("reason", reason)]) as usize
    };
    let in_handshake = |t: &str| metric(t, "kmip_handshakes_in_progress", &[]) as usize;
    let addr = gw.addr();
    runtime().block_on(async {
        let idle_from = |last: u8, n: usize| async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let socket = TcpSocket::new_v4().unwrap();
                socket
                    .bind(SocketAddr::new(IpAddr::from([127, 0, 0, last]), 0))
                    .unwrap();
                out.push(socket.connect(addr).await.unwrap());
            }
            out
        };
        let mut idle = idle_from(2, FROM_ONE).await;
        wait_for_metrics(
            &gw,
            "the per-source handshake refusals",
            |_| {},
            |t| {
                refused(t, "source_handshake_limit") == FROM_ONE - PER_SOURCE
                    && in_handshake(t) == PER_SOURCE
            },
        )
        .await;
        query_succeeds(&gw, &tls, "one source at its handshake limit").await;

        // Two more sources fill the total; then a fourth source, and the good client, are
        // refused until handshake slots come back.
        idle.extend(idle_from(3, PER_SOURCE).await);
        idle.extend(idle_from(4, PER_SOURCE).await);
        wait_for_metrics(
            &gw,
            "every handshake slot taken",
            |_| {},
            |t| in_handshake(t) == TOTAL,
        )
        .await;
        idle.extend(idle_from(5, 1).await);
        wait_for_metrics(
            &gw,
            "the total handshake refusal",
            |_| {},
            |t| refused(t, "handshake_limit") == 1,
        )
        .await;
        let outcome = tokio::time::timeout(
            HANG_GUARD,
            KmipClient::connect(&gw.addr().to_string(), "localhost", &tls),
        )
        .await
        .expect("a refused connection ends");
        assert!(
            outcome.is_err(),
            "a handshake over the total limit went through"
        );
        let text = scrape(&gw);
        assert_eq!(refused(&text, "handshake_limit"), 2, "{text}");
        assert_eq!(
            refused(&text, "source_handshake_limit"),
            FROM_ONE - PER_SOURCE,
            "{text}"
        );

        drop(idle);
        wait_for_metrics(
            &gw,
            "the handshake slots given back",
            |_| {},
            |t| in_handshake(t) == 0,
        )
        .await;
        query_succeeds(&gw, &tls, "idle sockets closed").await;
    });
}

/// Locates with large, distinct filters: the cache keeps a digest of each request, not the
/// filter itself, so memory grows by far less than the filters add up to.
#[test]
fn large_locate_filters_are_not_kept_by_the_cache() {
    /// Distinct filters, each an Object Group of `FILTER` bytes (no object matches).
    const LOCATES: usize = 80;
    const FILTER: usize = 900 * 1024;
    /// `[locate_cache] max_bytes` of this gateway.
    const CACHE_BYTES: usize = 1 << 20;
    /// Request buffers, decoding and allocator retention besides the cache.
    const SLACK_KIB: u64 = 24 * 1024;
    let growth_limit_kib = (CACHE_BYTES / 1024) as u64 + SLACK_KIB;
    assert!(growth_limit_kib * 1024 < (LOCATES * FILTER) as u64 / 2);
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(
        dir.path(),
        &format!("[locate_cache]\nmax_bytes = {CACHE_BYTES}"),
        true,
    );
    let tls = good_client(dir.path());
    runtime().block_on(async {
        let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls)
            .await
            .unwrap();
        c.set_timeout(HANG_GUARD);
        let locate = |i: usize| {
            let group = format!("{i:08}{}", "g".repeat(FILTER));
            message(vec![RequestPayload::Locate(LocateRequest {
                attributes: vec![Attribute::text(tags::OBJECT_GROUP, &group)],
                ..LocateRequest::default()
            })])
            .to_ttlv()
        };
        // One first: the gateway's buffers and allocator reach their working size.
        ResponseMessage::from_ttlv(&c.call(&locate(0)).await.unwrap()).unwrap();
        let rss_before = gw.rss_kib().unwrap();
        for i in 1..=LOCATES {
            let reply = c.call(&locate(i)).await.unwrap();
            let reply = ResponseMessage::from_ttlv(&reply).unwrap();
            assert_eq!(reply.items[0].result_status, ResultStatus::Success, "{reply:?}");
            let grown = gw.rss_kib().unwrap().saturating_sub(rss_before);
            assert!(
                grown < growth_limit_kib,
                "{i} Locates of {FILTER} bytes grew the gateway's RSS by {grown} KiB (limit {growth_limit_kib})"
            );
        }
        let text = scrape(&gw);
        assert_eq!(
            metric(&text, "kmip_locate_cache_misses_total", &[]),
            (LOCATES + 1) as f64,
            "every Locate went through the cache"
        );
        eprintln!(
            "{LOCATES} Locates with distinct {FILTER}-byte filters: RSS +{} KiB",
            gw.rss_kib().unwrap().saturating_sub(rss_before)
        );
    });
}
