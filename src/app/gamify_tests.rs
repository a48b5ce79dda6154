//! The gamification use cases through the application core: a ledger replayed by hand,
//! the refusals and their codes, and a count over the derived columns equal to a
//! row-by-row oracle over `gamification_state` answers.

use std::collections::BTreeMap;

use super::gamify::now_ms;
use super::*;
use crate::db::DbOptions;
use crate::gamify::program::DEMO_PROGRAM as DEMO_PROGRAM_JSON;
use crate::gamify::{Event, EventOutcome, Grant, PropValue, Spend};
use crate::store::Dataset;

const ROWS: usize = 300;

fn live() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let import = || {
        let b = crate::gen::generate(ROWS, 5);
        Ok(Dataset::from_batches(crate::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
    };
    (dir, App::open(opts, import, Config::default()).unwrap())
}

fn purchase(id: &str, customer: u64, eur: f64) -> Event {
    Event {
        event_id: id.into(),
        customer_id: customer,
        kind: "purchase".into(),
        occurred_at_ms: now_ms() - 1_000,
        properties: BTreeMap::from([("amount_eur".to_string(), PropValue::Float(eur))]),
    }
}

fn spend(customer: u64, req: &str, points: i64) -> Spend {
    Spend { customer_id: customer, wallet: String::new(), request_id: req.into(), points }
}

#[tokio::test]
async fn events_points_and_tiers_through_the_app() {
    let (_dir, app) = live();
    let err = app.record_events(vec![purchase("x", 1, 1.0)]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    assert_eq!(app.put_program_if_none(DEMO_PROGRAM_JSON).await.unwrap(), Some(1));
    assert_eq!(app.put_program_if_none(DEMO_PROGRAM_JSON).await.unwrap(), None);

    // By hand: 1,200 € (GOLD) and 10 € for customer 5, 600 € (BRONZE) for 6.
    let r = app
        .record_events(vec![purchase("a", 5, 1_200.0), purchase("b", 5, 10.0), purchase("c", 6, 600.0)])
        .await
        .unwrap();
    let credited: Vec<i64> = r
        .result
        .iter()
        .map(|o| match o {
            EventOutcome::Applied { credited, .. } => *credited,
            EventOutcome::Duplicate => -1,
        })
        .collect();
    assert_eq!(credited, [1_200, 10, 600]);
    let s = app.gamification_state(5).unwrap();
    assert_eq!((s.wallets[0].balance, s.wallets[0].pending, s.wallets[0].lifetime), (0, 1_210, 1_210));
    assert_eq!(s.tier.tier, "GOLD");
    assert_eq!(app.gamification_state(6).unwrap().tier.tier, "BRONZE");
    // A customer of the table without events starts at the bottom; an unknown one is NOT_FOUND.
    assert_eq!(app.gamification_state(7).unwrap().tier.tier, "NONE");
    assert_eq!(app.gamification_state(1 << 40).unwrap_err().code(), ErrorCode::NotFound);

    // Pending points cannot be spent; granted ones can, once per request id.
    let err = app.spend_points(spend(5, "s1", 1)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    let g = Grant { customer_id: 5, wallet: String::new(), request_id: "g1".into(), points: 100 };
    assert!(!app.grant_points(g.clone()).await.unwrap().result.duplicate);
    assert!(app.grant_points(g).await.unwrap().result.duplicate);
    app.spend_points(spend(5, "s1", 40)).await.unwrap();
    assert!(app.spend_points(spend(5, "s1", 40)).await.unwrap().result.duplicate);
    assert_eq!(app.gamification_state(5).unwrap().wallets[0].balance, 60);
    let page = app.ledger(5, String::new(), None, 10).unwrap();
    let points: Vec<i64> = page.entries.iter().map(|e| e.points).collect();
    assert_eq!(points, [1_200, 10, 100, -40]);

    // A bad event rejects its batch whole: nothing of it applied.
    let mut bad = purchase("e", 8, 5.0);
    bad.kind = "teleport".into();
    let err = app.record_events(vec![purchase("d", 8, 50.0), bad]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(err.to_string().contains("events[1] \"e\""), "{err}");
    assert_eq!(app.gamification_state(8).unwrap().wallets[0].lifetime, 0);
    // A duplicate is acknowledged and changes nothing.
    let r = app.record_events(vec![purchase("c", 6, 600.0)]).await.unwrap();
    assert_eq!(r.result, [EventOutcome::Duplicate]);
    assert_eq!(app.gamification_state(6).unwrap().wallets[0].lifetime, 600);

    // Manual tiers are floors.
    app.set_manual_tier(9, Some("SILVER".into())).await.unwrap();
    assert_eq!(app.gamification_state(9).unwrap().tier.tier, "SILVER");
    let err = app.set_manual_tier(9, Some("PLATINUM".into())).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);

    // Random purchases, then the count of a segment over the derived columns equals a
    // row-by-row oracle of the per-customer answers.
    let mut n = 0;
    for round in 0..5 {
        let batch: Vec<Event> = (0..50)
            .map(|i| {
                n += 1;
                purchase(
                    &format!("r{round}-{i}"),
                    10 + (n * 7919) % (ROWS as u64 - 10),
                    (n % 13 + 1) as f64 * 90.0,
                )
            })
            .collect();
        app.record_events(batch).await.unwrap();
    }
    for text in ["tier = 'GOLD' AND points_pending > 1500", "tier = 'BRONZE' OR points_balance > 50"] {
        let counted = app.count(SegmentRef::Where(text.into())).await.unwrap().count;
        let mut oracle = 0;
        for id in 1..=ROWS as u64 {
            let s = app.gamification_state(id).unwrap();
            let w = &s.wallets[0];
            let hit = if text.starts_with("tier = 'GOLD'") {
                s.tier.tier == "GOLD" && w.pending > 1500
            } else {
                s.tier.tier == "BRONZE" || w.balance > 50
            };
            // The program owns its columns: customers no event touched count as NONE
            // with nothing, as GetGamificationState answers for them.
            oracle += hit as u64;
        }
        assert_eq!(counted, oracle, "{text}");
    }

    // Nothing is due now; a tick 15 days on releases the pending points (a logged tick).
    assert_eq!(app.tick_gamification(now_ms()).await.unwrap(), None);
    let later = now_ms() + 15 * crate::gamify::DAY_MS;
    assert!(app.tick_gamification(later).await.unwrap().is_some());
    let s = app.gamification_state(5).unwrap();
    assert_eq!((s.wallets[0].balance, s.wallets[0].pending), (1_270, 0));
}

/// The metrics endpoint reports the gamification state by structure once a program is in
/// force: the customers with state counted by hand, and the parts the core's own
/// accounting gives (`gamify::memory`'s test checks those against the structures).
#[tokio::test]
async fn metrics_report_gamification_memory_by_structure() {
    let (_dir, app) = live();
    let metrics = crate::metrics::Metrics::new(app.clone());
    assert!(!metrics.render().contains("segd_gamify_customers"), "no program, no figures");
    app.put_program_if_none(DEMO_PROGRAM_JSON).await.unwrap();
    app.record_events(vec![purchase("m1", 7, 30.0), purchase("m2", 8, 40.0), purchase("m3", 7, 5.0)])
        .await
        .unwrap();
    let text = metrics.render();
    assert!(text.lines().any(|l| l == "segd_gamify_customers 2"), "{text}");
    let m = app.gamify_memory().unwrap();
    for (part, bytes) in m.parts() {
        let line = format!("segd_memory_gamify_bytes{{part=\"{part}\"}} {bytes}");
        assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
    }
    assert!(m.ledger > 0 && m.dedup > 0 && m.records > 0, "{m:?}");
}
