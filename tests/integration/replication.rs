//! Replication over NATS JetStream, with the real binary and a real `nats-server -js`
//! (Debian's; started per test on a free port with its own store dir): a primary
//! (`--replicate`) and read replicas (`--replica-of`).
//!
//! The oracle is independent of segd: the demo table is regenerated here
//! (`segd::gen::generate`, what `serve --demo N` imports) and evaluated row by row
//! (`segd::naive`) with the test's own model of the writes (which customers carry which
//! marker, which were deleted); markers are outside the demo's `loyalty_points` range.
//!
//! Without nats-server these tests skip with a note, except in CI (`CI=true`), where a
//! missing nats-server fails them (scripts/test.sh installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb::{
    self, customer_service_client::CustomerServiceClient, segment_service_client::SegmentServiceClient,
};
use segd::query::{sql, Limits};

pub(super) const ROWS: usize = 3_000;
/// Markers written into `loyalty_points`: far above the demo's values.
pub(super) const MARK: i64 = 500_000_000;

pub(super) type Segs = SegmentServiceClient<Channel>;
pub(super) type Custs = CustomerServiceClient<Channel>;

/// nats-server, or None (with a note) when it is absent outside CI.
pub(super) fn nats_server_bin() -> Option<PathBuf> {
    let found = std::env::var_os("SEGD_NATS_SERVER").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nats-server is not installed, and CI=true: the replication tests must run (apt-get install \
             nats-server; scripts/test.sh does)"
        );
        eprintln!(
            "SKIPPED: the replication tests need nats-server (apt-get install nats-server, or set \
             SEGD_NATS_SERVER); it is not installed"
        );
    }
    found
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (SIGKILL) when dropped.
pub(super) struct Proc {
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

impl Proc {
    pub(super) fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JetStream-enabled nats-server on a free port with its own store dir.
pub(super) struct Nats {
    pub(super) proc: Proc,
    pub(super) url: String,
    pub(super) port: u16,
}

pub(super) fn start_nats(bin: &Path, dir: &Path) -> Nats {
    start_nats_on(bin, dir, free_port(), "nats")
}

/// nats-server on `port` with its store in `dir/js` (the same after a restart).
pub(super) fn start_nats_on(bin: &Path, dir: &Path, port: u16, name: &str) -> Nats {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("js"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("nats-server starts");
    let proc = Proc { child, log };
    let t = Instant::now();
    while !proc.log_text().contains("Server is ready") {
        assert!(t.elapsed() < Duration::from_secs(20), "nats-server did not come up: {}", proc.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    Nats { proc, url: format!("nats://127.0.0.1:{port}"), port }
}

/// A segd node: its process, gRPC address and metrics address.
pub(super) struct Node {
    pub(super) proc: Proc,
    pub(super) addr: SocketAddr,
    pub(super) metrics: SocketAddr,
}

/// `segd serve --demo ROWS` on `data_dir` with `role` (the replication flags).
pub(super) fn spawn_segd(data_dir: &Path, role: &[&str], name: &str) -> Node {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = data_dir.with_extension(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_segd"))
        .args(["serve", "--demo", &ROWS.to_string(), "--http-listen", "off", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &addr.to_string(), "--metrics-listen", &metrics.to_string()])
        .args(["--stream", "segtest"])
        .args(role)
        .env("SEGD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("segd starts");
    Node { proc: Proc { child, log }, addr, metrics }
}

pub(super) async fn connect(node: &mut Node) -> (Segs, Custs) {
    let t = Instant::now();
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{}", node.addr)).unwrap().connect().await {
            let mut s = SegmentServiceClient::new(ch.clone());
            if s.list_segments(pb::ListSegmentsRequest {}).await.is_ok() {
                return (s, CustomerServiceClient::new(ch));
            }
        }
        if let Ok(Some(status)) = node.proc.child.try_wait() {
            panic!("segd exited with {status}: {}", node.proc.log_text());
        }
        assert!(t.elapsed() < Duration::from_secs(90), "segd did not come up: {}", node.proc.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One gauge from the node's `/metrics` (plain HTTP/1.0 over a socket).
pub(super) fn metric(node: &Node, name: &str) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(node.metrics).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The demo table as `serve --demo ROWS` imports it.
pub(super) fn demo() -> Vec<RecordBatch> {
    segd::gen::generate(ROWS, segd::gen::DEFAULT_SEED)
}

pub(super) fn demo_ids(batches: &[RecordBatch]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b.schema().index_of("customer_id").unwrap();
            b.column(i).as_primitive::<UInt64Type>().values().to_vec()
        })
        .collect()
}

/// The test's model of the writes: each written customer's marker, and deleted ids.
#[derive(Default)]
pub(super) struct Model {
    pub(super) marker: BTreeMap<u64, i64>,
    pub(super) deleted: BTreeSet<u64>,
    /// The last sequence a write was acknowledged with.
    pub(super) last_seq: u64,
}

impl Model {
    /// The oracle for a segment that does not read `loyalty_points`: demo rows that match,
    /// row by row, less the deleted ones (customers created by the test have NULLs there
    /// and never match the texts used).
    pub(super) fn count_demo(&self, batches: &[RecordBatch], text: &str) -> u64 {
        let e = sql::parse(text, &Limits::default()).unwrap();
        let mut n = 0;
        for b in batches {
            let ids = b.column(b.schema().index_of("customer_id").unwrap()).as_primitive::<UInt64Type>();
            for row in 0..b.num_rows() {
                if !self.deleted.contains(&ids.value(row))
                    && segd::naive::eval(b, row, &e).unwrap() == Some(true)
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// Customers (not deleted) whose marker is at least `m`.
    pub(super) fn marked_from(&self, m: i64) -> u64 {
        self.marker.iter().filter(|(id, &v)| v >= m && !self.deleted.contains(id)).count() as u64
    }
}

pub(super) fn customer(id: u64, points: i64) -> pb::Customer {
    let v = pb::customer::Value { kind: Some(pb::customer::value::Kind::IntValue(points)) };
    pb::Customer { customer_id: id, attributes: [("loyalty_points".to_string(), v)].into_iter().collect() }
}

/// Upserts `ids` with marker `MARK + g` on the primary and records it in the model.
pub(super) async fn write_batch(c: &mut Custs, model: &mut Model, g: i64, ids: &[u64]) {
    let req =
        pb::UpsertCustomersRequest { customers: ids.iter().map(|&id| customer(id, MARK + g)).collect() };
    let r = c.upsert_customers(req).await.expect("the primary takes the write").into_inner();
    for &id in ids {
        model.marker.insert(id, MARK + g);
        model.deleted.remove(&id);
    }
    model.last_seq = model.last_seq.max(r.sequence);
}

pub(super) async fn count(s: &mut Segs, text: &str) -> u64 {
    let seg = Some(pb::count_segment_request::Segment::Where(text.into()));
    s.count_segment(pb::CountSegmentRequest { segment: seg }).await.expect("counts").into_inner().count
}

/// Waits until the replica reports `seq` applied (its metric), then returns.
pub(super) async fn caught_up(node: &Node, seq: u64) {
    let t = Instant::now();
    loop {
        let applied = metric(node, "segd_replica_applied_sequence");
        if applied == Some(seq) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "replica at {applied:?}, expected {seq}: {}",
            node.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every node must answer like the oracle (not over `tier` or `level`: the demo program
/// owns them, so they are not the generated table's values the oracle reads).
pub(super) const TEXTS: [&str; 4] = [
    "age < 30 AND email_opt_in",
    "country IN ('DE', 'AT') OR income_band = 'high'",
    "NOT push_opt_in",
    "TRUE",
];

/// The replica answers like the primary and like the oracle, segment by segment.
pub(super) async fn same_answers(
    primary: &mut Segs,
    replica: &mut Segs,
    model: &Model,
    batches: &[RecordBatch],
    groups: i64,
) {
    for text in TEXTS {
        let want = model.count_demo(batches, text)
            + if text == "TRUE" {
                model.marker.keys().filter(|id| !demo_has(batches, **id)).count() as u64
            } else {
                0
            };
        assert_eq!(count(primary, text).await, want, "primary: {text}");
        assert_eq!(count(replica, text).await, want, "replica: {text}");
    }
    for g in 0..groups {
        let text = format!("loyalty_points >= {}", MARK + g);
        let want = model.marked_from(MARK + g);
        assert_eq!(count(primary, &text).await, want, "primary: {text}");
        assert_eq!(count(replica, &text).await, want, "replica: {text}");
    }
}

pub(super) fn demo_has(batches: &[RecordBatch], id: u64) -> bool {
    demo_ids(batches).contains(&id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_the_primarys_writes_and_refuses_its_own() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    let mut primary = spawn_segd(&dir.path().join("p"), &["--replicate", &nats.url], "primary");
    let (mut ps, mut pc) = connect(&mut primary).await;
    let mut replica = spawn_segd(&dir.path().join("r"), &["--replica-of", &nats.url], "replica");
    let (mut rs, mut rc) = connect(&mut replica).await;

    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    // Writes of several kinds: upserts (existing and new customers), a delete, a saved segment.
    for g in 0..6i64 {
        let mut these: Vec<u64> = ids.iter().copied().skip(g as usize * 37).step_by(11).take(150).collect();
        these.push(9_000_000_000 + g as u64);
        write_batch(&mut pc, &mut model, g, &these).await;
    }
    // Customers no write of this test touches (an upsert of a deleted id appends a new
    // customer with NULLs, which the model does not describe).
    let gone: Vec<u64> = ids[2_000..].iter().copied().step_by(13).take(60).collect();
    let r = pc.delete_customers(pb::DeleteCustomersRequest { customer_ids: gone.clone() }).await.unwrap();
    model.deleted.extend(gone);
    model.last_seq = model.last_seq.max(r.into_inner().sequence);
    let def = Some(pb::create_segment_request::Definition::Where(format!("loyalty_points >= {}", MARK + 3)));
    ps.create_segment(pb::CreateSegmentRequest {
        segment_id: "hi".into(),
        definition: def,
        description: String::new(),
    })
    .await
    .unwrap();
    write_batch(&mut pc, &mut model, 6, &ids[100..160]).await;

    caught_up(&replica, model.last_seq).await;
    same_answers(&mut ps, &mut rs, &model, &batches, 7).await;
    let saved = rs.get_segment(pb::GetSegmentRequest { segment_id: "hi".into() }).await.unwrap().into_inner();
    assert_eq!(saved.count, model.marked_from(MARK + 3), "the saved segment on the replica");
    let member = rs
        .is_member(pb::IsMemberRequest {
            customer_id: ids[100],
            segment: Some(pb::is_member_request::Segment::SegmentId("hi".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(member.is_member, "a customer of the last write is in the replica's saved segment");
    assert_eq!(metric(&replica, "segd_replica_lag"), Some(0));
    assert_eq!(metric(&replica, "segd_replica_stopped"), Some(0));
    assert_eq!(metric(&replica, "segd_commit_sequence"), Some(model.last_seq));

    // Writes on the replica: FAILED_PRECONDITION naming the primary, nothing applied.
    let err = rc
        .upsert_customers(pb::UpsertCustomersRequest { customers: vec![customer(ids[0], 1)] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&primary.addr.to_string()), "names the primary: {}", err.message());
    assert_eq!(metric(&replica, "segd_commit_sequence"), Some(model.last_seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_killed_primary_in_the_stream() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    let mut primary = spawn_segd(&dir.path().join("p"), &["--replicate", &nats.url], "primary");
    let (_, pc) = connect(&mut primary).await;
    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    // Concurrent writers, so the primary commits groups of several writes.
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..24i64 {
        let mut c = pc.clone();
        let these: Vec<u64> = ids.iter().copied().skip(g as usize * 5).step_by(29).take(80).collect();
        tasks.spawn(async move {
            let req = pb::UpsertCustomersRequest {
                customers: these.iter().map(|&id| customer(id, MARK + g)).collect(),
            };
            (g, these, c.upsert_customers(req).await.expect("acknowledged").into_inner().sequence)
        });
    }
    // Applied in sequence order, as the primary did (later markers overwrite earlier ones).
    let mut done: Vec<(i64, Vec<u64>, u64)> = tasks.join_all().await;
    done.sort_by_key(|d| d.2);
    for (g, these, seq) in done {
        for id in these {
            model.marker.insert(id, MARK + g);
        }
        model.last_seq = model.last_seq.max(seq);
    }
    write_batch(&mut pc.clone(), &mut model, 24, &ids[..50]).await;
    primary.proc.kill9();

    // A new replica, from an empty data dir and the stream from its start.
    let mut replica = spawn_segd(&dir.path().join("r"), &["--replica-of", &nats.url], "replica");
    let (mut rs, _) = connect(&mut replica).await;
    caught_up(&replica, model.last_seq).await;
    // The killed primary, restarted on its data dir: its log and the stream agree.
    let mut primary = spawn_segd(&dir.path().join("p"), &["--replicate", &nats.url], "primary2");
    let (mut ps2, mut pc2) = connect(&mut primary).await;
    same_answers(&mut ps2, &mut rs, &model, &batches, 25).await;
    // And it goes on writing where it stopped.
    write_batch(&mut pc2, &mut model, 25, &ids[50..90]).await;
    caught_up(&replica, model.last_seq).await;
    same_answers(&mut ps2, &mut rs, &model, &batches, 26).await;
    assert_eq!(metric(&replica, "segd_replica_stopped"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_resumes_from_its_own_sequence() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    let mut primary = spawn_segd(&dir.path().join("p"), &["--replicate", &nats.url], "primary");
    let (mut ps, mut pc) = connect(&mut primary).await;
    let rdir = dir.path().join("r");
    let role = ["--replica-of", nats.url.as_str(), "--replica-name", "r1", "--snapshot-every", "100"];
    let mut replica = spawn_segd(&rdir, &role, "replica");
    connect(&mut replica).await;
    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    for g in 0..5i64 {
        write_batch(&mut pc, &mut model, g, &ids[g as usize * 40..g as usize * 40 + 60]).await;
    }
    caught_up(&replica, model.last_seq).await;
    replica.proc.kill9();
    // Written while the replica is down.
    for g in 5..10i64 {
        write_batch(&mut pc, &mut model, g, &ids[g as usize * 40..g as usize * 40 + 60]).await;
    }
    let mut replica = spawn_segd(&rdir, &role, "replica2");
    let (mut rs, _) = connect(&mut replica).await;
    caught_up(&replica, model.last_seq).await;
    same_answers(&mut ps, &mut rs, &model, &batches, 10).await;
    // Nothing applied twice: the replica's own log took each record once, under the
    // stream's sequence (an extra apply would have moved it past the primary's).
    assert_eq!(metric(&replica, "segd_commit_sequence"), Some(model.last_seq));
    assert_eq!(metric(&replica, "segd_replica_stopped"), Some(0));
    let log = replica.proc.log_text();
    assert!(log.contains("following the primary's stream"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_jetstream_never_acknowledged_stops_writes_until_a_restart_publishes_it() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut nats = start_nats(&bin, dir.path());
    let primary_role = ["--replicate", nats.url.as_str(), "--replicate-timeout-ms", "1000"];
    let mut primary = spawn_segd(&dir.path().join("p"), &primary_role, "primary");
    let (_, mut pc) = connect(&mut primary).await;
    let mut replica = spawn_segd(&dir.path().join("r"), &["--replica-of", &nats.url], "replica");
    let (mut rs, _) = connect(&mut replica).await;
    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    write_batch(&mut pc, &mut model, 0, &ids[..60]).await;
    caught_up(&replica, model.last_seq).await;

    // JetStream gone: the write is logged locally but never acknowledged by the stream.
    nats.proc.kill9();
    let unacked: Vec<u64> = ids[60..120].to_vec();
    let req =
        pb::UpsertCustomersRequest { customers: unacked.iter().map(|&id| customer(id, MARK + 1)).collect() };
    let err = pc.upsert_customers(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("stream 'segtest'"), "{}", err.message());
    // The primary does not run ahead of the stream: no later write is taken.
    let req = pb::UpsertCustomersRequest { customers: vec![customer(ids[200], MARK + 2)] };
    assert_eq!(pc.upsert_customers(req).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(metric(&primary, "segd_commit_sequence"), Some(model.last_seq));
    assert_eq!(metric(&replica, "segd_replica_applied_sequence"), Some(model.last_seq));

    // NATS back, the primary restarted: its log holds the write, it publishes it first.
    let nats = start_nats_on(&bin, dir.path(), nats.port, "nats2");
    primary.proc.kill9();
    let mut primary = spawn_segd(&dir.path().join("p"), &primary_role, "primary2");
    let (mut ps, _) = connect(&mut primary).await;
    // Said while it opens, before it serves; polled so a slow host cannot race the read.
    let t = Instant::now();
    while !primary.proc.log_text().contains("publishing logged records the stream does not hold yet") {
        assert!(t.elapsed() < Duration::from_secs(15), "not republished: {}", primary.proc.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &id in &unacked {
        model.marker.insert(id, MARK + 1);
    }
    model.last_seq += 1;
    // The replica reconnected by itself and applied it.
    caught_up(&replica, model.last_seq).await;
    same_answers(&mut ps, &mut rs, &model, &batches, 2).await;
    assert_eq!(metric(&replica, "segd_replica_stopped"), Some(0));
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_starts_from_the_object_store_snapshot_of_a_trimmed_stream() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    // A snapshot after every write: each is uploaded, and the stream trimmed behind them.
    let role = ["--replicate", nats.url.as_str(), "--snapshot-every", "50"];
    let mut primary = spawn_segd(&dir.path().join("p"), &role, "primary");
    let (mut ps, mut pc) = connect(&mut primary).await;
    let batches = demo();
    let ids = demo_ids(&batches);
    let mut model = Model::default();
    let t = Instant::now();
    let mut g = 0i64;
    // Write until the stream has been trimmed (the primary says so), so a replica cannot
    // have replayed it from its first record.
    while !primary.proc.log_text().contains("stream trimmed before the previous snapshot") {
        assert!(t.elapsed() < Duration::from_secs(60), "no trim: {}", primary.proc.log_text());
        let at = (g as usize * 60) % 2_400;
        write_batch(&mut pc, &mut model, g, &ids[at..at + 60]).await;
        g += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    write_batch(&mut pc, &mut model, g, &ids[2_400..2_460]).await;
    let mut replica = spawn_segd(&dir.path().join("r"), &["--replica-of", &nats.url], "replica");
    let (mut rs, _) = connect(&mut replica).await;
    caught_up(&replica, model.last_seq).await;
    let log = replica.proc.log_text();
    assert!(log.contains("data dir seeded from the stream's object store snapshot"), "{log}");
    assert!(!log.contains("generating a demo customer base"), "the replica imported instead: {log}");
    same_answers(&mut ps, &mut rs, &model, &batches, g + 1).await;
    assert_eq!(metric(&replica, "segd_replica_stopped"), Some(0));
}
