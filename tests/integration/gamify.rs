//! `segd.v1.EventService` and `segd.v1.GamificationService` over gRPC on the demo table
//! and the demo program (src/gamify/demo_program.json), against hand-computed values from
//! its rules: 1 point per € of a purchase (pending 14 days), 5 per login (cap 5 a day), 20
//! per rated review (x1.5 for SILVER / GOLD); tiers BRONZE ≥ 500 €, SILVER ≥ 750 €,
//! GOLD ≥ 1,000 € of 365-day turnover; levels at 0, 100, 250, 500, 750, 1000, 1500, ...
//! lifetime points. Counts are checked against a row-by-row walk of
//! GetGamificationState answers, and the state after a restart (log replay, snapshot).

use std::path::Path;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb::event_service_client::EventServiceClient;
use segd::grpc::pb::gamification_service_client::GamificationServiceClient;
use segd::grpc::pb::segment_service_client::SegmentServiceClient;
use segd::grpc::pb::{self, property_value::Value as V};
use segd::server::Server;

pub(crate) const ROWS: usize = 2_000;
const SEED: u64 = 33;

pub(crate) struct Running {
    pub(crate) server: Server,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    pub(crate) events: EventServiceClient<Channel>,
    pub(crate) game: GamificationServiceClient<Channel>,
    pub(crate) seg: SegmentServiceClient<Channel>,
}

fn batches() -> Vec<arrow_array::RecordBatch> {
    segd::gen::generate(ROWS, SEED)
}

pub(crate) async fn start(dir: &Path) -> Running {
    start_over(dir, ROWS, SEED).await
}

/// [`start`] over `rows` customers generated with `seed`.
pub(crate) async fn start_over(dir: &Path, rows: usize, seed: u64) -> Running {
    let s = super::common::serve_generated(dir, rows, seed).await;
    Running {
        server: s.server,
        stop: s.stop,
        done: s.done,
        events: EventServiceClient::new(s.channel.clone()),
        game: GamificationServiceClient::new(s.channel.clone()),
        seg: SegmentServiceClient::new(s.channel),
    }
}

/// Stops serving; `snapshot`: close the data dir (final snapshot), else leave the log to
/// be replayed (as after a crash).
pub(crate) async fn stop(r: Running, snapshot: bool) {
    let Running { server, stop, done, events, game, seg } = r;
    drop((events, game, seg));
    let _ = stop.send(());
    done.await.unwrap();
    if snapshot {
        tokio::task::block_in_place(|| server.close().unwrap());
    }
    drop(server);
}

/// Starts on a fresh dir and puts the demo program; answers its sequence.
pub(crate) async fn start_demo(dir: &Path) -> (Running, u64) {
    let mut r = start(dir).await;
    let program_json = segd::gamify::program::DEMO_PROGRAM.to_string();
    let put = r.game.put_program(pb::PutProgramRequest { program_json }).await.unwrap().into_inner();
    (r, put.sequence)
}

pub(crate) fn ids() -> Vec<u64> {
    batches()
        .iter()
        .flat_map(|b| b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>().values().to_vec())
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub(crate) fn event(id: &str, customer_id: u64, kind: &str, props: Vec<(&str, V)>) -> pb::GamifyEvent {
    pb::GamifyEvent {
        event_id: id.into(),
        customer_id,
        r#type: kind.into(),
        occurred_at_ms: now_ms() - 1_000,
        properties: props
            .into_iter()
            .map(|(k, v)| (k.to_string(), pb::PropertyValue { value: Some(v) }))
            .collect(),
    }
}

pub(crate) fn purchase(id: &str, customer_id: u64, eur: f64) -> pb::GamifyEvent {
    event(
        id,
        customer_id,
        "purchase",
        vec![("amount_eur", V::DoubleValue(eur)), ("category", V::StringValue("toys".into()))],
    )
}

pub(crate) fn batch(events: Vec<pb::GamifyEvent>) -> pb::RecordEventsRequest {
    pb::RecordEventsRequest { events }
}

pub(crate) async fn state(r: &mut Running, customer_id: u64) -> pb::GamificationState {
    let req = pb::GetGamificationStateRequest { customer_id };
    r.game.get_gamification_state(req).await.unwrap().into_inner()
}

/// (balance, pending, lifetime, tier, level, points to the next level) of the one wallet.
pub(crate) fn summary(s: &pb::GamificationState) -> (i64, i64, i64, String, u32, i64) {
    let w = &s.wallets[0];
    let (t, l) = (s.tier.as_ref().unwrap(), s.level.as_ref().unwrap());
    (w.balance, w.pending, w.lifetime, t.tier.clone(), l.level, l.points_to_next)
}

pub(crate) fn credited(r: &pb::RecordEventsResponse) -> Vec<(bool, i64)> {
    r.outcomes.iter().map(|o| (o.duplicate, o.credited)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_earn_what_the_rules_say_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, put_seq) = start_demo(dir.path()).await;
    let c = ids()[7];
    // 600 € → 600 pending points, turnover 600 € → BRONZE; 500 € more → 1,100 € → GOLD.
    let a = r.events.record_events(batch(vec![purchase("p1", c, 600.0)])).await.unwrap().into_inner();
    assert_eq!(credited(&a), [(false, 600)]);
    assert_eq!(summary(&state(&mut r, c).await), (0, 600, 600, "BRONZE".into(), 4, 150));
    let b = r.events.record_events(batch(vec![purchase("p2", c, 500.0)])).await.unwrap().into_inner();
    assert!(b.sequence > a.sequence);
    // Two logins on one day: 5 points, then nothing (cap 5 a day).
    let logins = vec![event("l1", c, "login", vec![]), event("l2", c, "login", vec![])];
    let l = r.events.record_events(batch(logins)).await.unwrap().into_inner();
    assert_eq!(credited(&l), [(false, 5), (false, 0)]);
    // A GOLD customer's rated review: 20 x 1.5.
    let review = event("r1", c, "review", vec![("rating", V::IntValue(4))]);
    let rv = r.events.record_events(batch(vec![review])).await.unwrap().into_inner();
    assert_eq!(credited(&rv), [(false, 30)]);
    // Balance 35 available, 1,100 pending, 1,135 lifetime: level 6 (≥ 1000), 365 to 1500.
    let want = (35, 1100, 1135, "GOLD".to_string(), 6, 365);
    assert_eq!(summary(&state(&mut r, c).await), want);
    let t = state(&mut r, c).await.tier.unwrap();
    assert_eq!((t.measure, t.next_tier), (1100.0, None));

    // The same event_id again: acknowledged, nothing changes.
    let d = r.events.record_events(batch(vec![purchase("p1", c, 600.0)])).await.unwrap().into_inner();
    assert_eq!(credited(&d), [(true, 0)]);
    assert_eq!(summary(&state(&mut r, c).await), want);

    // A spend beyond the available balance is refused; the balance is spent exactly.
    let spend = |points: i64, id: &str| pb::PointsRequest {
        customer_id: c,
        wallet: String::new(),
        request_id: id.into(),
        points,
    };
    let e = r.game.spend_points(spend(36, "s1")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let s = r.game.spend_points(spend(35, "s2")).await.unwrap().into_inner();
    assert!(!s.duplicate);
    let want = (0, 1100, 1135, "GOLD".to_string(), 6, 365);
    assert_eq!(summary(&state(&mut r, c).await), want);
    // The ledger holds the two purchases, the two logins' credit, the review and the spend.
    let page = r
        .game
        .get_ledger(pb::GetLedgerRequest { customer_id: c, wallet: String::new(), after_seq: None, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    let points: Vec<i64> = page.entries.iter().map(|e| e.points).collect();
    assert_eq!(points.iter().filter(|&&p| p > 0).sum::<i64>(), 1135, "{points:?}");
    assert_eq!(points.iter().filter(|&&p| p < 0).sum::<i64>(), -35, "{points:?}");

    // Tier changes in commit order, from the program's commit on.
    let watch = pb::WatchAchievementsRequest { customer_ids: vec![c], from_sequence: put_seq + 1 };
    let mut w = r.game.watch_achievements(watch).await.unwrap().into_inner();
    let mut tiers = Vec::new();
    while tiers.len() < 2 {
        let a = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(a.customer_id, c);
        if let Some(pb::achievement_event::Kind::TierChanged(t)) = a.kind {
            tiers.push((t.from, t.to, a.sequence));
        }
    }
    assert_eq!(
        tiers,
        [("NONE".into(), "BRONZE".into(), a.sequence), ("BRONZE".into(), "GOLD".into(), b.sequence)]
    );
    drop(w);

    // After a restart from the log, and from a snapshot: the same state.
    stop(r, false).await;
    let mut r = start(dir.path()).await;
    assert_eq!(summary(&state(&mut r, c).await), want);
    stop(r, true).await;
    let mut r = start(dir.path()).await;
    assert_eq!(summary(&state(&mut r, c).await), want);
    let again = r.events.record_events(batch(vec![purchase("p2", c, 500.0)])).await.unwrap().into_inner();
    assert_eq!(credited(&again), [(true, 0)], "the dedup window survives restarts");
    stop(r, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_event_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, _) = start_demo(dir.path()).await;
    let (c, d) = (ids()[1], ids()[2]);
    let before = (state(&mut r, c).await, state(&mut r, d).await);
    let bad = [
        purchase("x2", d, f64::NAN),
        purchase("x2", d, f64::INFINITY),
        pb::GamifyEvent {
            properties: [("amount_eur".to_string(), pb::PropertyValue { value: None })].into(),
            ..purchase("x2", d, 1.0)
        },
        event("x2", d, "no-such-type", vec![]),
        purchase("x2", d, -5.0),
    ];
    for b in bad {
        let e = r.events.record_events(batch(vec![purchase("x1", c, 700.0), b.clone()])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{b:?}: {e:?}");
        assert!(e.message().contains("event 1") || e.message().contains("x2"), "names the event: {e:?}");
    }
    assert_eq!((state(&mut r, c).await, state(&mut r, d).await), before, "nothing changed");
    // The good event alone is recorded: it was not taken as a duplicate.
    let ok = r.events.record_events(batch(vec![purchase("x1", c, 700.0)])).await.unwrap().into_inner();
    assert_eq!(credited(&ok), [(false, 700)]);
    stop(r, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_a_row_by_row_walk_of_the_states() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, _) = start_demo(dir.path()).await;
    let all = ids();
    let touched = &all[..400];
    for (n, chunk) in touched.chunks(50).enumerate() {
        let events = chunk
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| {
                let k = n * 50 + i;
                let mut v = vec![purchase(&format!("p{c}"), c, ((k * 37) % 1400) as f64)];
                if k % 3 == 0 {
                    v.push(event(&format!("l{c}"), c, "login", vec![]));
                }
                if k % 5 == 0 {
                    v.push(event(&format!("r{c}"), c, "review", vec![("rating", V::IntValue(5))]));
                }
                v
            })
            .collect();
        r.events.record_events(batch(events)).await.unwrap();
    }
    let mut gold = 0;
    let mut rich = 0;
    let mut fresh = 0;
    for &c in &all {
        let s = state(&mut r, c).await;
        let (tier, level) = (s.tier.as_ref().unwrap().tier.as_str(), s.level.as_ref().unwrap().level);
        gold += (tier == "GOLD") as u64;
        fresh += (tier == "NONE" && s.wallets[0].lifetime == 0 && level == 1) as u64;
        rich += (s.wallets[0].balance > 10) as u64;
    }
    assert!(gold > 0 && rich > 0, "the walk finds some: {gold} GOLD, {rich} with > 10 points");
    let count = |w: &str| {
        let mut seg = r.seg.clone();
        let req =
            pb::CountSegmentRequest { segment: Some(pb::count_segment_request::Segment::Where(w.into())) };
        async move { seg.count_segment(req).await.unwrap().into_inner().count }
    };
    // The program owns `tier`: customers no event touched are NONE, not the demo table's
    // generated tier.
    assert_eq!(count("tier = 'GOLD'").await, gold);
    assert!(fresh >= (ROWS - touched.len()) as u64);
    assert_eq!(count("tier = 'NONE' AND lifetime_points = 0 AND level = 1").await, fresh);
    assert_eq!(count("points_balance > 10").await, rich);
    stop(r, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_answers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, _) = start_demo(dir.path()).await;
    let c = ids()[3];
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    for i in 0..30 {
        tx.send(batch(vec![purchase(&format!("s{i}"), c, (i + 1) as f64)])).await.unwrap();
    }
    // A refused message ends the stream with its status, after the answers before it.
    tx.send(batch(vec![purchase("bad", c, f64::NAN)])).await.unwrap();
    let mut answers = r
        .events
        .record_event_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    for i in 0..30 {
        let a =
            tokio::time::timeout(Duration::from_secs(10), answers.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(credited(&a), [(false, i + 1)], "answer {i}");
        assert!(a.sequence > last);
        last = a.sequence;
    }
    let e =
        tokio::time::timeout(Duration::from_secs(10), answers.next()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    drop(tx);
    assert_eq!(state(&mut r, c).await.wallets[0].pending, (1..=30).sum::<i64>());
    stop(r, false).await;
}
