use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const KEY: &str = "feffe9928665731c6d6a8f9467308308";
const DES3_KEY: &str = "0123456789abcdef23456789abcdef01456789abcdef0123";

fn start(
    alg: KeyAlgorithm,
    key: &str,
    mode: CipherMode,
    iv: Option<Vec<u8>>,
    decrypt: bool,
) -> StartedStream {
    SoftwareStream::start(
        Some(alg),
        Zeroizing::new(h(key)),
        StreamRequest {
            mode,
            iv,
            aad: Some(b"header".to_vec()),
            decrypt,
        },
    )
    .unwrap()
}

fn one_shot(
    alg: KeyAlgorithm,
    key: &str,
    mode: CipherMode,
    iv: Option<Vec<u8>>,
    data: &[u8],
    decrypt: bool,
    tag: Option<Vec<u8>>,
) -> Result<CipherOutput, BackendError> {
    let req = CipherRequest {
        mode,
        data: Zeroizing::new(data.to_vec()),
        iv,
        aad: Some(b"header".to_vec()),
        tag,
    };
    if decrypt {
        cipher::decrypt_with(Some(alg), &h(key), req)
    } else {
        cipher::encrypt_with(Some(alg), &h(key), req)
    }
}

/// Feeds `data` in parts cut at `cuts` (the last part is the final one).
async fn run(
    mut s: StartedStream,
    data: &[u8],
    cuts: &[usize],
    tag: Option<Vec<u8>>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), BackendError> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        out.extend_from_slice(
            &s.stream
                .update(Zeroizing::new(data[from..c].to_vec()))
                .await?,
        );
        from = c;
    }
    let last = s
        .stream
        .finish(Zeroizing::new(data[from..].to_vec()), tag)
        .await?;
    out.extend_from_slice(&last.data);
    Ok((out, last.tag))
}

fn splits(len: usize) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = (0..=len).map(|c| vec![c]).collect();
    for step in [1, 5, 16, 17] {
        all.push((step..len).step_by(step).collect());
    }
    all
}

/// A key, a mode, its IV and the message.
type Case<'a> = (KeyAlgorithm, &'a str, CipherMode, Option<Vec<u8>>, &'a [u8]);

/// Every way of cutting the message gives the one-shot output, in both directions, for
/// AES-GCM (64- and 96-bit nonces), CBC and ECB with and without padding, and Triple DES.
#[tokio::test]
async fn streams_equal_one_shot_for_every_split() {
    let plain: Vec<u8> = (0u8..61).collect();
    let block_plain: Vec<u8> = (0u8..64).collect();
    let cases: Vec<Case<'_>> = vec![
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Gcm { tag_len: 16 },
            Some(h("cafebabefacedbad")),
            &plain,
        ),
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Gcm { tag_len: 12 },
            Some(h("cafebabefacedbaddecaf888")),
            &plain,
        ),
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Cbc { pad: true },
            Some(vec![7; 16]),
            &plain,
        ),
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Cbc { pad: false },
            Some(vec![7; 16]),
            &block_plain,
        ),
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Ecb { pad: true },
            None,
            &plain,
        ),
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Ctr,
            Some(vec![0xff; 16]),
            &plain,
        ),
        (
            KeyAlgorithm::Aes,
            KEY,
            CipherMode::Ecb { pad: false },
            None,
            &block_plain,
        ),
        (
            KeyAlgorithm::TripleDes,
            DES3_KEY,
            CipherMode::Cbc { pad: true },
            Some(vec![3; 8]),
            &plain,
        ),
    ];
    for (alg, key, mode, iv, data) in cases {
        let whole = one_shot(alg, key, mode, iv.clone(), data, false, None).unwrap();
        for cuts in splits(data.len()) {
            let (ct, tag) = run(start(alg, key, mode, iv.clone(), false), data, &cuts, None)
                .await
                .unwrap();
            assert_eq!(ct, *whole.data, "{mode:?} encrypt {cuts:?}");
            assert_eq!(tag, whole.tag, "{mode:?} tag {cuts:?}");
            let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= ct.len()).collect();
            let (pt, _) = run(
                start(alg, key, mode, iv.clone(), true),
                &ct,
                &cuts,
                tag.clone(),
            )
            .await
            .unwrap();
            assert_eq!(pt, data, "{mode:?} decrypt {cuts:?}");
        }
    }
}

/// A GCM Decrypt releases nothing before its final part, and nothing at all when the tag is
/// wrong.
#[tokio::test]
async fn gcm_decrypt_releases_nothing_before_the_tag_is_verified() {
    let mode = CipherMode::Gcm { tag_len: 16 };
    let iv = Some(h("cafebabefacedbad"));
    let whole = one_shot(
        KeyAlgorithm::Aes,
        KEY,
        mode,
        iv.clone(),
        b"attack at dawn, twice over",
        false,
        None,
    )
    .unwrap();
    let mut s = start(KeyAlgorithm::Aes, KEY, mode, iv.clone(), true);
    let early = s
        .stream
        .update(Zeroizing::new(whole.data[..20].to_vec()))
        .await
        .unwrap();
    assert!(early.is_empty());
    let mut bad = whole.tag.clone().unwrap();
    bad[0] ^= 1;
    let r = s
        .stream
        .finish(Zeroizing::new(whole.data[20..].to_vec()), Some(bad))
        .await;
    assert!(matches!(r, Err(BackendError::IntegrityCheckFailed)));
}

#[tokio::test]
async fn buffered_bytes_are_bounded_and_bad_starts_refused() {
    let mut s = start(
        KeyAlgorithm::Aes,
        KEY,
        CipherMode::Gcm { tag_len: 16 },
        Some(vec![1; 12]),
        true,
    );
    s.stream
        .update(Zeroizing::new(vec![0; MAX_STREAM_BUFFER]))
        .await
        .unwrap();
    assert!(matches!(
        s.stream.update(Zeroizing::new(vec![0; 1])).await,
        Err(BackendError::InvalidInput(_))
    ));
    let refused = |mode, iv, decrypt| {
        SoftwareStream::start(
            Some(KeyAlgorithm::Aes),
            Zeroizing::new(h(KEY)),
            StreamRequest {
                mode,
                iv,
                aad: None,
                decrypt,
            },
        )
        .err()
    };
    assert!(matches!(
        refused(CipherMode::ChaCha20, None, false),
        Some(BackendError::Unsupported(_))
    ));
    assert!(matches!(
        refused(CipherMode::AesKeyWrap { pad: false }, None, false),
        Some(BackendError::Unsupported(_))
    ));
    assert!(matches!(
        refused(CipherMode::Cbc { pad: true }, None, true),
        Some(BackendError::InvalidInput(_))
    ));
    assert!(matches!(
        refused(CipherMode::Cbc { pad: true }, Some(vec![0; 15]), false),
        Some(BackendError::InvalidInput(_))
    ));
    assert!(matches!(
        refused(CipherMode::Ecb { pad: true }, Some(vec![0; 16]), false),
        Some(BackendError::InvalidInput(_))
    ));
}

/// An Encrypt without an IV gets a fresh one, which then decrypts the stream.
#[tokio::test]
async fn a_generated_iv_is_returned_and_used() {
    let mode = CipherMode::Gcm { tag_len: 16 };
    let s = start(KeyAlgorithm::Aes, KEY, mode, None, false);
    let iv = s.generated_iv.clone().unwrap();
    assert_eq!(iv.len(), 12);
    let (ct, tag) = run(s, b"some plaintext here", &[4], None).await.unwrap();
    let pt = one_shot(KeyAlgorithm::Aes, KEY, mode, Some(iv), &ct, true, tag).unwrap();
    assert_eq!(*pt.data, b"some plaintext here");
}
