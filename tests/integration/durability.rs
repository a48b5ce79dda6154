//! The Db's promises, in process: what was committed is there after a restart (clean, or
//! without the final snapshot, i.e. from log replay), a torn log tail is cut, a corrupt
//! snapshot is refused.

use std::path::Path;

use segd::db::{Db, DbError, DbOptions};
use segd::engine::{Mutation, Outcome};
use segd::query::{compile_sql, eval, Limits};
use segd::segments::Definition;
use segd::store::mutate::{CellValue, CustomerUpdate};
use segd::store::Dataset;

fn open(dir: &Path) -> Result<Db, DbError> {
    open_every(dir, 1_000_000)
}

/// Opens `dir` (importing 5,000 generated customers when it is empty), snapshotting every
/// `snapshot_every` customer changes.
fn open_every(dir: &Path, snapshot_every: u64) -> Result<Db, DbError> {
    let opts = DbOptions { data_dir: dir.to_path_buf(), snapshot_every, ..DbOptions::default() };
    Db::open(
        opts,
        || {
            let b = segd::gen::generate(5_000, 9);
            Ok(Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
        },
        |_| {},
    )
}

fn upsert(id: u64, attr: &str, v: CellValue) -> Mutation {
    Mutation::Upsert(vec![CustomerUpdate { customer_id: id, attributes: vec![(attr.into(), v)] }])
}

/// The count, or None when the segment does not compile (e.g. its column is not there yet).
fn count(data: &Dataset, text: &str) -> Option<u64> {
    compile_sql(data, text, &Limits::default()).ok().map(|p| eval::count(data, &p))
}

/// A few kinds of change, committed one by one.
fn write_some(db: &Db) {
    db.commit(Mutation::CreateSegment {
        id: "de_gold".into(),
        description: "German gold".into(),
        definition: Definition::Sql("country = 'DE' AND tier = 'GOLD'".into()),
    })
    .unwrap();
    db.commit(Mutation::CreateSegment {
        id: "vips".into(),
        description: String::new(),
        definition: Definition::Static,
    })
    .unwrap();
    db.commit(Mutation::EditMembers { id: "vips".into(), customer_ids: vec![1, 2, 3, 999_999], add: true })
        .unwrap();
    for id in 1..=50 {
        db.commit(upsert(id, "tier", CellValue::Str("GOLD".into()))).unwrap();
        db.commit(upsert(id, "country", CellValue::Str("DE".into()))).unwrap();
    }
    db.commit(upsert(10_000_001, "city", CellValue::Str("NEW-001".into()))).unwrap();
    db.commit(Mutation::Delete(vec![7, 8])).unwrap();
    db.commit(Mutation::AddAttribute { name: "streak".into(), kind: segd::store::mutate::NewAttribute::Int })
        .unwrap();
    db.commit(upsert(9, "streak", CellValue::Int(12))).unwrap();
}

type Fingerprint = (u64, Vec<u64>, Option<u64>, Option<u64>, Option<u64>, Option<Vec<(String, CellValue)>>);

fn fingerprint(db: &Db) -> Fingerprint {
    let e = db.read();
    (
        e.data().customers(),
        e.segments().list().map(|s| s.count()).collect(),
        count(e.data(), "country = 'DE' AND tier = 'GOLD'"),
        count(e.data(), "city = 'NEW-001'"),
        count(e.data(), "streak >= 10"),
        e.data().customer(9),
    )
}

#[test]
fn committed_state_survives_clean_restart_and_log_replay() {
    let dir = tempfile::tempdir().unwrap();
    let want;
    {
        let db = open(dir.path()).unwrap();
        write_some(&db);
        want = fingerprint(&db);
        assert_eq!(Some(want.1[0]), want.2, "saved segment count equals the ad-hoc count");
        assert_eq!(want.4, Some(1));
        assert_eq!(want.1[1], 3, "three known customers in the static segment");
        // No close(): the state must come back from the log alone.
    }
    let db = open(dir.path()).unwrap();
    assert_eq!(fingerprint(&db), want, "after replay");
    {
        let e = db.read();
        assert_eq!(e.segments().is_member(e.data(), "vips", 2), Ok(Some(true)));
        assert_eq!(e.segments().is_member(e.data(), "vips", 7), Ok(None), "deleted customer");
    }
    db.close().unwrap();
    drop(db);
    let db = open(dir.path()).unwrap();
    assert_eq!(fingerprint(&db), want, "after a clean close (snapshot)");
    // More writes after a snapshot + truncation continue the sequence.
    let c = db.commit(upsert(11, "tier", CellValue::Str("NONE".into()))).unwrap();
    assert!(c.sequence > 100);
    assert_eq!(c.outcome, Outcome::Upserted { applied: 1 });
}

#[test]
fn rejected_mutations_are_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).unwrap();
    let before = fingerprint(&db);
    assert!(db.commit(upsert(1, "age", CellValue::Str("old".into()))).is_err());
    assert!(db.commit(upsert(1, "nope", CellValue::Int(1))).is_err());
    assert!(db.commit(Mutation::DeleteSegment { id: "missing".into() }).is_err());
    assert_eq!(fingerprint(&db), before);
    drop(db);
    let db = open(dir.path()).unwrap();
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn torn_log_tail_is_cut_and_earlier_commits_kept() {
    let dir = tempfile::tempdir().unwrap();
    let want;
    {
        let db = open(dir.path()).unwrap();
        write_some(&db);
        want = fingerprint(&db);
    }
    // Half a record at the end of the newest log file, as a crash mid-write leaves it.
    let wal = dir.path().join("wal");
    let mut files: Vec<_> = std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let last = files.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(last, bytes).unwrap();
    let db = open(dir.path()).unwrap();
    assert_eq!(fingerprint(&db), want);
    db.commit(upsert(12, "tier", CellValue::Str("NONE".into()))).unwrap();
}

#[test]
fn corrupt_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path()).unwrap();
        write_some(&db);
        db.close().unwrap();
    }
    let snaps = dir.path().join("snapshots");
    let arrow = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "arrow"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&arrow).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&arrow, bytes).unwrap();
    let err = open(dir.path()).err().expect("a corrupt snapshot must not load");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn saved_segments_can_reference_saved_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).unwrap();
    let create = |id: &str, text: &str| Mutation::CreateSegment {
        id: id.into(),
        description: String::new(),
        definition: Definition::Sql(text.into()),
    };
    db.commit(create("gold", "tier = 'GOLD'")).unwrap();
    db.commit(create("gold_de", "in_segment('gold') AND country = 'DE'")).unwrap();
    db.commit(create("not_gold", "NOT in_segment('gold')")).unwrap();
    let check = |db: &Db| {
        let e = db.read();
        let seg = |id: &str| e.segments().get(id).unwrap().count();
        assert_eq!(Some(seg("gold_de")), count(e.data(), "tier = 'GOLD' AND country = 'DE'"));
        assert_eq!(Some(seg("not_gold")), count(e.data(), "tier <> 'GOLD'"));
    };
    check(&db);
    // A write that moves customers into and out of 'gold' moves them in the dependents.
    for id in 1..=40 {
        db.commit(upsert(id, "tier", CellValue::Str(if id % 2 == 0 { "GOLD" } else { "NONE" }.into())))
            .unwrap();
        db.commit(upsert(id + 100, "country", CellValue::Str("DE".into()))).unwrap();
    }
    check(&db);
    // Referenced segments cannot be deleted; unknown references are refused.
    assert!(db.commit(Mutation::DeleteSegment { id: "gold".into() }).is_err());
    assert!(db.commit(create("bad", "in_segment('nope')")).is_err());
    drop(db);
    let db = open(dir.path()).unwrap();
    check(&db);
    // "a_first" sorts before "gold" but was created after it: a snapshot restores it after.
    db.commit(create("a_first", "in_segment('gold_de') OR in_segment('gold')")).unwrap();
    db.close().unwrap();
    drop(db);
    let db = open(dir.path()).unwrap();
    check(&db);
    let e = db.read();
    assert_eq!(e.segments().get("a_first").unwrap().count(), e.segments().get("gold").unwrap().count());
}

#[test]
fn a_data_dir_is_used_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).unwrap();
    assert!(matches!(open(dir.path()), Err(DbError::Locked(_))));
    drop(db);
    open(dir.path()).unwrap();
}

#[test]
fn a_close_after_replay_snapshots_the_replayed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let want;
    {
        let db = open(dir.path()).unwrap();
        write_some(&db);
        want = fingerprint(&db);
    }
    // Replay, then a clean close: the replayed writes must now be in a snapshot and the
    // log cut, so the next start replays nothing.
    open(dir.path()).unwrap().close().unwrap();
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(wal_bytes, 0, "log cut after the close's snapshot");
    let db = open(dir.path()).unwrap();
    assert_eq!(fingerprint(&db), want);
}

/// Periodic snapshots are written in the background while commits go on; the log is cut
/// behind them, and a restart from the newest one plus the rest of the log has everything.
#[test]
fn background_snapshots_cut_the_log_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_every(dir.path(), 40).unwrap();
    write_some(&db);
    for id in 100..400 {
        db.commit(upsert(id, "age", CellValue::Int(77))).unwrap();
    }
    let want = fingerprint(&db);
    // Wait for the snapshot thread, then check that a snapshot newer than the import exists.
    let snaps = dir.path().join("snapshots");
    let newest = || {
        std::fs::read_dir(&snaps)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".manifest"))
            .max()
            .unwrap()
    };
    let t = std::time::Instant::now();
    while newest() == "snap-00000000000000000000.manifest" && t.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_ne!(newest(), "snap-00000000000000000000.manifest", "a periodic snapshot was written");
    // Let the snapshot thread finish cutting the log, then restart without a clean close:
    // the state comes from the periodic snapshot plus the log after it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let wal_files = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(wal_files <= 2, "the log was cut behind the snapshot ({wal_files} files)");
    drop(db);
    let db = open_every(dir.path(), 40).unwrap();
    assert_eq!(fingerprint(&db), want, "after a restart from a background snapshot");
}

/// A reader holding a version never delays a commit (with a reader-writer lock this test
/// would wait forever: one thread holds the read side and commits), and the version it
/// holds never changes under it; the next read sees every acknowledged write.
#[test]
fn a_held_version_neither_blocks_commits_nor_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).unwrap();
    let text = "tier = 'PLATINUM'";
    let held = db.read();
    let plan = compile_sql(held.data(), text, &Limits::default()).unwrap();
    let before = eval::count(held.data(), &plan);
    let newly =
        (1..=100u64).filter(|&id| eval::is_member(held.data(), &plan, id) == Some(false)).count() as u64;
    assert!(newly > 0);
    for id in 1..=100 {
        db.commit(upsert(id, "tier", CellValue::Str("PLATINUM".into()))).unwrap();
    }
    assert_eq!(count(held.data(), text), Some(before), "the held version is unchanged");
    assert_eq!(count(db.read().data(), text), Some(before + newly), "a new read sees the writes");
}
