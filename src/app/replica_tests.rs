//! `wait_applied` (the `segd-min-sequence` of reads) and `replica_status` on a live
//! standalone App: a wait resolves when the sequence is committed, and only then; a
//! sequence never reached fails after the configured wait, naming both sequences.

use std::time::{Duration, Instant};

use super::{ReplicaReport, Role};
use crate::app::{App, AppError, Config};
use crate::db::DbOptions;
use crate::engine::tests::table;
use crate::store::mutate::{CellValue, CustomerUpdate};

fn open(dir: &std::path::Path, wait: Duration) -> App {
    let opts = DbOptions { data_dir: dir.to_path_buf(), ..DbOptions::default() };
    let config = Config { min_sequence_wait: wait, ..Config::default() };
    App::open(opts, || Ok(table(100)), config).unwrap()
}

fn upsert(id: u64, age: i64) -> CustomerUpdate {
    CustomerUpdate { customer_id: id, attributes: vec![("age".into(), CellValue::Int(age))] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waits_for_its_min_sequence_and_no_longer() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), Duration::from_secs(10));
    assert_eq!(
        app.replica_status(),
        ReplicaReport {
            role: Role::Standalone,
            applied: 0,
            stream_last: 0,
            takes_writes: true,
            stopped: None,
            catching_up: false
        }
    );
    app.wait_applied(0).await.unwrap();
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move { app.wait_applied(2).await })
    };
    app.upsert(vec![upsert(1, 10)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "sequence 1 is not 2");
    app.upsert(vec![upsert(2, 20)]).await.unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(app.replica_status().applied, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_never_reached_fails_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), Duration::from_millis(200));
    let t = Instant::now();
    match app.wait_applied(5).await {
        Err(AppError::NotApplied { min_sequence: 5, applied: 0, waited_ms: 200 }) => {}
        other => panic!("expected NotApplied, got {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
}
