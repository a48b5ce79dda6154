//! A write path that survives its own bugs (issue 9), through the real gRPC server: an
//! injected panic in apply answers its callers INTERNAL, turns health NOT_SERVING,
//! refuses later writes while reads go on; a restart stops at the record, naming it and
//! `--skip-sequence`; skipping it serves again.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use segd::db::{DbError, DbOptions};
use segd::grpc::pb::{
    self, customer_service_client::CustomerServiceClient, segment_service_client::SegmentServiceClient,
};
use segd::server::{Config, Server};
use segd::store::Dataset;

fn open(dir: &Path, fail_apply_at: Option<u64>, skip: Vec<u64>) -> Result<Server, DbError> {
    let mut opts = DbOptions { data_dir: dir.to_path_buf(), skip_sequences: skip, ..DbOptions::default() };
    opts.fail_apply_at = fail_apply_at;
    tokio::task::block_in_place(|| {
        Server::open(
            opts,
            || {
                let b = segd::gen::generate(5_000, 3);
                Ok(Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
            },
            Config::default(),
        )
    })
}

/// Serves on 127.0.0.1 until the returned sender fires (the task then ends, dropping its
/// handle on the data dir).
async fn serve(server: &Server) -> (Channel, Stop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    (ch, Stop { tx, task })
}

struct Stop {
    tx: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), Box<dyn std::error::Error + Send + Sync>>>,
}

/// Stops serving and closes the data dir (final snapshot, lock released).
async fn stop(server: Server, stop: Stop, ch: Channel) {
    drop(ch);
    let _ = stop.tx.send(());
    stop.task.await.unwrap().unwrap();
    tokio::task::block_in_place(|| server.close()).unwrap();
}

fn tier(id: u64, t: &str) -> pb::UpsertCustomersRequest {
    let v = pb::customer::Value { kind: Some(pb::customer::value::Kind::StringValue(t.into())) };
    pb::UpsertCustomersRequest {
        customers: vec![pb::Customer { customer_id: id, attributes: [("tier".to_string(), v)].into() }],
    }
}

async fn count(ch: &Channel, text: &str) -> u64 {
    let seg = Some(pb::count_segment_request::Segment::Where(text.into()));
    let mut s = SegmentServiceClient::new(ch.clone());
    s.count_segment(pb::CountSegmentRequest { segment: seg }).await.unwrap().into_inner().count
}

/// The health of `service`, once it is `want` (the reporter is told asynchronously).
async fn health_becomes(ch: &Channel, service: &str, want: ServingStatus) {
    let mut h = HealthClient::new(ch.clone());
    let t = Instant::now();
    loop {
        let got =
            h.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status();
        if got == want {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "health of '{service}' stays {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_panic_is_internal_not_serving_and_named_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path(), Some(2), vec![]).unwrap();
    let (ch, running) = serve(&server).await;
    let mut c = CustomerServiceClient::new(ch.clone());
    health_becomes(&ch, "segd.v1.CustomerService", ServingStatus::Serving).await;
    assert_eq!(c.upsert_customers(tier(1, "FAULTY_A")).await.unwrap().into_inner().sequence, 1);

    let err = c.upsert_customers(tier(2, "FAULTY_B")).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("log record 2 (upsert of 1 customers [2])"), "{}", err.message());
    for service in ["segd.v1.SegmentService", "segd.v1.CustomerService", ""] {
        health_becomes(&ch, service, ServingStatus::NotServing).await;
    }
    let err = c.upsert_customers(tier(3, "FAULTY_C")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("writes are refused") && err.message().contains("log record 2"),
        "{}",
        err.message()
    );
    // Reads answer from the last good version.
    assert_eq!(count(&ch, "tier = 'FAULTY_A'").await, 1);
    assert_eq!(count(&ch, "tier = 'FAULTY_B'").await, 0);
    drop(c);
    stop(server, running, ch).await;

    // Restart: the record fails again, start-up stops with the escape hatch.
    let err = open(dir.path(), Some(2), vec![]).err().expect("start-up stops");
    assert!(matches!(err, DbError::Replay { sequence: 2, .. }), "{err}");
    assert!(err.to_string().contains("segd serve --skip-sequence 2"), "{err}");

    // Skipped, it serves again: health SERVING, writes taken.
    let server = open(dir.path(), Some(2), vec![2]).unwrap();
    let (ch, running) = serve(&server).await;
    health_becomes(&ch, "segd.v1.CustomerService", ServingStatus::Serving).await;
    let mut c = CustomerServiceClient::new(ch.clone());
    assert_eq!(c.upsert_customers(tier(3, "FAULTY_C")).await.unwrap().into_inner().sequence, 3);
    assert_eq!(count(&ch, "tier = 'FAULTY_A' OR tier = 'FAULTY_B' OR tier = 'FAULTY_C'").await, 2);
    drop(c);
    stop(server, running, ch).await;
}
