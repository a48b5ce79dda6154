//! `StreamIsMember` end to end (issue 13): the server on a data dir imported from the
//! committed fixture, called with a real tonic client. Laws:
//! - one answer per question, in question order, each with its question's tag;
//! - every answer equals the row-by-row oracle over the fixture's Parquet file and the
//!   unary IsMember of the same question, whether the question names its segment or
//!   reuses the stream's previous one;
//! - a question that cannot be answered gets an answer carrying its error (the unary
//!   call's code and message) and the stream goes on;
//! - a reused segment is evaluated against the state as it is when asked (after a write
//!   too), and the server's shutdown ends an open stream UNAVAILABLE.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

use segd::db::DbOptions;
use segd::grpc::pb::{
    self, customer_service_client::CustomerServiceClient, segment_service_client::SegmentServiceClient,
};
use segd::query::{sql, Limits};
use segd::server::{Config, Server};
use segd::store::load::load_file;

use crate::common::fixture;

type Segs = SegmentServiceClient<Channel>;
type Question = pb::StreamIsMemberRequest;
type Seg = pb::stream_is_member_request::Segment;

struct Live {
    addr: SocketAddr,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Live {
    /// A server on a fresh data dir imported from the fixture.
    async fn start() -> Live {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
        let (data, _) = fixture();
        let server = tokio::task::block_in_place(|| {
            Server::open(opts, || Ok(load_file(&data, "customer_id")?), Config::default())
        })
        .expect("data dir opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server.clone().serve(listener, std::future::pending()));
        Live { addr, server, _dir: dir }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connects")
    }
}

/// The fixture's rows, read straight from the Parquet file (not through segd), and where
/// each customer id is.
struct Oracle {
    batches: Vec<RecordBatch>,
    at: HashMap<u64, (usize, usize)>,
}

impl Oracle {
    fn load() -> Oracle {
        let (data, _) = fixture();
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(File::open(&data).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let mut at = HashMap::new();
        for (bi, b) in batches.iter().enumerate() {
            let ids = b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>();
            for row in 0..b.num_rows() {
                at.insert(ids.value(row), (bi, row));
            }
        }
        Oracle { batches, at }
    }

    /// (is_member, customer_found) as IsMember must answer it.
    fn answer(&self, text: &str, customer_id: u64) -> (bool, bool) {
        let e = sql::parse(text, &Limits::default()).expect("test segment parses");
        match self.at.get(&customer_id) {
            Some(&(b, row)) => (segd::naive::eval(&self.batches[b], row, &e).unwrap() == Some(true), true),
            None => (false, false),
        }
    }

    /// Every `step`-th customer id in file order.
    fn sample(&self, step: usize) -> Vec<u64> {
        let mut ids = vec![];
        for b in &self.batches {
            let col = b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>();
            ids.extend((0..b.num_rows()).step_by(step).map(|r| col.value(r)));
        }
        ids
    }
}

fn where_(text: &str) -> Option<Seg> {
    Some(Seg::Where(text.into()))
}

/// Sends every question at once (pipelined), then reads answers until the server ends
/// the stream or one answer per question has come.
async fn ask_all(s: &mut Segs, questions: Vec<Question>) -> Vec<pb::StreamIsMemberResponse> {
    let n = questions.len();
    let mut answers =
        s.stream_is_member(tokio_stream::iter(questions)).await.expect("stream opens").into_inner();
    let mut out = Vec::with_capacity(n);
    while let Some(a) = answers.message().await.expect("the stream stays up") {
        out.push(a);
    }
    out
}

async fn unary(s: &mut Segs, customer_id: u64, text: &str) -> Result<(bool, bool), tonic::Status> {
    let segment = Some(pb::is_member_request::Segment::Where(text.into()));
    let r = s.is_member(pb::IsMemberRequest { customer_id, segment }).await?.into_inner();
    Ok((r.is_member, r.customer_found))
}

const SEGMENTS: [&str; 4] = [
    // q12 of the kit: six clauses, lists and a NOT.
    "country IN ('DE', 'AT', 'CH', 'NL') AND age BETWEEN 25 AND 45 AND (list_contains(categories_bought, \
     'fashion') OR list_contains(categories_bought, 'beauty')) AND email_opt_in AND churn_risk >= 0.6 AND NOT \
     (tier = 'NONE')",
    // NULL-sensitive: NOT over a nullable column.
    "NOT (last_purchase_days_ago >= 180)",
    "email_opt_in AND NOT (preferred_channel = 'email')",
    "list_contains(badges, 'vip') OR total_spend_eur >= 1000",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_in_order_with_tags_equal_the_oracle_and_unary_calls() {
    let live = Live::start().await;
    let oracle = Oracle::load();
    let mut s = SegmentServiceClient::new(live.channel().await);
    let mut ids = oracle.sample(53);
    // Unknown ids interleaved: answered not found, never an error.
    for (i, unknown) in [0u64, 50_001, u64::MAX].into_iter().enumerate() {
        ids.insert(i * 200 + 7, unknown);
    }
    // Questions cycle through the segments in runs of 5: the first of a run names its
    // segment, the other four reuse it. Tags are the caller's own: not 0, 1, 2, ...
    let mut questions = vec![];
    let mut want = vec![];
    for (i, &id) in ids.iter().enumerate() {
        let text = SEGMENTS[(i / 5) % SEGMENTS.len()];
        let segment = if i % 5 == 0 { where_(text) } else { None };
        let tag = (1_000_003 * i as u64) ^ 0xfeed;
        questions.push(Question { tag, customer_id: id, segment });
        want.push((tag, oracle.answer(text, id), text));
    }
    let answers = ask_all(&mut s, questions).await;
    assert_eq!(answers.len(), want.len(), "one answer per question");
    let members = want.iter().filter(|w| w.1 .0).count();
    assert!(members > 20 && members < want.len() - 20, "the sample has both answers ({members})");
    for (i, (a, (tag, (member, found), text))) in answers.iter().zip(&want).enumerate() {
        assert_eq!(a.tag, *tag, "answer {i} carries question {i}'s tag");
        assert!(a.error.is_none(), "answer {i}: {:?}", a.error);
        assert_eq!(
            (a.is_member, a.customer_found),
            (*member, *found),
            "answer {i}: customer {} in {text}",
            ids[i]
        );
        if i % 7 == 0 {
            assert_eq!(
                unary(&mut s, ids[i], text).await.unwrap(),
                (*member, *found),
                "unary, customer {}",
                ids[i]
            );
        }
    }
    // Every question was counted under its own RPC label.
    let ok = live.server.metrics().calls(segd::metrics::Rpc::StreamIsMember, 0);
    assert_eq!(ok, want.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_question_fails_alone() {
    let live = Live::start().await;
    let oracle = Oracle::load();
    let mut s = SegmentServiceClient::new(live.channel().await);
    let id = oracle.sample(1000)[3];
    let good = SEGMENTS[1];
    let bad_tree = Some(Seg::Predicate(pb::Predicate { node: None }));
    let questions = vec![
        // No segment yet on this stream.
        Question { tag: 10, customer_id: id, segment: None },
        Question { tag: 11, customer_id: id, segment: where_(good) },
        Question { tag: 12, customer_id: id, segment: where_("agee > 3") },
        // Reuses the bad segment: fails the same way.
        Question { tag: 13, customer_id: id, segment: None },
        Question { tag: 14, customer_id: id, segment: Some(Seg::SegmentId("no_such_segment".into())) },
        Question { tag: 15, customer_id: id, segment: bad_tree },
        Question { tag: 16, customer_id: id, segment: where_(&"x".repeat(70_000)) },
        Question { tag: 17, customer_id: id, segment: where_(good) },
        Question { tag: 18, customer_id: id, segment: None },
    ];
    let answers = ask_all(&mut s, questions).await;
    let tags: Vec<u64> = answers.iter().map(|a| a.tag).collect();
    assert_eq!(tags, (10..=18).collect::<Vec<_>>(), "every question answered, in order");
    let err = |i: usize| {
        let e = answers[i].error.as_ref().unwrap_or_else(|| panic!("answer {i} carries an error"));
        assert_eq!((answers[i].is_member, answers[i].customer_found), (false, false));
        (Code::from(e.code), e.message.clone())
    };
    let (code, msg) = err(0);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("first question of a stream must name a segment"), "{msg}");
    let (code, msg) = err(2);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("agee"), "{msg}");
    // The unary call fails with the same code and message.
    let unary_err = unary(&mut s, id, "agee > 3").await.unwrap_err();
    assert_eq!((unary_err.code(), unary_err.message()), (code, msg.as_str()));
    assert_eq!(err(3), err(2), "a reused bad segment fails the same way");
    assert_eq!(err(4).0, Code::NotFound);
    assert!(err(4).1.contains("no_such_segment"), "{}", err(4).1);
    assert_eq!(err(5).0, Code::InvalidArgument);
    let (code, msg) = err(6);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("max-where-bytes"), "{msg}");
    let want = oracle.answer(good, id);
    for i in [1, 7, 8] {
        assert!(answers[i].error.is_none(), "answer {i}: {:?}", answers[i].error);
        assert_eq!((answers[i].is_member, answers[i].customer_found), want, "answer {i}");
    }
    let failed =
        live.server.metrics().calls(segd::metrics::Rpc::StreamIsMember, Code::InvalidArgument as i32);
    assert_eq!(failed, 5, "per-question failures are counted with their code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_segment_sees_writes_and_shutdown_ends_the_stream() {
    let live = Live::start().await;
    let ch = live.channel().await;
    let (mut s, mut c) = (SegmentServiceClient::new(ch.clone()), CustomerServiceClient::new(ch));
    let oracle = Oracle::load();
    let id = oracle.sample(1000)[5];
    const M: i64 = 987_654;
    let text = format!("loyalty_points = {M}");
    let (tx, rx) = mpsc::channel(4);
    let mut answers = s.stream_is_member(ReceiverStream::new(rx)).await.expect("stream opens").into_inner();
    let mut ask = async |tag: u64, segment: Option<Seg>| {
        tx.send(Question { tag, customer_id: id, segment }).await.unwrap();
        let a = answers.message().await.expect("answered").expect("the stream goes on");
        assert_eq!(a.tag, tag);
        assert!(a.error.is_none(), "{:?}", a.error);
        (a.is_member, a.customer_found)
    };
    assert_eq!(ask(1, where_(&text)).await, (false, true));
    assert_eq!(ask(2, None).await, (false, true));
    let v = pb::customer::Value { kind: Some(pb::customer::value::Kind::IntValue(M)) };
    let cust = pb::Customer { customer_id: id, attributes: [("loyalty_points".to_string(), v)].into() };
    c.upsert_customers(pb::UpsertCustomersRequest { customers: vec![cust] }).await.expect("upserted");
    // The stream's segment, reused after the write, is evaluated on the new state.
    assert_eq!(ask(3, None).await, (true, true));
    assert_eq!(unary(&mut s, id, &text).await.unwrap(), (true, true));
    live.server.app().close_streams();
    let end = answers.message().await.expect_err("the stream ends with a status");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("shutting down"), "{}", end.message());
}
