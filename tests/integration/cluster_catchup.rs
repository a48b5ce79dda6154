//! Cluster members catching up (issue 15's bench found a member seeded from a snapshot that
//! never applied a record): a member starting from an old snapshot of a long log with
//! large records replays it and then stays up while the log is idle; a wiped member
//! rejoins from the object-store snapshot of a trimmed stream plus its tail. Real binary,
//! real `nats-server -js`.
//!
//! The oracle is replication.rs's: the demo table regenerated and evaluated row by row,
//! plus the test's model of its writes; the stream's true last sequence is the writing
//! member's commit sequence (every write went through it).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::cluster::{converged, member, member_with};
use super::replication::{
    connect, count, customer, demo, demo_ids, metric, nats_server_bin, same_answers, start_nats, write_batch,
    Model, Node, MARK,
};
use segd::grpc::pb;

/// How many records the old follower could never catch up past: its 1024-record pulls
/// stalled at the server's default max_ack_pending of 1000.
const LONG_LOG: usize = 1_100;

/// A customer whose `city` is `len` bytes of `c` (with its marker): a large record.
fn big_customer(id: u64, points: i64, c: char, len: usize) -> pb::Customer {
    let mut cust = customer(id, points);
    let v =
        pb::customer::Value { kind: Some(pb::customer::value::Kind::StringValue(c.to_string().repeat(len))) };
    cust.attributes.insert("city".into(), v);
    cust
}

/// Applied sequence, stream's last sequence and lag, from one scrape of `/metrics`.
fn replica_gauges(node: &Node) -> [u64; 3] {
    let mut s = std::net::TcpStream::connect(node.metrics).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let gauge = |name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap()
    };
    ["segd_replica_applied_sequence", "segd_replica_stream_last_sequence", "segd_replica_lag"].map(gauge)
}

/// Waits for `text` in the node's log.
async fn logged(node: &Node, text: &str) {
    let t = Instant::now();
    while !node.proc.log_text().contains(text) {
        assert!(t.elapsed() < Duration::from_secs(30), "no '{text}' in: {}", node.proc.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sequence of the snapshot a member's data dir was seeded from, from its log.
fn seeded_from(node: &Node) -> Option<u64> {
    let log = node.proc.log_text();
    let line = log.lines().find(|l| l.contains("data dir seeded from the stream's object store snapshot"))?;
    line.split("sequence=").nth(1)?.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_from_an_old_snapshot_replays_a_long_log_of_large_records_and_stays_up_while_idle() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    let mut a = member(dir.path(), &nats.url, "a", "a");
    let (mut a_s, a_c) = connect(&mut a).await;
    // The import's snapshot, the one a new member starts from: everything after it is
    // the log it must replay.
    logged(&a, "snapshot uploaded").await;
    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    // More records than one old pull could take, written by 16 clients at once (one
    // customer each, every customer once: the order between them does not matter).
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16usize {
        let mut c = a_c.clone();
        let mine: Vec<(usize, u64)> =
            ids.iter().copied().enumerate().take(LONG_LOG).skip(w).step_by(16).collect();
        tasks.spawn(async move {
            let mut acked = vec![];
            for (i, id) in mine {
                let g = (i % 5) as i64;
                let req = pb::UpsertCustomersRequest { customers: vec![customer(id, MARK + g)] };
                acked.push((
                    id,
                    g,
                    c.upsert_customers(req).await.expect("a takes the write").into_inner().sequence,
                ));
            }
            acked
        });
    }
    for (id, g, seq) in tasks.join_all().await.into_iter().flatten() {
        model.marker.insert(id, MARK + g);
        model.last_seq = model.last_seq.max(seq);
    }
    // Large records: 20 of about 600 KB (under the server's 1 MB max_payload), more bytes
    // together than one pull asks for.
    let mut a_c = a_c;
    for w in 0..20u64 {
        let c = char::from(b'a' + w as u8);
        let customers = (0..10).map(|k| big_customer(8_000_000_000 + k, MARK + 5, c, 60_000)).collect();
        let r = a_c.upsert_customers(pb::UpsertCustomersRequest { customers }).await.expect("a large write");
        model.last_seq = model.last_seq.max(r.into_inner().sequence);
    }
    for k in 0..10 {
        model.marker.insert(8_000_000_000 + k, MARK + 5);
    }
    let last = metric(&a, "segd_commit_sequence").unwrap();
    assert_eq!(
        last, model.last_seq,
        "every record of the stream is one of a's acknowledged writes or its setup"
    );
    assert!(last > LONG_LOG as u64, "{last}");

    let mut fresh = member(dir.path(), &nats.url, "fresh", "fresh");
    let (mut f_s, _) = connect(&mut fresh).await;
    // While it catches up, its lag is the stream's true last sequence less what it applied.
    let t = Instant::now();
    loop {
        let [applied, stream_last, lag] = replica_gauges(&fresh);
        // Both 0 before the follower's first look at the stream.
        assert!(
            stream_last == last || (stream_last == 0 && applied == 0),
            "stream last {stream_last}, truly {last}"
        );
        assert_eq!(lag, stream_last - applied);
        if applied == last {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "fresh at {applied} of {last}: {}",
            fresh.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    converged(&[&a, &fresh], last).await;
    let seeded = seeded_from(&fresh).unwrap_or_else(|| panic!("not seeded: {}", fresh.proc.log_text()));
    assert!(last - seeded > LONG_LOG as u64, "it replayed the long log (seeded at {seeded} of {last})");
    same_answers(&mut a_s, &mut f_s, &model, &batches, 6).await;

    // Idle for longer than a pull's expiry and grace together: nothing restarts.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let log = fresh.proc.log_text();
    assert_eq!(
        log.matches("following the primary's stream stream=").count(),
        1,
        "one consumer for good: {log}"
    );
    assert!(!log.contains("retrying"), "{log}");
    assert_eq!(metric(&fresh, "segd_replica_lag"), Some(0));
    assert_eq!(metric(&fresh, "segd_replica_stream_last_sequence"), Some(last));
    // And it still follows: a write on a reaches it.
    write_batch(&mut a_c, &mut model, 6, &ids[2_000..2_050]).await;
    converged(&[&a, &fresh], model.last_seq).await;
    let text = format!("loyalty_points >= {}", MARK + 6);
    assert_eq!(count(&mut f_s, &text).await, 50);
    same_answers(&mut a_s, &mut f_s, &model, &batches, 7).await;
    assert_eq!(metric(&fresh, "segd_replica_stopped"), Some(0));
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_rejoins_from_the_object_store_snapshot_and_the_stream_tail() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    // A snapshot after every write: each is uploaded, and the stream trimmed behind them.
    let snap = ["--snapshot-every", "50"];
    let mut a = member_with(dir.path(), &nats.url, "a", "a", &snap);
    let (mut a_s, mut a_c) = connect(&mut a).await;
    let mut b = member_with(dir.path(), &nats.url, "b", "b", &snap);
    let (_, mut b_c) = connect(&mut b).await;
    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    let t = Instant::now();
    let mut g = 0i64;
    // Write (to both members in turn) until the stream has been trimmed, so a member
    // cannot replay it from its first record.
    while !a.proc.log_text().contains("stream trimmed before the previous snapshot") {
        assert!(t.elapsed() < Duration::from_secs(60), "no trim: {}", a.proc.log_text());
        let at = (g as usize * 60) % 2_400;
        let c = if g % 2 == 0 { &mut a_c } else { &mut b_c };
        write_batch(c, &mut model, g, &ids[at..at + 60]).await;
        g += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    converged(&[&a, &b], model.last_seq).await;

    // b wiped: killed, its data dir deleted; a goes on writing meanwhile.
    b.proc.kill9();
    std::fs::remove_dir_all(dir.path().join("b")).unwrap();
    for _ in 0..3 {
        write_batch(&mut a_c, &mut model, g, &ids[2_400 + g as usize % 10 * 50..][..50]).await;
        g += 1;
    }
    let mut b = member_with(dir.path(), &nats.url, "b", "b2", &snap);
    let (mut b_s, mut b_c) = connect(&mut b).await;
    converged(&[&a, &b], model.last_seq).await;
    let log = b.proc.log_text();
    let seeded = seeded_from(&b).unwrap_or_else(|| panic!("not seeded: {log}"));
    assert!(seeded > 0, "from a snapshot of the trimmed stream, not the import's: {log}");
    assert!(!log.contains("generating a demo customer base"), "it imported instead: {log}");
    same_answers(&mut a_s, &mut b_s, &model, &batches, g).await;
    // It takes writes again, and a sees them.
    write_batch(&mut b_c, &mut model, g, &ids[2_900..2_950]).await;
    converged(&[&a, &b], model.last_seq).await;
    same_answers(&mut a_s, &mut b_s, &model, &batches, g + 1).await;
    for n in [&a, &b] {
        assert_eq!(metric(n, "segd_replica_stopped"), Some(0));
    }
    drop(nats);
}
