//! The stream table alone: limits, expiry, binding to owner and key.

use super::*;
use kmip_backends::{BackendError, CipherOutput};

/// A stream that echoes its input.
struct Echo;

#[async_trait::async_trait]
impl CipherStream for Echo {
    async fn update(
        &mut self,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        Ok(data)
    }

    async fn finish(
        self: Box<Self>,
        data: Zeroizing<Vec<u8>>,
        _tag: Option<Vec<u8>>,
    ) -> Result<CipherOutput, BackendError> {
        Ok(CipherOutput {
            data,
            generated_iv: None,
            tag: None,
        })
    }
}

fn open(user: &str, uid: &str) -> Open {
    Open {
        user: user.into(),
        uid: uid.into(),
        decrypt: false,
        last_used: Instant::now(),
        stream: Some(Box::new(Echo)),
    }
}

#[tokio::test]
async fn a_correlation_value_works_only_for_its_owner_key_and_operation() {
    let s = Streams::default();
    let cv = s.open(open("alice", "k1")).unwrap();
    assert_eq!(cv.len(), CORRELATION_LEN);
    assert_ne!(
        cv,
        s.open(open("alice", "k1")).unwrap(),
        "values are random"
    );
    assert!(matches!(
        s.take(&cv, "bob", "k1", false),
        Err(OpError::UnknownStream)
    ));
    assert!(matches!(
        s.take(&cv, "alice", "k2", false),
        Err(OpError::InvalidField(_))
    ));
    assert!(matches!(
        s.take(&cv, "alice", "k1", true),
        Err(OpError::InvalidField(_))
    ));
    assert!(matches!(
        s.take(&[0; 16], "alice", "k1", false),
        Err(OpError::UnknownStream)
    ));
    let stream = s.take(&cv, "alice", "k1", false).unwrap();
    // While one part runs, another is refused, not interleaved.
    assert!(matches!(
        s.take(&cv, "alice", "k1", false),
        Err(OpError::InvalidField(_))
    ));
    s.put_back(&cv, stream);
    assert!(s.take(&cv, "alice", "k1", false).is_ok());
    // Someone else's failed part does not end alice's stream.
    s.close_if(&cv, "bob", "k1");
    assert_eq!(s.len(), 2);
}

#[tokio::test]
async fn streams_are_limited_per_user_and_overall() {
    let s = Streams::default();
    for _ in 0..MAX_STREAMS_PER_USER {
        s.open(open("alice", "k")).unwrap();
    }
    assert!(matches!(
        s.open(open("alice", "k")),
        Err(OpError::StreamLimit(_))
    ));
    let mut user = 0;
    while s.len() < MAX_STREAMS {
        user += 1;
        s.open(open(&format!("u{}", user / MAX_STREAMS_PER_USER), "k"))
            .unwrap();
    }
    assert!(matches!(
        s.open(open("newcomer", "k")),
        Err(OpError::StreamLimit(_))
    ));
}

#[tokio::test]
async fn idle_streams_expire_and_a_key_s_streams_end_with_it() {
    let s = Streams::new(Duration::from_millis(50));
    let cv = s.open(open("alice", "k1")).unwrap();
    let other = s.open(open("alice", "k2")).unwrap();
    s.end_key("k2");
    assert!(matches!(
        s.take(&other, "alice", "k2", false),
        Err(OpError::UnknownStream)
    ));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(
        s.take(&cv, "alice", "k1", false),
        Err(OpError::UnknownStream)
    ));
    assert_eq!(s.len(), 0);
}

#[tokio::test]
async fn the_sweeper_drops_idle_streams_without_any_request() {
    let s = Streams::new(Duration::from_millis(40));
    s.open(open("alice", "k1")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.len(), 0);
}

#[test]
fn indicators_name_the_part() {
    let r = |cv: Option<&'static [u8]>, init, fin| CryptoRequest {
        correlation_value: cv.map(bytes::Bytes::from_static),
        init_indicator: init,
        final_indicator: fin,
        ..CryptoRequest::default()
    };
    assert!(matches!(Part::of(&r(None, None, None)), Ok(Part::Single)));
    assert!(matches!(
        Part::of(&r(None, Some(true), Some(true))),
        Ok(Part::Single)
    ));
    assert!(matches!(
        Part::of(&r(None, Some(true), None)),
        Ok(Part::First)
    ));
    assert!(matches!(
        Part::of(&r(Some(b"c"), None, None)),
        Ok(Part::Middle(_))
    ));
    assert!(matches!(
        Part::of(&r(Some(b"c"), Some(false), Some(true))),
        Ok(Part::Last(_))
    ));
    assert!(matches!(
        Part::of(&r(Some(b"c"), Some(true), None)),
        Err(OpError::InvalidField(_))
    ));
    assert!(matches!(
        Part::of(&r(None, None, Some(true))),
        Err(OpError::MissingData(_))
    ));
}
