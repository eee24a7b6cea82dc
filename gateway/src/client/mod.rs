//! An async KMIP client over mutual TLS, used by `kmip-conformance`, the bench and the tests.
//! It speaks TTLV, or KMIP over HTTPS (`http`: `POST /kmip` in TTLV, XML or JSON); building
//! requests is the caller's business (see `kmip_wire::model`). [`conformance`] runs the OASIS XML
//! vectors through it.

pub mod conformance;
mod http;

pub use crate::front::server::Encoding;

use crate::front::tls::{crypto_provider, load_certs, TlsSetupError};
use bytes::{Bytes, BytesMut};
use kmip_wire::ttlv::{decode, message_length, Limits, Ttlv, TtlvError, HEADER_LEN};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How long the client waits for a response before giving up: a stuck server must not hang a
/// test or a bench run forever.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Setup(#[from] TlsSetupError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server sent malformed TTLV: {0}")]
    Ttlv(#[from] TtlvError),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("invalid server name '{0}'")]
    ServerName(String),
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
}

/// How a client carries KMIP messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TTLV messages back to back (the KMIP port).
    Ttlv,
    /// HTTP/1.1 `POST /kmip` in this encoding (the HTTPS listener).
    Https(Encoding),
}

/// TLS settings of a client: trusted CA, client certificate and key.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl ClientTls {
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<ClientTls, ClientError> {
        let mut roots = RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c)?;
        }
        let chain = load_certs(cert)?;
        let key_pem =
            zeroize::Zeroizing::new(std::fs::read(key).map_err(|e| TlsSetupError::File {
                path: key.display().to_string(),
                problem: e.to_string(),
            })?);
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsSetupError::File {
            path: key.display().to_string(),
            problem: "contains no usable PEM private key".into(),
        })?;
        let config = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }
}

/// One open KMIP connection.
pub struct KmipClient {
    stream: TlsStream<TcpStream>,
    limits: Limits,
    timeout: Duration,
    transport: Transport,
    /// The server name, sent as the HTTP `Host`.
    server_name: String,
}

impl KmipClient {
    /// Connects to `addr`, verifying the server certificate for `server_name`.
    pub async fn connect(
        addr: &str,
        server_name: &str,
        tls: &ClientTls,
    ) -> Result<KmipClient, ClientError> {
        KmipClient::connect_over(addr, server_name, tls, Transport::Ttlv).await
    }

    /// Like [`KmipClient::connect`], carrying messages over `transport`.
    pub async fn connect_over(
        addr: &str,
        server_name: &str,
        tls: &ClientTls,
        transport: Transport,
    ) -> Result<KmipClient, ClientError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| ClientError::ServerName(server_name.to_string()))?;
        let stream = TlsConnector::from(tls.config.clone())
            .connect(name, tcp)
            .await?;
        Ok(KmipClient {
            stream,
            limits: Limits::default(),
            timeout: DEFAULT_RESPONSE_TIMEOUT,
            transport,
            server_name: server_name.to_owned(),
        })
    }

    /// Whether this connection resumed an earlier TLS session (no certificates exchanged).
    pub fn resumed(&self) -> bool {
        self.stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends raw bytes (possibly malformed: hostile-input tests use this).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads everything the server sends until it closes the connection (tests of raw answers).
    pub async fn read_until_closed(&mut self) -> Result<Vec<u8>, ClientError> {
        let timeout = self.timeout;
        let mut out = Vec::new();
        tokio::time::timeout(timeout, self.stream.read_to_end(&mut out))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        Ok(out)
    }

    /// Reads one whole response message.
    pub async fn read_message(&mut self) -> Result<Bytes, ClientError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            let mut header = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut header).await?;
            let total = message_length(&header, &self.limits)?;
            let mut buf = BytesMut::with_capacity(total);
            buf.extend_from_slice(&header);
            buf.resize(total, 0);
            self.stream.read_exact(&mut buf[HEADER_LEN..]).await?;
            Ok(buf.freeze())
        })
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Sends one request message and returns the decoded response.
    pub async fn call(&mut self, request: &Ttlv) -> Result<Ttlv, ClientError> {
        if let Transport::Https(encoding) = self.transport {
            let timeout = self.timeout;
            let exchange = http::exchange(
                &mut self.stream,
                &self.server_name,
                encoding,
                request,
                &self.limits,
            );
            return tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| ClientError::Timeout(timeout))?;
        }
        self.send_raw(&request.to_bytes()?).await?;
        let bytes = self.read_message().await?;
        Ok(decode(&bytes, &self.limits)?)
    }
}
