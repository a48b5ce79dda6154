//! `segd.v1.DecisionService` over gRPC, against independent oracles: the reach funnel
//! equals a row-by-row count over the generated batches ([`segd::naive`]), the ranking
//! equals a plain sort of priorities computed by hand from each customer's row, caps are
//! counted by hand, and all of it holds after a restart from the log and from a snapshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt64Type, UInt8Type};
use arrow_array::{Array, RecordBatch};
use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb::decision_service_client::DecisionServiceClient;
use segd::grpc::pb::{self, offer};
use segd::query::Limits;
use segd::server::Server;

pub(super) const ROWS: usize = 3_000;
const SEED: u64 = 21;
const DAY: i64 = 86_400_000;

pub(super) type Client = DecisionServiceClient<Channel>;

pub(super) struct Running {
    pub(super) server: Server,
    /// Where the gRPC service listens.
    pub(super) addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    pub(super) client: Client,
}

pub(super) async fn start(dir: &Path) -> Running {
    let s = super::common::serve_generated(dir, ROWS, SEED).await;
    Running {
        server: s.server,
        addr: s.addr,
        stop: s.stop,
        done: s.done,
        client: DecisionServiceClient::new(s.channel),
    }
}

/// Stops serving; `snapshot`: close the data dir (final snapshot, log cut), else leave the
/// log to be replayed (as after a crash).
pub(super) async fn stop(r: Running, snapshot: bool) {
    let Running { server, addr: _, stop, done, client } = r;
    drop(client);
    let _ = stop.send(());
    done.await.unwrap();
    if snapshot {
        tokio::task::block_in_place(|| server.close().unwrap());
    }
    drop(server);
}

pub(super) fn where_(t: &str) -> Option<pb::Segment> {
    Some(pb::Segment { segment: Some(pb::segment::Segment::Where(t.into())) })
}

/// "young": on web, age < 40, value 2, propensity 0.5, capped at 1 per day.
/// "gold": on web, tier GOLD, value avg_basket_eur x 0.1, propensity churn_risk.
/// "fb": the fallback.
pub(super) fn offers() -> Vec<pb::Offer> {
    let base = pb::Offer { channels: vec!["web".into()], ..Default::default() };
    vec![
        pb::Offer {
            id: "young".into(),
            eligibility: where_("age < 40"),
            value: Some(offer::Value::ValueConstant(2.0)),
            propensity: Some(offer::Propensity::PropensityConstant(0.5)),
            cap: Some(pb::Limit { max: 1, window_ms: DAY }),
            ..base.clone()
        },
        pb::Offer {
            id: "gold".into(),
            eligibility: where_("tier = 'GOLD'"),
            value: Some(offer::Value::ValueAttribute(pb::AttributeValue {
                attribute: "avg_basket_eur".into(),
                factor: 0.1,
            })),
            propensity: Some(offer::Propensity::PropensityAttribute("churn_risk".into())),
            ..base.clone()
        },
        pb::Offer {
            id: "fb".into(),
            value: Some(offer::Value::ValueConstant(0.01)),
            propensity: Some(offer::Propensity::PropensityConstant(1.0)),
            fallback: true,
            ..base
        },
    ]
}

/// One customer's row, as the oracle reads it.
struct Row {
    age: u8,
    gold: bool,
    basket: Option<f64>,
    churn: Option<f64>,
}

fn rows() -> BTreeMap<u64, Row> {
    let mut out = BTreeMap::new();
    for b in segd::gen::generate(ROWS, SEED) {
        let b: RecordBatch = b;
        let ids = b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>().clone();
        let age = b.column_by_name("age").unwrap().as_primitive::<UInt8Type>().clone();
        let tier = b.column_by_name("tier").unwrap().as_string::<i32>().clone();
        let basket = b.column_by_name("avg_basket_eur").unwrap().as_primitive::<Float64Type>().clone();
        let churn = b.column_by_name("churn_risk").unwrap().as_primitive::<Float64Type>().clone();
        let f = |a: &arrow_array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..b.num_rows() {
            let row = Row {
                age: age.value(i),
                gold: tier.value(i) == "GOLD",
                basket: f(&basket, i),
                churn: f(&churn, i),
            };
            out.insert(ids.value(i), row);
        }
    }
    out
}

/// The oracle's ranking: (offer, priority) of the offers that qualify, by priority then id.
fn expected(row: &Row, young_capped: bool) -> Vec<(String, f64)> {
    let mut v = vec![];
    if row.age < 40 && !young_capped {
        v.push(("young".to_string(), 0.5 * 2.0));
    }
    if row.gold {
        if let (Some(b), Some(c)) = (row.basket, row.churn) {
            if (0.0..=1.0).contains(&c) {
                v.push(("gold".to_string(), c * (b * 0.1)));
            }
        }
    }
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if v.is_empty() {
        v.push(("fb".to_string(), 0.01));
    }
    v
}

pub(super) fn nbo(customer_id: u64, dry_run: bool) -> pb::NextBestOfferRequest {
    pb::NextBestOfferRequest {
        customer_id,
        context: Some(pb::DecisionContext {
            channel: "web".into(),
            placement: "home".into(),
            ..Default::default()
        }),
        max_results: 5,
        counts_as_impression: None,
        dry_run,
        explain: true,
    }
}

pub(super) fn got(r: &pb::NextBestOfferResponse) -> Vec<(String, f64)> {
    r.offers.iter().map(|o| (o.offer_id.clone(), o.priority)).collect()
}

pub(super) fn assert_ranking(want: &[(String, f64)], got: &[(String, f64)], customer: u64) {
    assert_eq!(want.len(), got.len(), "customer {customer}: {want:?} vs {got:?}");
    for (w, g) in want.iter().zip(got) {
        assert_eq!(w.0, g.0, "customer {customer}");
        assert!((w.1 - g.1).abs() <= 1e-12 * w.1.abs().max(1.0), "customer {customer}: {w:?} vs {g:?}");
    }
}

async fn reach(c: &mut Client, offer: &str) -> pb::ReachEstimateResponse {
    let ctx = pb::DecisionContext { channel: "web".into(), ..Default::default() };
    c.reach_estimate(pb::ReachEstimateRequest { offer_id: offer.into(), context: Some(ctx) })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_over_grpc_match_the_oracles_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let table = rows();
    let mut r = start(dir.path()).await;
    for o in offers() {
        let put = r.client.put_offer(pb::PutOfferRequest { offer: Some(o) }).await.unwrap().into_inner();
        assert!(!put.replaced);
    }
    // Refused before logging, naming the offer and the field.
    let mut bad = offers()[0].clone();
    bad.holdout_pct = 120.0;
    let e = r.client.put_offer(pb::PutOfferRequest { offer: Some(bad) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("'young'") && e.message().contains("holdout_pct"), "{}", e.message());
    let mut bad = offers()[1].clone();
    bad.channels = vec!["fax".into()];
    let e = r.client.put_offer(pb::PutOfferRequest { offer: Some(bad) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("fax"), "{}", e.message());
    let listed = r.client.list_offers(pb::ListOffersRequest {}).await.unwrap().into_inner().offers;
    assert_eq!(listed.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["fb", "gold", "young"]);

    // Reach before any decision: the row-by-row count of age < 40.
    let young: u64 = table.values().filter(|r| r.age < 40).count() as u64;
    let f = reach(&mut r.client, "young").await;
    assert_eq!((f.customers, f.eligible, f.suitable), (ROWS as u64, young, young));
    assert_eq!(f.not_suppressed, young);
    // Same with a row-by-row evaluator of the SQL text itself.
    let batches = segd::gen::generate(ROWS, SEED);
    let e = segd::query::sql::parse("age < 40", &Limits::default()).unwrap();
    let naive: u64 = batches
        .iter()
        .map(|b| {
            (0..b.num_rows()).filter(|&i| segd::naive::eval(b, i, &e).unwrap() == Some(true)).count() as u64
        })
        .sum();
    assert_eq!(naive, young);

    // Decisions: the ranking of a plain sort; a customer shown "young" is capped after.
    let mut shown_young = 0u64;
    for id in 1..=60u64 {
        let a = r.client.next_best_offer(nbo(id, false)).await.unwrap().into_inner();
        assert!(a.sequence > 0 && a.decision_id > 0);
        assert_ranking(&expected(&table[&id], false), &got(&a), id);
        // Every offer of the catalogue is presented or dropped, with a stage.
        assert_eq!(a.offers.len() + a.dropped.len(), 3, "{a:?}");
        if a.offers.iter().any(|o| o.offer_id == "young") {
            shown_young += 1;
        }
        let again = r.client.next_best_offer(nbo(id, true)).await.unwrap().into_inner();
        assert_ranking(&expected(&table[&id], table[&id].age < 40), &got(&again), id);
        if table[&id].age < 40 {
            let d = again.dropped.iter().find(|d| d.offer_id == "young").unwrap();
            assert_eq!(d.stage, "cap", "{d:?}");
        }
    }
    assert!(shown_young > 10);
    let f = reach(&mut r.client, "young").await;
    assert_eq!(f.not_capped, young - shown_young, "capped customers counted by hand");

    // Outcomes: recorded once, idempotent, refused for an offer not presented.
    let a = r.client.next_best_offer(nbo(100, false)).await.unwrap().into_inner();
    let first = a.offers[0].offer_id.clone();
    let out = |offer_id: &str, outcome: pb::Outcome| pb::RecordOutcomeRequest {
        decision_id: a.decision_id,
        offer_id: offer_id.into(),
        outcome: outcome as i32,
        at_ms: None,
    };
    let o = r.client.record_outcome(out(&first, pb::Outcome::Accept)).await.unwrap().into_inner();
    assert!(!o.duplicate);
    let o = r.client.record_outcome(out(&first, pb::Outcome::Accept)).await.unwrap().into_inner();
    assert!(o.duplicate);
    let e = r.client.record_outcome(out("nope", pb::Outcome::Click)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let e = r.client.record_outcome(out(&first, pb::Outcome::Unspecified)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = r.client.next_best_offer(nbo(99_999_999, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Restart from the log, then from a snapshot: caps still hold, the funnel is the same.
    for snapshot in [false, true] {
        stop(r, snapshot).await;
        r = start(dir.path()).await;
        let f2 = reach(&mut r.client, "young").await;
        assert_eq!(
            f2.not_capped,
            young - shown_young - u64::from(table[&100].age < 40),
            "snapshot={snapshot}"
        );
        for id in 1..=60u64 {
            let again = r.client.next_best_offer(nbo(id, true)).await.unwrap().into_inner();
            assert_ranking(&expected(&table[&id], table[&id].age < 40), &got(&again), id);
        }
        let o = r.client.record_outcome(out(&first, pb::Outcome::Accept)).await.unwrap().into_inner();
        assert!(o.duplicate, "snapshot={snapshot}");
        let listed = r.client.list_offers(pb::ListOffersRequest {}).await.unwrap().into_inner().offers;
        assert_eq!(listed, r.client.list_offers(pb::ListOffersRequest {}).await.unwrap().into_inner().offers);
        assert_eq!(listed.len(), 3);
    }
    stop(r, true).await;
}
