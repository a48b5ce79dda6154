//! Real-time updates end to end (issue 5): the server on a temporary data dir, called
//! with real tonic clients. Laws:
//! - a write is visible to every read as soon as it is acknowledged (ad-hoc `where`
//!   counts, saved segments' counts and memberships, SegmentsOf);
//! - a rejected batch changes nothing;
//! - WatchSegments' ENTERED / LEFT events are exactly the difference of materialised
//!   membership before and after each batch, with no gap across a resume;
//! - readers never see part of a batch;
//! - after SIGKILL and restart every acknowledged batch is present and no batch is half
//!   applied (the real binary, killed repeatedly).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use segd::db::DbOptions;
use segd::grpc::pb::{
    self, customer_service_client::CustomerServiceClient, segment_service_client::SegmentServiceClient,
};
use segd::server::{Config, Server};
use segd::store::Dataset;

const ROWS: usize = 20_000;

type Segs = SegmentServiceClient<Channel>;
type Custs = CustomerServiceClient<Channel>;

/// A server on a fresh data dir, serving on 127.0.0.1 in the test's runtime.
struct Live {
    addr: SocketAddr,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Live {
    async fn start(config: Config, event_capacity: usize) -> Live {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = DbOptions { data_dir: dir.path().to_path_buf(), event_capacity, ..DbOptions::default() };
        let server = tokio::task::block_in_place(|| {
            Server::open(
                opts,
                || {
                    let batches = segd::gen::generate(ROWS, 11);
                    Ok(Dataset::from_batches(
                        segd::gen::schema(),
                        batches.into_iter().map(Ok),
                        "customer_id",
                    )?)
                },
                config,
            )
        })
        .expect("data dir opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server.clone().serve(listener, std::future::pending()));
        Live { addr, server, _dir: dir }
    }

    async fn clients(&self) -> (Segs, Custs) {
        let ch =
            Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connects");
        (SegmentServiceClient::new(ch.clone()), CustomerServiceClient::new(ch))
    }
}

fn int(i: i64) -> pb::customer::Value {
    pb::customer::Value { kind: Some(pb::customer::value::Kind::IntValue(i)) }
}

fn string(s: &str) -> pb::customer::Value {
    pb::customer::Value { kind: Some(pb::customer::value::Kind::StringValue(s.into())) }
}

fn customer(id: u64, attrs: &[(&str, pb::customer::Value)]) -> pb::Customer {
    pb::Customer {
        customer_id: id,
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn batch(ids: impl IntoIterator<Item = u64>, attr: &str, v: i64) -> pb::UpsertCustomersRequest {
    pb::UpsertCustomersRequest {
        customers: ids.into_iter().map(|id| customer(id, &[(attr, int(v))])).collect(),
    }
}

async fn upsert(
    c: &mut Custs,
    req: pb::UpsertCustomersRequest,
) -> Result<pb::UpsertCustomersResponse, Status> {
    c.upsert_customers(req).await.map(|r| r.into_inner())
}

async fn count_where(s: &mut Segs, text: &str) -> u64 {
    let seg = Some(pb::count_segment_request::Segment::Where(text.into()));
    s.count_segment(pb::CountSegmentRequest { segment: seg }).await.expect("counts").into_inner().count
}

async fn count_id(s: &mut Segs, id: &str) -> Result<u64, Status> {
    let seg = Some(pb::count_segment_request::Segment::SegmentId(id.into()));
    s.count_segment(pb::CountSegmentRequest { segment: seg }).await.map(|r| r.into_inner().count)
}

async fn member_id(s: &mut Segs, id: &str, customer_id: u64) -> pb::IsMemberResponse {
    let seg = Some(pb::is_member_request::Segment::SegmentId(id.into()));
    s.is_member(pb::IsMemberRequest { customer_id, segment: seg }).await.expect("answers").into_inner()
}

/// The members among `ids` of saved segment `id` (BatchIsMember on its materialised set).
async fn members_of(s: &mut Segs, id: &str, ids: &[u64]) -> BTreeSet<u64> {
    let seg = Some(pb::batch_is_member_request::Segment::SegmentId(id.into()));
    let r = s
        .batch_is_member(pb::BatchIsMemberRequest { customer_ids: ids.to_vec(), segment: seg })
        .await
        .expect("answers")
        .into_inner();
    ids.iter().zip(&r.is_member).filter(|(_, &m)| m).map(|(&id, _)| id).collect()
}

async fn create(s: &mut Segs, id: &str, def: pb::create_segment_request::Definition) -> Result<u64, Status> {
    let req =
        pb::CreateSegmentRequest { segment_id: id.into(), definition: Some(def), description: "t".into() };
    s.create_segment(req).await.map(|r| r.into_inner().count)
}

fn where_def(text: &str) -> pb::create_segment_request::Definition {
    pb::create_segment_request::Definition::Where(text.into())
}

async fn get_int(c: &mut Custs, id: u64, attr: &str) -> Option<i64> {
    let cust = c.get_customer(pb::GetCustomerRequest { customer_id: id }).await.expect("found").into_inner();
    match cust.attributes.get(attr).and_then(|v| v.kind.clone()) {
        Some(pb::customer::value::Kind::IntValue(i)) => Some(i),
        Some(pb::customer::value::Kind::NullValue(_)) => None,
        other => panic!("{attr} of {id}: {other:?}"),
    }
}

async fn add_int_attribute(c: &mut Custs, name: &str) {
    let req = pb::AddAttributeRequest { name: name.into(), r#type: pb::AttributeType::Int as i32 };
    c.add_attribute(req).await.expect("attribute added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_visible_at_once() {
    let live = Live::start(Config { max_upsert_batch: 1_000, ..Config::default() }, 100_000).await;
    let (mut s, mut c) = live.clients().await;
    const M: i64 = 987_654;
    let text = format!("loyalty_points = {M}");
    assert_eq!(count_where(&mut s, &text).await, 0);
    // Memoised count of the ad-hoc text, then a write: the next count follows it.
    assert_eq!(count_where(&mut s, &text).await, 0);
    let r = upsert(&mut c, batch(1..=100, "loyalty_points", M)).await.unwrap();
    assert_eq!(r.applied, 100);
    assert!(r.sequence > 0);
    assert_eq!(count_where(&mut s, &text).await, 100);

    // A saved segment follows upserts and deletes.
    let whales = format!("loyalty_points >= {M}");
    assert_eq!(create(&mut s, "whales", where_def(&whales)).await.unwrap(), 100);
    assert_eq!(count_id(&mut s, "whales").await.unwrap(), 100);
    assert!(member_id(&mut s, "whales", 5).await.is_member);
    assert!(!member_id(&mut s, "whales", 200).await.is_member);
    upsert(&mut c, batch([200], "loyalty_points", M + 1)).await.unwrap();
    assert_eq!(count_id(&mut s, "whales").await.unwrap(), 101);
    assert!(member_id(&mut s, "whales", 200).await.is_member);
    upsert(&mut c, batch([7], "loyalty_points", 3)).await.unwrap();
    assert!(!member_id(&mut s, "whales", 7).await.is_member);
    let d =
        c.delete_customers(pb::DeleteCustomersRequest { customer_ids: vec![5, 999_999_999] }).await.unwrap();
    assert_eq!(d.into_inner().deleted, 1);
    assert_eq!(count_id(&mut s, "whales").await.unwrap(), 99);
    let gone = member_id(&mut s, "whales", 5).await;
    assert!(!gone.is_member && !gone.customer_found);
    let e = c.get_customer(pb::GetCustomerRequest { customer_id: 5 }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A new customer is appended; partial updates keep the other attributes.
    let tier_before = c.get_customer(pb::GetCustomerRequest { customer_id: 9 }).await.unwrap().into_inner();
    upsert(&mut c, batch([9], "loyalty_points", M)).await.unwrap();
    let after = c.get_customer(pb::GetCustomerRequest { customer_id: 9 }).await.unwrap().into_inner();
    assert_eq!(after.attributes.get("tier"), tier_before.attributes.get("tier"));
    let new_id = 50_000_000;
    let req = pb::UpsertCustomersRequest {
        customers: vec![customer(new_id, &[("loyalty_points", int(M)), ("tier", string("gold"))])],
    };
    upsert(&mut c, req).await.unwrap();
    assert_eq!(get_int(&mut c, new_id, "loyalty_points").await, Some(M));
    assert!(member_id(&mut s, "whales", new_id).await.is_member);

    // SegmentsOf, and a second saved segment.
    create(&mut s, "gold", where_def("tier = 'gold'")).await.unwrap();
    let of = s.segments_of(pb::SegmentsOfRequest { customer_id: new_id }).await.unwrap().into_inner();
    assert_eq!(of.segment_ids, vec!["gold".to_string(), "whales".to_string()]);
    let of = s.segments_of(pb::SegmentsOfRequest { customer_id: 123_456_789 }).await.unwrap().into_inner();
    assert!(!of.customer_found && of.segment_ids.is_empty());

    // Overlap and Breakdown of saved segments use their members.
    let ov = s
        .overlap(pb::OverlapRequest {
            segments: vec![
                pb::Segment { segment: Some(pb::segment::Segment::SegmentId("whales".into())) },
                pb::Segment { segment: Some(pb::segment::Segment::Where(whales.clone())) },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let w = count_id(&mut s, "whales").await.unwrap();
    assert_eq!(ov.rows[0].counts, vec![w, w]);
    let bd = s
        .breakdown(pb::BreakdownRequest {
            segment: Some(pb::breakdown_request::Segment::SegmentId("whales".into())),
            attribute: "tier".into(),
            top_n: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bd.segment_count, w);

    // Static segments.
    let stat = pb::create_segment_request::Definition::StaticMembers(pb::StaticMembers {
        customer_ids: vec![1, 2, 3],
    });
    assert_eq!(create(&mut s, "vip", stat).await.unwrap(), 3);
    let add = s
        .add_members(pb::EditMembersRequest {
            segment_id: "vip".into(),
            customer_ids: vec![3, 4, 999_999_999],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(add.changed, 1);
    s.remove_members(pb::EditMembersRequest { segment_id: "vip".into(), customer_ids: vec![1] })
        .await
        .unwrap();
    assert_eq!(count_id(&mut s, "vip").await.unwrap(), 3);
    assert_eq!(members_of(&mut s, "vip", &[1, 2, 3, 4, 5]).await, BTreeSet::from([2, 3, 4]));
    let got = s.get_segment(pb::GetSegmentRequest { segment_id: "vip".into() }).await.unwrap().into_inner();
    assert_eq!(got.definition, Some(pb::saved_segment::Definition::Static(true)));
    assert_eq!(got.count, 3);
    let list = s.list_segments(pb::ListSegmentsRequest {}).await.unwrap().into_inner();
    let ids: Vec<_> = list.segments.iter().map(|x| x.segment_id.as_str()).collect();
    assert_eq!(ids, ["gold", "vip", "whales"]);
    let e = s
        .add_members(pb::EditMembersRequest { segment_id: "whales".into(), customer_ids: vec![1] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(create(&mut s, "vip", where_def("age > 1")).await.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(
        create(&mut s, "bad id!", where_def("age > 1")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(create(&mut s, "bad", where_def("nope > 1")).await.unwrap_err().code(), Code::InvalidArgument);
    s.delete_segment(pb::DeleteSegmentRequest { segment_id: "vip".into() }).await.unwrap();
    let e = s.get_segment(pb::GetSegmentRequest { segment_id: "vip".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(count_id(&mut s, "vip").await.unwrap_err().code(), Code::NotFound);
    let e = s.delete_segment(pb::DeleteSegmentRequest { segment_id: "vip".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Bad batches are rejected whole and change nothing.
    let before = get_int(&mut c, 10, "loyalty_points").await;
    let bad = pb::UpsertCustomersRequest {
        customers: vec![
            customer(10, &[("loyalty_points", int(1))]),
            customer(11, &[("loyalty_points", string("x"))]),
        ],
    };
    let e = upsert(&mut c, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("customer 11") && e.message().contains("loyalty_points"), "{}", e.message());
    assert_eq!(get_int(&mut c, 10, "loyalty_points").await, before);
    let bad = pb::UpsertCustomersRequest {
        customers: vec![customer(10, &[("loyalty_points", int(1))]), customer(12, &[("no_such", int(1))])],
    };
    let e = upsert(&mut c, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("customer 12") && e.message().contains("no_such"), "{}", e.message());
    assert_eq!(get_int(&mut c, 10, "loyalty_points").await, before);
    let e = upsert(&mut c, batch(1..=1_001, "loyalty_points", 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max-upsert-batch"), "{}", e.message());
    assert_eq!(get_int(&mut c, 10, "loyalty_points").await, before);
    let no_kind = pb::UpsertCustomersRequest {
        customers: vec![pb::Customer {
            customer_id: 10,
            attributes: [("age".to_string(), pb::customer::Value { kind: None })].into(),
        }],
    };
    assert_eq!(upsert(&mut c, no_kind).await.unwrap_err().code(), Code::InvalidArgument);

    // New attributes at run time.
    add_int_attribute(&mut c, "streak").await;
    let e = c
        .add_attribute(pb::AddAttributeRequest {
            name: "streak".into(),
            r#type: pb::AttributeType::Int as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c
        .add_attribute(pb::AddAttributeRequest {
            name: "9lives".into(),
            r#type: pb::AttributeType::Int as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    upsert(&mut c, batch(11..=20, "streak", 4)).await.unwrap();
    assert_eq!(count_where(&mut s, "streak = 4").await, 10);
    assert_eq!(get_int(&mut c, 11, "streak").await, Some(4));
    assert_eq!(get_int(&mut c, 1, "streak").await, None);
    live.server.close().expect("final snapshot");
}

/// Reads events from `stream` until `n` have arrived (fails after 10 s).
async fn take_events(stream: &mut Streaming<pb::SegmentEvent>, n: usize) -> Vec<pb::SegmentEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(e))) => out.push(e),
            other => panic!("after {} of {n} events: {other:?}", out.len()),
        }
    }
    out
}

/// No event arrives within a short while.
async fn assert_quiet(stream: &mut Streaming<pb::SegmentEvent>) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(150), stream.message()).await {
        panic!("unexpected event: {got:?}");
    }
}

async fn watch(
    s: &mut Segs,
    ids: &[&str],
    from_sequence: u64,
) -> Result<Streaming<pb::SegmentEvent>, Status> {
    let req =
        pb::WatchSegmentsRequest { segment_ids: ids.iter().map(|x| x.to_string()).collect(), from_sequence };
    s.watch_segments(req).await.map(|r| r.into_inner())
}

/// (customer, entered) pairs of one batch's events, checking they all carry `sequence`.
fn changes(events: &[pb::SegmentEvent], segment: &str, sequence: u64) -> BTreeSet<(u64, bool)> {
    for e in events {
        assert_eq!((e.segment_id.as_str(), e.sequence), (segment, sequence), "{e:?}");
    }
    events.iter().map(|e| (e.customer_id, e.change == pb::Change::Entered as i32)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_are_membership_differences() {
    let live = Live::start(Config::default(), 100_000).await;
    let (mut s, mut c) = live.clients().await;
    add_int_attribute(&mut c, "score").await;
    create(&mut s, "hi", where_def("score >= 50")).await.unwrap();
    create(&mut s, "other", where_def("score < 10")).await.unwrap();
    assert_eq!(watch(&mut s, &["nope"], 0).await.unwrap_err().code(), Code::NotFound);

    let ids: Vec<u64> = (1..=2_000).collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let mut live_stream = Some(watch(&mut s, &["hi"], 0).await.unwrap());
    let mut resume_from = 0;
    // Batches 0..4 watched live; 4..7 while disconnected; then a resume from the first
    // missed sequence replays 4..7 and continues live for 7..10.
    let mut missed: Vec<(u64, BTreeSet<(u64, bool)>)> = vec![];
    for b in 0..10 {
        let before = members_of(&mut s, "hi", &ids).await;
        let req = pb::UpsertCustomersRequest {
            customers: (0..300)
                .map(|_| customer(rng.random_range(1..=2_000), &[("score", int(rng.random_range(0..100)))]))
                .collect(),
        };
        let seq = upsert(&mut c, req).await.unwrap().sequence;
        let after = members_of(&mut s, "hi", &ids).await;
        let expected: BTreeSet<(u64, bool)> = after
            .difference(&before)
            .map(|&id| (id, true))
            .chain(before.difference(&after).map(|&id| (id, false)))
            .collect();
        assert!(!expected.is_empty());
        if b == 4 {
            live_stream = None;
            resume_from = seq;
        }
        if b == 7 {
            let mut st = watch(&mut s, &["hi"], resume_from).await.unwrap();
            for (mseq, exp) in missed.drain(..) {
                let got = take_events(&mut st, exp.len()).await;
                assert_eq!(changes(&got, "hi", mseq), exp, "replayed batch at {mseq}");
            }
            live_stream = Some(st);
        }
        match &mut live_stream {
            Some(st) => {
                let got = take_events(st, expected.len()).await;
                assert_eq!(changes(&got, "hi", seq), expected, "batch {b}");
            }
            None => missed.push((seq, expected)),
        }
    }
    let mut st = live_stream.unwrap();
    assert_quiet(&mut st).await;
    // Events of other segments are not delivered; a static segment's edits are.
    let stat =
        pb::create_segment_request::Definition::StaticMembers(pb::StaticMembers { customer_ids: vec![] });
    create(&mut s, "vip", stat).await.unwrap();
    let mut both = watch(&mut s, &["hi", "vip"], 0).await.unwrap();
    let r = s
        .add_members(pb::EditMembersRequest { segment_id: "vip".into(), customer_ids: vec![1, 2] })
        .await
        .unwrap()
        .into_inner();
    let got = take_events(&mut both, 2).await;
    assert_eq!(changes(&got, "vip", r.sequence), BTreeSet::from([(1, true), (2, true)]));
    assert_quiet(&mut st).await;

    // A position older than the retention window is OUT_OF_RANGE.
    let small = Live::start(Config::default(), 50).await;
    let (mut s2, mut c2) = small.clients().await;
    create(&mut s2, "all", where_def("loyalty_points >= 0")).await.unwrap();
    let first = upsert(&mut c2, batch(1..=40, "loyalty_points", -1)).await.unwrap().sequence;
    upsert(&mut c2, batch(41..=80, "loyalty_points", -1)).await.unwrap();
    let e = watch(&mut s2, &["all"], first).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watchers_are_ended() {
    let config = Config { watch_buffer: 16, slow_consumer: Duration::from_millis(300), ..Config::default() };
    let live = Live::start(config, 100_000).await;
    let (mut s, mut c) = live.clients().await;
    add_int_attribute(&mut c, "score").await;
    create(&mut s, "hi", where_def("score >= 50")).await.unwrap();
    // A client with HTTP/2 windows of 64 KiB (the default is megabytes): what it does not
    // read backs up into the server's buffer.
    let ch = Channel::from_shared(format!("http://{}", live.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut st = watch(&mut SegmentServiceClient::new(ch), &["hi"], 0).await.unwrap();
    // 20,000 events (far more than the buffer plus the transport's windows), never read.
    upsert(&mut c, batch(1..=20_000, "score", 99)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut n = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), st.message()).await.expect("stream ends") {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("stream ended OK after {n} events"),
            Err(e) => break e,
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?} after {n} events");
    assert!(end.message().contains("consumer too slow"), "{}", end.message());
    assert!(n < 20_000, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_part_of_a_batch() {
    let live = Live::start(Config::default(), 100_000).await;
    let (mut s, mut c) = live.clients().await;
    add_int_attribute(&mut c, "x").await;
    create(&mut s, "any_x", where_def("x IS NOT NULL")).await.unwrap();
    const BATCHES: u64 = 20;
    const PER: u64 = 1_000;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = vec![];
    for r in 0..2 {
        let (mut s, done) = (s.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for k in 1..=BATCHES {
                    let n = count_where(&mut s, &format!("x = {k}")).await;
                    assert!(n == 0 || n == PER, "reader {r}: x = {k} counted {n}");
                    let saved = count_id(&mut s, "any_x").await.unwrap();
                    assert_eq!(saved % PER, 0, "reader {r}: saved segment counted {saved}");
                    seen += 1;
                }
            }
            seen
        }));
    }
    // The writer streams every batch (pipelined) and checks the answers come in order.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = c.stream_upserts(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let sender = tokio::spawn(async move {
        for k in 1..=BATCHES {
            let ids = (k - 1) * PER + 1..=k * PER;
            tx.send(batch(ids, "x", k as i64)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut last = 0;
    for _ in 0..BATCHES {
        let a = acks.message().await.unwrap().expect("one answer per batch");
        assert_eq!(a.applied, PER as u32);
        assert!(a.sequence > last);
        last = a.sequence;
    }
    sender.await.unwrap();
    assert!(acks.message().await.unwrap().is_none());
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    for k in 1..=BATCHES {
        assert_eq!(count_where(&mut s, &format!("x = {k}")).await, PER);
    }
    assert_eq!(count_id(&mut s, "any_x").await.unwrap(), BATCHES * PER);

    // A rejected batch ends the stream with its status.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = c.stream_upserts(ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(batch([1], "x", 1)).await.unwrap();
    tx.send(pb::UpsertCustomersRequest { customers: vec![customer(2, &[("x", string("no"))])] })
        .await
        .unwrap();
    assert!(acks.message().await.unwrap().is_some());
    assert_eq!(acks.message().await.unwrap_err().code(), Code::InvalidArgument);
}

// ---------------------------------------------------------------------------------------
// Crash test: the real binary, SIGKILLed while it acknowledges a stream of upserts.

/// Customers per batch: new customers (disjoint per batch) and existing ones.
const NEW_PER_BATCH: u64 = 40;
const OLD_PER_BATCH: u64 = 10;

/// The customers batch `g` writes, all with marker [`marker`]`(g)` in loyalty_points:
/// new customers, and existing ones while they last (disjoint per batch).
fn crash_ids(g: u64) -> Vec<u64> {
    let new = (0..NEW_PER_BATCH).map(move |i| 10_000_000 + g * NEW_PER_BATCH + i);
    let old = (0..OLD_PER_BATCH).map(move |i| 1 + g * OLD_PER_BATCH + i).filter(|&id| id <= ROWS as u64);
    new.chain(old).collect()
}

/// Far outside the demo table's loyalty points, so no customer has it by chance.
fn marker(g: u64) -> i64 {
    100_000_000 + g as i64
}

struct Child_ {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_segd(dir: &Path, run: usize) -> (Child_, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.with_extension(format!("serve-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_segd"))
        .args(["serve", "--demo", &ROWS.to_string(), "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string(), "--snapshot-every", "500"])
        .env("SEGD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("segd starts");
    (Child_ { child, log }, addr)
}

async fn connect_when_ready(addr: SocketAddr, child: &mut Child_) -> (Segs, Custs) {
    let t = Instant::now();
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            let mut s = SegmentServiceClient::new(ch.clone());
            if s.list_segments(pb::ListSegmentsRequest {}).await.is_ok() {
                return (s, CustomerServiceClient::new(ch));
            }
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            panic!("segd exited with {status}: {}", std::fs::read_to_string(&child.log).unwrap_or_default());
        }
        assert!(t.elapsed() < Duration::from_secs(60), "segd did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many of batch `g`'s customers carry its marker.
async fn marked(s: &mut Segs, g: u64) -> usize {
    let seg = Some(pb::batch_is_member_request::Segment::Where(format!("loyalty_points = {}", marker(g))));
    let r = s
        .batch_is_member(pb::BatchIsMemberRequest { customer_ids: crash_ids(g), segment: seg })
        .await
        .expect("answers")
        .into_inner();
    r.members as usize
}

async fn with_timeout<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("timed out")
}

#[test]
fn crash_kill_restart_loses_nothing_acknowledged() {
    let kills: usize =
        std::env::var("SEGD_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(5).clamp(1, 1_000);
    let seed: u64 =
        std::env::var("SEGD_CRASH_SEED").ok().and_then(|k| k.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash test: {kills} kills, SEGD_CRASH_SEED={seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // Every batch sent before the last kill, with whether it is applied: acknowledged
        // ones must be; the ones in flight at a kill are resolved (all or nothing) at the
        // next start and must stay so.
        let mut resolved: Vec<(u64, bool)> = vec![];
        // Of the last run: acknowledged, and sent without an answer.
        let (mut acked, mut unknown): (Vec<u64>, Vec<u64>) = (vec![], vec![]);
        let mut total_acked = 0;
        let mut next_g = 0u64;
        for run in 0..=kills {
            let (mut child, addr) = spawn_segd(&dir, run);
            let (mut s, c) = with_timeout(90, connect_when_ready(addr, &mut child)).await;
            // Everything acknowledged is present; nothing is half applied.
            for &g in &acked {
                let n = with_timeout(30, marked(&mut s, g)).await;
                assert_eq!(
                    n,
                    crash_ids(g).len(),
                    "run {run}: acknowledged batch {g} has {n} marked customers"
                );
            }
            let older = resolved.len();
            resolved.extend(acked.iter().map(|&g| (g, true)));
            for &g in &unknown {
                let n = with_timeout(30, marked(&mut s, g)).await;
                assert!(n == 0 || n == crash_ids(g).len(), "run {run}: batch {g} is half applied ({n})");
                resolved.push((g, n > 0));
            }
            // Older batches: a sample one by one, and all of them through the total.
            for _ in 0..older.min(50) {
                let (g, applied) = resolved[rng.random_range(0..older)];
                let n = with_timeout(30, marked(&mut s, g)).await;
                assert_eq!(
                    n,
                    if applied { crash_ids(g).len() } else { 0 },
                    "run {run}: older batch {g} changed"
                );
            }
            let expected: usize = resolved.iter().filter(|r| r.1).map(|r| crash_ids(r.0).len()).sum();
            let total =
                with_timeout(30, count_where(&mut s, &format!("loyalty_points >= {}", marker(0)))).await;
            assert_eq!(total, expected as u64, "run {run}: marked customers");
            if let Some(&g) = acked.last() {
                let mut c = c.clone();
                let id = crash_ids(g)[0];
                let got =
                    c.get_customer(pb::GetCustomerRequest { customer_id: id }).await.unwrap().into_inner();
                assert_eq!(got.attributes.get("loyalty_points"), Some(&int(marker(g))));
            }
            if run == kills {
                break;
            }
            // Stream batches; SIGKILL at a random point while answers flow.
            let sent = Arc::new(Mutex::new(Vec::<u64>::new()));
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let mut c2 = c.clone();
            let mut answers =
                c2.stream_upserts(ReceiverStream::new(rx)).await.expect("stream opens").into_inner();
            let producer = {
                let sent = sent.clone();
                let start = next_g;
                tokio::spawn(async move {
                    for g in start.. {
                        let req = pb::UpsertCustomersRequest {
                            customers: crash_ids(g)
                                .into_iter()
                                .map(|id| customer(id, &[("loyalty_points", int(marker(g)))]))
                                .collect(),
                        };
                        sent.lock().unwrap().push(g);
                        if tx.send(req).await.is_err() {
                            return;
                        }
                    }
                })
            };
            let kill_after = Duration::from_millis(rng.random_range(100..1_000));
            let mut got = 0usize;
            let mut killed = false;
            acked.clear();
            let deadline = tokio::time::sleep(kill_after);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    a = answers.message() => match a {
                        Ok(Some(_)) => {
                            let g = sent.lock().unwrap()[got];
                            acked.push(g);
                            got += 1;
                        }
                        Ok(None) => {
                            assert!(killed, "the stream ended by itself");
                            break;
                        }
                        Err(e) => {
                            assert!(killed, "stream failed before the kill: {e}");
                            break;
                        }
                    },
                    _ = &mut deadline, if !killed && got > 0 => {
                        child.child.kill().expect("SIGKILL");
                        killed = true;
                    }
                }
            }
            let _ = child.child.wait();
            producer.abort();
            let sent = sent.lock().unwrap().clone();
            unknown = sent[got..].to_vec();
            total_acked += got;
            next_g = sent.last().map_or(next_g, |g| g + 1);
            eprintln!("run {run}: {got} batches acknowledged before SIGKILL at {kill_after:?}");
        }
        assert!(total_acked >= kills, "too few batches acknowledged: {total_acked}");
    });
}
