//! Tests of [`super::Db`]'s write path: a mixed commit group through `submit` (each answer
//! and each group boundary hand-computed), a failed apply (writes refused, reads intact,
//! start-up naming the record, `skip_sequences` recovering), and live events equal to
//! replayed ones and to the oracle's.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use super::*;
use crate::engine::tests::{random_log, stream, table, Oracle};
use crate::segments::SegmentError;
use crate::store::mutate::{CellValue, CustomerUpdate, MutationError, NewAttribute};

const ROWS: usize = 2_000;

/// (signalled when the committer pauses, what releases it).
type Hold = (mpsc::Sender<()>, mpsc::Receiver<()>);

/// Pauses the committer inside `on_commit` on demand, and records each group's last
/// sequence (`on_commit` runs once per applied group).
#[derive(Clone, Default)]
struct Gate {
    hold: Arc<Mutex<Option<Hold>>>,
    ends: Arc<Mutex<Vec<u64>>>,
}

impl Gate {
    fn on_commit(&self) -> impl Fn(u64) + Send + 'static {
        let g = self.clone();
        move |seq| {
            g.ends.lock().unwrap().push(seq);
            let hold = g.hold.lock().unwrap().take();
            if let Some((entered, release)) = hold {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
        }
    }

    /// Submits `first`, waits until the committer is paused after it, submits `rest`
    /// (queued together, so the committer groups them), releases it, and returns every
    /// answer in submission order.
    fn burst(&self, db: &Db, first: Mutation, rest: Vec<Mutation>) -> Vec<Result<Committed, DbError>> {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        *self.hold.lock().unwrap() = Some((entered_tx, release_rx));
        let (tx, rx) = mpsc::channel();
        let n = rest.len() + 1;
        for (i, m) in std::iter::once(first).chain(rest).enumerate() {
            let tx = tx.clone();
            db.submit(m, move |r| tx.send((i, r)).unwrap());
            if i == 0 {
                entered.recv().unwrap();
            }
        }
        release.send(()).unwrap();
        let mut out: Vec<_> = (0..n).map(|_| rx.recv().unwrap()).collect();
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

fn open(dir: &Path, opts: DbOptions, gate: &Gate) -> Result<Db, DbError> {
    let opts = DbOptions { data_dir: dir.to_path_buf(), ..opts };
    Db::open(opts, || Ok(table(ROWS)), gate.on_commit())
}

fn upsert(id: u64, attr: &str, v: CellValue) -> Mutation {
    Mutation::Upsert(vec![CustomerUpdate { customer_id: id, attributes: vec![(attr.into(), v)] }])
}

fn cell(db: &Db, id: u64, attr: &str) -> Option<CellValue> {
    db.read().data().customer(id).and_then(|c| c.into_iter().find(|(a, _)| a == attr).map(|(_, v)| v))
}

fn seq_of(r: &Result<Committed, DbError>) -> u64 {
    r.as_ref().unwrap_or_else(|e| panic!("{e}")).sequence
}

#[test]
fn a_mixed_group_through_submit() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    let db = open(dir.path(), DbOptions::default(), &gate).unwrap();
    let s = db.read().sequence();
    let rest = vec![
        Mutation::AddAttribute { name: "streak".into(), kind: NewAttribute::Int },
        // Uses the attribute queued just before it: checked after it was applied.
        upsert(1, "streak", CellValue::Int(3)),
        // Rejected in mid-group: only this caller hears of it, nothing is logged.
        upsert(2, "tier", CellValue::Int(5)),
        upsert(3, "streak", CellValue::Int(4)),
        Mutation::CreateSegment {
            id: "vip".into(),
            description: String::new(),
            members: vec![],
            definition: Definition::Static,
        },
        // Written right after its creation, from the same burst.
        Mutation::EditMembers { id: "vip".into(), customer_ids: vec![2, 1, 99_999_999], add: true },
        Mutation::CreateSegment {
            id: "streaky".into(),
            description: String::new(),
            members: vec![],
            definition: Definition::Sql("streak >= 3".into()),
        },
        Mutation::Delete(vec![3]),
        Mutation::DeleteSegment { id: "streaky".into() },
        upsert(4, "streak", CellValue::Int(1)),
        // A segment that no longer exists.
        Mutation::EditMembers { id: "streaky".into(), customer_ids: vec![4], add: true },
    ];
    let r = gate.burst(&db, upsert(9, "age", CellValue::Int(40)), rest);
    assert_eq!(seq_of(&r[0]), s + 1);
    let ok = |i: usize, seq: u64, outcome: Outcome| {
        let got = r[i].as_ref().unwrap_or_else(|e| panic!("#{i}: {e}"));
        assert_eq!(got, &Committed { sequence: seq, outcome }, "#{i}");
    };
    ok(1, s + 2, Outcome::AttributeAdded);
    ok(2, s + 3, Outcome::Upserted { applied: 1 });
    match &r[3] {
        Err(DbError::Rejected(EngineError::Mutation(MutationError::TypeMismatch {
            customer_id,
            attribute,
            ..
        }))) => {
            assert_eq!((*customer_id, attribute.as_str()), (2, "tier"))
        }
        other => panic!("#3: {other:?}"),
    }
    ok(4, s + 4, Outcome::Upserted { applied: 1 });
    ok(5, s + 5, Outcome::SegmentCreated { count: 0 });
    ok(6, s + 6, Outcome::MembersEdited { changed: 2 });
    ok(7, s + 7, Outcome::SegmentCreated { count: 2 });
    ok(8, s + 8, Outcome::Deleted { deleted: 1 });
    ok(9, s + 9, Outcome::SegmentDeleted);
    ok(10, s + 10, Outcome::Upserted { applied: 1 });
    match &r[11] {
        Err(DbError::Rejected(EngineError::Segment(SegmentError::NotFound(id)))) => assert_eq!(id, "streaky"),
        other => panic!("#11: {other:?}"),
    }
    // A group ends after each schema change (attribute, segment created or deleted) and
    // when the queue is empty; upserts, deletes and member edits go on.
    assert_eq!(*gate.ends.lock().unwrap(), vec![s + 1, s + 2, s + 5, s + 7, s + 9, s + 10]);
    assert_eq!(cell(&db, 1, "streak"), Some(CellValue::Int(3)));
    assert!(matches!(cell(&db, 2, "tier"), Some(CellValue::Str(_))));
    assert_eq!(cell(&db, 3, "streak"), None);
    let eng = db.read();
    assert_eq!(eng.sequence(), s + 10);
    let events = eng.events_since(s + 1, &HashSet::new(), usize::MAX).unwrap();
    let mut vip = [1u64, 2];
    vip.sort_by_key(|&id| eng.data().row_of(id));
    let want = vec![
        (s + 6, "vip".to_string(), vip[0], true),
        (s + 6, "vip".to_string(), vip[1], true),
        (s + 8, "streaky".to_string(), 3, false),
    ];
    assert_eq!(stream(&events), want);
}

/// Captures what `tracing` logs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_apply_refuses_writes_and_start_up_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    let faulty = DbOptions { fail_apply_at: Some(3), ..DbOptions::default() };
    let db = open(dir.path(), faulty.clone(), &gate).unwrap();
    assert_eq!(db.read().sequence(), 0);
    let gold = || CellValue::Str("GOLD_X".into());
    assert_eq!(seq_of(&db.commit(upsert(1, "tier", gold()))), 1);
    let health = db.health();
    assert!(health.borrow().is_none());
    // Sequence 3 (customer 10) panics in apply; 4 (customer 11) shares its group.
    let r = gate.burst(
        &db,
        upsert(2, "tier", gold()),
        vec![upsert(10, "tier", gold()), upsert(11, "tier", gold())],
    );
    assert_eq!(seq_of(&r[0]), 2);
    for r in &r[1..] {
        match r {
            Err(DbError::ApplyFailed(f)) => {
                assert_eq!((f.sequence, f.published), (3, 2));
                assert_eq!(f.mutation, "upsert of 1 customers [10]");
                assert!(f.reason.contains("injected fault applying sequence 3"), "{}", f.reason);
            }
            other => panic!("{other:?}"),
        }
    }
    let fault = db.fault().expect("poisoned");
    assert_eq!(health.borrow().as_ref(), Some(&fault));
    // Reads go on from the last good version; writes are refused, naming the sequence.
    assert_eq!(db.read().sequence(), 2);
    assert_eq!(cell(&db, 2, "tier"), Some(gold()));
    assert_ne!(cell(&db, 10, "tier"), Some(gold()));
    match db.commit(upsert(12, "tier", gold())) {
        Err(e @ DbError::Poisoned(_)) => assert!(e.to_string().contains("log record 3"), "{e}"),
        other => panic!("{other:?}"),
    }
    db.close().unwrap();
    drop(db);

    // The record fails again at start-up: stop, naming it and the escape hatch.
    match open(dir.path(), faulty.clone(), &gate) {
        Err(e @ DbError::Replay { sequence: 3, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("upsert of 1 customers [10]") && msg.contains("--skip-sequence 3"), "{msg}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    }

    // Skipped: start-up succeeds, says what it skipped, applies the rest of the group.
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let l = logs.clone();
            move || l.clone()
        })
        .with_ansi(false)
        .finish();
    let skip = DbOptions { skip_sequences: vec![3], ..faulty };
    let db = tracing::subscriber::with_default(subscriber, || open(dir.path(), skip, &gate)).unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().find(|l| l.contains("skip")).unwrap_or_else(|| panic!("no skip logged: {text}"));
    assert!(
        line.contains("WARN") && line.contains("sequence=3") && line.contains("upsert of 1 customers [10]"),
        "{line}"
    );
    assert_eq!(db.read().sequence(), 4);
    assert_ne!(cell(&db, 10, "tier"), Some(gold()));
    assert_eq!(cell(&db, 11, "tier"), Some(gold()));
    assert!(db.fault().is_none());
    assert_eq!(seq_of(&db.commit(upsert(12, "tier", gold()))), 5);
    drop(db);

    // The skip is permanent: no flag needed any more.
    let db = open(dir.path(), DbOptions::default(), &gate).unwrap();
    assert_eq!(db.read().sequence(), 5);
    assert_ne!(cell(&db, 10, "tier"), Some(gold()));
    assert_eq!(cell(&db, 12, "tier"), Some(gold()));
}

/// The random log submitted as fast as the committer takes it (groups as they come),
/// then replayed at start-up (groups of its own): both event streams are the oracle's.
#[test]
fn live_and_replayed_events_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    let log: Vec<Mutation> = random_log(7, 400).into_iter().map(|(_, m)| m).collect();
    let db = open(dir.path(), DbOptions::default(), &gate).unwrap();
    let (tx, rx) = mpsc::channel();
    for m in log.clone() {
        let tx = tx.clone();
        db.submit(m, move |r| tx.send(r).unwrap());
    }
    let seqs: Vec<u64> = (0..log.len()).map(|_| seq_of(&rx.recv().unwrap())).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
    let everything = |db: &Db| db.read().events_since(1, &HashSet::new(), usize::MAX).unwrap();
    let live = stream(&everything(&db));
    let groups = gate.ends.lock().unwrap().len();
    drop(db);
    let db = open(dir.path(), DbOptions::default(), &gate).unwrap();
    assert_eq!(db.read().sequence(), log.len() as u64);
    let replayed = stream(&everything(&db));
    let mut oracle = Oracle::new(table(ROWS));
    let mut want = vec![];
    for (i, m) in log.iter().enumerate() {
        oracle.step(i as u64 + 1, m, &mut want);
    }
    assert!(want.len() > 100, "{} events", want.len());
    assert!(want.iter().any(|e| e.3) && want.iter().any(|e| !e.3));
    assert_eq!(live, want, "live, in {groups} groups");
    assert_eq!(replayed, want, "replayed");
}

/// A record that does not decode (what a value the codec cannot carry left in the log)
/// stops start-up the same way, and the same flag skips it.
#[test]
fn an_undecodable_record_is_named_and_can_be_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    let db = open(dir.path(), DbOptions::default(), &gate).unwrap();
    assert_eq!(seq_of(&db.commit(upsert(1, "age", CellValue::Int(33)))), 1);
    drop(db);
    {
        let (wal, _) = Wal::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
        // Neither JSON nor any protobuf message (wire type 7 does not exist).
        assert_eq!(wal.append(&[0xff; 12]).unwrap(), 2);
    }
    match open(dir.path(), DbOptions::default(), &gate) {
        Err(e @ DbError::Replay { sequence: 2, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("12 bytes that do not decode") && msg.contains("--skip-sequence 2"), "{msg}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    }
    let db = open(dir.path(), DbOptions { skip_sequences: vec![2], ..DbOptions::default() }, &gate).unwrap();
    assert_eq!(db.read().sequence(), 2);
    assert_eq!(cell(&db, 1, "age"), Some(CellValue::Int(33)));
    assert_eq!(seq_of(&db.commit(upsert(1, "age", CellValue::Int(34)))), 3);
}

/// A watcher never sees an event of a sequence that reads cannot see yet: whenever the
/// event log holds an event of sequence N, the published version is at N or later.
#[test]
fn events_are_never_ahead_of_the_published_version() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    let db = Arc::new(open(dir.path(), DbOptions::default(), &gate).unwrap());
    db.commit(Mutation::CreateSegment {
        id: "old".into(),
        description: String::new(),
        members: vec![],
        definition: Definition::Sql("age >= 50".into()),
    })
    .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            let mut checked = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                // The events first, then the version reads answer from.
                let newest = db
                    .read()
                    .events_since(1, &HashSet::new(), usize::MAX)
                    .unwrap()
                    .last()
                    .map(|e| e.sequence);
                if let Some(n) = newest {
                    let published = db.read().sequence();
                    assert!(
                        published >= n,
                        "event of sequence {n} visible while reads answer from {published}"
                    );
                    checked += 1;
                }
            }
            checked
        })
    };
    // Every write moves 200 customers in or out of the segment.
    let (tx, rx) = mpsc::channel();
    for i in 0..300u64 {
        let age = if i % 2 == 0 { 70 } else { 20 };
        let batch = (1..=200).map(|id| CustomerUpdate {
            customer_id: id,
            attributes: vec![("age".into(), CellValue::Int(age))],
        });
        let tx = tx.clone();
        db.submit(Mutation::Upsert(batch.collect()), move |r| tx.send(r.map(|_| ())).unwrap());
    }
    for _ in 0..300 {
        rx.recv().unwrap().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(watcher.join().unwrap() > 0);
}
