//! `segd.v1.LeaderboardService` over gRPC on the demo program's boards (`points_week`:
//! points earned this week; `purchases_all_time`: purchases counted), after random
//! purchases of whole euros (1 point per €, no bonus outside books): every page, rank and
//! neighbourhood equals an oracle that sums each customer's purchases and sorts them by
//! the documented tie-break (score, then who got there first: the batch's sequence, as
//! batches are committed one after another, then the position in the batch), for
//! everyone, a saved static segment and a `where` text over a derived attribute; the
//! same after restarts (log replay, snapshot).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb::event_service_client::EventServiceClient;
use segd::grpc::pb::gamification_service_client::GamificationServiceClient;
use segd::grpc::pb::leaderboard_service_client::LeaderboardServiceClient;
use segd::grpc::pb::segment_service_client::SegmentServiceClient;
use segd::grpc::pb::{self, property_value::Value as V};
use segd::server::Server;

const ROWS: usize = 500;
const CUSTOMERS: u64 = 60;

struct Running {
    server: Server,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    events: EventServiceClient<Channel>,
    game: GamificationServiceClient<Channel>,
    seg: SegmentServiceClient<Channel>,
    boards: LeaderboardServiceClient<Channel>,
}

async fn start(dir: &Path) -> Running {
    let s = super::common::serve_generated(dir, ROWS, 5).await;
    Running {
        server: s.server,
        stop: s.stop,
        done: s.done,
        events: EventServiceClient::new(s.channel.clone()),
        game: GamificationServiceClient::new(s.channel.clone()),
        seg: SegmentServiceClient::new(s.channel.clone()),
        boards: LeaderboardServiceClient::new(s.channel),
    }
}

async fn stop(r: Running, snapshot: bool) {
    let Running { server, stop, done, events, game, seg, boards } = r;
    drop((events, game, seg, boards));
    let _ = stop.send(());
    done.await.unwrap();
    if snapshot {
        tokio::task::block_in_place(|| server.close().unwrap());
    }
    drop(server);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn purchase(id: &str, customer_id: u64, eur: i64) -> pb::GamifyEvent {
    pb::GamifyEvent {
        event_id: id.into(),
        customer_id,
        r#type: "purchase".into(),
        occurred_at_ms: now_ms() - 1_000,
        properties: [
            ("amount_eur".to_string(), pb::PropertyValue { value: Some(V::DoubleValue(eur as f64)) }),
            ("category".to_string(), pb::PropertyValue { value: Some(V::StringValue("toys".into())) }),
        ]
        .into(),
    }
}

/// A score and where it was last reached (batch sequence, index in the batch).
type Scored = (i64, (u64, usize));

/// Per customer: points and purchases.
#[derive(Default)]
struct Oracle {
    points: BTreeMap<u64, Scored>,
    purchases: BTreeMap<u64, Scored>,
}

impl Oracle {
    fn board(&self, board: &str) -> &BTreeMap<u64, Scored> {
        match board {
            "points_week" => &self.points,
            "purchases_all_time" => &self.purchases,
            other => panic!("{other}"),
        }
    }

    /// Customer ids and scores in rank order, within `scope` (None: everyone).
    fn order(&self, board: &str, scope: Option<&BTreeSet<u64>>) -> Vec<(u64, i64)> {
        let mut v: Vec<(u64, Scored)> = self
            .board(board)
            .iter()
            .filter(|(c, _)| scope.is_none_or(|s| s.contains(*c)))
            .map(|(c, s)| (*c, *s))
            .collect();
        v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(c, s)| (c, s.0)).collect()
    }
}

fn scope_where(text: &str) -> Option<pb::Segment> {
    Some(pb::Segment { segment: Some(pb::segment::Segment::Where(text.into())) })
}

fn scope_saved(id: &str) -> Option<pb::Segment> {
    Some(pb::Segment { segment: Some(pb::segment::Segment::SegmentId(id.into())) })
}

fn page_of(resp: &pb::LeaderboardResponse) -> Vec<(u64, u64, i64)> {
    resp.entries.iter().map(|e| (e.rank, e.customer_id, e.score)).collect()
}

async fn top(
    r: &mut Running,
    board: &str,
    scope: Option<pb::Segment>,
    limit: u32,
    offset: u64,
) -> pb::LeaderboardResponse {
    let req = pb::LeaderboardRequest { board: board.into(), scope, previous: 0, limit, offset };
    r.boards.leaderboard(req).await.unwrap().into_inner()
}

/// Every read of both boards in the three scopes equals the oracle.
async fn check(r: &mut Running, o: &Oracle, picked: &BTreeSet<u64>) {
    let twice: BTreeSet<u64> = o.purchases.iter().filter(|(_, s)| s.0 >= 2).map(|(c, _)| *c).collect();
    for board in ["points_week", "purchases_all_time"] {
        let scopes = [
            (None, None),
            (scope_saved("picked"), Some(picked)),
            (scope_where("purchases >= 2"), Some(&twice)),
        ];
        for (scope, set) in scopes {
            let want = o.order(board, set);
            let what = format!("{board} in {:?}", set.map(|s| s.len()));
            let all = top(r, board, scope.clone(), 1000, 0).await;
            let ranked: Vec<(u64, u64, i64)> =
                want.iter().enumerate().map(|(i, &(c, s))| (i as u64 + 1, c, s)).collect();
            assert_eq!(page_of(&all), ranked, "{what}");
            assert_eq!(all.count, want.len() as u64, "{what}");
            assert!(
                all.entries
                    .windows(2)
                    .all(|w| w[0].score > w[1].score || w[0].reached_at_ms <= w[1].reached_at_ms),
                "{what}: ties by the instant first"
            );
            let page = top(r, board, scope.clone(), 5, 3).await;
            assert_eq!(page_of(&page), ranked.iter().skip(3).take(5).copied().collect::<Vec<_>>(), "{what}");
            for c in 1..=CUSTOMERS {
                let req = pb::RankOfRequest {
                    board: board.into(),
                    scope: scope.clone(),
                    previous: 0,
                    customer_id: c,
                };
                let got = r.boards.rank_of(req).await.unwrap().into_inner();
                assert_eq!(got.count, want.len() as u64, "{what}");
                let pos = want.iter().position(|w| w.0 == c);
                assert_eq!(got.ranked, pos.is_some(), "{what} customer {c}");
                assert_eq!(
                    got.entry.map(|e| (e.rank, e.score)),
                    pos.map(|i| (i as u64 + 1, want[i].1)),
                    "{what}"
                );
                if c % 7 == 0 {
                    let req = pb::AroundMeRequest {
                        board: board.into(),
                        scope: scope.clone(),
                        previous: 0,
                        customer_id: c,
                        k: 2,
                    };
                    let got = r.boards.around_me(req).await.unwrap().into_inner();
                    let expect: Vec<(u64, u64, i64)> = match pos {
                        None => vec![],
                        Some(i) => ranked[i.saturating_sub(2)..(i + 3).min(ranked.len())].to_vec(),
                    };
                    assert_eq!(page_of(&got), expect, "{what} around {c}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderboards_equal_the_oracle_over_grpc_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path()).await;
    let program_json = segd::gamify::program::DEMO_PROGRAM.to_string();
    r.game.put_program(pb::PutProgramRequest { program_json }).await.unwrap();
    let picked: BTreeSet<u64> = (1..=CUSTOMERS).filter(|c| c % 3 == 0).collect();
    let create = pb::CreateSegmentRequest {
        segment_id: "picked".into(),
        definition: Some(pb::create_segment_request::Definition::StaticMembers(pb::StaticMembers {
            customer_ids: picked.iter().copied().collect(),
        })),
        description: String::new(),
    };
    r.seg.create_segment(create).await.unwrap();

    let mut rng = SmallRng::seed_from_u64(7);
    let mut o = Oracle::default();
    let mut n = 0;
    for _ in 0..12 {
        // Small amounts and a few customers: many equal scores, broken by who got there first.
        let batch: Vec<(u64, i64)> = (0..rng.random_range(1..15))
            .map(|_| (rng.random_range(1..=CUSTOMERS), rng.random_range(1..6)))
            .collect();
        let events = batch
            .iter()
            .map(|&(c, eur)| {
                n += 1;
                purchase(&format!("e{n}"), c, eur)
            })
            .collect();
        let seq =
            r.events.record_events(pb::RecordEventsRequest { events }).await.unwrap().into_inner().sequence;
        for (i, &(c, eur)) in batch.iter().enumerate() {
            let p = o.points.entry(c).or_insert((0, (seq, i)));
            *p = (p.0 + eur, (seq, i));
            let q = o.purchases.entry(c).or_insert((0, (seq, i)));
            *q = (q.0 + 1, (seq, i));
        }
    }
    check(&mut r, &o, &picked).await;

    // The customer's place on each board, in GetGamificationState (fields 30-39).
    let best = o.order("points_week", None)[0].0;
    let state =
        r.game.get_gamification_state(pb::GetGamificationStateRequest { customer_id: best }).await.unwrap();
    let ranks: Vec<(String, u64)> = state
        .into_inner()
        .leaderboards
        .into_iter()
        .map(|b| (b.board, b.entry.map_or(0, |e| e.rank)))
        .collect();
    let all_time = o.order("purchases_all_time", None).iter().position(|w| w.0 == best).unwrap() as u64 + 1;
    assert_eq!(ranks, [("points_week".to_string(), 1), ("purchases_all_time".to_string(), all_time)]);

    // Refusals, each naming what is wrong.
    let err = |s: tonic::Status| (s.code(), s.message().to_string());
    let req = |board: &str, previous: u32, limit: u32| pb::LeaderboardRequest {
        board: board.into(),
        scope: None,
        previous,
        limit,
        offset: 0,
    };
    let (code, msg) = err(r.boards.leaderboard(req("nope", 0, 10)).await.unwrap_err());
    assert_eq!(code, Code::NotFound);
    assert!(msg.contains("points_week, purchases_all_time"), "{msg}");
    let (code, msg) = err(r.boards.leaderboard(req("points_week", 5, 10)).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("keeps 4"), "{msg}");
    assert_eq!(
        r.boards.leaderboard(req("purchases_all_time", 1, 10)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let (code, msg) = err(r.boards.leaderboard(req("points_week", 0, 1001)).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("limit") && msg.contains("1000"), "{msg}");
    let bad = pb::LeaderboardRequest { scope: scope_where("purchases >>> 2"), ..req("points_week", 0, 10) };
    assert_eq!(r.boards.leaderboard(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let unknown =
        pb::RankOfRequest { board: "points_week".into(), scope: None, previous: 0, customer_id: 99_999_999 };
    assert_eq!(r.boards.rank_of(unknown).await.unwrap_err().code(), Code::NotFound);
    // Last week's board is kept (empty here: nothing was logged before this week).
    let last_week = r.boards.leaderboard(req("points_week", 1, 10)).await.unwrap().into_inner();
    assert_eq!((last_week.entries.len(), last_week.count), (0, 0));
    let this_week = top(&mut r, "points_week", None, 10, 0).await.period.unwrap();
    assert_eq!(last_week.period.unwrap().end_ms, this_week.start_ms);
    // Local midnights: 7 days, an hour less or more across a DST change.
    let len = this_week.end_ms - this_week.start_ms;
    assert!((7 * 86_400_000 - 3_600_000..=7 * 86_400_000 + 3_600_000).contains(&len), "{len}");

    // After a restart from the log, and from the snapshot written at close.
    let before = (
        top(&mut r, "points_week", None, 1000, 0).await,
        top(&mut r, "purchases_all_time", None, 1000, 0).await,
    );
    for snapshot in [false, true] {
        stop(r, snapshot).await;
        r = start(dir.path()).await;
        let after = (
            top(&mut r, "points_week", None, 1000, 0).await,
            top(&mut r, "purchases_all_time", None, 1000, 0).await,
        );
        assert_eq!(after, before, "after a restart (snapshot: {snapshot})");
    }
    check(&mut r, &o, &picked).await;
    stop(r, true).await;
}
