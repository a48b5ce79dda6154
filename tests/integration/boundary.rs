//! Every class of value that cannot be stored and logged exactly, sent through the real
//! server: each gets INVALID_ARGUMENT naming it, nothing is logged, and after SIGKILL the
//! server starts again with the data intact (the NaN reproduction included).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb::{
    self, customer_service_client::CustomerServiceClient, segment_service_client::SegmentServiceClient,
};
use segd::store::mutate::{MAX_LIST_ITEMS, MAX_STR_BYTES};

type Segs = SegmentServiceClient<Channel>;
type Custs = CustomerServiceClient<Channel>;

/// The server process; killed (SIGKILL) when dropped.
struct Segd {
    child: Child,
    log: std::path::PathBuf,
    addr: SocketAddr,
}

impl Drop for Segd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, run: usize) -> Segd {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.with_extension(format!("boundary-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_segd"))
        .args(["serve", "--demo", "2000", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string()])
        .env("SEGD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("segd starts");
    Segd { child, log, addr }
}

async fn connect(s: &mut Segd) -> (Segs, Custs) {
    let t = Instant::now();
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{}", s.addr)).unwrap().connect().await {
            let mut segs = SegmentServiceClient::new(ch.clone());
            if segs.list_segments(pb::ListSegmentsRequest {}).await.is_ok() {
                return (segs, CustomerServiceClient::new(ch));
            }
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!("segd exited with {status}: {}", std::fs::read_to_string(&s.log).unwrap_or_default());
        }
        assert!(t.elapsed() < Duration::from_secs(60), "segd did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(kind: pb::customer::value::Kind) -> pb::customer::Value {
    pb::customer::Value { kind: Some(kind) }
}

fn customer(id: u64, attr: &str, kind: pb::customer::value::Kind) -> pb::UpsertCustomersRequest {
    pb::UpsertCustomersRequest {
        customers: vec![pb::Customer {
            customer_id: id,
            attributes: [(attr.to_string(), value(kind))].into(),
        }],
    }
}

async fn attribute(c: &mut Custs, id: u64, attr: &str) -> Option<pb::customer::value::Kind> {
    let got =
        c.get_customer(pb::GetCustomerRequest { customer_id: id }).await.expect("customer").into_inner();
    got.attributes.get(attr).and_then(|v| v.kind.clone())
}

fn float_range(gt: f64) -> pb::Predicate {
    pb::Predicate {
        node: Some(pb::predicate::Node::Range(pb::Range {
            column: "churn_risk".into(),
            gt: Some(pb::Value { kind: Some(pb::value::Kind::FloatValue(gt)) }),
            ..Default::default()
        })),
    }
}

#[test]
fn every_invalid_value_class_is_refused_and_a_killed_server_restarts() {
    use pb::customer::value::Kind as K;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut server = start(&dir, 0);
        let (mut segs, mut custs) = connect(&mut server).await;
        custs
            .add_attribute(pb::AddAttributeRequest {
                name: "birthday".into(),
                r#type: pb::AttributeType::Date as i32,
            })
            .await
            .expect("a date attribute");
        let good =
            custs.upsert_customers(customer(7, "churn_risk", K::FloatValue(0.5))).await.expect("valid write");
        let before = good.into_inner().sequence;

        // (request, what the message must name)
        let upserts: Vec<(pb::UpsertCustomersRequest, Vec<String>)> = vec![
            (
                customer(7, "churn_risk", K::FloatValue(f64::NAN)),
                vec!["customer 7".into(), "churn_risk".into(), "NaN".into()],
            ),
            (
                customer(7, "churn_risk", K::FloatValue(f64::INFINITY)),
                vec!["churn_risk".into(), "inf".into()],
            ),
            (
                customer(7, "churn_risk", K::FloatValue(f64::NEG_INFINITY)),
                vec!["churn_risk".into(), "-inf".into()],
            ),
            (
                customer(8, "level", K::IntValue(300)),
                vec!["customer 8".into(), "level".into(), "300".into(), "Int8".into()],
            ),
            (customer(8, "age", K::IntValue(300)), vec!["age".into(), "300".into(), "UInt8".into()]),
            (customer(8, "age", K::FloatValue(20.5)), vec!["age".into(), "20.5".into()]),
            (
                customer(9, "birthday", K::StringValue("2023-02-30".into())),
                vec!["birthday".into(), "2023-02-30".into(), "date".into()],
            ),
            (customer(u64::MAX, "level", K::IntValue(1)), vec![u64::MAX.to_string(), "customer_id".into()]),
            (
                customer(9, "city", K::StringValue("x".repeat(MAX_STR_BYTES + 1))),
                vec!["city".into(), (MAX_STR_BYTES + 1).to_string()],
            ),
            (
                customer(
                    9,
                    "badges",
                    K::ListValue(pb::StringList { values: vec!["b".into(); MAX_LIST_ITEMS + 1] }),
                ),
                vec!["badges".into(), (MAX_LIST_ITEMS + 1).to_string()],
            ),
        ];
        for (req, names) in upserts {
            let st = custs.upsert_customers(req).await.expect_err("refused");
            assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
            for n in names {
                assert!(st.message().contains(&n), "'{n}' not in: {}", st.message());
            }
        }
        let create = |id: &str, description: String, definition| pb::CreateSegmentRequest {
            segment_id: id.into(),
            definition: Some(definition),
            description,
        };
        use pb::create_segment_request::Definition as D;
        let creates = vec![
            (create("nan", String::new(), D::Predicate(float_range(f64::NAN))), "not finite"),
            (create("inf", String::new(), D::Predicate(float_range(f64::INFINITY))), "not finite"),
            (create("long", "d".repeat(MAX_STR_BYTES + 1), D::Where("age > 3".into())), "description"),
            (create("bad id!", String::new(), D::Where("age > 3".into())), "bad id!"),
            (create("big", String::new(), D::Where("total_spend_eur > 1e999".into())), "1e999"),
        ];
        for (req, name) in creates {
            let st = segs.create_segment(req).await.expect_err("refused");
            assert_eq!(st.code(), Code::InvalidArgument, "{}", st.message());
            assert!(st.message().contains(name), "'{name}' not in: {}", st.message());
        }
        let st = custs
            .add_attribute(pb::AddAttributeRequest {
                name: "1x".into(),
                r#type: pb::AttributeType::Int as i32,
            })
            .await
            .expect_err("refused");
        assert_eq!(st.code(), Code::InvalidArgument);

        // Nothing refused was logged: the next write takes the next sequence.
        let next =
            custs.upsert_customers(customer(8, "level", K::IntValue(-128))).await.unwrap().into_inner();
        assert_eq!(next.sequence, before + 1);

        // SIGKILL, restart: it starts, and holds exactly what was acknowledged.
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        drop(server);
        let mut server = start(&dir, 1);
        let (mut segs, mut custs) = connect(&mut server).await;
        assert_eq!(attribute(&mut custs, 7, "churn_risk").await, Some(K::FloatValue(0.5)));
        assert_eq!(attribute(&mut custs, 8, "level").await, Some(K::IntValue(-128)));
        assert_eq!(attribute(&mut custs, 9, "birthday").await, Some(K::NullValue(true)));
        let listed = segs.list_segments(pb::ListSegmentsRequest {}).await.unwrap().into_inner();
        assert!(listed.segments.is_empty(), "{listed:?}");
        let more = custs.upsert_customers(customer(7, "churn_risk", K::FloatValue(0.75))).await.unwrap();
        assert_eq!(more.into_inner().sequence, before + 2);
    });
}
