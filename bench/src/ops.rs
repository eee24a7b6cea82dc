//! One KMIP connection of the bench and the typed operations the scenarios send over it.

use kmip_gateway::client::{ClientError, ClientTls, KmipClient};
use kmip_wire::model::{
    usage_mask, Attribute, CreateRequest, CryptographicAlgorithm, DiscoverVersionsRequest,
    GetRequest, LocateRequest, Name, ObjectType, ProtocolVersion, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseMessage, ResponsePayload, ResultStatus,
    RevocationReason, RevocationReasonCode, RevokeRequest, UidRequest,
};
use kmip_wire::spec::tags;
use std::time::Duration;
use thiserror::Error;

/// Key size of the keys the bench creates: AES-256, what storage arrays ask for.
const KEY_BITS: i32 = 256;

/// How long one request may take before it counts as a transport error: far above any sane
/// latency, low enough that a stuck server ends a short bench run.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one operation failed. `label` is the bucket the report counts it in.
#[derive(Debug, Error)]
pub(crate) enum OpError {
    /// Connect, TLS or read/write failure, or no response in time.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with a failed Result Status.
    #[error("{0}")]
    Failed(String),
    /// The server answered something the bench cannot use.
    #[error("unexpected response: {0}")]
    Unexpected(&'static str),
}

impl OpError {
    pub(crate) fn label(&self) -> String {
        self.to_string()
    }

    /// Whether the connection may be broken (the caller then reconnects).
    pub(crate) fn is_transport(&self) -> bool {
        matches!(self, OpError::Transport(_))
    }
}

impl From<ClientError> for OpError {
    fn from(e: ClientError) -> OpError {
        OpError::Transport(match e {
            ClientError::Io(io) => io.to_string(),
            ClientError::Timeout(_) => "timeout".into(),
            ClientError::Ttlv(_) => "malformed TTLV".into(),
            other => other.to_string(),
        })
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    pub addr: String,
    pub server_name: String,
    pub tls: ClientTls,
    pub version: ProtocolVersion,
}

/// The servers one side of a run measures: one, or several gateways that serve one store (one
/// PostgreSQL database), over which connections are spread in turn.
#[derive(Clone)]
pub(crate) struct Targets {
    first: Target,
    rest: Vec<Target>,
}

impl Targets {
    /// `None` when `addrs` is empty.
    pub(crate) fn new(
        addrs: &[String],
        server_name: &str,
        tls: &ClientTls,
        version: ProtocolVersion,
    ) -> Option<Targets> {
        let mut all = addrs.iter().map(|addr| Target {
            addr: addr.clone(),
            server_name: server_name.to_owned(),
            tls: tls.clone(),
            version,
        });
        Some(Targets {
            first: all.next()?,
            rest: all.collect(),
        })
    }

    /// The target keys are preloaded through.
    pub(crate) fn first(&self) -> &Target {
        &self.first
    }

    /// The target of the `i`-th connection or task: round robin.
    pub(crate) fn nth(&self, i: usize) -> &Target {
        match i % (self.rest.len() + 1) {
            0 => &self.first,
            n => self.rest.get(n - 1).unwrap_or(&self.first),
        }
    }

    /// The addresses, comma-separated, as reports and progress bars name them.
    pub(crate) fn label(&self) -> String {
        std::iter::once(&self.first)
            .chain(&self.rest)
            .map(|t| t.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One open KMIP connection.
pub(crate) struct Conn {
    client: KmipClient,
    version: ProtocolVersion,
}

impl Conn {
    pub(crate) async fn open(target: &Target) -> Result<Conn, OpError> {
        let mut client =
            KmipClient::connect(&target.addr, &target.server_name, &target.tls).await?;
        client.set_timeout(REQUEST_TIMEOUT);
        Ok(Conn {
            client,
            version: target.version,
        })
    }

    async fn call(&mut self, payload: RequestPayload) -> Result<ResponsePayload, OpError> {
        let message = RequestMessage {
            header: RequestHeader::new(self.version),
            items: vec![RequestBatchItem::new(payload)],
        };
        let ttlv = self.client.call(&message.to_ttlv()).await?;
        let response = ResponseMessage::from_ttlv(&ttlv)
            .map_err(|_| OpError::Unexpected("not a KMIP response message"))?;
        let item = response
            .items
            .into_iter()
            .next()
            .ok_or(OpError::Unexpected("no batch item"))?;
        if item.result_status != ResultStatus::Success {
            return Err(OpError::Failed(match item.result_reason {
                Some(reason) => format!("{reason:?}"),
                None => format!("{:?} without a reason", item.result_status),
            }));
        }
        item.payload.ok_or(OpError::Unexpected("no payload"))
    }

    /// Creates an AES-256 key, optionally named and in an Object Group; returns its identifier.
    /// Creates an AES-256 key with an optional Name, Object Group and `x-bench-bucket` value.
    pub(crate) async fn create(
        &mut self,
        name: Option<&str>,
        group: Option<&str>,
        bucket: Option<&str>,
    ) -> Result<String, OpError> {
        let mut attributes = vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, KEY_BITS),
            Attribute::integer(
                tags::CRYPTOGRAPHIC_USAGE_MASK,
                usage_mask::ENCRYPT | usage_mask::DECRYPT,
            ),
        ];
        attributes.extend(name.map(|n| Attribute::name(&Name::new(n))));
        attributes.extend(group.map(|g| Attribute::text(tags::OBJECT_GROUP, g)));
        attributes.extend(bucket.map(bucket_attribute));
        match self
            .call(RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes,
            }))
            .await?
        {
            ResponsePayload::Create(r) => Ok(r.unique_identifier),
            _ => Err(OpError::Unexpected("Create answered with another payload")),
        }
    }

    /// Gets a key; the material is dropped (zeroized) at once.
    pub(crate) async fn get(&mut self, uid: &str) -> Result<(), OpError> {
        match self
            .call(RequestPayload::Get(GetRequest {
                unique_identifier: Some(uid.to_owned()),
                ..GetRequest::default()
            }))
            .await?
        {
            ResponsePayload::Get(_) => Ok(()),
            _ => Err(OpError::Unexpected("Get answered with another payload")),
        }
    }

    async fn locate(&mut self, filter: Attribute) -> Result<Vec<String>, OpError> {
        match self
            .call(RequestPayload::Locate(LocateRequest {
                attributes: vec![filter],
                ..LocateRequest::default()
            }))
            .await?
        {
            ResponsePayload::Locate(r) => Ok(r.unique_identifiers),
            _ => Err(OpError::Unexpected("Locate answered with another payload")),
        }
    }

    /// Locates the AES-256 keys of one `x-bench-bucket` value: two of the three filter
    /// attributes match every preloaded key, the third a hundred. Returns how many were found.
    pub(crate) async fn locate_bucket(&mut self, bucket: &str) -> Result<usize, OpError> {
        match self
            .call(RequestPayload::Locate(LocateRequest {
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, KEY_BITS),
                    bucket_attribute(bucket),
                ],
                ..LocateRequest::default()
            }))
            .await?
        {
            ResponsePayload::Locate(r) => Ok(r.unique_identifiers.len()),
            _ => Err(OpError::Unexpected("Locate answered with another payload")),
        }
    }

    /// Locates the one object named `name`.
    pub(crate) async fn locate_name(&mut self, name: &str) -> Result<String, OpError> {
        let mut found = self.locate(Attribute::name(&Name::new(name))).await?;
        match (found.pop(), found.is_empty()) {
            (Some(uid), true) => Ok(uid),
            _ => Err(OpError::Unexpected(
                "Locate by Name did not find exactly one object",
            )),
        }
    }

    /// Locates the members of an Object Group; there must be at least one.
    pub(crate) async fn locate_group(&mut self, group: &str) -> Result<usize, OpError> {
        let found = self
            .locate(Attribute::text(tags::OBJECT_GROUP, group))
            .await?;
        if found.is_empty() {
            return Err(OpError::Unexpected("Locate by Object Group found nothing"));
        }
        Ok(found.len())
    }

    pub(crate) async fn activate(&mut self, uid: &str) -> Result<(), OpError> {
        self.call(RequestPayload::Activate(uid_request(uid)))
            .await
            .map(drop)
    }

    pub(crate) async fn revoke(&mut self, uid: &str) -> Result<(), OpError> {
        self.call(RequestPayload::Revoke(RevokeRequest {
            unique_identifier: Some(uid.to_owned()),
            revocation_reason: RevocationReason {
                code: RevocationReasonCode::CessationOfOperation,
                message: None,
            },
            compromise_occurrence_date: None,
        }))
        .await
        .map(drop)
    }

    pub(crate) async fn destroy(&mut self, uid: &str) -> Result<(), OpError> {
        self.call(RequestPayload::Destroy(uid_request(uid)))
            .await
            .map(drop)
    }

    /// The cheapest request every server answers: proves a connection is established end to end.
    pub(crate) async fn discover_versions(&mut self) -> Result<(), OpError> {
        self.call(RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
            versions: Vec::new(),
        }))
        .await
        .map(drop)
    }

    /// Waits for the peer to close the connection (the bare-TLS baseline server closes right
    /// after the handshake: reaching end-of-stream proves it accepted the client certificate).
    pub(crate) async fn expect_close(&mut self) -> Result<(), OpError> {
        match self.client.read_message().await {
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e.into()),
            Ok(_) => Err(OpError::Unexpected("data from a server that should close")),
        }
    }
}

fn uid_request(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

/// The custom attribute (`x-bench-bucket` in KMIP 1.x, a Vendor Attribute of vendor `x` in 2.x)
/// every preloaded key carries, as hypervisors tag keys with their VM.
const BUCKET_ATTRIBUTE: &str = "bench-bucket";

fn bucket_attribute(bucket: &str) -> Attribute {
    Attribute::vendor(
        "x",
        BUCKET_ATTRIBUTE,
        kmip_wire::ttlv::Value::TextString(bucket.to_owned()),
    )
}
