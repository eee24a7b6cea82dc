//! One upstream KMIP server: a bb8 pool of client connections to it, each speaking the version
//! fixed by the configuration or negotiated with Discover Versions when it opens, probed before
//! reuse after sitting idle, and dropped after a transport failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmip_wire::model::{
    enum_value_defined, tag_defined, AttributeName, BatchErrorContinuationOption, BlockCipherMode,
    CryptographicAlgorithm, DiscoverVersionsRequest, ProtocolVersion, RequestBatchItem,
    RequestHeader, RequestMessage, RequestPayload, ResponseMessage, ResponsePayload, ResultReason,
    ResultStatus,
};
use kmip_wire::names::{enum_names_for_tag, tag_info};
use kmip_wire::spec::tags;
use kmip_wire::{Tag, Ttlv};

use crate::client::{ClientError, ClientTls, KmipClient};

/// A pooled connection idle longer than this is probed (Discover Versions) before it is handed
/// out: an upstream that dropped it silently then costs a fresh connection, not a failed request.
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(5);

/// The version the Discover Versions of a new connection is sent in: understood by every server
/// that has the operation (1.1 and later), including PyKMIP's.
const DISCOVERY_VERSION: ProtocolVersion = ProtocolVersion::V1_2;

/// Why one upstream call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No answer: connect, TLS, I/O, timeout or bytes that are not a KMIP response. The
    /// connection is dropped.
    Transport(String),
    /// The upstream answered with a failure.
    Refused {
        reason: Option<ResultReason>,
        message: Option<String>,
    },
    /// Not sent: the item needs what the upstream's version does not define (named here).
    Untranslatable(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(e) | CallError::Untranslatable(e) => f.write_str(e),
            CallError::Refused { reason, message } => write!(
                f,
                "refused: {}{}",
                reason.map_or_else(|| "no reason".to_owned(), |r| format!("{r:?}")),
                message
                    .as_deref()
                    .map_or_else(String::new, |m| format!(" ({m})"))
            ),
        }
    }
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> CallError {
        CallError::Transport(e.to_string())
    }
}

/// One open connection to an upstream.
pub(crate) struct Conn {
    client: KmipClient,
    version: ProtocolVersion,
    last_used: Instant,
    broken: bool,
    /// The upstream's failure epoch when this connection opened (see [`Connector::epoch`]).
    opened_in: u64,
    epoch: Arc<AtomicU64>,
}

impl Conn {
    /// Sends one request item and returns its successful payload.
    pub(crate) async fn call(
        &mut self,
        payload: RequestPayload,
    ) -> Result<ResponsePayload, CallError> {
        self.call_batch(vec![payload])
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(CallError::Transport(
                    "a response without a batch item".into(),
                ))
            })
    }

    /// Sends the items in one message (the upstream carries on after an item fails) and
    /// returns each item's outcome in order; `Err` only when the message had no usable answer.
    pub(crate) async fn call_batch(
        &mut self,
        payloads: Vec<RequestPayload>,
    ) -> Result<Vec<Result<ResponsePayload, CallError>>, CallError> {
        let out = exchange(&mut self.client, self.version, payloads).await;
        self.last_used = Instant::now();
        if out.is_err() {
            self.broken = true;
            // The upstream may have restarted: every connection opened before is suspect.
            self.epoch.fetch_add(1, Ordering::Relaxed);
        }
        out
    }
}

/// The items of `payloads` the upstream can be sent in `version`, in one request message; the
/// outcomes of all of them in order (an item `version` cannot carry is
/// [`CallError::Untranslatable`], and not sent).
async fn exchange(
    client: &mut KmipClient,
    version: ProtocolVersion,
    payloads: Vec<RequestPayload>,
) -> Result<Vec<Result<ResponsePayload, CallError>>, CallError> {
    let mut message = request(
        version,
        payloads.into_iter().map(RequestBatchItem::new).collect(),
    );
    let mut encoded = message.to_ttlv();
    let refusals: Vec<Option<String>> = encoded
        .children(tags::BATCH_ITEM)
        .zip(&message.items)
        .map(|(t, item)| untranslatable(t, item.payload.as_ref().ok(), version))
        .collect();
    if refusals.iter().any(Option::is_some) {
        let items = std::mem::take(&mut message.items);
        message = request(
            version,
            items
                .into_iter()
                .zip(&refusals)
                .filter(|(_, refused)| refused.is_none())
                .map(|(item, _)| item)
                .collect(),
        );
        encoded = message.to_ttlv();
    }
    let mut answered = if message.items.is_empty() {
        Vec::new()
    } else {
        send(client, &encoded, message.items.len()).await?
    }
    .into_iter();
    Ok(refusals
        .into_iter()
        .map(|refused| match refused {
            Some(why) => Err(CallError::Untranslatable(why)),
            None => answered.next().unwrap_or_else(|| {
                Err(CallError::Transport(
                    "fewer response batch items than sent".into(),
                ))
            }),
        })
        .collect())
}

/// A request message of `items` in `version`.
fn request(version: ProtocolVersion, items: Vec<RequestBatchItem>) -> RequestMessage {
    let mut header = RequestHeader::new(version);
    if items.len() > 1 {
        // The default, Stop, would leave every item after a missing object unanswered.
        header.batch_error_continuation_option = Some(BatchErrorContinuationOption::Continue);
    }
    RequestMessage { header, items }
}

/// Why a batch item (`encoded`, of `payload`) cannot be sent to an upstream speaking
/// `version`, if it cannot: a tag, an enumeration value or a 1.x attribute name `version` does
/// not define (the upstream would refuse the message, or ignore the field: additional data left
/// out of an authenticated encryption), or an authenticated encryption whose tag the answer
/// could not carry.
fn untranslatable(
    encoded: &Ttlv,
    payload: Option<&RequestPayload>,
    version: ProtocolVersion,
) -> Option<String> {
    let missing = first_undefined(encoded, version).or_else(|| {
        let Some(RequestPayload::Encrypt(r)) = payload else {
            return None;
        };
        let authenticated = r.cryptographic_parameters.as_ref().is_some_and(|p| {
            matches!(
                p.block_cipher_mode,
                Some(BlockCipherMode::Gcm | BlockCipherMode::Ccm | BlockCipherMode::Aead)
            ) || p.cryptographic_algorithm == Some(CryptographicAlgorithm::ChaCha20Poly1305)
        });
        (authenticated && !tag_defined(tags::AUTHENTICATED_ENCRYPTION_TAG, version))
            .then(|| spec_name(tags::AUTHENTICATED_ENCRYPTION_TAG).to_owned())
    })?;
    Some(format!(
        "the upstream speaks KMIP {version}, which has no {missing}"
    ))
}

/// The first item in `ttlv` (depth first) that `version` does not define, named: its tag, its
/// enumeration value, or the 1.x attribute it names.
fn first_undefined(ttlv: &Ttlv, version: ProtocolVersion) -> Option<String> {
    if !tag_defined(ttlv.tag, version) {
        return Some(spec_name(ttlv.tag).to_owned());
    }
    if let Some(value) = ttlv.as_enum() {
        if !enum_value_defined(ttlv.tag, value, version) {
            return Some(enum_value_name(ttlv.tag, value));
        }
    }
    // A 1.x attribute: its name, and an enumeration value under the tag the name stands for.
    if let Some(name) = ttlv.child(tags::ATTRIBUTE_NAME).and_then(Ttlv::as_text) {
        let attribute = AttributeName::from_v1_name(name);
        if !attribute.defined_in(version) {
            return Some(format!("attribute {name}"));
        }
        let value = ttlv.child(tags::ATTRIBUTE_VALUE).and_then(Ttlv::as_enum);
        if let (AttributeName::Tag(tag), Some(value)) = (attribute, value) {
            if !enum_value_defined(tag, value, version) {
                return Some(enum_value_name(tag, value));
            }
        }
    }
    ttlv.items()
        .iter()
        .find_map(|i| first_undefined(i, version))
}

/// `value` of the enumeration `tag` carries, named ("Cryptographic Algorithm Ed25519").
fn enum_value_name(tag: Tag, value: u32) -> String {
    let name = enum_names_for_tag(tag).and_then(|n| n.name_of(value));
    format!("{} {}", spec_name(tag), name.unwrap_or("of that value"))
}

/// The specification's name of `tag` (a tag the proxy writes always has one).
fn spec_name(tag: Tag) -> &'static str {
    tag_info(tag).map_or("such field", |t| t.spec_name)
}

/// Sends `message` (of `sent` batch items); the items' outcomes in order.
async fn send(
    client: &mut KmipClient,
    message: &Ttlv,
    sent: usize,
) -> Result<Vec<Result<ResponsePayload, CallError>>, CallError> {
    let answer = client.call(message).await?;
    let response = ResponseMessage::from_ttlv(&answer)
        .map_err(|e| CallError::Transport(format!("not a KMIP response: {e}")))?;
    if response.items.len() != sent {
        return Err(CallError::Transport(format!(
            "{} response batch items for {sent} request items",
            response.items.len()
        )));
    }
    Ok(response
        .items
        .into_iter()
        .map(|item| {
            if item.result_status != ResultStatus::Success {
                return Err(CallError::Refused {
                    reason: item.result_reason,
                    message: item.result_message,
                });
            }
            item.payload.ok_or_else(|| {
                CallError::Transport("a successful response without a payload".into())
            })
        })
        .collect())
}

/// Opens connections to one upstream.
pub(crate) struct Connector {
    pub(crate) addr: String,
    pub(crate) server_name: String,
    pub(crate) tls: ClientTls,
    pub(crate) version: Option<ProtocolVersion>,
    /// Bounds opening a connection (TCP, TLS, Discover Versions).
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    /// Counts transport failures. A connection opened before the latest one is not handed out
    /// again: after an upstream restart, the first failure evicts all the dead connections,
    /// not just the one that failed.
    pub(crate) epoch: Arc<AtomicU64>,
}

impl Connector {
    async fn open(&self) -> Result<Conn, CallError> {
        let mut client = KmipClient::connect(&self.addr, &self.server_name, &self.tls).await?;
        client.set_timeout(self.request_timeout);
        let version = match self.version {
            Some(v) => v,
            None => negotiate(&mut client).await?,
        };
        // Which version the proxy translates to: an operator (and a test) can see it per upstream.
        tracing::info!(upstream = %self.addr, version = %version, "upstream connection opened");
        Ok(Conn {
            client,
            version,
            last_used: Instant::now(),
            broken: false,
            opened_in: self.epoch.load(Ordering::Relaxed),
            epoch: Arc::clone(&self.epoch),
        })
    }
}

/// The highest version both sides speak, from the upstream's Discover Versions answer.
async fn negotiate(client: &mut KmipClient) -> Result<ProtocolVersion, CallError> {
    let ask = RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
        versions: ProtocolVersion::ALL.to_vec(),
    });
    let answer = exchange(client, DISCOVERY_VERSION, vec![ask])
        .await?
        .pop()
        .unwrap_or_else(|| {
            Err(CallError::Transport(
                "a response without a batch item".into(),
            ))
        })?;
    match answer {
        ResponsePayload::DiscoverVersions(r) => r
            .versions
            .into_iter()
            .find(|v| ProtocolVersion::ALL.contains(v))
            .ok_or_else(|| {
                CallError::Transport(
                    "the upstream offers no KMIP version this gateway speaks".into(),
                )
            }),
        _ => Err(CallError::Transport(
            "Discover Versions answered with another payload; set backend.version".into(),
        )),
    }
}

impl bb8::ManageConnection for Connector {
    type Connection = Conn;
    type Error = CallError;

    async fn connect(&self) -> Result<Conn, CallError> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| {
                CallError::Transport(format!("no connection within {:?}", self.connect_timeout))
            })?
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), CallError> {
        if conn.opened_in < self.epoch.load(Ordering::Relaxed) {
            return Err(CallError::Transport(
                "opened before the upstream's last failure".into(),
            ));
        }
        if conn.last_used.elapsed() < PROBE_AFTER_IDLE {
            return Ok(());
        }
        let probe = RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
            versions: vec![conn.version],
        });
        conn.call(probe).await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.opened_in < self.epoch.load(Ordering::Relaxed)
    }
}

/// One upstream and its pool.
pub(crate) struct Upstream {
    pub(crate) addr: String,
    pub(crate) pool: bb8::Pool<Connector>,
}

impl Upstream {
    pub(crate) fn new(connector: Connector, size: u32, acquire: Duration, idle: Duration) -> Self {
        let addr = connector.addr.clone();
        let pool = bb8::Pool::builder()
            .max_size(size)
            .min_idle(None)
            .connection_timeout(acquire)
            .idle_timeout(Some(idle))
            .test_on_check_out(true)
            // A refused connection fails the checkout at once, so the next upstream is tried
            // without waiting out the acquire timeout on a dead one.
            .retry_connection(false)
            .build_unchecked(connector);
        Upstream { addr, pool }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_backends::{CipherMode, CipherRequest};
    use kmip_wire::model::{Attribute, CreateRequest, ObjectType};
    use zeroize::Zeroizing;

    /// The encoded batch item of `payload` in `version`, and why it cannot be sent.
    fn verdict(payload: RequestPayload, version: ProtocolVersion) -> Option<String> {
        let message = request(version, vec![RequestBatchItem::new(payload)]);
        let encoded = message.to_ttlv();
        let item = encoded
            .children(tags::BATCH_ITEM)
            .next()
            .expect("a batch item");
        untranslatable(item, message.items[0].payload.as_ref().ok(), version)
    }

    fn encrypt(mode: CipherMode, aad: Option<Vec<u8>>) -> RequestPayload {
        RequestPayload::Encrypt(super::super::wire::crypto(
            "upstream-uid",
            CipherRequest {
                mode,
                data: Zeroizing::new(b"sixteen byte blk".to_vec()),
                iv: Some(vec![7; 12]),
                aad,
                tag: None,
            },
        ))
    }

    #[test]
    fn what_the_upstreams_version_cannot_carry_is_not_sent() {
        let cbc = || encrypt(CipherMode::Cbc { pad: true }, None);
        let gcm = |aad| encrypt(CipherMode::Gcm { tag_len: 16 }, aad);
        for v in [
            ProtocolVersion::V1_2,
            ProtocolVersion::V1_4,
            ProtocolVersion::V2_1,
        ] {
            assert_eq!(verdict(cbc(), v), None, "CBC at {v}");
        }
        // Additional data (1.4) and the tag an AEAD answer needs (1.4) are not in 1.2.
        let why = verdict(gcm(Some(b"header".to_vec())), ProtocolVersion::V1_2)
            .expect("AAD is not in KMIP 1.2");
        assert!(
            why.contains("KMIP 1.2") && why.contains("Additional Data"),
            "{why}"
        );
        let why = verdict(gcm(None), ProtocolVersion::V1_2).expect("no tag in KMIP 1.2");
        assert!(why.contains("Authenticated Encryption Tag"), "{why}");
        for v in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
            assert_eq!(
                verdict(gcm(Some(b"header".to_vec())), v),
                None,
                "GCM at {v}"
            );
        }
    }

    #[test]
    fn enumeration_values_of_2_x_only_are_not_sent_to_a_1_x_upstream() {
        let create = |alg| {
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, alg),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                ],
            })
        };
        let why = verdict(
            create(CryptographicAlgorithm::Ed25519),
            ProtocolVersion::V1_4,
        )
        .expect("Ed25519 is not in KMIP 1.4");
        assert!(
            why.contains("KMIP 1.4") && why.contains("Cryptographic Algorithm Ed25519"),
            "{why}"
        );
        assert_eq!(
            verdict(
                create(CryptographicAlgorithm::Ed25519),
                ProtocolVersion::V2_0
            ),
            None
        );
        for v in [
            ProtocolVersion::V1_2,
            ProtocolVersion::V1_4,
            ProtocolVersion::V2_1,
        ] {
            assert_eq!(verdict(create(CryptographicAlgorithm::Aes), v), None, "{v}");
        }
    }
}
