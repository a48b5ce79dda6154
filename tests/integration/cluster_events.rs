//! `--publish-events`: saved segments' events in JetStream (`segd.events.<segment_id>`,
//! stream `<stream>-events`), read by a durable consumer across a SIGKILL and restart of
//! the segd node, with the real binary and a real `nats-server -js`.
//!
//! The oracle is the test's own account of its writes: which customers it moved into the
//! segment `hot` (`loyalty_points >= MARK`) and out of it, at the sequences the writes
//! were acknowledged with. Every expected event must arrive, nothing else may, and a
//! message delivered twice (at-least-once) must carry the same content under its id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use tokio_stream::StreamExt;

use super::replication::{connect, customer, demo, demo_ids, nats_server_bin, spawn_segd, start_nats, MARK};
use segd::grpc::pb;

/// (sequence, customer, "ENTERED" | "LEFT") → how the test wrote it.
type Expected = BTreeMap<(u64, u64), &'static str>;

/// Fetches from the durable consumer until `want` distinct messages arrived (bounded),
/// acknowledging each; checks each message against the model and its copies.
async fn read_events(
    consumer: &jetstream::consumer::PullConsumer,
    want: &Expected,
    seen: &mut BTreeMap<String, Vec<u8>>,
    got: &mut Expected,
) {
    let t = Instant::now();
    while want.keys().any(|k| !got.contains_key(k)) {
        assert!(t.elapsed() < Duration::from_secs(30), "events missing: have {got:?}, want {want:?}");
        let mut batch =
            consumer.batch().max_messages(100).expires(Duration::from_millis(500)).messages().await.unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let headers = m.headers.clone().expect("headers");
            let id = headers.get("Nats-Msg-Id").expect("a message id").as_str().to_string();
            let seq: u64 = headers.get("Segd-Sequence").expect("its sequence").as_str().parse().unwrap();
            let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(m.subject.as_str(), "segd.events.hot");
            assert_eq!(body["sequence"], seq, "{body}");
            assert_eq!(body["segment_id"], "hot");
            let customer = body["customer_id"].as_u64().unwrap();
            assert_eq!(id, format!("{seq}.hot.{customer}"));
            if let Some(before) = seen.insert(id.clone(), m.payload.to_vec()) {
                assert_eq!(before, m.payload.to_vec(), "a copy of {id} with another content");
            }
            let change = match body["change"].as_str().unwrap() {
                "ENTERED" => "ENTERED",
                "LEFT" => "LEFT",
                other => panic!("change {other}"),
            };
            assert_eq!(want.get(&(seq, customer)), Some(&change), "unexpected event {body}");
            got.insert((seq, customer), change);
            m.ack().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_gets_every_segment_event_across_a_segd_restart() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&bin, dir.path());
    let role = ["--cluster", &nats.url, "--replica-name", "a", "--publish-events"];
    let mut a = spawn_segd(&dir.path().join("a"), &role, "a");
    let (mut segs, mut custs) = connect(&mut a).await;
    let create = pb::CreateSegmentRequest {
        segment_id: "hot".into(),
        definition: Some(pb::create_segment_request::Definition::Where(format!("loyalty_points >= {MARK}"))),
        description: String::new(),
    };
    segs.create_segment(create).await.unwrap();
    let ids = demo_ids(&demo());
    let mut want = Expected::new();
    let upsert = |ids: &[u64], points: i64| pb::UpsertCustomersRequest {
        customers: ids.iter().map(|&id| customer(id, points)).collect(),
    };
    let seq = custs.upsert_customers(upsert(&ids[..50], MARK)).await.unwrap().into_inner().sequence;
    want.extend(ids[..50].iter().map(|&id| ((seq, id), "ENTERED")));

    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let stream = js.get_stream("segtest-events").await.unwrap();
    let config = pull::Config {
        durable_name: Some("campaign".into()),
        filter_subject: "segd.events.hot".into(),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let consumer = stream.create_consumer(config).await.unwrap();
    let (mut seen, mut got) = (BTreeMap::new(), Expected::new());
    read_events(&consumer, &want, &mut seen, &mut got).await;

    // segd killed and restarted on its data dir; the consumer found again by its name.
    a.proc.kill9();
    let mut a = spawn_segd(&dir.path().join("a"), &role, "a2");
    let (_, mut custs) = connect(&mut a).await;
    let seq = custs.upsert_customers(upsert(&ids[100..130], MARK + 1)).await.unwrap().into_inner().sequence;
    want.extend(ids[100..130].iter().map(|&id| ((seq, id), "ENTERED")));
    let seq = custs.upsert_customers(upsert(&ids[..10], 0)).await.unwrap().into_inner().sequence;
    want.extend(ids[..10].iter().map(|&id| ((seq, id), "LEFT")));
    let consumer: jetstream::consumer::PullConsumer = stream.get_consumer("campaign").await.unwrap();
    read_events(&consumer, &want, &mut seen, &mut got).await;
    assert_eq!(got, want);
    // Nothing more: no event of a write that moved nobody, and no copy left unread that
    // differs (read_events checked every copy it saw).
    let mut more = consumer.fetch().max_messages(10).messages().await.unwrap();
    while let Some(m) = more.next().await {
        let m = m.unwrap();
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).unwrap().as_str().to_string();
        assert_eq!(seen.get(&id).map(Vec::as_slice), Some(&m.payload[..]), "an unexpected message {id}");
    }
    drop(nats);
}
