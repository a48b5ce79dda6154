//! `NextBestOfferRequest.explain`: unset, an answer lists only offers dropped at apply and
//! presents exactly what an explained twin presents; set, every offer of the catalogue is
//! presented or dropped with a stage. Caps still count unexplained decisions.

use std::collections::BTreeSet;

use super::decide::{nbo, offers, start, stop, ROWS};
use segd::grpc::pb;

fn ids(offers: &[pb::RankedOffer]) -> Vec<(String, u64)> {
    offers.iter().map(|o| (o.offer_id.clone(), o.priority.to_bits())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexplained_answers_decide_the_same_and_list_only_apply_drops() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path()).await;
    let catalogue: BTreeSet<String> = offers().iter().map(|o| o.id.clone()).collect();
    for o in offers() {
        r.client.put_offer(pb::PutOfferRequest { offer: Some(o) }).await.unwrap();
    }
    let mut capped = 0;
    for id in 1..=40u64 {
        let explained = r.client.next_best_offer(nbo(id, true)).await.unwrap().into_inner();
        let listed: BTreeSet<String> = explained
            .offers
            .iter()
            .map(|o| o.offer_id.clone())
            .chain(explained.dropped.iter().map(|d| d.offer_id.clone()))
            .collect();
        assert_eq!(listed, catalogue, "{explained:?}");
        assert!(explained.dropped.iter().all(|d| !d.stage.is_empty() && !d.at_apply));

        let plain = pb::NextBestOfferRequest { explain: false, ..nbo(id, true) };
        let dry = r.client.next_best_offer(plain).await.unwrap().into_inner();
        assert_eq!(ids(&dry.offers), ids(&explained.offers), "customer {id}");
        assert!(dry.dropped.is_empty(), "{dry:?}");

        // Logged, unexplained: the same offers; sequential calls lose nothing at apply.
        let logged = r.client.next_best_offer(pb::NextBestOfferRequest { explain: false, ..nbo(id, false) });
        let logged = logged.await.unwrap().into_inner();
        assert!(logged.sequence > 0);
        assert_eq!(ids(&logged.offers), ids(&explained.offers), "customer {id}");
        assert!(logged.dropped.is_empty(), "{logged:?}");

        // The unexplained decision counted: "young" (1 per day) is now capped for them.
        if logged.offers.iter().any(|o| o.offer_id == "young") {
            capped += 1;
            let after = r.client.next_best_offer(nbo(id, true)).await.unwrap().into_inner();
            assert!(after.offers.iter().all(|o| o.offer_id != "young"));
            let d = after.dropped.iter().find(|d| d.offer_id == "young").unwrap();
            assert_eq!(d.stage, "cap", "{d:?}");
        }
    }
    assert!(capped > 5, "only {capped} customers were shown the capped offer");
    stop(r, false).await;
}

/// `segd loadgen --rpc next-best-offer` sends its calls on bare HTTP/2 connections
/// (src/cli/loadgen/direct.rs): every call is answered OK, and each is a logged decision,
/// retained for GetDecision, numbered below the next decision's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_decisions_are_answered_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path()).await;
    for o in offers() {
        r.client.put_offer(pb::PutOfferRequest { offer: Some(o) }).await.unwrap();
    }
    let first = r.client.next_best_offer(nbo(1, true)).await.unwrap().into_inner().decision_id;
    const N: u64 = 300;
    let addr = format!("http://{}", r.addr);
    let ids = format!("1..{ROWS}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_segd"))
            .args(["loadgen", "--addr", &addr, "--rpc", "next-best-offer", "-c", "8", "--connections", "2"])
            .args(["--ids", &ids, "-n", &N.to_string(), "--json"])
            .output()
            .expect("segd loadgen runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["ok"].as_u64(), report["errors"].as_u64()), (Some(N), Some(0)), "{report}");
    let next = r.client.next_best_offer(nbo(1, true)).await.unwrap().into_inner().decision_id;
    assert!(next > first + N, "decision ids {first} then {next} around {N} logged decisions");
    let mut retained = 0;
    for id in first + 1..next {
        if r.client.get_decision(pb::GetDecisionRequest { decision_id: id }).await.is_ok() {
            retained += 1;
        }
    }
    assert_eq!(retained, N, "every loadgen decision was logged and applied");
    stop(r, false).await;
}
