//! Connections to PostgreSQL: the client configuration taken from the operator's URL (failover
//! host list, read-write target, TLS verified against `backend.ca`), and the bb8 pool.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres::config::{SslMode, TargetSessionAttrs};
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgSettings;
use crate::BackendError;

/// How long the kernel lets sent data go unacknowledged, and when idle keepalives start: a
/// primary that vanished without closing its sockets (a partition, a powered-off host) fails
/// the connection after this instead of hanging a write forever.
const TCP_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(15);

/// The pool's connections, as bb8 manages them.
pub(crate) type Pool = bb8::Pool<Manager>;

/// TLS to the server: off only when the URL says `sslmode=disable`.
#[derive(Clone)]
enum Tls {
    Off,
    Rustls(MakeRustlsConnect),
}

/// Opens connections to the current primary.
#[derive(Clone)]
pub(crate) struct Manager {
    config: Config,
    tls: Tls,
}

/// A failure of the server or of the way to it, as the gateway sees it. tokio-postgres' messages
/// name the server's complaint, never the password (it is only ever in `Config`).
/// The whole cause chain is kept: "error performing TLS handshake" alone does not say that
/// the certificate was refused.
pub(crate) fn unavailable(e: tokio_postgres::Error) -> BackendError {
    let mut text = format!("PostgreSQL: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    BackendError::Unavailable(text)
}

impl Manager {
    pub(crate) fn new(settings: &PgSettings) -> Result<Manager, BackendError> {
        let mut config: Config = settings.url.parse().map_err(|e| {
            BackendError::InvalidInput(format!("backend.url is not a PostgreSQL URL: {e}"))
        })?;
        if config.get_password().is_some() {
            return Err(BackendError::InvalidInput(
                "backend.url carries a password: remove it and give the password through \
                 backend.password_file or the environment"
                    .into(),
            ));
        }
        if let Some(password) = &settings.password {
            config.password(password.as_bytes());
        }
        // The gateway writes: after a failover it must land on the new primary, never a standby.
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        config.connect_timeout(settings.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(TCP_DEAD_PEER_TIMEOUT);
        config.tcp_user_timeout(TCP_DEAD_PEER_TIMEOUT);
        config.application_name("kmip-gateway");
        let tls = match (config.get_ssl_mode(), &settings.ca) {
            (SslMode::Disable, _) => Tls::Off,
            (_, None) => {
                return Err(BackendError::InvalidInput(
                    "backend.url asks for TLS (sslmode is not disable) but backend.ca is not \
                     set: give the PEM file of the CAs that sign the database server's \
                     certificate, or sslmode=disable"
                        .into(),
                ))
            }
            (_, Some(ca)) => {
                // `prefer` would fall back to plain text; with a CA given, TLS is required.
                config.ssl_mode(SslMode::Require);
                Tls::Rustls(MakeRustlsConnect::new(client_tls(ca)?))
            }
        };
        Ok(Manager { config, tls })
    }

    /// A new connection, its driver spawned, with synchronous commit forced on.
    pub(crate) async fn connect_client(&self) -> Result<Client, tokio_postgres::Error> {
        let client = match &self.tls {
            Tls::Off => {
                let (client, conn) = self.config.connect(NoTls).await?;
                tokio::spawn(drive(conn));
                client
            }
            Tls::Rustls(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                tokio::spawn(drive(conn));
                client
            }
        };
        // An acknowledged write is committed (and on a primary with a synchronous standby,
        // replicated) before the client hears success, whatever the server's default.
        client.batch_execute("SET synchronous_commit TO on").await?;
        Ok(client)
    }

    /// A connection whose asynchronous messages (notifications) the caller receives: the
    /// change listener's.
    pub(crate) async fn connect_listener(
        &self,
    ) -> Result<
        (
            Client,
            futures_util::stream::BoxStream<'static, ListenerEvent>,
        ),
        tokio_postgres::Error,
    > {
        use futures_util::StreamExt;
        fn events<S, T>(
            mut conn: tokio_postgres::Connection<S, T>,
        ) -> futures_util::stream::BoxStream<'static, ListenerEvent>
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
            T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        {
            futures_util::stream::poll_fn(move |cx| conn.poll_message(cx))
                .map(|m| match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(_)) => ListenerEvent::Notified,
                    Ok(_) => ListenerEvent::Other,
                    Err(e) => ListenerEvent::Failed(e),
                })
                .boxed()
        }
        match &self.tls {
            Tls::Off => {
                let (client, conn) = self.config.connect(NoTls).await?;
                Ok((client, events(conn)))
            }
            Tls::Rustls(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                Ok((client, events(conn)))
            }
        }
    }
}

/// What the listener's connection reports.
pub(crate) enum ListenerEvent {
    Notified,
    Other,
    Failed(tokio_postgres::Error),
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!("PostgreSQL connection ended: {e}");
    }
}

/// The rustls client configuration that trusts exactly the CAs in `ca` (server name checked).
fn client_tls(ca: &std::path::Path) -> Result<rustls::ClientConfig, BackendError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| BackendError::InvalidInput(format!("backend.ca {}: {e}", ca.display())))?;
    for cert in certs {
        let cert = cert
            .map_err(|e| BackendError::InvalidInput(format!("backend.ca {}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| BackendError::InvalidInput(format!("backend.ca {}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(BackendError::InvalidInput(format!(
            "backend.ca {} holds no certificate",
            ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::InvalidInput(format!("TLS to PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl bb8::ManageConnection for Manager {
    type Connection = Client;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        self.connect_client().await
    }

    async fn is_valid(&self, conn: &mut Client) -> Result<(), tokio_postgres::Error> {
        conn.simple_query("").await.map(|_| ())
    }

    /// A connection whose server went away (a failover, a restart) is closed: discard it.
    fn has_broken(&self, conn: &mut Client) -> bool {
        conn.is_closed()
    }
}

/// The pool: `pool_size` connections, `acquire_timeout` to get one, no round trip on checkout
/// (a connection found closed, at checkout by [`checkout`] or on return by `has_broken`, is
/// replaced; one that dies in use fails its query cleanly).
pub(crate) fn pool(settings: &PgSettings, size: u32, manager: Manager) -> Pool {
    bb8::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(0))
        .connection_timeout(settings.acquire_timeout)
        .test_on_check_out(false)
        // A refused connection is not retried into the acquire timeout (see `checkout`).
        .retry_connection(false)
        .build_unchecked(manager)
}

/// A connection from the pool; a timeout is `Busy`, a failure to connect `Unavailable`.
pub(crate) async fn checkout(
    pool: &Pool,
    settings_timeout: Duration,
) -> Result<bb8::PooledConnection<'static, Manager>, BackendError> {
    // A connection the server closed while it sat idle (a restart, a failover) is passed
    // over rather than failing the request it would serve: dropped closed, the pool discards
    // it (`has_broken`). Each pass takes one such connection out, so the pool's size bounds
    // the passes.
    let passes = pool.state().connections.saturating_add(1);
    let max_size = pool.config().max_size;
    for _ in 0..passes {
        let state = pool.state();
        // bb8 makes a missing connection in the background and reports a failure only to its
        // error sink: the caller would wait out the acquire timeout (Busy) in front of a
        // database that refuses connections. When the pool would have to grow, the
        // connection is made here instead, so a refusal is `Unavailable` at once, and handed
        // to the pool (dropped if the pool filled up meanwhile).
        if state.idle_connections == 0 && state.connections < max_size {
            let conn = tokio::time::timeout(settings_timeout, pool.dedicated_connection())
                .await
                .map_err(|_| BackendError::Busy(settings_timeout))?
                .map_err(unavailable)?;
            let _ = pool.add(conn);
        }
        let conn = pool.get_owned().await.map_err(|e| match e {
            bb8::RunError::User(e) => unavailable(e),
            bb8::RunError::TimedOut => BackendError::Busy(settings_timeout),
        })?;
        if !conn.is_closed() {
            return Ok(conn);
        }
    }
    Err(BackendError::Unavailable(
        "PostgreSQL closed every pooled connection".into(),
    ))
}
