//! Runs the OASIS KMIP XML test vectors against a live server (the `kmip-conformance` binary).
//!
//! A vector file alternates `RequestMessage` / `ResponseMessage`. Each request is sent in order
//! over one connection, with placeholders filled from what the server actually answered, and each
//! actual response is compared structurally with the expected one (`kmip_wire::compare`).
//!
//! What the vectors recorded but a correct server cannot reproduce is not compared: time stamps,
//! correlation values and result messages; the key material, digests and cryptographic outputs
//! of keys the server generated; IVs the server chose and what was encrypted under them. Such a
//! literal is compared as a placeholder instead, and when a later request quotes it (1.x vectors
//! copy ciphertexts literally) the value the server actually returned is sent in its place.
//!
//! `vectors` reads the files, `session` carries what a file learnt from the server into its
//! later requests, and `relax` decides what is left to the server before the structural
//! comparison.

mod attribute_answers;
mod relax;
mod session;
mod vectors;

/// The placeholder convention shared with the wire capture's replayable XML.
pub use crate::tooling::capture::{IDENTIFIER_TAGS, UID_PREFIX};
pub use relax::server_error;
pub use vectors::{collect_files, display_name, read_vector_file};

use crate::client::{ClientError, ClientTls, KmipClient, Transport};
use kmip_wire::compare::Difference;
use kmip_wire::names::enum_names_for_tag;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use kmip_wire::xml::{XmlError, XmlNode, XmlValue};
use std::path::Path;
use thiserror::Error;

use session::Session;
use vectors::exchanges;

/// Everything that makes a vector file fail.
#[derive(Debug, Error)]
pub enum ConformanceError {
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("vector: {0}")]
    Vector(String),
    #[error("cannot list {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("connect: {0}")]
    Connect(ClientError),
    #[error("request {index} ({operation}): {what}")]
    Request {
        index: usize,
        operation: String,
        what: String,
    },
    #[error("request {index} ({operation}): {source}")]
    Exchange {
        index: usize,
        operation: String,
        source: ClientError,
    },
    #[error("response {index} ({operation}): {difference}{}", server.as_deref().map(|s| format!(" [server: {s}]")).unwrap_or_default())]
    Mismatch {
        index: usize,
        operation: String,
        difference: Difference,
        /// What the server said when a batch item failed.
        server: Option<String>,
    },
}

/// Where and how to reach the server under test.
pub struct Target {
    pub addr: String,
    pub server_name: String,
    pub tls: ClientTls,
    /// TTLV on the KMIP port, or KMIP over HTTPS in one of its encodings.
    pub transport: Transport,
}

/// Runs one vector file over a fresh connection; `Ok` when every response matched.
pub async fn run_file(path: &Path, target: &Target) -> Result<(), ConformanceError> {
    let pairs = exchanges(path)?;
    let mut client = KmipClient::connect_over(
        &target.addr,
        &target.server_name,
        &target.tls,
        target.transport,
    )
    .await
    .map_err(ConformanceError::Connect)?;
    let mut session = Session::default();
    for (index, (request, expected)) in pairs.iter().enumerate() {
        let operation = operations_of(request);
        session.bindings.now = Some(unix_now());
        let request =
            session
                .prepare_request(request)
                .map_err(|what| ConformanceError::Request {
                    index,
                    operation: operation.clone(),
                    what,
                })?;
        let actual = client
            .call(&request)
            .await
            .map_err(|source| ConformanceError::Exchange {
                index,
                operation: operation.clone(),
                source,
            })?;
        session
            .check_response(&request, expected, &actual)
            .map_err(|difference| ConformanceError::Mismatch {
                index,
                operation,
                difference,
                server: server_error(&actual),
            })?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The operations of a message's batch items, for messages: `Create` or `Encrypt+Decrypt`.
fn operations_of(message: &XmlNode) -> String {
    let names: Vec<String> = message
        .children()
        .iter()
        .filter(|c| c.tag == tags::BATCH_ITEM)
        .filter_map(|item| item.children().iter().find(|c| c.tag == tags::OPERATION))
        .map(|op| match &op.value {
            XmlValue::Value(Value::Enumeration(v)) => operation_name(*v),
            _ => "?".to_owned(),
        })
        .collect();
    if names.is_empty() {
        "no operation".to_owned()
    } else {
        names.join("+")
    }
}

fn operation_name(value: u32) -> String {
    enum_names_for_tag(tags::OPERATION)
        .and_then(|n| n.name_of(value))
        .map_or_else(|| format!("0x{value:08X}"), str::to_owned)
}

#[cfg(test)]
mod tests;
