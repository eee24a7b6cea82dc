//! Reading one KMIP message: the body's buffer grows only as bytes arrive, each growth charged
//! to the in-flight request budget before it is allocated.

use bytes::Bytes;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Buffer allocated for a message body before any of it arrived; the buffer then doubles as it
/// fills. Keeps a header announcing a large body from costing more than this, while a large
/// message is read in a handful of allocations.
const FIRST_BODY_CHUNK: usize = 4096;

/// Why a message could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadEnd {
    Timeout,
    Closed,
    /// The in-flight budget had no room for the message's next bytes before the read timeout.
    Budget,
}

/// The share of the in-flight request budget one message holds (its buffer's capacity), given
/// back when dropped: after the message was handled and its buffer freed.
pub(super) struct Charge {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Charge {
    fn new() -> Charge {
        metrics::gauge!("kmip_inflight_requests").increment(1.0);
        Charge {
            permit: None,
            bytes: 0,
        }
    }

    /// Waits (until `deadline`) for `bytes` more of `budget`.
    async fn add(
        &mut self,
        budget: &Arc<Semaphore>,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), ReadEnd> {
        let n = u32::try_from(bytes).map_err(|_| ReadEnd::Budget)?;
        let permit =
            match tokio::time::timeout_at(deadline, budget.clone().acquire_many_owned(n)).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) | Err(_) => return Err(ReadEnd::Budget),
            };
        match self.permit.as_mut() {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        self.bytes += bytes;
        metrics::gauge!("kmip_inflight_request_bytes").increment(bytes as f64);
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        metrics::gauge!("kmip_inflight_requests").decrement(1.0);
        metrics::gauge!("kmip_inflight_request_bytes").decrement(self.bytes as f64);
    }
}

/// Reads the rest of a message whose `header` (the bytes already read: a TTLV header, or the part
/// of an HTTP body that arrived with its head) announced `body_len` more bytes (already checked
/// against the size limit), by `deadline`. The buffer starts at [`FIRST_BODY_CHUNK`] and doubles
/// only when full, each growth charged to `budget` before it is allocated: a client that announces
/// a large body and sends nothing costs one small chunk, not the announced size.
pub(super) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    header: &[u8],
    body_len: usize,
    budget: &Arc<Semaphore>,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, Charge), ReadEnd> {
    let total = header.len() + body_len;
    let mut charge = Charge::new();
    let first = total.min(header.len() + FIRST_BODY_CHUNK);
    charge.add(budget, first, deadline).await?;
    let mut buf = Vec::with_capacity(first);
    buf.extend_from_slice(header);
    while buf.len() < total {
        if buf.len() == buf.capacity() {
            let grow = buf.capacity().min(total - buf.len());
            charge.add(budget, grow, deadline).await?;
            buf.reserve_exact(grow);
        }
        let room = (buf.capacity() - buf.len()).min(total - buf.len());
        let mut limited = (&mut *stream).take(room as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) => return Err(ReadEnd::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(ReadEnd::Closed),
            Ok(Ok(_)) => {}
        }
    }
    Ok((Bytes::from(buf), charge))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::ttlv::HEADER_LEN;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn header(body_len: usize) -> [u8; HEADER_LEN] {
        let mut h = [0x42, 0x00, 0x78, 0x01, 0, 0, 0, 0];
        h[4..].copy_from_slice(&u32::try_from(body_len).unwrap().to_be_bytes());
        h
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_message_is_read_whole_and_charged_until_handled() {
        let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let budget = Arc::new(Semaphore::new(1 << 20));
        // A small pipe: the body arrives in many pieces, as over a network.
        let (mut client, mut server) = tokio::io::duplex(1000);
        let sent = body.clone();
        let writer = tokio::spawn(async move { client.write_all(&sent).await.map(|_| client) });
        let (msg, charge) =
            read_message(&mut server, &header(body.len()), body.len(), &budget, far())
                .await
                .unwrap();
        assert_eq!(msg[..HEADER_LEN], header(body.len()));
        assert_eq!(msg[HEADER_LEN..], body[..]);
        assert_eq!(
            charge.bytes,
            HEADER_LEN + body.len(),
            "the buffer grew to the message, no further"
        );
        assert_eq!(budget.available_permits(), (1 << 20) - charge.bytes);
        drop(charge);
        assert_eq!(budget.available_permits(), 1 << 20);
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_announced_body_is_not_charged_before_it_arrives() {
        // Room for the first chunk only: charging the announced 1 MiB would fail with Budget.
        let budget = Arc::new(Semaphore::new(HEADER_LEN + FIRST_BODY_CHUNK));
        let (_client, mut server) = tokio::io::duplex(1000);
        let past = tokio::time::Instant::now();
        let got = read_message(&mut server, &header(1 << 20), 1 << 20, &budget, past).await;
        assert_eq!(got.err(), Some(ReadEnd::Timeout));
        assert_eq!(budget.available_permits(), HEADER_LEN + FIRST_BODY_CHUNK);
    }

    #[tokio::test]
    async fn a_message_waits_for_the_budget_until_its_deadline() {
        let budget = Arc::new(Semaphore::new(HEADER_LEN + FIRST_BODY_CHUNK));
        let all = u32::try_from(HEADER_LEN + FIRST_BODY_CHUNK).unwrap();
        let held = budget.clone().acquire_many_owned(all).await.unwrap();
        let (mut client, mut server) = tokio::io::duplex(1000);
        client.write_all(&[0u8; 100]).await.unwrap();
        let past = tokio::time::Instant::now();
        let got = read_message(&mut server, &header(100), 100, &budget, past).await;
        assert_eq!(got.err(), Some(ReadEnd::Budget));
        drop(held);
        let (msg, _charge) = read_message(&mut server, &header(100), 100, &budget, far())
            .await
            .unwrap();
        assert_eq!(msg.len(), HEADER_LEN + 100);
    }
}
