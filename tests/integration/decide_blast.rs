//! `DecideForSegment` and `GetDecision` over gRPC: a blast equals each member's own
//! `NextBestOffer` dry run, a logged blast counts (caps) and its decisions can be fetched
//! again, `GetDecision` returns what `NextBestOffer` returned, also after a restart; and
//! outcomes survive a SIGKILL of the real binary.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::Code;

use segd::grpc::pb::decision_service_client::DecisionServiceClient;
use segd::grpc::pb::{self, segment};

use super::decide::{nbo, offers, start, stop, where_, Client};

fn blast_req(seg: &str, dry_run: bool, batch_size: u32) -> pb::DecideForSegmentRequest {
    pb::DecideForSegmentRequest {
        segment: where_(seg),
        context: Some(pb::DecisionContext {
            channel: "web".into(),
            placement: "home".into(),
            ..Default::default()
        }),
        max_results: 5,
        counts_as_impression: None,
        dry_run,
        batch_size,
        explain: false,
    }
}

async fn blast(c: &mut Client, r: pb::DecideForSegmentRequest) -> Vec<pb::DecideForSegmentResponse> {
    let mut s = c.decide_for_segment(r).await.unwrap().into_inner();
    let mut out = vec![];
    while let Some(m) = s.message().await.unwrap() {
        out.push(m);
    }
    out
}

async fn get(c: &mut Client, decision_id: u64) -> Result<pb::GetDecisionResponse, tonic::Status> {
    c.get_decision(pb::GetDecisionRequest { decision_id }).await.map(|r| r.into_inner())
}

fn shown(g: &pb::GetDecisionResponse) -> Vec<pb::RankedOffer> {
    g.offers.iter().map(|p| p.offer.clone().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blast_is_each_members_decision_and_decisions_are_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path()).await;
    for o in offers() {
        r.client.put_offer(pb::PutOfferRequest { offer: Some(o) }).await.unwrap();
    }
    // A dry run: every member once, in order, batched; each decision equals the member's
    // own NextBestOffer dry run (the catalogue has no adaptive offer: no draw differs).
    let msgs = blast(&mut r.client, blast_req("age < 45 OR tier = 'GOLD'", true, 100)).await;
    let all: Vec<pb::MemberDecision> = msgs.iter().flat_map(|m| m.decisions.clone()).collect();
    assert!(msgs.len() > 2 && msgs.iter().all(|m| m.decisions.len() <= 100 && m.sequence == 0));
    assert_eq!(all.len() as u64, msgs[0].members);
    for w in all.windows(2) {
        assert_eq!(w[1].decision_id, w[0].decision_id + 1);
        assert!(w[1].customer_id != w[0].customer_id);
    }
    for d in &all {
        let a = r.client.next_best_offer(nbo(d.customer_id, true)).await.unwrap().into_inner();
        assert_eq!(d.offers, a.offers, "customer {}", d.customer_id);
        assert_eq!((d.fallback_used, d.control_group, d.logged), (a.fallback_used, a.control_group, false));
    }
    // Refused before anything is decided.
    let mut bad = blast_req("age < 45", false, 10);
    bad.counts_as_impression = Some(false);
    let e = r.client.decide_for_segment(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let e = r.client.decide_for_segment(blast_req("age < 45", true, 20_000)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let mut bad = blast_req("age < 45", true, 10);
    bad.segment = Some(pb::Segment { segment: Some(segment::Segment::SegmentId("nope".into())) });
    assert_eq!(r.client.decide_for_segment(bad).await.unwrap_err().code(), Code::NotFound);

    // A logged blast: each decision presenting something is logged (and capped after),
    // fetched again as it was; the others are not logged.
    let msgs = blast(&mut r.client, blast_req("age < 40", false, 1000)).await;
    let now_ms = msgs[0].now_ms;
    let logged: Vec<pb::MemberDecision> = msgs.iter().flat_map(|m| m.decisions.clone()).collect();
    assert!(logged.iter().filter(|d| d.logged).count() > 100);
    for d in &logged {
        assert_eq!(d.logged, !d.offers.is_empty(), "{d:?}");
        match get(&mut r.client, d.decision_id).await {
            Ok(g) => {
                assert!(d.logged);
                assert_eq!(
                    (g.customer_id, shown(&g), g.fallback_used),
                    (d.customer_id, d.offers.clone(), d.fallback_used)
                );
                assert_eq!(g.context.as_ref().unwrap().now_ms, Some(now_ms));
                assert!(g.offers.iter().all(|p| p.shown && p.outcomes.is_empty()), "{g:?}");
            }
            Err(e) => {
                assert!(!d.logged);
                assert_eq!(e.code(), Code::NotFound);
            }
        }
        if d.offers.iter().any(|o| o.offer_id == "young") {
            let a = r.client.next_best_offer(nbo(d.customer_id, true)).await.unwrap().into_inner();
            let y = a.dropped.iter().find(|x| x.offer_id == "young").unwrap();
            assert_eq!(y.stage, "cap", "{y:?}");
        }
    }

    // GetDecision returns what NextBestOffer returned, with the outcomes since.
    let mut taken = vec![];
    for id in 41..=60u64 {
        let a = r.client.next_best_offer(nbo(id, false)).await.unwrap().into_inner();
        let g = get(&mut r.client, a.decision_id).await.unwrap();
        assert_eq!((g.decision_id, g.customer_id), (a.decision_id, a.customer_id));
        assert_eq!(g.context.as_ref().unwrap().now_ms, Some(a.now_ms));
        assert_eq!(
            (shown(&g), g.fallback_used, g.control_group),
            (a.offers.clone(), a.fallback_used, a.control_group)
        );
        if let Some(first) = a.offers.first() {
            let out = pb::RecordOutcomeRequest {
                decision_id: a.decision_id,
                offer_id: first.offer_id.clone(),
                outcome: pb::Outcome::Accept as i32,
                at_ms: None,
            };
            r.client.record_outcome(out).await.unwrap();
            let g = get(&mut r.client, a.decision_id).await.unwrap();
            assert_eq!(g.offers[0].outcomes, [pb::Outcome::Accept as i32]);
            taken.push(g);
        }
    }
    assert!(!taken.is_empty());
    assert_eq!(get(&mut r.client, 99_999_999).await.unwrap_err().code(), Code::NotFound);
    // The same after a restart from the log (state from logged records only).
    stop(r, false).await;
    let mut r = start(dir.path()).await;
    for g in &taken {
        assert_eq!(&get(&mut r.client, g.decision_id).await.unwrap(), g);
    }
    stop(r, true).await;
}

struct Segd(Child);

impl Drop for Segd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, addr: SocketAddr) -> Segd {
    let child = Command::new(env!("CARGO_BIN_EXE_segd"))
        .args(["serve", "--demo", "5000", "--http-listen", "off", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("segd starts");
    Segd(child)
}

async fn connect(addr: SocketAddr) -> Client {
    let t = Instant::now();
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            let mut c = DecisionServiceClient::new(ch);
            if c.list_offers(pb::ListOffersRequest {}).await.is_ok() {
                return c;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(60), "segd did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Outcomes acknowledged before a SIGKILL are all there after the restart (replayed from
/// the write-ahead log), and recording one again is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut segd = spawn(&data, addr);
    let mut c = connect(addr).await;
    let mut recorded = vec![];
    for id in 1..=40u64 {
        let a = c.next_best_offer(nbo(id, false)).await.unwrap().into_inner();
        for (k, o) in a.offers.iter().enumerate() {
            let outcome = if k == 0 { pb::Outcome::Accept } else { pb::Outcome::Reject };
            let req = pb::RecordOutcomeRequest {
                decision_id: a.decision_id,
                offer_id: o.offer_id.clone(),
                outcome: outcome as i32,
                at_ms: None,
            };
            assert!(!c.record_outcome(req.clone()).await.unwrap().into_inner().duplicate);
            recorded.push(req);
        }
    }
    assert!(recorded.len() > 5, "the demo presents offers on the web home page");
    let before: Vec<pb::GetDecisionResponse> = {
        let mut v = vec![];
        for r in &recorded {
            v.push(get(&mut c, r.decision_id).await.unwrap());
        }
        v
    };
    drop(c);
    segd.0.kill().expect("SIGKILL");
    segd.0.wait().unwrap();
    drop(segd);
    let _segd = spawn(&data, addr);
    let mut c = connect(addr).await;
    for (r, want) in recorded.iter().zip(&before) {
        let g = get(&mut c, r.decision_id).await.unwrap();
        assert_eq!(&g, want);
        assert!(c.record_outcome(r.clone()).await.unwrap().into_inner().duplicate);
    }
}

/// Many concurrent NextBestOffer calls over gRPC for three customers: a cap of 2 per
/// customer and a budget of 5 in all are never exceeded (every call proposes both offers
/// on a possibly stale version; the apply in commit order settles who gets the slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_never_exceed_caps_or_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path()).await;
    let base = pb::Offer { channels: vec!["web".into()], ..Default::default() };
    let capped = pb::Offer {
        id: "capped".into(),
        cap: Some(pb::Limit { max: 2, window_ms: 86_400_000 }),
        ..base.clone()
    };
    let budgeted = pb::Offer { id: "budgeted".into(), budget: Some(5), ..base };
    let mut c = r.client.clone();
    for o in [capped, budgeted] {
        c.put_offer(pb::PutOfferRequest { offer: Some(o) }).await.unwrap();
    }
    let tasks: Vec<_> = (0..48u64)
        .map(|i| {
            let mut c = r.client.clone();
            tokio::spawn(async move { c.next_best_offer(nbo(1 + i % 3, false)).await.unwrap().into_inner() })
        })
        .collect();
    let mut capped_per_customer = [0u32; 3];
    let mut budgeted = 0;
    for t in tasks {
        let a = t.await.unwrap();
        for o in &a.offers {
            match o.offer_id.as_str() {
                "capped" => capped_per_customer[(a.customer_id - 1) as usize] += 1,
                "budgeted" => budgeted += 1,
                other => panic!("unexpected offer {other}"),
            }
        }
        assert_eq!(a.offers.len() + a.dropped.len(), 2, "{a:?}");
    }
    assert_eq!(capped_per_customer, [2, 2, 2]);
    assert_eq!(budgeted, 5);
    stop(r, true).await;
}
