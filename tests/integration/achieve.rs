//! Badges, challenges and streaks over gRPC on the demo table and the demo program
//! (src/gamify/demo_program.json), against values computed by hand from its rules:
//! 20 points per rated review (pending 0), 5 per login, 1 per € of a purchase and 25 more
//! for books of ≥ 20 € (both pending 14 days); `weekly_reviews` (two rated reviews in a
//! week: 40 points and the `weekly_critic` badge), `books_month` (opt-in, 100 € of books
//! in a month: 100 points), `first_purchase`, and the `daily_login` streak. The state
//! survives a restart from the log and from a snapshot.

use std::path::Path;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use tokio_stream::StreamExt;
use tonic::Code;

use super::gamify::{start_over, stop, Running};
use segd::grpc::pb::{self, achievement_event::Kind, property_value::Value as V};

const ROWS: usize = 1_000;
const SEED: u64 = 17;

fn batches() -> Vec<arrow_array::RecordBatch> {
    segd::gen::generate(ROWS, SEED)
}

async fn start(dir: &Path) -> Running {
    start_over(dir, ROWS, SEED).await
}

fn customer() -> u64 {
    let b = batches();
    b[0].column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>().value(11)
}

fn event(id: &str, customer_id: u64, kind: &str, props: Vec<(&str, V)>) -> pb::GamifyEvent {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    pb::GamifyEvent {
        event_id: id.into(),
        customer_id,
        r#type: kind.into(),
        occurred_at_ms: now - 1_000,
        properties: props
            .into_iter()
            .map(|(k, v)| (k.to_string(), pb::PropertyValue { value: Some(v) }))
            .collect(),
    }
}

fn books(id: &str, c: u64, eur: f64) -> pb::GamifyEvent {
    event(
        id,
        c,
        "purchase",
        vec![("amount_eur", V::DoubleValue(eur)), ("category", V::StringValue("books".into()))],
    )
}

async fn state(r: &mut Running, customer_id: u64) -> pb::GamificationState {
    let req = pb::GetGamificationStateRequest { customer_id };
    r.game.get_gamification_state(req).await.unwrap().into_inner()
}

/// The badges, challenges and streaks part of a state, window bounds left out (they
/// depend on today).
type Achieve =
    (Vec<(String, u32)>, Vec<(String, f64, f64, bool, bool, bool, u32)>, Vec<(String, String, u32, u32)>);

fn achieve(s: &pb::GamificationState) -> Achieve {
    (
        s.badges.iter().map(|b| (b.badge.clone(), b.count)).collect(),
        s.challenges
            .iter()
            .map(|c| {
                (c.challenge.clone(), c.progress, c.target, c.completed, c.opt_in, c.joined, c.completions)
            })
            .collect(),
        s.streaks.iter().map(|x| (x.streak.clone(), x.unit.clone(), x.current, x.longest)).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_challenges_and_streaks_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path()).await;
    let program_json = segd::gamify::program::DEMO_PROGRAM.to_string();
    let put = r.game.put_program(pb::PutProgramRequest { program_json }).await.unwrap().into_inner();
    let c = customer();

    // Two rated reviews: 20 + 20 points and `weekly_reviews` done (40 points, a badge).
    let reviews = ["r1", "r2"].map(|id| event(id, c, "review", vec![("rating", V::IntValue(5))]));
    r.events.record_events(pb::RecordEventsRequest { events: reviews.to_vec() }).await.unwrap();
    // `books_month` is opt-in: joined once (a second join says so), unknown and not opt-in
    // challenges refused.
    let join = |challenge: &str| pb::JoinChallengeRequest { customer_id: c, challenge: challenge.into() };
    let j = r.game.join_challenge(join("books_month")).await.unwrap().into_inner();
    assert!(!j.already_joined && j.sequence > put.sequence);
    assert!(r.game.join_challenge(join("books_month")).await.unwrap().into_inner().already_joined);
    for bad in ["no_such", "weekly_reviews"] {
        let e = r.game.join_challenge(join(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
    }
    // 60 € + 50 € of books: 110 ≥ 100, done (100 points); the first purchase's badge; a login.
    let more = vec![books("b1", c, 60.0), books("b2", c, 50.0), event("l1", c, "login", vec![])];
    r.events.record_events(pb::RecordEventsRequest { events: more }).await.unwrap();

    let s = state(&mut r, c).await;
    let w = &s.wallets[0];
    // Available: 40 (reviews) + 40 + 100 (rewards) + 5 (login); pending: 60 + 50 + 25 + 25.
    assert_eq!((w.balance, w.pending), (185, 160));
    let want: Achieve = (
        vec![("first_purchase".into(), 1), ("weekly_critic".into(), 1)],
        vec![
            ("weekly_reviews".into(), 2.0, 2.0, true, false, false, 1),
            ("books_month".into(), 110.0, 100.0, true, true, true, 1),
        ],
        vec![("daily_login".into(), "day".into(), 1, 1)],
    );
    assert_eq!(achieve(&s), want);
    let books_window = &s.challenges[1];
    assert!(books_window.window_start_ms.unwrap() < books_window.window_end_ms.unwrap());

    // The achievements, in commit order.
    let watch = pb::WatchAchievementsRequest { customer_ids: vec![c], from_sequence: put.sequence + 1 };
    let mut stream = r.game.watch_achievements(watch).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let a = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        match a.kind {
            Some(Kind::BadgeAwarded(b)) => seen.push(format!("badge {} {}", b.badge, b.count)),
            Some(Kind::ChallengeCompleted(x)) => seen.push(format!("challenge {}", x.challenge)),
            Some(Kind::StreakMilestone(m)) => seen.push(format!("streak {} {}", m.streak, m.milestone)),
            Some(Kind::TierChanged(_) | Kind::LevelUp(_)) | None => {}
        }
    }
    assert_eq!(
        seen,
        [
            "challenge weekly_reviews",
            "badge weekly_critic 1",
            "badge first_purchase 1",
            "challenge books_month"
        ]
    );
    drop(stream);

    // The columns count exactly (untouched customers hold NULL for the new ones).
    let count = |w: &str| {
        let mut seg = r.seg.clone();
        let req =
            pb::CountSegmentRequest { segment: Some(pb::count_segment_request::Segment::Where(w.into())) };
        async move { seg.count_segment(req).await.unwrap().into_inner().count }
    };
    let w = "list_contains(badges, 'weekly_critic') AND challenge_books_month_completed \
             AND challenge_books_month_progress = 110 AND streak_daily_login_current = 1 AND badge_count = 2";
    assert_eq!(count(w).await, 1);

    // After a restart from the log, and from a snapshot: the same.
    stop(r, false).await;
    let mut r = start(dir.path()).await;
    assert_eq!(achieve(&state(&mut r, c).await), want);
    stop(r, true).await;
    let mut r = start(dir.path()).await;
    assert_eq!(achieve(&state(&mut r, c).await), want);
    assert!(r.game.join_challenge(join("books_month")).await.unwrap().into_inner().already_joined);
    stop(r, false).await;
}
