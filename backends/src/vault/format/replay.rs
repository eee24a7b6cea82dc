//! Reading a log back: frame by frame, telling a torn tail (cut off) from damage (refused),
//! verifying the chain and checking the result against the head.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;
use std::sync::{mpsc, Arc};

use aws_lc_rs::constant_time;
use zeroize::Zeroizing;

use super::record::{unseal, StoredEntry, Unsealed};
use super::{
    chain_mac, le_u32, open_header, FileKeys, CHAIN_MAC_LEN, FORMAT_VERSION, FRAME_HEADER_LEN,
    HEADER_LEN, MAX_FRAME_PAYLOAD, NONCE_LEN, RECORD_FIXED_LEN, TAG_LEN,
};
use crate::vault::files::io_err;
use crate::vault::head::{HeadState, Position};
use crate::vault::keyfile::MasterKey;
use crate::BackendError;

/// Buffer of the replay reader; large reads keep opening a big vault fast.
const REPLAY_BUFFER_BYTES: usize = 1 << 20;
/// The fewest bytes one record takes in a log (length, seq, op, uid length, a 1-byte uid, nonce,
/// tag): bounds the objects a log of a given length can name.
const MIN_RECORD_DISK_BYTES: u64 = (4 + RECORD_FIXED_LEN + 1 + NONCE_LEN + TAG_LEN) as u64;

/// A log file read back into memory.
pub(crate) struct Loaded {
    pub keys: FileKeys,
    pub version: u32,
    /// Each live object's latest record, and that record's size in bytes.
    pub objects: HashMap<Arc<str>, (StoredEntry, u64)>,
    /// Every key slot any record of the log names (live or not).
    pub referenced_slots: HashSet<u32>,
    pub next_seq: u64,
    /// Where the valid log ends (after cutting a torn tail).
    pub end: Position,
    /// Bytes cut off as a torn tail (0 when the log ended cleanly).
    pub torn_bytes: u64,
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// True when nothing but zero bytes remain: what a file system leaves where an append was
/// allocated but its data never reached the disk.
fn rest_is_zero(r: &mut impl Read) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(r, &mut buf)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}

/// Granularity at which a crash can leave part of an append unwritten: a disk sector. Such a
/// part reads back as zeros (the file grew, but those blocks were never written).
const SECTOR_BYTES: u64 = 512;
/// Shortest zero-filled end of a frame taken as an unwritten last sector: a few zero bytes at a
/// frame's end occur by chance and must not hide damage.
const MIN_ZERO_TAIL: usize = 16;

/// Whether a complete frame that fails its checksum looks like an interrupted write: a sector
/// the payload spans (a whole one, or the last one cut at the frame's end) reads as all zeros.
/// The sector shared with the frame header is not looked at: had it gone unwritten, the header
/// would have failed its own checksum. A bit flip leaves every sector non-zero.
fn has_unwritten_sector(payload: &[u8], payload_offset: u64) -> bool {
    let end = payload_offset + payload.len() as u64;
    let mut start = payload_offset.next_multiple_of(SECTOR_BYTES);
    while start < end {
        let stop = (start + SECTOR_BYTES).min(end);
        let piece = &payload[(start - payload_offset) as usize..(stop - payload_offset) as usize];
        let long_enough = stop - start == SECTOR_BYTES || piece.len() >= MIN_ZERO_TAIL;
        if long_enough && piece.iter().all(|&b| b == 0) {
            return true;
        }
        start = stop;
    }
    false
}

/// How a frame read ended.
enum FrameRead {
    Frame(Vec<u8>),
    End,
    Torn,
}

/// Reads the frame at the current position, telling a torn tail (an unfinished final append)
/// from damage anywhere else, which is an error.
fn read_frame(r: &mut impl Read, offset: u64) -> Result<FrameRead, String> {
    let io = |e: std::io::Error| format!("read failed at offset {offset}: {e}");
    let mut h = [0u8; FRAME_HEADER_LEN];
    let n = read_full(r, &mut h).map_err(io)?;
    if n == 0 {
        return Ok(FrameRead::End);
    }
    if n < FRAME_HEADER_LEN {
        return Ok(FrameRead::Torn);
    }
    if crc32fast::hash(&h[..8]) != le_u32(&h[8..]) {
        // A header only partly on disk is followed by nothing but zeros.
        return if rest_is_zero(r).map_err(io)? {
            Ok(FrameRead::Torn)
        } else {
            Err(format!(
                "frame header at offset {offset} is damaged and data follows it"
            ))
        };
    }
    let len = le_u32(&h[..4]) as usize;
    if len == 0 || len > MAX_FRAME_PAYLOAD {
        return Err(format!(
            "frame at offset {offset} declares an impossible length {len}"
        ));
    }
    let mut payload = vec![0u8; len];
    if read_full(r, &mut payload).map_err(io)? < len {
        return Ok(FrameRead::Torn);
    }
    if crc32fast::hash(&payload) != le_u32(&h[4..8]) {
        if !rest_is_zero(r).map_err(io)? {
            return Err(format!(
                "frame at offset {offset} fails its checksum and data follows it"
            ));
        }
        if has_unwritten_sector(&payload, offset + FRAME_HEADER_LEN as u64) {
            return Ok(FrameRead::Torn);
        }
        return Err(format!(
            "the last frame, at offset {offset} ({len} bytes), fails its checksum although all \
             of it is on disk: damage, not an interrupted write. Restore the vault from a \
             backup; or, giving up the writes of that frame, cut the log to {offset} bytes \
             (truncate -s {offset}) and accept the result (kmip-gateway vault accept-restore)"
        ));
    }
    Ok(FrameRead::Frame(payload))
}

/// What the log must agree with when it is opened.
pub(crate) enum Anchor<'a> {
    /// The head file at `path` (`None`: there is none).
    Head {
        state: Option<&'a HeadState>,
        path: &'a Path,
    },
    /// Nothing: the operator is accepting a restored log as it is.
    Unchecked,
}

/// The refusal for a log that lacks what the head says was acknowledged.
fn rolled_back(log: &Path, head: &Path, what: &str) -> BackendError {
    BackendError::Corrupt(format!(
        "{}: {what}. The head {} is updated before every acknowledgement, so this log lacks \
         acknowledged writes (destroys among them): it was cut, or replaced by an older copy. \
         Refusing to open. If the vault was deliberately restored from a backup, accept the \
         restored state with `kmip-gateway vault accept-restore --config <file>`, which \
         re-anchors the head to this log",
        log.display(),
        head.display()
    ))
}

fn describe(p: &Position) -> String {
    format!("{} frames ({} bytes)", p.frames, p.log_len)
}

/// Replays the whole log. A torn tail past the head is cut off (and the cut made durable); any
/// other damage, a log shorter than or different from what the head records, a wrong key or a
/// foreign file is refused without touching the file.
pub(crate) fn replay(
    file: &File,
    path: &Path,
    master: &MasterKey,
    anchor: Anchor<'_>,
    expected_objects: usize,
) -> Result<Loaded, BackendError> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let total = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = BufReader::with_capacity(REPLAY_BUFFER_BYTES, file);
    let mut h = [0u8; HEADER_LEN];
    if read_full(&mut r, &mut h).map_err(|e| io_err(path, e))? < HEADER_LEN {
        return Err(corrupt(format!(
            "{total} bytes is too short for a vault log header"
        )));
    }
    let (keys, version) = open_header(&h, master).map_err(|e| match e {
        BackendError::Corrupt(m) => corrupt(m),
        other => other,
    })?;
    let chained = version == FORMAT_VERSION;
    // The position the head pins in this file, if the head is checked.
    let mut target: Option<Position> = None;
    // The head's path when a log with frames needs one that is missing.
    let mut missing_head: Option<&Path> = None;
    let mut head_path: Option<&Path> = None;
    if let Anchor::Head { state, path: hp } = anchor {
        head_path = Some(hp);
        match (chained, state) {
            (false, Some(s)) if s.current.is_some() => {
                return Err(rolled_back(
                    path,
                    hp,
                    "this is a version-1 log, but the vault was upgraded to version 2 since",
                ))
            }
            (false, _) => {}
            (true, None) => missing_head = Some(hp),
            (true, Some(s)) => {
                target = [s.current, s.next]
                    .into_iter()
                    .flatten()
                    .find(|p| p.salt == keys.start.salt);
                if target.is_none() {
                    return Err(rolled_back(
                        path,
                        hp,
                        "this log is not the file the head records (another salt: an older \
                         copy from before a compaction, or another vault's log)",
                    ));
                }
            }
        }
    }
    let mut pos = keys.start;
    let mut reached = target.is_none();
    // Checks `pos` against the head's position when it is the same frame count.
    let at_target = |pos: &Position| -> Result<bool, BackendError> {
        match (target, head_path) {
            (Some(t), Some(hp)) if t.frames == pos.frames => {
                if t.mac != pos.mac || t.log_len != pos.log_len {
                    return Err(rolled_back(
                        path,
                        hp,
                        &format!(
                            "frame {} of this log differs from the one the head records \
                             ({} bytes here, {} in the head)",
                            pos.frames, pos.log_len, t.log_len
                        ),
                    ));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    // Refuses a log that ends before the head's position.
    let short = |pos: &Position, how: &str| -> BackendError {
        match (target, head_path, missing_head) {
            (_, _, Some(hp)) => rolled_back(
                path,
                hp,
                &format!(
                    "the head file is missing but the log {how} after {}",
                    describe(pos)
                ),
            ),
            (Some(t), Some(hp), None) => rolled_back(
                path,
                hp,
                &format!(
                    "the log {how} after {}, but the head records {}",
                    describe(pos),
                    describe(&t)
                ),
            ),
            _ => corrupt(format!("the log {how} after {}", describe(pos))),
        }
    };
    reached |= at_target(&pos)?;
    // Sized once from the caller's estimate (growing a table of a million entries moves each
    // entry again at every doubling), never past what a log of this length can hold.
    let room = usize::try_from(total / MIN_RECORD_DISK_BYTES).unwrap_or(usize::MAX);
    let capacity = expected_objects.min(room);
    // Two stages on two threads: this one reads frames, checks their chain and decrypts their
    // records where they lie; the other decodes and applies the records in order (so that the
    // objects are allocated, and superseded ones freed, on one thread). Whatever either finds
    // wrong, the earliest fault in the log is the one reported: every record before a fault the
    // reader found was applied (or failed first), and nothing is cut off the file before both
    // have finished.
    let (frames, queued) = mpsc::sync_channel::<UnsealedFrame>(REPLAY_QUEUE_FRAMES);
    let keys_ref = &keys;
    let (read, applied) = std::thread::scope(|scope| {
        let applier = scope.spawn(move || apply_frames(queued, version, path, capacity));
        let read = (|| -> Result<Option<u64>, BackendError> {
            loop {
                let offset = pos.log_len;
                let mut payload = match read_frame(&mut r, offset).map_err(corrupt)? {
                    FrameRead::End => return Ok(None),
                    FrameRead::Torn => return Ok(Some(offset)),
                    FrameRead::Frame(p) => p,
                };
                let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
                if chained {
                    let records_len =
                        payload.len().checked_sub(CHAIN_MAC_LEN).ok_or_else(|| {
                            corrupt(format!(
                                "frame at offset {offset} is too short for its chain MAC"
                            ))
                        })?;
                    let expected = chain_mac(keys_ref, &pos, &payload[..records_len]);
                    constant_time::verify_slices_are_equal(&expected, &payload[records_len..])
                        .map_err(|_| {
                            corrupt(format!(
                                "frame {} at offset {offset} fails its chain MAC: frames were \
                                 removed, reordered, altered or taken from another file",
                                pos.frames + 1
                            ))
                        })?;
                    payload.truncate(records_len);
                    pos.mac = expected;
                }
                let mut payload = Zeroizing::new(payload);
                let (records, fault) = unseal_frame(keys_ref, offset, &mut payload);
                // The records before a fault go to the applier first: a fault of theirs is
                // earlier in the log.
                if frames.send((payload, records)).is_err() {
                    // The applier stopped at a faulty record, which its result reports.
                    return Ok(None);
                }
                if let Some(fault) = fault {
                    return Err(corrupt(fault));
                }
                pos.frames += 1;
                pos.log_len += frame_len;
                reached |= at_target(&pos)?;
            }
        })();
        drop(frames);
        let applied = applier
            .join()
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked));
        (read, applied)
    });
    let Applied {
        objects,
        referenced_slots,
        next_seq,
    } = applied?;
    let torn_bytes = match read? {
        Some(offset) => {
            if !reached || (missing_head.is_some() && pos.frames > 0) {
                return Err(short(&pos, "ends in a torn frame"));
            }
            drop(r);
            file.set_len(offset).map_err(|e| io_err(path, e))?;
            file.sync_all().map_err(|e| io_err(path, e))?;
            tracing::warn!(
                path = %path.display(),
                offset,
                cut_bytes = total - offset,
                frames_past_head = target.map_or(0, |t| pos.frames - t.frames),
                "cut a torn tail off the vault log: one unfinished frame past the head, \
                 never acknowledged (a write interrupted by a crash)"
            );
            total - offset
        }
        None => {
            if !reached || (missing_head.is_some() && pos.frames > 0) {
                return Err(short(&pos, "ends"));
            }
            if let Some(t) = target.filter(|t| pos.frames > t.frames) {
                tracing::warn!(
                    path = %path.display(),
                    frames_past_head = pos.frames - t.frames,
                    bytes_past_head = pos.log_len - t.log_len,
                    "the vault log holds frames past the head: written and synced, but a \
                     crash came before they were acknowledged; kept"
                );
            }
            0
        }
    };
    Ok(Loaded {
        keys,
        version,
        objects,
        referenced_slots,
        next_seq,
        end: pos,
        torn_bytes,
    })
}

/// Frames read, checked and decrypted that wait for their records to be applied: bounds how far
/// (in memory) the reader runs ahead, at most this many frames of at most `MAX_FRAME_PAYLOAD`
/// bytes.
const REPLAY_QUEUE_FRAMES: usize = 8;

/// A frame's payload, its records decrypted in place, and where each record is.
type UnsealedFrame = (Zeroizing<Vec<u8>>, Vec<RecordAt>);

/// One decrypted record of a frame.
struct RecordAt {
    /// Where it starts in the file, for errors.
    at: u64,
    /// Its bytes after the length field, in the frame's payload.
    bytes: std::ops::Range<usize>,
    unsealed: Unsealed,
}

/// Decrypts the records of the frame at `offset` (its `payload` without the chain MAC) where
/// they lie. Returns those decrypted, and the fault that stopped it, if one did.
fn unseal_frame(
    keys: &FileKeys,
    offset: u64,
    payload: &mut [u8],
) -> (Vec<RecordAt>, Option<String>) {
    let mut records = Vec::new();
    let mut at_byte = 0;
    while at_byte < payload.len() {
        let at = offset + (FRAME_HEADER_LEN + at_byte) as u64;
        let Some(rec_len) = payload.get(at_byte..at_byte + 4).map(le_u32) else {
            return (
                records,
                Some(format!("record length cut short at offset {at}")),
            );
        };
        let bytes = at_byte + 4..at_byte + 4 + rec_len as usize;
        let Some(rec) = payload.get_mut(bytes.clone()) else {
            return (
                records,
                Some(format!("record at offset {at} overruns its frame")),
            );
        };
        match unseal(keys, rec) {
            Ok(unsealed) => records.push(RecordAt {
                at,
                bytes: bytes.clone(),
                unsealed,
            }),
            Err(m) => return (records, Some(format!("record at offset {at}: {m}"))),
        }
        at_byte = bytes.end;
    }
    (records, None)
}

/// The objects a log's records leave, as [`apply_frames`] builds them.
struct Applied {
    objects: HashMap<Arc<str>, (StoredEntry, u64)>,
    referenced_slots: HashSet<u32>,
    next_seq: u64,
}

/// Decodes and applies each frame's decrypted records, in log order: the latest record of each
/// object is kept, a deletion removes it. Stops at the first faulty record.
fn apply_frames(
    frames: mpsc::Receiver<UnsealedFrame>,
    version: u32,
    path: &Path,
    capacity: usize,
) -> Result<Applied, BackendError> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let mut objects: HashMap<Arc<str>, (StoredEntry, u64)> = HashMap::with_capacity(capacity);
    let mut referenced_slots = HashSet::new();
    let mut next_seq = 1u64;
    for (payload, records) in frames {
        for RecordAt {
            at,
            bytes,
            unsealed,
        } in records
        {
            let rec = &payload[bytes.clone()];
            let (uid, entry) = unsealed
                .uid(rec)
                .and_then(|uid| Ok((uid, unsealed.entry(rec, version)?)))
                .map_err(|m| corrupt(format!("record at offset {at}: {m}")))?;
            if unsealed.seq != next_seq {
                return Err(corrupt(format!(
                    "record at offset {at} has sequence {} where {next_seq} was due",
                    unsealed.seq
                )));
            }
            next_seq += 1;
            match entry {
                Some(entry) => {
                    referenced_slots.extend(entry.material.as_ref().and_then(|m| m.slot()));
                    // A rewrite of a known object keeps its key: no new uid string.
                    let value = (entry, 4 + bytes.len() as u64);
                    match objects.get_mut(uid) {
                        Some(slot) => *slot = value,
                        None => {
                            objects.insert(Arc::from(uid), value);
                        }
                    }
                }
                None => {
                    objects.remove(uid).ok_or_else(|| {
                        corrupt(format!(
                            "record at offset {at} deletes an object that does not exist"
                        ))
                    })?;
                }
            }
        }
    }
    Ok(Applied {
        objects,
        referenced_slots,
        next_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::format::{begin_frame, finish_frame, new_header, seal_record};
    use zeroize::Zeroizing;

    /// A log whose first frame deletes an object no record made (a fault only the applier
    /// sees), followed by `rest` appended as it is.
    fn log_with_a_ghost_delete(
        master: &MasterKey,
        rest: impl FnOnce(&FileKeys, &mut Vec<u8>),
    ) -> Vec<u8> {
        let (header, keys) = new_header(master).unwrap();
        let mut log = header.to_vec();
        let mut pos = keys.start;
        let mut frame = Vec::new();
        let start = begin_frame(&mut frame);
        seal_record(&keys, 1, "ghost", None, &mut frame).unwrap();
        finish_frame(&mut frame, start, &keys, &mut pos);
        log.extend_from_slice(&frame);
        rest(&keys, &mut log);
        log
    }

    fn replay_of(log: &[u8]) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.log");
        std::fs::write(&path, log).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let master: MasterKey = Zeroizing::new([7u8; 32]);
        let err = match replay(&file, &path, &master, Anchor::Unchecked, 0) {
            Ok(_) => panic!("a log with a faulty record opened"),
            Err(e) => e.to_string(),
        };
        (err, std::fs::read(&path).unwrap())
    }

    #[test]
    fn the_earliest_fault_is_reported_whichever_stage_finds_it() {
        let master: MasterKey = Zeroizing::new([7u8; 32]);
        // A second frame whose chain MAC is wrong: the reader finds it while the applier may
        // not yet have seen the first frame.
        let log = log_with_a_ghost_delete(&master, |keys, log| {
            let mut wrong = keys.start;
            wrong.frames = 9;
            let mut frame = Vec::new();
            let start = begin_frame(&mut frame);
            seal_record(keys, 2, "other", None, &mut frame).unwrap();
            finish_frame(&mut frame, start, keys, &mut wrong);
            log.extend_from_slice(&frame);
        });
        let (err, _) = replay_of(&log);
        assert!(
            err.contains("deletes an object that does not exist"),
            "{err}"
        );
    }

    #[test]
    fn a_torn_tail_is_not_cut_off_a_log_with_an_earlier_fault() {
        let master: MasterKey = Zeroizing::new([7u8; 32]);
        // A frame header announcing more than follows: an interrupted append.
        let log = log_with_a_ghost_delete(&master, |_, log| {
            let header = [64u8, 0, 0, 0, 0, 0, 0, 0];
            log.extend_from_slice(&header);
            log.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
            log.extend_from_slice(&[1, 2, 3]);
        });
        let (err, after) = replay_of(&log);
        assert!(
            err.contains("deletes an object that does not exist"),
            "{err}"
        );
        assert_eq!(after, log, "the file was changed");
    }
}
