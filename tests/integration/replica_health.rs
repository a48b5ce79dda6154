//! `--max-serving-lag`: a replica or cluster member further behind its log than the bound
//! reports NOT_SERVING on grpc.health.v1 (the whole server and both data services) and
//! `segd_replica_catching_up 1`, and SERVING again once within it; a follower that
//! stopped for good keeps it NOT_SERVING whatever the lag.
//!
//! In process, with the follower's reports made by hand ([`ReplicaStatus::progress`] is
//! what the follower calls), so every lag is exact and no NATS is needed; the oracle is
//! the bound's definition: NOT_SERVING exactly when `stream_last - applied > bound`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use segd::app::replica::ReplicaStatus;
use segd::server::{Config, Server};
use segd::store::Dataset;

const SERVICES: [&str; 3] = ["", "segd.v1.SegmentService", "segd.v1.CustomerService"];

/// Every service's health, once all are `want` (the reporter is told asynchronously).
async fn health_becomes(ch: &Channel, want: ServingStatus, what: &str) {
    let mut h = HealthClient::new(ch.clone());
    let t = Instant::now();
    for service in SERVICES {
        loop {
            let got =
                h.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status();
            if got == want {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{what}: health of '{service}' stays {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One gauge from `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_beyond_its_max_serving_lag_is_not_serving_until_it_catches_up() {
    let batches = segd::gen::generate(500, 3);
    let ds = Dataset::from_batches(segd::gen::schema(), batches.into_iter().map(Ok), "customer_id").unwrap();
    let status = Arc::new(ReplicaStatus::new("a test's primary".into()));
    status.set_max_lag(5);
    let server = Server::new(Arc::new(ds), Config { replica: Some(status.clone()), ..Config::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics) = (listener.local_addr().unwrap(), metrics_listener.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.serve_metrics(metrics_listener, std::future::pending()).await });
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await.unwrap() });
    let ch = loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            break ch;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Before the follower's first look at the log, the node is not known to be current.
    health_becomes(&ch, ServingStatus::NotServing, "no progress reported yet").await;
    assert_eq!(metric(metrics, "segd_replica_catching_up"), Some(1));
    assert_eq!(metric(metrics, "segd_replica_max_serving_lag"), Some(5));
    // (applied, stream_last): behind by 0, 5 (the bound: still serving), 6, 100, 1, 0.
    for (applied, last) in [(10, 10), (10, 15), (10, 16), (20, 120), (119, 120), (120, 120)] {
        status.progress(applied, last);
        let (want, flag) =
            if last - applied > 5 { (ServingStatus::NotServing, 1) } else { (ServingStatus::Serving, 0) };
        health_becomes(&ch, want, &format!("applied {applied} of {last}")).await;
        assert_eq!(metric(metrics, "segd_replica_catching_up"), Some(flag), "applied {applied} of {last}");
        assert_eq!(metric(metrics, "segd_replica_lag"), Some(last - applied));
    }
    // A follower stopped for good: NOT_SERVING, even with no lag reported afterwards.
    status.stop("a test stopped it".into());
    health_becomes(&ch, ServingStatus::NotServing, "stopped").await;
    status.progress(130, 131);
    status.progress(131, 131);
    tokio::time::sleep(Duration::from_millis(100)).await;
    health_becomes(&ch, ServingStatus::NotServing, "stopped, then caught up").await;
    assert_eq!(metric(metrics, "segd_replica_stopped"), Some(1));
}
