//! The bare-TLS baselines: a rustls accept loop with the same mutual-TLS settings as a KMIP
//! server. By default it completes each handshake and closes: `health` against the gateway
//! compared with `tls-handshake` against this shows what KMIP adds on top of the handshake.
//! With `--echo` it keeps each connection and answers every framed request with one
//! pre-encoded Get response (an AES-256 key, as the gateway's): `get` against the gateway
//! compared with `echo` against this shows what the gateway adds on top of TLS and framing.

use bytes::Bytes;
use kmip_gateway::front::tls::{crypto_provider, load_certs, TlsSetupError};
use kmip_wire::model::{
    CryptographicAlgorithm, GetResponse, KeyBlock, KeyFormatType, KeyValue, ManagedObject,
    Operation, ProtocolVersion, ResponseBatchItem, ResponseHeader, ResponseMessage,
    ResponsePayload, ResultStatus, SecretBytes,
};
use kmip_wire::ttlv::{message_length, Limits, TtlvError, HEADER_LEN};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

/// How long one handshake may take: a client that stalls must not pin a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub(crate) enum EchoError {
    #[error(transparent)]
    Setup(#[from] TlsSetupError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("key file {0}: no usable PEM private key")]
    Key(String),
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("encode the echoed response: {0}")]
    Encode(#[from] TtlvError),
}

/// Length of the echoed key's identifier: the gateway's are UUIDs.
const ECHO_UID_LEN: usize = 36;
/// Bytes of the echoed key: an AES-256 key, what `kmip-bench` preloads and Gets.
const ECHO_KEY_LEN: usize = 32;

/// Listens on `listen`, prints `TLS echo listener ready addr=…` on stderr, and serves until killed.
pub(crate) async fn serve(
    listen: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
    echo: bool,
) -> Result<(), EchoError> {
    let response = get_response()?;
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c)?;
    }
    let provider = crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let key_der = read_key(key)?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, key_der)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(listen).await?;
    eprintln!("TLS echo listener ready addr={}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors or a reset before accept: keep serving the others.
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, response) = (acceptor.clone(), response.clone());
        tokio::spawn(async move {
            if let Ok(Ok(mut tls)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                if echo {
                    // The connection ends when the client closes it or sends a bad frame.
                    let _ = answer_each(&mut tls, &response).await;
                }
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// Reads framed requests (the same size bound as the gateway's default) and answers each with
/// `response`, without decoding: the least a KMIP server can do per request.
async fn answer_each<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Bytes,
) -> Result<(), EchoError> {
    let limits = Limits::default();
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).await?;
        let total = message_length(&header, &limits)?;
        body.resize(total - HEADER_LEN, 0);
        stream.read_exact(&mut body).await?;
        stream.write_all(response).await?;
        stream.flush().await?;
    }
}

/// The one answer of `--echo`: a successful Get of an AES-256 key, encoded once.
fn get_response() -> Result<Bytes, EchoError> {
    let key = KeyBlock {
        key_format_type: KeyFormatType::Raw,
        key_compression_type: None,
        key_value: KeyValue::Material(SecretBytes::from_slice(&[0x5A; ECHO_KEY_LEN])),
        cryptographic_algorithm: Some(CryptographicAlgorithm::Aes),
        cryptographic_length: Some(ECHO_KEY_LEN as i32 * 8),
        key_wrapping_data: None,
    };
    let time_stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let message = ResponseMessage {
        header: ResponseHeader::new(ProtocolVersion::new(1, 4), time_stamp),
        items: vec![ResponseBatchItem {
            operation: Some(Operation::Get),
            unique_batch_item_id: None,
            result_status: ResultStatus::Success,
            result_reason: None,
            result_message: None,
            asynchronous_correlation_value: None,
            payload: Some(ResponsePayload::Get(GetResponse {
                unique_identifier: "0".repeat(ECHO_UID_LEN),
                object: ManagedObject::SymmetricKey(key),
            })),
        }],
    };
    Ok(message.to_ttlv().to_bytes()?)
}

/// Reads a PEM private key; the file's bytes are zeroized once parsed.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, EchoError> {
    let pem = Zeroizing::new(std::fs::read(path)?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| EchoError::Key(path.display().to_string()))
}
