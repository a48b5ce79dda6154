//! `GrantPoints`, `SetManualTier` and `PreviewProgram` over gRPC on the demo program,
//! against hand-computed values and a row-by-row oracle; the pipelined event stream; and
//! the real binary SIGKILLed during an event stream: every acknowledged event is present
//! after the restart, none is applied twice (not even when every event is sent again).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb;
use segd::grpc::pb::event_service_client::EventServiceClient;
use segd::grpc::pb::gamification_service_client::GamificationServiceClient;

use super::gamify::{batch, credited, ids, purchase, start_demo, state, stop, summary, Running};

fn points(customer_id: u64, request_id: &str, points: i64) -> pb::PointsRequest {
    pb::PointsRequest { customer_id, wallet: String::new(), request_id: request_id.into(), points }
}

async fn count(r: &Running, text: &str) -> u64 {
    let req =
        pb::CountSegmentRequest { segment: Some(pb::count_segment_request::Segment::Where(text.into())) };
    r.seg.clone().count_segment(req).await.unwrap().into_inner().count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_manual_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, _) = start_demo(dir.path()).await;
    let c = ids()[11];
    // A grant is available at once and counts as lifetime points (level 2 from 100), not
    // as turnover (the tier stays NONE).
    let g = r.game.grant_points(points(c, "g1", 120)).await.unwrap().into_inner();
    assert!(!g.duplicate);
    assert_eq!(summary(&state(&mut r, c).await), (120, 0, 120, "NONE".into(), 2, 130));
    // The same request again: acknowledged with the same ledger entry, nothing changes.
    let again = r.game.grant_points(points(c, "g1", 120)).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(again.ledger_seq, g.ledger_seq);
    // The same request id for other points: ALREADY_EXISTS; bad requests name the field.
    let e = r.game.grant_points(points(c, "g1", 7)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = r.game.grant_points(points(c, "g2", 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("points"), "{e:?}");
    let e = r.game.grant_points(pb::PointsRequest { wallet: "miles".into(), ..points(c, "g3", 5) }).await;
    assert_eq!(e.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(summary(&state(&mut r, c).await), (120, 0, 120, "NONE".into(), 2, 130));
    assert_eq!(count(&r, "points_balance = 120 AND level = 2").await, 1);

    // A manual tier is a floor: set above the tier, it raises it at once.
    let d = ids()[12];
    let set = |tier: &str| pb::SetManualTierRequest { customer_id: d, tier: tier.into() };
    r.game.set_manual_tier(set("SILVER")).await.unwrap();
    let t = state(&mut r, d).await.tier.unwrap();
    assert_eq!(
        (t.tier.as_str(), t.manual.as_deref(), t.qualifies_for.as_str()),
        ("SILVER", Some("SILVER"), "NONE")
    );
    assert_eq!(count(&r, "tier = 'SILVER'").await, 1);
    // 1,200 € of turnover qualifies for GOLD (from 1,000 €): above the floor.
    r.events.record_events(batch(vec![purchase("m1", d, 1_200.0)])).await.unwrap();
    let t = state(&mut r, d).await.tier.unwrap();
    assert_eq!((t.tier.as_str(), t.manual.as_deref()), ("GOLD", Some("SILVER")));
    // Clearing the floor lowers nothing until a downgrade check.
    r.game.set_manual_tier(set("")).await.unwrap();
    let t = state(&mut r, d).await.tier.unwrap();
    assert_eq!((t.tier.as_str(), t.manual), ("GOLD", None));
    // Unknown tiers and customers are refused.
    let e = r.game.set_manual_tier(set("PLATINUM")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("PLATINUM"), "{e:?}");
    let e = r
        .game
        .set_manual_tier(pb::SetManualTierRequest { customer_id: 999_999_999, tier: "GOLD".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    stop(r, false).await;
}

/// The level for lifetime points under `thresholds` (1-based), written for the test.
fn level_for(thresholds: &[i64], lifetime: i64) -> u32 {
    (thresholds.iter().filter(|&&t| lifetime >= t).count().max(1)) as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_counts_equal_a_row_by_row_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, _) = start_demo(dir.path()).await;
    let all = ids();
    let touched: Vec<u64> = all[100..220].to_vec();
    let events: Vec<pb::GamifyEvent> = touched
        .iter()
        .enumerate()
        .map(|(k, &c)| purchase(&format!("v{c}"), c, ((k * 53) % 1300) as f64))
        .collect();
    r.events.record_events(batch(events)).await.unwrap();
    r.game
        .set_manual_tier(pb::SetManualTierRequest { customer_id: touched[0], tier: "GOLD".into() })
        .await
        .unwrap();

    // A program with lower thresholds (BRONZE 300, SILVER 600, GOLD 900 €) and levels
    // every 200 points.
    let mut spec: serde_json::Value = serde_json::from_str(segd::gamify::program::DEMO_PROGRAM).unwrap();
    for (i, min) in [0, 300, 600, 900].into_iter().enumerate() {
        spec["tiers"]["tiers"][i]["min"] = min.into();
    }
    let thresholds: Vec<i64> = (0..20).map(|i| i * 200).collect();
    spec["levels"]["thresholds"] = thresholds.clone().into();
    let new_mins = [("NONE", 0.0), ("BRONZE", 300.0), ("SILVER", 600.0), ("GOLD", 900.0)];
    let rank = |t: &str| new_mins.iter().position(|m| m.0 == t).unwrap();

    // The oracle: every customer with gamification state, from GetGamificationState.
    let mut tiers: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut levels: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for &c in &touched {
        let s = state(&mut r, c).await;
        let (t, l) = (s.tier.unwrap(), s.level.unwrap());
        let qualifies = new_mins.iter().rposition(|m| t.measure >= m.1).unwrap();
        let floor = t.manual.as_deref().map_or(0, rank);
        let to = rank(&t.tier).max(floor).max(qualifies);
        *tiers.entry((t.tier.clone(), new_mins[to].0.to_string())).or_default() += 1;
        *levels.entry((l.level, level_for(&thresholds, l.lifetime_points))).or_default() += 1;
    }
    assert!(tiers.len() >= 4, "the oracle has moves: {tiers:?}");

    let p = r
        .game
        .preview_program(pb::PreviewProgramRequest { program_json: spec.to_string() })
        .await
        .unwrap()
        .into_inner();
    let got_tiers: BTreeMap<(String, String), u64> =
        p.tiers.into_iter().map(|t| ((t.from, t.to), t.customers)).collect();
    let got_levels: BTreeMap<(u32, u32), u64> =
        p.levels.into_iter().map(|l| ((l.from, l.to), l.customers)).collect();
    assert_eq!(got_tiers, tiers);
    assert_eq!(got_levels, levels);

    // A preview changes nothing; a bad program is refused naming the field.
    assert_eq!(
        count(&r, "tier = 'GOLD'").await,
        tiers.iter().filter(|(k, _)| k.0 == "GOLD").map(|(_, n)| n).sum::<u64>()
    );
    spec["tiers"]["tiers"][1]["min"] = (-5).into();
    let e = r
        .game
        .preview_program(pb::PreviewProgramRequest { program_json: spec.to_string() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("min"), "{e:?}");
    stop(r, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_event_stream_answers_every_message_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, _) = start_demo(dir.path()).await;
    let c = ids()[5];
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    // All messages are in the stream before the first answer is read.
    for i in 0..200 {
        tx.send(batch(vec![purchase(&format!("q{i}"), c, 1.0), purchase(&format!("q{i}"), c, 1.0)]))
            .await
            .unwrap();
    }
    drop(tx);
    let mut answers = r.events.record_event_stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut last = 0;
    for i in 0..200 {
        let a =
            tokio::time::timeout(Duration::from_secs(20), answers.next()).await.unwrap().unwrap().unwrap();
        // The second event of each message is a duplicate of the first.
        assert_eq!(credited(&a), [(false, 1), (true, 0)], "answer {i}");
        assert!(a.sequence > last, "answer {i} in commit order");
        last = a.sequence;
    }
    assert!(tokio::time::timeout(Duration::from_secs(10), answers.next()).await.unwrap().is_none());
    assert_eq!(state(&mut r, c).await.wallets[0].pending, 200);
    stop(r, false).await;
}

// The real binary, SIGKILLed while it acknowledges an event stream.

const CRASH_ROWS: usize = 2_000;
const PER_BATCH: u64 = 5;
/// Customers the batches write to (ids of the demo table).
const CUSTOMERS: u64 = 40;

/// Batch `g`'s events: one purchase of 1 € each (1 point), ids unique per batch.
fn crash_batch(g: u64) -> Vec<(String, u64)> {
    (0..PER_BATCH).map(|i| (format!("k{g}-{i}"), 1 + (g * PER_BATCH + i) % CUSTOMERS)).collect()
}

fn crash_request(g: u64) -> pb::RecordEventsRequest {
    batch(crash_batch(g).into_iter().map(|(id, c)| purchase(&id, c, 1.0)).collect())
}

struct Killable(Child, std::path::PathBuf);

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_segd(dir: &Path, run: usize) -> (Killable, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.with_extension(format!("gamify-serve-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_segd"))
        .args(["serve", "--demo", &CRASH_ROWS.to_string(), "--http-listen", "off", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string(), "--snapshot-every", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("segd starts");
    (Killable(child, log), addr)
}

type Clients = (EventServiceClient<Channel>, GamificationServiceClient<Channel>);

async fn connect(addr: SocketAddr, child: &mut Killable) -> Clients {
    let t = Instant::now();
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            let mut g = GamificationServiceClient::new(ch.clone());
            // Up once the program is in force (a fresh demo data dir puts it at start).
            if g.get_program(pb::GetProgramRequest {}).await.is_ok() {
                return (EventServiceClient::new(ch), g);
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("segd exited with {status}: {}", std::fs::read_to_string(&child.1).unwrap_or_default());
        }
        assert!(t.elapsed() < Duration::from_secs(90), "segd did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every credit's source (event id) in the customers' ledgers, with how often it appears.
async fn credited_ids(g: &mut GamificationServiceClient<Channel>) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for c in 1..=CUSTOMERS {
        let mut after_seq = None;
        loop {
            let req = pb::GetLedgerRequest { customer_id: c, wallet: String::new(), after_seq, limit: 1000 };
            let page = g.get_ledger(req).await.unwrap().into_inner();
            for e in page.entries {
                if e.points > 0 {
                    *seen.entry(e.source).or_insert(0) += 1;
                }
            }
            match page.next_after_seq {
                Some(s) => after_seq = Some(s),
                None => break,
            }
        }
    }
    seen
}

#[test]
fn sigkill_during_an_event_stream_loses_nothing_acknowledged_and_applies_nothing_twice() {
    let kills = 3;
    let seed: u64 = rand::random();
    eprintln!("gamify crash test: seed {seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut acked: BTreeSet<u64> = BTreeSet::new();
        let mut sent_all: Vec<u64> = vec![];
        let mut next_g = 0u64;
        for run in 0..=kills {
            let (mut child, addr) = spawn_segd(&dir, run);
            let (events, mut game) = connect(addr, &mut child).await;
            let seen = credited_ids(&mut game).await;
            // Nothing twice; every acknowledged event present; batches whole or absent.
            assert!(seen.values().all(|&n| n == 1), "run {run}: an event credited twice");
            for &g in &sent_all {
                let present = crash_batch(g).iter().filter(|(id, _)| seen.contains_key(id)).count();
                if acked.contains(&g) {
                    assert_eq!(present as u64, PER_BATCH, "run {run}: acknowledged batch {g} lost");
                } else {
                    assert!(present == 0 || present as u64 == PER_BATCH, "run {run}: batch {g} half applied");
                }
            }
            if run == kills {
                // Every batch sent again: all duplicates of what is present, the rest new;
                // still each event once.
                let mut ev = events.clone();
                for &g in &sent_all {
                    ev.record_events(crash_request(g)).await.unwrap();
                }
                let seen = credited_ids(&mut game).await;
                assert!(seen.values().all(|&n| n == 1), "an event credited twice after resending");
                assert_eq!(seen.len() as u64, sent_all.len() as u64 * PER_BATCH);
                break;
            }
            // Stream batches; SIGKILL at a random point while answers flow.
            let sent = Arc::new(Mutex::new(Vec::<u64>::new()));
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let mut answers =
                events.clone().record_event_stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
            let producer = {
                let sent = sent.clone();
                let start = next_g;
                tokio::spawn(async move {
                    for g in start.. {
                        sent.lock().unwrap().push(g);
                        if tx.send(crash_request(g)).await.is_err() {
                            return;
                        }
                    }
                })
            };
            let kill_after = Duration::from_millis(rng.random_range(100..800));
            let (mut got, mut killed) = (0usize, false);
            let deadline = tokio::time::sleep(kill_after);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    a = answers.next() => match a {
                        Some(Ok(_)) => {
                            let g = sent.lock().unwrap()[got];
                            acked.insert(g);
                            got += 1;
                        }
                        Some(Err(e)) => {
                            assert!(killed, "stream failed before the kill: {e}");
                            break;
                        }
                        None => {
                            assert!(killed, "the stream ended by itself");
                            break;
                        }
                    },
                    _ = &mut deadline, if !killed && got > 0 => {
                        child.0.kill().expect("SIGKILL");
                        killed = true;
                    }
                }
            }
            let _ = child.0.wait();
            producer.abort();
            let sent = sent.lock().unwrap().clone();
            next_g = sent.last().map_or(next_g, |g| g + 1);
            sent_all.extend(sent);
            eprintln!("run {run}: {got} batches acknowledged before SIGKILL at {kill_after:?}");
        }
        assert!(acked.len() >= kills, "too few batches acknowledged: {}", acked.len());
    });
}

// The same use cases over HTTP (`segd::http`), on the app the gRPC server serves.

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gamification_over_http() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = start_demo(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = r.server.app().clone();
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(segd::http::serve(app, listener, async move {
        let _ = stopped.await;
    }));
    let c = ids()[21];
    let ok = |(status, body): (u16, serde_json::Value)| {
        assert_eq!(status, 200, "{body}");
        body
    };
    let now = super::gamify::now_ms();
    let events = json!({"events": [{"eventId": "h1", "customerId": c.to_string(), "type": "purchase",
        "occurredAtMs": (now - 1000).to_string(), "properties": {"amount_eur": {"doubleValue": 600}}}]});
    let a = ok(http(addr, "POST", "/v1/events:record", &events.to_string()).await);
    assert_eq!(a["outcomes"][0]["credited"], "600", "{a}");
    let s = ok(http(addr, "GET", &format!("/v1/customers/{c}/gamification"), "").await);
    assert_eq!(
        (s["tier"]["tier"].as_str(), s["wallets"][0]["pending"].as_str()),
        (Some("BRONZE"), Some("600")),
        "{s}"
    );

    let grant = json!({"customerId": c.to_string(), "requestId": "hg", "points": "40"}).to_string();
    assert_eq!(ok(http(addr, "POST", "/v1/points:grant", &grant).await)["duplicate"], false);
    assert_eq!(ok(http(addr, "POST", "/v1/points:grant", &grant).await)["duplicate"], true);
    let spend = json!({"customerId": c.to_string(), "requestId": "hs", "points": "41"}).to_string();
    let (status, e) = http(addr, "POST", "/v1/points:spend", &spend).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("FAILED_PRECONDITION")), "{e}");
    let spend = json!({"customerId": c.to_string(), "requestId": "hs", "points": "40"}).to_string();
    ok(http(addr, "POST", "/v1/points:spend", &spend).await);

    // The ledger in pages of one: the purchase, the grant, the spend.
    let mut sources = vec![];
    let mut path = format!("/v1/customers/{c}/ledger?limit=1");
    loop {
        let page = ok(http(addr, "GET", &path, "").await);
        sources.push(page["entries"][0]["source"].as_str().unwrap().to_string());
        match page["nextAfterSeq"].as_u64() {
            Some(after) => path = format!("/v1/customers/{c}/ledger?limit=1&afterSeq={after}"),
            None => break,
        }
    }
    assert_eq!(sources, ["h1", "hg", "hs"]);
    let (status, _) = http(addr, "GET", &format!("/v1/customers/{c}/ledger?page=2"), "").await;
    assert_eq!(status, 400);

    let manual = json!({"customerId": c.to_string(), "tier": "GOLD"}).to_string();
    ok(http(addr, "POST", "/v1/tiers:setManual", &manual).await);
    let s = ok(http(addr, "GET", &format!("/v1/customers/{c}/gamification"), "").await);
    assert_eq!(
        (s["tier"]["tier"].as_str(), s["tier"]["manual"].as_str()),
        (Some("GOLD"), Some("GOLD")),
        "{s}"
    );

    let p = ok(http(addr, "GET", "/v1/program", "").await);
    let program = p["programJson"].as_str().unwrap().to_string();
    let preview =
        ok(http(addr, "POST", "/v1/program:preview", &json!({"programJson": program}).to_string()).await);
    assert_eq!(preview["tiers"], json!([{"from": "GOLD", "to": "GOLD", "customers": "1"}]), "{preview}");
    let put = ok(http(addr, "POST", "/v1/program", &json!({"programJson": program}).to_string()).await);
    assert!(put["sequence"].as_str().is_some(), "{put}");

    // Leaderboards: c's one purchase of 600 € and d's of 100 € earn a point per euro (the
    // grant is not an event, so it does not count on the points board).
    let d = ids()[22];
    let events = json!({"events": [{"eventId": "h2", "customerId": d.to_string(), "type": "purchase",
        "occurredAtMs": (now - 1000).to_string(), "properties": {"amount_eur": {"doubleValue": 100}}}]});
    ok(http(addr, "POST", "/v1/events:record", &events.to_string()).await);
    let entry = |b: &serde_json::Value| {
        (b["customerId"].as_str().unwrap().parse::<u64>().unwrap(), b["rank"].clone(), b["score"].clone())
    };
    let top = ok(http(addr, "POST", "/v1/leaderboards:top", r#"{"board": "points_week"}"#).await);
    let got: Vec<_> = top["entries"].as_array().unwrap().iter().map(entry).collect();
    assert_eq!(got, [(c, json!("1"), json!("600")), (d, json!("2"), json!("100"))], "{top}");
    assert_eq!(top["count"], "2");
    let around = json!({"board": "points_week", "customerId": d.to_string(), "k": 1}).to_string();
    let around = ok(http(addr, "POST", "/v1/leaderboards:aroundMe", &around).await);
    assert_eq!(around["entries"], top["entries"], "{around}");
    let rank = json!({"board": "points_week", "customerId": d.to_string()}).to_string();
    let rank = ok(http(addr, "POST", "/v1/leaderboards:rankOf", &rank).await);
    assert_eq!(
        (rank["ranked"].clone(), entry(&rank["entry"]), rank["count"].clone()),
        (json!(true), (d, json!("2"), json!("100")), json!("2"))
    );
    // Scoped to customers with 300 lifetime points or more: c (640) only.
    let scoped = json!({"board": "points_week", "scope": {"where": "lifetime_points >= 300"}, "customerId": d.to_string()});
    let scoped = ok(http(addr, "POST", "/v1/leaderboards:rankOf", &scoped.to_string()).await);
    assert_eq!((scoped["ranked"].clone(), scoped["count"].clone()), (json!(false), json!("1")), "{scoped}");
    let (status, e) = http(addr, "POST", "/v1/leaderboards:top", r#"{"board": "nope"}"#).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("NOT_FOUND")), "{e}");
    let (status, e) = http(
        addr,
        "POST",
        "/v1/leaderboards:top",
        r#"{"board": "points_week", "scope": {"where": "age >>> 1"}}"#,
    )
    .await;
    assert_eq!((status, e["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{e}");

    // Opting in to the demo's opt-in challenge, twice: the second is already joined.
    let join = json!({"customerId": c.to_string(), "challenge": "books_month"}).to_string();
    assert_eq!(ok(http(addr, "POST", "/v1/challenges:join", &join).await)["alreadyJoined"], false);
    assert_eq!(ok(http(addr, "POST", "/v1/challenges:join", &join).await)["alreadyJoined"], true);
    let unknown = json!({"customerId": c.to_string(), "challenge": "nope"}).to_string();
    let (status, e) = http(addr, "POST", "/v1/challenges:join", &unknown).await;
    assert_eq!((status, e["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{e}");
    let s = ok(http(addr, "GET", &format!("/v1/customers/{c}/gamification"), "").await);
    let books = s["challenges"].as_array().unwrap().iter().find(|x| x["challenge"] == "books_month").unwrap();
    assert_eq!(books["joined"], true, "{s}");

    let _ = stop_http.send(());
    served.await.unwrap().unwrap();
    stop(r, false).await;
}
