//! Multi-part Encrypt and Decrypt (KMIP 1.4 §4.29/4.30, 2.1 §6.1.18/6.1.16): a first part
//! with Init Indicator opens a stream and is answered with a Correlation Value; later parts
//! present it, and the one with Final Indicator ends the stream.
//!
//! The streams live in the operation layer, not in a connection: the operation layer never
//! sees connections, and the HTTPS front may carry each part on a connection of its own. A
//! stream is bound to the user who opened it and to its key, so it is no easier to reach than
//! a connection's would be; per-user and overall limits and an idle timeout bound what a
//! client can hold. The Correlation Value is [`CORRELATION_LEN`] bytes of the server's RNG.
//! Every part re-checks the key as a single-part operation does (Active, dates, mask), and
//! Revoke and Destroy end the key's streams at once.
//!
//! An AES-GCM Decrypt answers its middle parts with no data: nothing is released before the
//! tag is verified with the final part (see `kmip_backends::stream`).

use super::{OpContext, OpError, Ops};
use kmip_backends::{CipherMode, CipherStream, StreamRequest};
use kmip_wire::model::CryptoRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Most streams one user holds open: each holds key state (and on PKCS#11 a token session),
/// so one client cannot take what the others need.
pub(crate) const MAX_STREAMS_PER_USER: usize = 8;
/// Most streams open on the server, all users together (bounds memory and held sessions).
pub(crate) const MAX_STREAMS: usize = 256;
/// A stream no part has used for this long is dropped, with its key state: a client that
/// vanished mid-stream does not hold it for ever.
pub(crate) const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Length of a Correlation Value (bytes): 128 random bits cannot be guessed.
const CORRELATION_LEN: usize = 16;

/// One open stream.
struct Open {
    user: String,
    uid: String,
    decrypt: bool,
    last_used: Instant,
    /// `None` while a part is being processed: a second part arriving meanwhile is refused
    /// rather than interleaved.
    stream: Option<Box<dyn CipherStream>>,
}

type Table = HashMap<Vec<u8>, Open>;

/// The open streams of the server.
pub(crate) struct Streams {
    table: Arc<Mutex<Table>>,
    idle_timeout: Duration,
    sweeper: Mutex<bool>,
}

impl Default for Streams {
    fn default() -> Streams {
        Streams::new(STREAM_IDLE_TIMEOUT)
    }
}

impl Streams {
    pub(crate) fn new(idle_timeout: Duration) -> Streams {
        Streams {
            table: Arc::new(Mutex::new(HashMap::new())),
            idle_timeout,
            sweeper: Mutex::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every stream idle for longer than the timeout; the dropped states zeroize their
    /// keys (or give back their token sessions) outside the lock.
    fn sweep(table: &Mutex<Table>, idle_timeout: Duration) {
        let expired: Vec<Open> = {
            let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<Vec<u8>> = t
                .iter()
                .filter(|(_, o)| o.stream.is_some() && o.last_used.elapsed() > idle_timeout)
                .map(|(k, _)| k.clone())
                .collect();
            gone.iter().filter_map(|k| t.remove(k)).collect()
        };
        drop(expired);
    }

    /// Starts the task that expires idle streams, once, when the first stream opens; it ends
    /// with the table.
    fn ensure_sweeper(&self) {
        let mut started = self.sweeper.lock().unwrap_or_else(PoisonError::into_inner);
        if *started {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *started = true;
        let table: Weak<Mutex<Table>> = Arc::downgrade(&self.table);
        let every = self.idle_timeout / 4;
        let idle_timeout = self.idle_timeout;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(table) = table.upgrade() else {
                    return;
                };
                Streams::sweep(&table, idle_timeout);
            }
        });
    }

    /// Registers a started stream under a fresh Correlation Value, within the limits.
    fn open(&self, entry: Open) -> Result<Vec<u8>, OpError> {
        Streams::sweep(&self.table, self.idle_timeout);
        let mut cv = vec![0u8; CORRELATION_LEN];
        aws_lc_rs::rand::fill(&mut cv).map_err(|_| {
            OpError::Backend(kmip_backends::BackendError::Unavailable(
                "the random generator failed".into(),
            ))
        })?;
        let mut t = self.lock();
        Streams::check_room(&t, &entry.user)?;
        t.insert(cv.clone(), entry);
        drop(t);
        self.ensure_sweeper();
        Ok(cv)
    }

    fn check_room(t: &Table, user: &str) -> Result<(), OpError> {
        if t.len() >= MAX_STREAMS {
            return Err(OpError::StreamLimit("the server's"));
        }
        if t.values().filter(|o| o.user == user).count() >= MAX_STREAMS_PER_USER {
            return Err(OpError::StreamLimit("this user's"));
        }
        Ok(())
    }

    /// Refuses a new stream of `user` before any key state is made for it (`open` checks
    /// again, under the same lock as the insertion).
    fn has_room(&self, user: &str) -> Result<(), OpError> {
        Streams::sweep(&self.table, self.idle_timeout);
        Streams::check_room(&self.lock(), user)
    }

    /// Takes the stream `cv` out for one part, if it is the caller's and on this key.
    fn take(
        &self,
        cv: &[u8],
        user: &str,
        uid: &str,
        decrypt: bool,
    ) -> Result<Box<dyn CipherStream>, OpError> {
        Streams::sweep(&self.table, self.idle_timeout);
        let mut t = self.lock();
        let Some(open) = t.get_mut(cv).filter(|o| o.user == user) else {
            return Err(OpError::UnknownStream);
        };
        if open.uid != uid || open.decrypt != decrypt {
            return Err(OpError::InvalidField(
                "the Correlation Value belongs to another key or operation".into(),
            ));
        }
        open.stream.take().ok_or_else(|| {
            OpError::InvalidField("another part of this stream is being processed".into())
        })
    }

    /// Puts a stream back after a middle part.
    fn put_back(&self, cv: &[u8], stream: Box<dyn CipherStream>) {
        if let Some(open) = self.lock().get_mut(cv) {
            open.stream = Some(stream);
            open.last_used = Instant::now();
        }
    }

    /// Forgets the stream `cv` (finished, or failed).
    fn close(&self, cv: &[u8]) {
        let gone = self.lock().remove(cv);
        drop(gone);
    }

    /// Forgets the stream `cv` if it is `user`'s on the key `uid`.
    fn close_if(&self, cv: &[u8], user: &str, uid: &str) {
        let mut t = self.lock();
        let owned = t.get(cv).is_some_and(|o| o.user == user && o.uid == uid);
        let gone = if owned { t.remove(cv) } else { None };
        drop(t);
        drop(gone);
    }

    /// Ends every stream of the key `uid` (it was revoked or destroyed).
    pub(crate) fn end_key(&self, uid: &str) {
        let gone: Vec<Open> = {
            let mut t = self.lock();
            let keys: Vec<Vec<u8>> = t
                .iter()
                .filter(|(_, o)| o.uid == uid)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| t.remove(k)).collect()
        };
        drop(gone);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// How a request takes part in a stream.
pub(super) enum Part {
    /// Not streamed (no indicators, or Init and Final together: one whole message).
    Single,
    First,
    Middle(Vec<u8>),
    Last(Vec<u8>),
}

impl Part {
    pub(super) fn of(r: &CryptoRequest) -> Result<Part, OpError> {
        let init = r.init_indicator == Some(true);
        let last = r.final_indicator == Some(true);
        match (&r.correlation_value, init, last) {
            (None, true, true) | (None, false, false) => Ok(Part::Single),
            (None, true, false) => Ok(Part::First),
            (Some(cv), false, false) => Ok(Part::Middle(cv.to_vec())),
            (Some(cv), false, true) => Ok(Part::Last(cv.to_vec())),
            (Some(_), true, _) => Err(OpError::InvalidField(
                "Init Indicator starts a stream: it takes no Correlation Value".into(),
            )),
            (None, false, true) => Err(OpError::MissingData("Correlation Value".into())),
        }
    }
}

/// What one part answers.
pub(super) struct PartOutput {
    pub(super) data: Zeroizing<Vec<u8>>,
    pub(super) generated_iv: Option<Vec<u8>>,
    pub(super) tag: Option<Vec<u8>>,
    pub(super) correlation_value: Option<Vec<u8>>,
}

impl Ops {
    /// One part of a multi-part Encrypt or Decrypt, on the key `uid` that the caller already
    /// checked is usable and charged for this part.
    pub(super) async fn stream_part(
        &self,
        ctx: &OpContext<'_>,
        uid: &str,
        part: Part,
        mode: CipherMode,
        r: CryptoRequest,
        decrypt: bool,
    ) -> Result<PartOutput, OpError> {
        let data = Zeroizing::new(r.data.map(|d| d.as_slice().to_vec()).unwrap_or_default());
        match part {
            Part::Single => Err(OpError::InvalidField("not a multi-part request".into())),
            Part::First => {
                self.streams.has_room(ctx.user)?;
                let started = self
                    .store
                    .backend()
                    .start_stream(
                        uid,
                        StreamRequest {
                            mode,
                            iv: r.iv_counter_nonce.map(|b| b.to_vec()),
                            aad: r
                                .authenticated_encryption_additional_data
                                .map(|b| b.to_vec()),
                            decrypt,
                        },
                    )
                    .await?;
                let mut stream = started.stream;
                let out = stream.update(data).await?;
                let cv = self.streams.open(Open {
                    user: ctx.user.to_owned(),
                    uid: uid.to_owned(),
                    decrypt,
                    last_used: Instant::now(),
                    stream: Some(stream),
                })?;
                Ok(PartOutput {
                    data: out,
                    generated_iv: started.generated_iv,
                    tag: None,
                    correlation_value: Some(cv),
                })
            }
            Part::Middle(cv) => {
                let mut stream = self.streams.take(&cv, ctx.user, uid, decrypt)?;
                match stream.update(data).await {
                    Ok(out) => {
                        self.streams.put_back(&cv, stream);
                        Ok(PartOutput {
                            data: out,
                            generated_iv: None,
                            tag: None,
                            correlation_value: Some(cv),
                        })
                    }
                    Err(e) => {
                        self.streams.close(&cv);
                        Err(e.into())
                    }
                }
            }
            Part::Last(cv) => {
                let stream = self.streams.take(&cv, ctx.user, uid, decrypt)?;
                self.streams.close(&cv);
                let out = stream
                    .finish(data, r.authenticated_encryption_tag.map(|t| t.to_vec()))
                    .await?;
                Ok(PartOutput {
                    data: out.data,
                    generated_iv: None,
                    tag: out.tag,
                    correlation_value: None,
                })
            }
        }
    }

    /// Ends the streams of a key that can no longer be used (revoked, destroyed).
    pub(super) fn end_streams_of(&self, uid: &str) {
        self.streams.end_key(uid);
    }

    /// Ends the caller's stream on `uid` whose part was refused before it reached the stream
    /// (the key is no longer usable): it could never finish.
    pub(super) fn abandon_stream(&self, part: &Part, user: &str, uid: &str) {
        if let Part::Middle(cv) | Part::Last(cv) = part {
            self.streams.close_if(cv, user, uid);
        }
    }
}

#[cfg(test)]
mod tests;
