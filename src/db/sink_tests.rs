//! The replication seam with an in-memory [`GroupSink`]: what it receives is exactly what
//! the local log holds (bytes and sequences, read back by `Wal::open`), a record too large
//! for it is refused before it is logged, and a failed append stops writes without
//! publishing the group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::GroupSink;
use crate::db::{Db, DbError, DbOptions};
use crate::engine::tests::table;
use crate::engine::Mutation;
use crate::persist::{record, Wal, WalOptions};
use crate::store::mutate::{CellValue, CustomerUpdate};

#[derive(Debug)]
struct Memory {
    records: Mutex<Vec<(u64, Vec<u8>)>>,
    opened_at: Mutex<Option<u64>>,
    fail: AtomicBool,
    limit: usize,
}

impl Memory {
    fn new(limit: usize) -> Arc<Memory> {
        Arc::new(Memory {
            records: Mutex::default(),
            opened_at: Mutex::default(),
            fail: AtomicBool::new(false),
            limit,
        })
    }
}

impl GroupSink for Memory {
    fn open(&self, last: u64, _local: &crate::persist::Replay) -> Result<(), String> {
        *self.opened_at.lock().unwrap() = Some(last);
        Ok(())
    }

    fn max_record_bytes(&self) -> usize {
        self.limit
    }

    fn append(&self, records: &[(u64, &[u8])]) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("the sink is down".into());
        }
        self.records.lock().unwrap().extend(records.iter().map(|(s, b)| (*s, b.to_vec())));
        Ok(())
    }
}

fn upsert(ids: std::ops::Range<u64>, v: i64) -> Mutation {
    Mutation::Upsert(
        ids.map(|id| CustomerUpdate { customer_id: id, attributes: vec![("age".into(), CellValue::Int(v))] })
            .collect(),
    )
}

fn open_with(dir: &std::path::Path, sink: &Arc<Memory>) -> Db {
    let opts = DbOptions {
        data_dir: dir.to_path_buf(),
        replicate: Some(sink.clone() as Arc<dyn GroupSink>),
        ..DbOptions::default()
    };
    Db::open(opts, || Ok(table(200)), |_| {}).unwrap()
}

/// The local log's records, read back from disk.
fn local_log(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    Wal::open(&dir.join("wal"), WalOptions::default()).unwrap().1.records
}

#[test]
fn the_sink_receives_every_group_as_the_local_log_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Memory::new(1 << 20);
    let db = open_with(dir.path(), &sink);
    assert_eq!(*sink.opened_at.lock().unwrap(), Some(0), "opened at the empty log's last sequence");
    let writes = [upsert(1..4, 20), upsert(3..9, 30), upsert(50..51, 40)];
    for (i, m) in writes.iter().enumerate() {
        assert_eq!(db.commit(m.clone()).unwrap().sequence, i as u64 + 1);
    }
    let sent = sink.records.lock().unwrap().clone();
    assert_eq!(sent.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    for ((_, bytes), m) in sent.iter().zip(&writes) {
        assert_eq!(&record::decode_mutation(record::FORMAT, bytes).unwrap(), m);
    }
    drop(db);
    assert_eq!(local_log(dir.path()), sent, "the same bytes under the same sequences");
    // Reopened: the sink is told where the local log ends.
    let db = open_with(dir.path(), &sink);
    assert_eq!(*sink.opened_at.lock().unwrap(), Some(3));
    assert_eq!(db.read().sequence(), 3);
}

#[test]
fn a_record_too_large_for_the_sink_is_refused_before_it_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let small = upsert(1..2, 20);
    let big = upsert(1..100, 20);
    let mut buf = vec![];
    record::encode_mutation(&small, &mut buf);
    let limit = buf.len();
    let sink = Memory::new(limit);
    let db = open_with(dir.path(), &sink);
    match db.commit(big) {
        Err(DbError::ReplicaRecordTooLarge { bytes, limit: l }) => assert!(bytes > limit && l == limit),
        other => panic!("expected ReplicaRecordTooLarge, got {other:?}"),
    }
    // Nothing logged for it: the next write takes sequence 1.
    assert_eq!(db.commit(small).unwrap().sequence, 1);
    assert_eq!(sink.records.lock().unwrap().len(), 1);
    assert!(db.fault().is_none(), "a refused record does not stop writes");
}

#[test]
fn a_failed_append_stops_writes_and_publishes_nothing_of_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Memory::new(1 << 20);
    let db = open_with(dir.path(), &sink);
    db.commit(upsert(1..2, 20)).unwrap();
    sink.fail.store(true, Ordering::SeqCst);
    let age_of_1 =
        |db: &Db| db.read().data().customer(1).unwrap().into_iter().find(|(a, _)| a == "age").unwrap().1;
    assert!(matches!(db.commit(upsert(1..2, 77)), Err(DbError::ApplyFailed(_))));
    assert_eq!(db.read().sequence(), 1, "the group is not published");
    assert_eq!(age_of_1(&db), CellValue::Int(20));
    sink.fail.store(false, Ordering::SeqCst);
    assert!(
        matches!(db.commit(upsert(2..3, 20)), Err(DbError::Poisoned(_))),
        "no write runs ahead of the sink"
    );
    assert!(db.fault().unwrap().reason.contains("the sink is down"));
    drop(db);
    // The local log holds it (a restart reconciles the sink: `GroupSink::open`).
    assert_eq!(local_log(dir.path()).iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
}
