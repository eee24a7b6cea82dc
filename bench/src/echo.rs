//! The bare-TLS baseline: a rustls accept loop with the same mutual-TLS settings as a KMIP
//! server, which completes each handshake and closes. `health` against the gateway compared with
//! `tls-handshake` against this shows what KMIP adds on top of the handshake.

use kmip_gateway::front::tls::{crypto_provider, load_certs, TlsSetupError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
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
}

/// Listens on `listen`, prints `TLS echo listener ready addr=…` on stderr, and serves until killed.
pub(crate) async fn serve(
    listen: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Result<(), EchoError> {
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
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(Ok(mut tls)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// Reads a PEM private key; the file's bytes are zeroized once parsed.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, EchoError> {
    let pem = Zeroizing::new(std::fs::read(path)?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| EchoError::Key(path.display().to_string()))
}
