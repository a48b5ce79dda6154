//! Tests of [`super::wal`]: round trips, torn and corrupt tails, concurrency, truncation.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::*;
use crate::persist::record::{FORMAT, LEGACY_FORMAT};
use crate::persist::segment::{self, FILE_HEADER, HEADER};

fn small(segment_bytes: u64) -> WalOptions {
    WalOptions { sync: SyncMode::Always, segment_bytes }
}

/// Varied lengths, including empty, so record boundaries are not regular.
fn payload(i: u64) -> Vec<u8> {
    (0..(i * 7) % 53).map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8)).collect()
}

fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    segment::list(dir).unwrap()
}

/// A log holding records 1..=n (one segment: nothing rotates at 1 MiB).
fn log_of(dir: &Path, n: u64) {
    let (wal, _) = Wal::open(dir, small(1 << 20)).unwrap();
    for i in 1..=n {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
}

fn expect_records(replay: &Replay, seqs: std::ops::RangeInclusive<u64>) {
    let want: Vec<_> = seqs.map(|s| (s, payload(s))).collect();
    assert_eq!(replay.records, want);
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

#[test]
fn round_trip_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replay) = Wal::open(dir.path(), small(512)).unwrap();
    assert!(replay.records.is_empty() && replay.truncated.is_none());
    assert_eq!(wal.last_seq(), 0);
    for i in 1..=150 {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
    let batch: Vec<Vec<u8>> = (151..=200).map(payload).collect();
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    assert_eq!(wal.append_batch(&refs).unwrap(), (151..=200).collect::<Vec<_>>());
    assert_eq!(wal.last_seq(), 200);
    drop(wal);

    let segs = segments(dir.path());
    assert!(segs.len() > 5, "expected rotation, got {} segments", segs.len());
    assert_eq!(segs[0].0, 1);
    let (wal, replay) = Wal::open(dir.path(), small(512)).unwrap();
    expect_records(&replay, 1..=200);
    assert!(replay.truncated.is_none());
    assert_eq!(wal.last_seq(), 200);
    assert_eq!(wal.append(&payload(201)).unwrap(), 201);
    drop(wal);
    expect_records(&Wal::open(dir.path(), small(512)).unwrap().1, 1..=201);
}

#[test]
fn torn_tail_is_cut_and_reported_at_any_offset() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let n = 20;
    let last_len = (HEADER + payload(n).len()) as u64;
    // Boundaries of the header and payload, plus random offsets inside the last record.
    let mut cuts = vec![1, HEADER as u64 - 1, HEADER as u64, last_len - 1];
    cuts.extend((0..8).map(|_| rng.random_range(1..last_len)));
    for cut in cuts {
        let dir = tempfile::tempdir().unwrap();
        log_of(dir.path(), n);
        let file = segments(dir.path())[0].1.clone();
        let end = fs::metadata(&file).unwrap().len();
        let last_start = end - last_len;
        OpenOptions::new().write(true).open(&file).unwrap().set_len(last_start + cut).unwrap();

        let (wal, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
        expect_records(&replay, 1..=n - 1);
        let torn = replay.truncated.expect("torn tail reported");
        assert_eq!((torn.file.as_path(), torn.offset, torn.dropped_bytes), (file.as_path(), last_start, cut));
        assert_eq!(fs::metadata(&file).unwrap().len(), last_start, "cut durably on disk");
        assert_eq!(wal.last_seq(), n - 1);
        assert_eq!(wal.append(&payload(n)).unwrap(), n);
        assert_eq!(wal.append(&payload(n + 1)).unwrap(), n + 1);
        drop(wal);
        let (_, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
        expect_records(&replay, 1..=n + 1);
        assert!(replay.truncated.is_none());
    }
}

#[test]
fn bit_flip_in_last_record_is_caught_by_crc() {
    let n = 10;
    let last_len = (HEADER + payload(n).len()) as u64;
    // In the payload, in the seq, in the checksum itself.
    for delta in [last_len - 1, 9, 5] {
        let dir = tempfile::tempdir().unwrap();
        log_of(dir.path(), n);
        let file = segments(dir.path())[0].1.clone();
        let last_start = fs::metadata(&file).unwrap().len() - last_len;
        flip_byte(&file, last_start + delta);
        let (wal, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
        expect_records(&replay, 1..=n - 1);
        let torn = replay.truncated.unwrap();
        assert_eq!(torn.offset, last_start);
        assert!(torn.reason.contains("checksum"), "{}", torn.reason);
        assert_eq!(wal.append(b"after").unwrap(), n);
    }
}

#[test]
fn damage_outside_the_newest_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small(256)).unwrap();
    for i in 1..=60 {
        wal.append(&payload(i)).unwrap();
    }
    drop(wal);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    let victim = segs[1].1.clone();
    let before = fs::read(&victim).unwrap();
    flip_byte(&victim, FILE_HEADER as u64 + 9); // the first record's seq
    match Wal::open(dir.path(), small(256)) {
        Err(PersistError::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (victim.clone(), FILE_HEADER as u64))
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
    }
    assert_eq!(fs::read(&victim).unwrap().len(), before.len(), "a refused segment is not cut");

    // A missing middle segment is a gap in the seqs, not a clean log.
    fs::write(&victim, &before).unwrap();
    fs::remove_file(&victim).unwrap();
    let err = Wal::open(dir.path(), small(256)).err().expect("gap refused");
    assert!(matches!(&err, PersistError::Corrupt { file, .. } if *file == segs[2].1), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn concurrent_appends_get_unique_increasing_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small(64 << 10)).unwrap();
    let wal = Arc::new(wal);
    let (threads, per) = (8u64, 300u64);
    let acked: Vec<Vec<(u64, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let p = format!("t{t}-{i}").into_bytes();
                            (wal.append(&p).unwrap(), p)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for thread in &acked {
        assert!(thread.windows(2).all(|w| w[0].0 < w[1].0), "one thread's seqs increase");
    }
    let mut all: Vec<_> = acked.into_iter().flatten().collect();
    all.sort();
    assert_eq!(wal.last_seq(), threads * per);
    drop(wal);
    let (_, replay) = Wal::open(dir.path(), small(64 << 10)).unwrap();
    // Replay is in file order; it must equal the acknowledgements sorted by seq, 1..=N.
    assert_eq!(replay.records, all);
    assert!(replay.records.iter().enumerate().all(|(i, r)| r.0 == i as u64 + 1));
}

#[test]
fn interval_mode_acks_before_fsync_and_keeps_everything_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions { sync: SyncMode::Interval(Duration::from_millis(5)), segment_bytes: 300 };
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    for i in 1..=100 {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
        if i % 30 == 0 {
            std::thread::sleep(Duration::from_millis(12)); // let the syncer run mid-stream
        }
    }
    wal.sync().unwrap();
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), opts).unwrap();
    expect_records(&replay, 1..=100);
    assert_eq!(wal.append(b"x").unwrap(), 101);
}

#[test]
fn truncate_before_removes_only_fully_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small(256)).unwrap();
    for i in 1..=80 {
        wal.append(&payload(i)).unwrap();
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 4);
    // A seq in the middle of segment 2: segments 0 and 1 are wholly below it, 2 is not.
    let cut = segs[2].0 + 1;
    assert!(cut < segs[3].0);
    assert_eq!(wal.truncate_before(cut).unwrap(), 2);
    assert_eq!(segments(dir.path()), segs[2..].to_vec());
    assert_eq!(wal.truncate_before(cut).unwrap(), 0, "idempotent");
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), small(256)).unwrap();
    expect_records(&replay, segs[2].0..=80);

    // Everything covered: the current segment goes too, numbering continues.
    assert_eq!(wal.truncate_before(81).unwrap(), segs.len() - 2);
    assert_eq!(segments(dir.path()).iter().map(|s| s.0).collect::<Vec<_>>(), vec![81]);
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), small(256)).unwrap();
    assert!(replay.records.is_empty() && replay.truncated.is_none());
    assert_eq!(wal.last_seq(), 80);
    assert_eq!(wal.append(b"next").unwrap(), 81);
}

/// Reports appends/s for 1 and 8 threads (run with `--nocapture` to see the figures); it
/// asserts nothing about speed, only that group commit lost nothing.
#[test]
fn group_commit_throughput_report() {
    let shm = Path::new("/dev/shm");
    let roots: Vec<(&str, tempfile::TempDir)> = [("disk", None), ("tmpfs", Some(shm))]
        .into_iter()
        .filter(|(_, p)| p.is_none_or(|p| p.is_dir()))
        .map(|(name, p)| (name, p.map_or_else(tempfile::tempdir, tempfile::tempdir_in).unwrap()))
        .collect();
    for (name, root) in &roots {
        for threads in [1u64, 8] {
            let dir = root.path().join(format!("t{threads}"));
            let (wal, _) = Wal::open(&dir, WalOptions::default()).unwrap();
            let budget = Duration::from_millis(400);
            let start = Instant::now();
            let counts: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            let mut n = 0u64;
                            while start.elapsed() < budget {
                                wal.append(&[7u8; 100]).unwrap();
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let secs = start.elapsed().as_secs_f64();
            let total: u64 = counts.iter().sum();
            eprintln!(
                "wal group commit on {name}: {threads} thread(s), {:.0} appends/s, {:.1} records per fsync",
                total as f64 / secs,
                total as f64 / wal.commits().max(1) as f64
            );
            assert_eq!(wal.last_seq(), total);
        }
    }
}

/// A record as the first release laid it out (no segment header before the first).
fn bare_record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    let mut rec = (payload.len() as u32).to_le_bytes().to_vec();
    rec.extend_from_slice(&crc.finalize().to_le_bytes());
    rec.extend_from_slice(&seq.to_le_bytes());
    rec.extend_from_slice(payload);
    rec
}

#[test]
fn segments_carry_their_format_and_a_first_release_log_is_read_then_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let bare: Vec<u8> = (5..=7).flat_map(|s| bare_record(s, &payload(s))).collect();
    fs::write(dir.path().join(segment::file_name(5)), bare).unwrap();
    let (wal, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
    expect_records(&replay, 5..=7);
    assert_eq!(replay.formats, vec![(5, LEGACY_FORMAT)]);
    assert_eq!((replay.format_of(5), replay.format_of(7)), (LEGACY_FORMAT, LEGACY_FORMAT));
    // New records never go into the old segment.
    assert_eq!(wal.append(&payload(8)).unwrap(), 8);
    drop(wal);
    let segs = segments(dir.path());
    assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![5, 8]);
    let head = fs::read(&segs[1].1).unwrap();
    assert_eq!(&head[..8], b"SEGDWAL\0");
    assert_eq!(u32::from_le_bytes(head[8..12].try_into().unwrap()), FORMAT);
    let (_, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
    expect_records(&replay, 5..=8);
    assert_eq!(replay.formats, vec![(5, LEGACY_FORMAT), (8, FORMAT)]);
    assert_eq!((replay.format_of(7), replay.format_of(8)), (LEGACY_FORMAT, FORMAT));
}

#[test]
fn a_newer_format_is_refused_and_a_cut_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    log_of(dir.path(), 3);
    let file = segments(dir.path())[0].1.clone();
    let good = fs::read(&file).unwrap();
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(FORMAT + 1).to_le_bytes());
    fs::write(&file, &newer).unwrap();
    let err = Wal::open(dir.path(), small(1 << 20)).err().expect("a newer format is refused");
    assert!(err.to_string().contains(&format!("record format {}", FORMAT + 1)), "{err}");
    fs::write(&file, &good).unwrap();

    // A crash while a new segment's header was written leaves a few bytes of it.
    let (wal, _) = Wal::open(dir.path(), small(1 << 20)).unwrap();
    wal.truncate_before(4).unwrap();
    drop(wal);
    let segs = segments(dir.path());
    assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![4]);
    fs::write(&segs[0].1, &b"SEGDW"[..]).unwrap();
    let (wal, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
    assert!(replay.records.is_empty() && replay.truncated.is_none());
    assert_eq!(wal.append(b"x").unwrap(), 4);
    drop(wal);
    let (_, replay) = Wal::open(dir.path(), small(1 << 20)).unwrap();
    assert_eq!((replay.records, replay.formats), (vec![(4, b"x".to_vec())], vec![(4, FORMAT)]));
}

#[test]
fn append_encoded_writes_what_append_batch_writes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payloads: Vec<Vec<u8>> = (1..=40).map(payload).collect();
    let (wa, _) = Wal::open(a.path(), small(1 << 20)).unwrap();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    assert_eq!(wa.append_batch(&refs).unwrap(), (1..=40).collect::<Vec<_>>());
    let (wb, _) = Wal::open(b.path(), small(1 << 20)).unwrap();
    let seqs = wb.append_encoded(&payloads, |p, buf| buf.extend_from_slice(p)).unwrap();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    drop((wa, wb));
    let file = |d: &Path| fs::read(&segments(d)[0].1).unwrap();
    assert_eq!(file(a.path()), file(b.path()));
    expect_records(&Wal::open(b.path(), small(1 << 20)).unwrap().1, 1..=40);
}
