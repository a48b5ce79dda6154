//! Cluster members over an in-memory shared log (the same contract as the JetStream
//! stream: a record is stored only right after its predecessor) with a follower thread
//! per node: writes to either node land once, in one order, on both; a race for one
//! segment id is lost by one writer only, with its error, and both nodes agree; a write
//! behind a node that does not follow fails after its patience, applying nothing.
//!
//! The oracle is the test's own: each node's answer (its sequence) orders the writes,
//! and the model replays them by that order into a map of customer -> age.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use super::{PublishFailure, Published, SharedLog};
use crate::db::{Db, DbError, DbOptions};
use crate::engine::tests::table;
use crate::engine::{EngineError, Mutation};
use crate::persist::record;
use crate::segments::{Definition, SegmentError};
use crate::store::mutate::{CellValue, CustomerUpdate};

#[derive(Debug)]
struct MemLog {
    records: Mutex<Vec<Vec<u8>>>,
    grew: Condvar,
    limit: usize,
    down: AtomicBool,
    patience: Duration,
}

impl MemLog {
    fn new(limit: usize, patience: Duration) -> Arc<MemLog> {
        Arc::new(MemLog {
            records: Mutex::default(),
            grew: Condvar::new(),
            limit,
            down: AtomicBool::new(false),
            patience,
        })
    }

    fn len(&self) -> u64 {
        self.records.lock().unwrap().len() as u64
    }
}

impl SharedLog for MemLog {
    fn open(&self, last: u64) -> Result<(), String> {
        let len = self.len();
        if len < last {
            return Err(format!("the log ends at {len}, the data dir at {last}"));
        }
        Ok(())
    }

    fn max_record_bytes(&self) -> usize {
        self.limit
    }

    fn publish(&self, after: u64, records: &[&[u8]]) -> Published {
        if self.down.load(Ordering::SeqCst) {
            return Published { stored: 0, failure: Some(PublishFailure::Failed("the log is down".into())) };
        }
        let mut log = self.records.lock().unwrap();
        let mut stored = 0;
        for r in records {
            if log.len() as u64 != after + stored as u64 {
                return Published { stored, failure: Some(PublishFailure::Behind) };
            }
            log.push(r.to_vec());
            stored += 1;
        }
        self.grew.notify_all();
        Published { stored, failure: None }
    }

    fn patience(&self) -> Duration {
        self.patience
    }
}

/// A node: its database and its follower thread (paused on demand).
struct Node {
    db: Arc<Db>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn open(dir: &std::path::Path, log: &Arc<MemLog>) -> Result<Node, DbError> {
        let opts = DbOptions {
            data_dir: dir.to_path_buf(),
            shared: Some(log.clone() as Arc<dyn SharedLog>),
            ..DbOptions::default()
        };
        let db = Arc::new(Db::open(opts, || Ok(table(200)), |_| {})?);
        let (paused, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let follower = {
            let (db, log, paused, stop) = (db.clone(), log.clone(), paused.clone(), stop.clone());
            std::thread::spawn(move || follow(&db, &log, &paused, &stop))
        };
        Ok(Node { db, paused, stop, follower: Some(follower) })
    }

    fn age(&self, id: u64) -> Option<CellValue> {
        self.db.read().data().customer(id)?.into_iter().find(|(a, _)| a == "age").map(|(_, v)| v)
    }

    fn wait_for(&self, seq: u64) {
        let t = std::time::Instant::now();
        while self.db.read().sequence() < seq {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "node at {}, not {seq}",
                self.db.read().sequence()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.follower.take() {
            h.join().unwrap();
        }
    }
}

/// Delivers the log's records after the node's applied sequence, in order, each once.
fn follow(db: &Db, log: &MemLog, paused: &AtomicBool, stop: &AtomicBool) {
    let mut next = db.read().sequence() + 1;
    while !stop.load(Ordering::SeqCst) {
        let batch: Vec<(u64, Vec<u8>)> = {
            let records = log.records.lock().unwrap();
            let records = if records.len() < next as usize || paused.load(Ordering::SeqCst) {
                log.grew.wait_timeout(records, Duration::from_millis(5)).unwrap().0
            } else {
                records
            };
            if paused.load(Ordering::SeqCst) {
                continue;
            }
            records
                .iter()
                .enumerate()
                .skip(next as usize - 1)
                .map(|(i, b)| (i as u64 + 1, b.clone()))
                .collect()
        };
        let (tx, rx) = mpsc::channel();
        for (seq, bytes) in batch {
            let m = record::decode_mutation(record::FORMAT, &bytes).unwrap();
            let tx = tx.clone();
            db.submit_replicated(seq, bytes, m, move |r| {
                let _ = tx.send(r);
            });
            next = seq + 1;
        }
        drop(tx);
        for r in rx {
            match r {
                Ok(()) => {}
                Err(DbError::Closed) => return,
                Err(e) => panic!("a record of the log does not apply: {e}"),
            }
        }
    }
}

fn upsert(ids: impl Iterator<Item = u64>, age: i64) -> Mutation {
    Mutation::Upsert(
        ids.map(|id| CustomerUpdate {
            customer_id: id,
            attributes: vec![("age".into(), CellValue::Int(age))],
        })
        .collect(),
    )
}

fn create(id: &str, text: &str) -> Mutation {
    Mutation::CreateSegment {
        id: id.into(),
        description: String::new(),
        members: vec![],
        definition: Definition::Sql(text.into()),
    }
}

#[test]
fn writes_to_either_node_apply_once_in_one_order_on_both() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let log = MemLog::new(1 << 20, Duration::from_secs(10));
    let nodes: Vec<Arc<Node>> = dirs.iter().map(|d| Arc::new(Node::open(d.path(), &log).unwrap())).collect();
    // Two writers per node at once, overlapping ids: they race for the log's next record.
    let mut writers = vec![];
    for w in 0..4u64 {
        let node = nodes[(w % 2) as usize].clone();
        writers.push(std::thread::spawn(move || {
            let mut acked = vec![];
            for i in 0..40u64 {
                // Distinct ages that fit the table's UInt8 `age`.
                let age = (w * 60 + i) as i64;
                let ids: Vec<u64> = (0..5).map(|k| 1 + (i * 7 + k * 13 + w) % 150).collect();
                let c =
                    node.db.commit(upsert(ids.iter().copied(), age)).expect("a write is taken by any node");
                // Read-your-writes on the node written to: its version holds the write.
                assert!(node.db.read().sequence() >= c.sequence);
                acked.push((c.sequence, ids, age));
            }
            acked
        }));
    }
    let mut acked: Vec<(u64, Vec<u64>, i64)> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    acked.sort_by_key(|a| a.0);
    let seqs: Vec<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(seqs, (1..=160).collect::<Vec<u64>>(), "every write once, no gap");
    assert_eq!(log.len(), 160);
    let mut model: BTreeMap<u64, i64> = BTreeMap::new();
    for (_, ids, age) in &acked {
        for id in ids {
            model.insert(*id, *age);
        }
    }
    for node in &nodes {
        node.wait_for(160);
        for (id, age) in &model {
            assert_eq!(node.age(*id), Some(CellValue::Int(*age)), "customer {id}");
        }
    }
    // The local logs hold the shared log's bytes under its sequences: a restarted node
    // replays its own log and follows on.
    drop(nodes);
    let node = Node::open(dirs[0].path(), &log).unwrap();
    assert_eq!(node.db.read().sequence(), 160);
    let c = node.db.commit(upsert(1..3, 7)).unwrap();
    assert_eq!(c.sequence, 161);
    assert_eq!(node.age(2), Some(CellValue::Int(7)));
}

#[test]
fn a_race_for_one_segment_id_is_lost_by_one_writer_and_both_nodes_agree() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let log = MemLog::new(1 << 20, Duration::from_secs(10));
    let a = Node::open(dirs[0].path(), &log).unwrap();
    let b = Node::open(dirs[1].path(), &log).unwrap();
    // b does not see a's record yet: its write is checked against the state before it.
    b.paused.store(true, Ordering::SeqCst);
    assert_eq!(a.db.commit(create("x", "age < 30")).unwrap().sequence, 1);
    let (tx, rx) = mpsc::channel();
    b.db.submit(create("x", "age >= 30"), move |r| tx.send(r).unwrap());
    // It lost the race for sequence 1 and waits for that record.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "waits while b lags");
    b.paused.store(false, Ordering::SeqCst);
    match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
        Err(DbError::Rejected(EngineError::Segment(SegmentError::Exists(id)))) => assert_eq!(id, "x"),
        other => panic!("expected 'x' exists, got {other:?}"),
    }
    assert_eq!(log.len(), 1, "the losing write is not in the log");
    for node in [&a, &b] {
        node.wait_for(1);
        let state = node.db.read();
        assert_eq!(state.segments().get("x").unwrap().definition, Definition::Sql("age < 30".into()));
        assert_eq!(state.sequence(), 1);
    }
    // b takes writes again, and a applies them.
    assert_eq!(b.db.commit(create("y", "age >= 30")).unwrap().sequence, 2);
    a.wait_for(2);
    assert!(a.db.read().segments().get("y").is_ok());
}

#[test]
fn a_write_behind_a_node_that_does_not_follow_fails_after_its_patience() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let log = MemLog::new(1 << 20, Duration::from_millis(300));
    let a = Node::open(dirs[0].path(), &log).unwrap();
    let b = Node::open(dirs[1].path(), &log).unwrap();
    b.paused.store(true, Ordering::SeqCst);
    a.db.commit(upsert(1..2, 11)).unwrap();
    let t = std::time::Instant::now();
    match b.db.commit(upsert(1..2, 22)) {
        Err(DbError::NotShared(why)) => assert!(why.contains("following"), "{why}"),
        other => panic!("expected NotShared, got {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(log.len(), 1);
    assert_eq!(b.db.read().sequence(), 0, "nothing applied on b");
    assert!(b.db.fault().is_none(), "a write that lost does not stop writes");
    b.paused.store(false, Ordering::SeqCst);
    b.wait_for(1);
    assert_eq!(b.age(1), Some(CellValue::Int(11)));
    assert_eq!(b.db.commit(upsert(1..2, 22)).unwrap().sequence, 2);
}

#[test]
fn a_record_too_large_or_a_log_down_is_refused_and_nothing_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let small = upsert(1..2, 20);
    let mut buf = vec![];
    record::encode_mutation(&small, &mut buf);
    let log = MemLog::new(buf.len(), Duration::from_secs(1));
    let a = Node::open(dir.path(), &log).unwrap();
    match a.db.commit(upsert(1..100, 20)) {
        Err(DbError::ReplicaRecordTooLarge { bytes, limit }) => assert!(bytes > limit && limit == buf.len()),
        other => panic!("expected ReplicaRecordTooLarge, got {other:?}"),
    }
    log.down.store(true, Ordering::SeqCst);
    assert!(matches!(a.db.commit(small.clone()), Err(DbError::NotShared(_))));
    assert_eq!((log.len(), a.db.read().sequence()), (0, 0));
    log.down.store(false, Ordering::SeqCst);
    assert_eq!(a.db.commit(small).unwrap().sequence, 1, "the next write takes sequence 1");
    assert!(a.db.fault().is_none());
}

#[test]
fn a_log_that_ends_before_the_data_dir_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemLog::new(1 << 20, Duration::from_secs(1));
    {
        let a = Node::open(dir.path(), &log).unwrap();
        a.db.commit(upsert(1..2, 20)).unwrap();
    }
    let other = MemLog::new(1 << 20, Duration::from_secs(1));
    match Node::open(dir.path(), &other) {
        Err(DbError::Replication(why)) => assert!(why.contains("ends at 0"), "{why}"),
        Err(e) => panic!("expected Replication, got {e}"),
        Ok(_) => panic!("expected Replication, got a node"),
    }
}
