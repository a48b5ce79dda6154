//! The gRPC service end to end: the real server on 127.0.0.1:0, called with a real tonic
//! client. Laws: every count equals the row-by-row oracle's; memberships agree with the
//! oracle row by row; the insight RPCs agree with counts; every bad-input class has its
//! status code and leaves the server answering.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::convert::expr_of;
use segd::grpc::pb::{self, segment_service_client::SegmentServiceClient};
use segd::query::{sql, Expr, Limits};
use segd::server::{Config, Server};
use segd::store::Dataset;

const ROWS: usize = 150_000;

struct Fixture {
    addr: SocketAddr,
    server: Server,
    batches: Vec<RecordBatch>,
}

/// One server for the whole binary, on its own runtime thread: each #[tokio::test] has a
/// runtime of its own that ends with the test.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let batches = segd::gen::generate(ROWS, 7);
        let ds = Dataset::from_batches(segd::gen::schema(), batches.iter().cloned().map(Ok), "customer_id")
            .expect("generated table loads");
        let server = Server::new(Arc::new(ds), Config::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let s = server.clone();
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                s.serve(listener, std::future::pending()).await.unwrap();
            });
        });
        Fixture { addr: rx.recv().unwrap(), server, batches }
    })
}

async fn client() -> SegmentServiceClient<Channel> {
    let f = fixture();
    SegmentServiceClient::connect(format!("http://{}", f.addr)).await.expect("connects")
}

fn parse(text: &str) -> Expr {
    sql::parse(text, &Limits::default()).expect("test segment parses")
}

fn oracle(e: &Expr) -> u64 {
    segd::naive::count(&fixture().batches, e).expect("oracle evaluates")
}

fn where_(text: &str) -> Option<pb::count_segment_request::Segment> {
    Some(pb::count_segment_request::Segment::Where(text.into()))
}

fn s(v: &str) -> pb::Value {
    pb::Value { kind: Some(pb::value::Kind::StringValue(v.into())) }
}

fn int(v: i64) -> pb::Value {
    pb::Value { kind: Some(pb::value::Kind::IntValue(v)) }
}

fn node(n: pb::predicate::Node) -> pb::Predicate {
    pb::Predicate { node: Some(n) }
}

const SEGMENTS: [&str; 7] = [
    "country IN ('DE', 'AT', 'CH', 'NL') AND age BETWEEN 25 AND 45 AND (list_contains(categories_bought, \
     'fashion') OR list_contains(categories_bought, 'beauty')) AND email_opt_in AND churn_risk >= 0.6 AND NOT \
     (tier = 'NONE')",
    "last_purchase_days_ago IS NULL",
    "NOT (last_purchase_days_ago >= 180)",
    "last_purchase_days_ago < 30 OR age > 60",
    "NOT (last_purchase_days_ago < 30 OR gender = 'F')",
    "list_contains(badges, 'vip') AND total_spend_eur >= 1000",
    "city = 'no-such-city'",
];

#[tokio::test]
async fn counts_equal_the_oracle() {
    let mut c = client().await;
    for text in SEGMENTS {
        let want = oracle(&parse(text));
        let r =
            c.count_segment(pb::CountSegmentRequest { segment: where_(text) }).await.unwrap().into_inner();
        assert_eq!((r.count, r.total), (want, ROWS as u64), "{text}");
        // Asked again: the same count, from the cache.
        let r =
            c.count_segment(pb::CountSegmentRequest { segment: where_(text) }).await.unwrap().into_inner();
        assert_eq!(r.count, want, "{text} (cached)");
        assert!(r.cached, "{text}: the second call is served from the cache");
    }
    // The structured tree: NULL-sensitive NOT over a range, and an IN / contains mix.
    use pb::predicate::Node;
    let trees = [
        node(Node::Not(Box::new(node(Node::Range(pb::Range {
            column: "last_purchase_days_ago".into(),
            gte: Some(int(180)),
            ..Default::default()
        }))))),
        node(Node::And(pb::PredicateList {
            args: vec![
                node(Node::In(pb::In { column: "country".into(), values: vec![s("DE"), s("FR")] })),
                node(Node::Contains(pb::Contains { column: "badges".into(), value: Some(s("reviewer")) })),
                node(Node::IsNull(pb::IsNull { column: "last_purchase_days_ago".into(), negated: true })),
            ],
        })),
    ];
    for p in trees {
        let want = oracle(&expr_of(p.clone(), &Limits::default()).unwrap());
        let segment = Some(pb::count_segment_request::Segment::Predicate(p));
        let r = c.count_segment(pb::CountSegmentRequest { segment }).await.unwrap().into_inner();
        assert_eq!(r.count, want);
    }
}

/// (customer id, oracle membership) of every 97th row.
fn sample_members(e: &Expr) -> Vec<(u64, bool)> {
    let mut out = vec![];
    for b in &fixture().batches {
        let ids = b.column(0).as_primitive::<UInt64Type>();
        for row in (0..b.num_rows()).step_by(97) {
            out.push((ids.value(row), segd::naive::eval(b, row, e).unwrap() == Some(true)));
        }
    }
    out
}

#[tokio::test]
async fn memberships_agree_with_the_oracle() {
    let mut c = client().await;
    let text = SEGMENTS[4];
    let sample = sample_members(&parse(text));
    assert!(sample.iter().any(|m| m.1) && sample.iter().any(|m| !m.1), "the sample has both answers");
    for &(id, want) in sample.iter().take(300) {
        let segment = Some(pb::is_member_request::Segment::Where(text.into()));
        let r = c.is_member(pb::IsMemberRequest { customer_id: id, segment }).await.unwrap().into_inner();
        assert_eq!((r.is_member, r.customer_found), (want, true), "customer {id}");
    }
    let unknown = [0u64, ROWS as u64 + 1, u64::MAX];
    for id in unknown {
        let segment = Some(pb::is_member_request::Segment::Where(text.into()));
        let r = c.is_member(pb::IsMemberRequest { customer_id: id, segment }).await.unwrap().into_inner();
        assert_eq!((r.is_member, r.customer_found), (false, false), "unknown customer {id}");
    }
    // A batch large enough to go to the pool, unknown ids interleaved: answers in order.
    let mut ids = vec![];
    let mut want = vec![];
    for (i, &(id, m)) in sample.iter().enumerate() {
        ids.push(id);
        want.push((m, true));
        if i % 100 == 0 {
            ids.push(unknown[i % 3]);
            want.push((false, false));
        }
    }
    let segment = Some(pb::batch_is_member_request::Segment::Where(text.into()));
    let r = c
        .batch_is_member(pb::BatchIsMemberRequest { customer_ids: ids.clone(), segment })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(bool, bool)> = r.is_member.iter().copied().zip(r.customer_found.iter().copied()).collect();
    assert_eq!(got, want);
    assert_eq!(r.members, want.iter().filter(|w| w.0).count() as u64);
}

#[tokio::test]
async fn insight_rpcs_agree_with_counts() {
    let mut c = client().await;
    let text = "age < 40 AND email_opt_in";
    let count = oracle(&parse(text));

    let seg = || Some(pb::explain_request::Segment::Where(text.into()));
    let e = c.explain(pb::ExplainRequest { segment: seg() }).await.unwrap().into_inner();
    let root = e.root.unwrap();
    assert_eq!(root.actual, count);
    assert!(root.children.len() == 2 && root.children.iter().all(|k| k.actual >= count));
    assert!(e.text.contains("age < 40"), "{}", e.text);

    let schema = c.schema(pb::SchemaRequest { max_values: 0 }).await.unwrap().into_inner();
    assert_eq!(schema.attributes.len(), segd::gen::schema().fields().len());
    assert_eq!(schema.id_column, "customer_id");
    let lp = schema.attributes.iter().find(|a| a.name == "last_purchase_days_ago").unwrap();
    assert!(lp.nullable && lp.null_count == oracle(&parse("last_purchase_days_ago IS NULL")));
    let gender = schema.attributes.iter().find(|a| a.name == "gender").unwrap();
    assert_eq!((gender.kind.as_str(), gender.distinct_exact), ("string", true));
    assert_eq!(gender.values.iter().map(|v| v.count).sum::<u64>(), ROWS as u64);
    let spend = schema.attributes.iter().find(|a| a.name == "total_spend_eur").unwrap();
    assert!(!spend.distinct_exact && spend.values.is_empty());

    // Single-valued attributes: the groups, NULLs and the rest sum to the segment.
    for (attribute, top_n) in [("tier", 2), ("level", 5), ("email_opt_in", 0), ("age", 3)] {
        let segment = Some(pb::breakdown_request::Segment::Where(text.into()));
        let b = c
            .breakdown(pb::BreakdownRequest { segment, attribute: attribute.into(), top_n })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(b.segment_count, count);
        let groups: u64 = b.groups.iter().map(|g| g.count).sum();
        assert_eq!(groups + b.other_count + b.null_count, count, "{attribute}");
        assert!(b.groups.windows(2).all(|w| w[0].count >= w[1].count), "largest first");
        // The top group agrees with a count of segment AND attribute = value.
        let top = &b.groups[0];
        let lit = segd::grpc::convert::literal(top.value.clone().unwrap()).unwrap();
        let both = format!("({text}) AND {attribute} = {lit}");
        assert_eq!(top.count, oracle(&parse(&both)), "{both}");
    }

    let texts =
        ["age < 40", "gender = 'F'", "list_contains(badges, 'vip')", "last_purchase_days_ago IS NULL"];
    let segments = texts
        .iter()
        .map(|t| pb::Segment { segment: Some(pb::segment::Segment::Where(t.to_string())) })
        .collect();
    let o = c.overlap(pb::OverlapRequest { segments }).await.unwrap().into_inner();
    for (i, a) in texts.iter().enumerate() {
        assert_eq!(o.rows[i].counts[i], oracle(&parse(a)), "diagonal {a}");
        for (j, b) in texts.iter().enumerate().skip(i + 1) {
            assert_eq!(o.rows[i].counts[j], o.rows[j].counts[i], "symmetric");
            assert_eq!(o.rows[i].counts[j], oracle(&parse(&format!("({a}) AND ({b})"))), "{a} & {b}");
        }
    }
}

/// A request of each bad-input class, its code and a word its message must contain.
fn bad_counts() -> Vec<(pb::CountSegmentRequest, Code, &'static str)> {
    use pb::predicate::Node;
    let w = |t: String| pb::CountSegmentRequest { segment: where_(&t) };
    let p = |p: pb::Predicate| pb::CountSegmentRequest {
        segment: Some(pb::count_segment_request::Segment::Predicate(p)),
    };
    let mut deep_not = node(Node::IsNull(pb::IsNull { column: "age".into(), negated: false }));
    for _ in 0..70 {
        deep_not = node(Node::Not(Box::new(deep_not)));
    }
    let mut deep_and = node(Node::IsNull(pb::IsNull { column: "age".into(), negated: false }));
    for _ in 0..200 {
        deep_and = node(Node::And(pb::PredicateList { args: vec![deep_and] }));
    }
    let in_list = (0..10_001).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let in_values = (0..10_001).map(int).collect();
    vec![
        (w("age >".into()), Code::InvalidArgument, "syntax"),
        (w("frobs = 1".into()), Code::InvalidArgument, "frobs"),
        (w("age = 'old'".into()), Code::InvalidArgument, "age"),
        (w("age + 1 > 3".into()), Code::InvalidArgument, "unsupported"),
        (w(format!("age IN ({in_list})")), Code::InvalidArgument, "IN list"),
        (
            p(node(Node::In(pb::In { column: "age".into(), values: in_values }))),
            Code::InvalidArgument,
            "IN list",
        ),
        (w(format!("country = '{}'", "x".repeat(70_000))), Code::InvalidArgument, "max-where-bytes"),
        (w(format!("country = '{}'", "x".repeat(5 << 20))), Code::OutOfRange, "limit"),
        (pb::CountSegmentRequest { segment: None }, Code::InvalidArgument, "no segment"),
        (
            pb::CountSegmentRequest {
                segment: Some(pb::count_segment_request::Segment::SegmentId("vip".into())),
            },
            Code::NotFound,
            "'vip'",
        ),
        (p(pb::Predicate { node: None }), Code::InvalidArgument, "no node"),
        (p(node(Node::Eq(pb::Eq { column: "age".into(), value: None }))), Code::InvalidArgument, "value"),
        (
            p(node(Node::Eq(pb::Eq { column: "age".into(), value: Some(pb::Value { kind: None }) }))),
            Code::InvalidArgument,
            "kind",
        ),
        (
            p(node(Node::Range(pb::Range { column: "age".into(), ..Default::default() }))),
            Code::InvalidArgument,
            "range",
        ),
        (p(node(Node::Or(pb::PredicateList { args: vec![] }))), Code::InvalidArgument, "'or'"),
        (
            p(node(Node::In(pb::In { column: "country".into(), values: vec![] }))),
            Code::InvalidArgument,
            "'in'",
        ),
        (p(deep_not), Code::InvalidArgument, "depth"),
        (p(deep_and), Code::InvalidArgument, "malformed"),
    ]
}

#[tokio::test]
async fn every_bad_input_has_its_code_and_the_server_survives() {
    let mut c = client().await;
    let metrics = fixture().server.metrics();
    let rejected_before = metrics.calls(segd::metrics::Rpc::CountSegment, Code::InvalidArgument as i32);
    for (req, code, word) in bad_counts() {
        let what: String = format!("{req:?}").chars().take(100).collect();
        let err = c.count_segment(req).await.expect_err(&what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        assert!(err.message().contains(word), "{what}: '{}' lacks '{word}'", err.message());
    }
    assert!(
        metrics.calls(segd::metrics::Rpc::CountSegment, Code::InvalidArgument as i32) > rejected_before,
        "errors are counted"
    );

    let seg = || Some(pb::batch_is_member_request::Segment::Where("age > 1".into()));
    let err = c
        .batch_is_member(pb::BatchIsMemberRequest { customer_ids: vec![1; 100_001], segment: seg() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("max-batch-ids"), "{}", err.message());

    let one = || pb::Segment { segment: Some(pb::segment::Segment::Where("age > 1".into())) };
    let err = c.overlap(pb::OverlapRequest { segments: vec![one(); 17] }).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("max-overlap-segments"));
    let err = c.overlap(pb::OverlapRequest { segments: vec![] }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .overlap(pb::OverlapRequest { segments: vec![one(), pb::Segment { segment: None }] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let bd = |attribute: &str, top_n| pb::BreakdownRequest {
        segment: Some(pb::breakdown_request::Segment::Where("age > 1".into())),
        attribute: attribute.into(),
        top_n,
    };
    for (req, word) in [
        (bd("tier", 1001), "max-breakdown-top-n"),
        (bd("no_such", 5), "no_such"),
        (bd("total_spend_eur", 5), "total_spend_eur"),
    ] {
        let err = c.breakdown(req).await.unwrap_err();
        assert!(err.code() == Code::InvalidArgument && err.message().contains(word), "{}", err.message());
    }
    let err = c
        .is_member(pb::IsMemberRequest {
            customer_id: 1,
            segment: Some(pb::is_member_request::Segment::SegmentId("x".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Still serving, on the same connection and on a new one.
    for mut c in [c, client().await] {
        let r = c.count_segment(pb::CountSegmentRequest { segment: where_("age >= 18") }).await.unwrap();
        assert_eq!(r.into_inner().count, oracle(&parse("age >= 18")));
    }
}

#[tokio::test]
async fn health_serving_and_reflection_lists_the_service() {
    let f = fixture();
    let channel = Channel::from_shared(format!("http://{}", f.addr)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["segd.v1.SegmentService", ""] {
        let r = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap();
        assert_eq!(r.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    }

    {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse, ServerReflectionRequest,
        };
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(l)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1alpha: not a list of services")
        };
        let names: Vec<_> = l.service.into_iter().map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == "segd.v1.SegmentService"), "v1alpha lists {names:?}");
        assert!(names.iter().any(|n| n == "grpc.health.v1.Health"), "v1alpha lists {names:?}");
    }
    {
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse, ServerReflectionRequest,
        };
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("segd.v1.SegmentService".into())),
        };
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter(vec![list, req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(l)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1: not a list of services")
        };
        assert!(l.service.iter().any(|s| s.name == "segd.v1.SegmentService"));
        let Some(MessageResponse::FileDescriptorResponse(fd)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1: no file descriptor for segd.v1.SegmentService")
        };
        assert!(!fd.file_descriptor_proto.is_empty());
    }
}

#[tokio::test]
async fn metrics_endpoint_reports_calls_and_memory() {
    let f = fixture();
    let mut c = client().await;
    c.count_segment(pb::CountSegmentRequest { segment: where_("age > 50") }).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = f.server.clone();
    let task = tokio::spawn(async move {
        server
            .serve_metrics(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body:.200}");
    for needle in [
        "segd_rpc_calls_total{rpc=\"CountSegment\",code=\"OK\"}",
        "segd_rpc_duration_seconds_bucket{le=\"+Inf\",rpc=\"CountSegment\"}",
        "segd_customers 150000",
        "segd_memory_index_bytes",
        "segd_plan_cache_misses_total",
        "# EOF",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}");
    }
    // Per column: one values and one index line for every column of the table, the values
    // adding up to the columns' total.
    let gauge = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    let total = body.lines().find(|l| l.starts_with("segd_memory_columns_bytes ")).map(gauge).unwrap();
    let values: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("segd_memory_column_bytes{") && l.contains("part=\"values\""))
        .collect();
    let index = body
        .lines()
        .filter(|l| l.starts_with("segd_memory_column_bytes{") && l.contains("part=\"index\""))
        .count();
    assert_eq!((values.len(), index), (segd::gen::schema().fields().len(), values.len()), "{body}");
    assert!(values.iter().any(|l| l.contains("column=\"age\"")), "{body}");
    assert_eq!(values.iter().map(|l| gauge(l)).sum::<u64>(), total);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_and_returns() {
    let batches = segd::gen::generate(5_000, 1);
    let ds = Dataset::from_batches(segd::gen::schema(), batches.into_iter().map(Ok), "customer_id").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(segd::server::run(listener, Arc::new(ds), Config::default(), async {
        let _ = stopped.await;
    }));
    let mut c = SegmentServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let r = c.count_segment(pb::CountSegmentRequest { segment: where_("age > 0") }).await.unwrap();
    assert_eq!(r.into_inner().total, 5_000);
    drop(c);
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server).await.expect("stops").unwrap().unwrap();
}
