//! Laws of the gamification core, over random sequences of events, spends, grants and
//! ticks, checked against a small independent model of the ledger written for this test
//! (credits picked one at a time by (expiry, creation, sequence), no shared code).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::persist::gamify as record;

const PROGRAM: &str = r#"{
  "time_zone": "UTC",
  "unknown_customers": "create",
  "wallets": [{ "id": "points", "expiry": { "mode": "after_days", "days": 20 } }],
  "event_types": [
    { "name": "purchase", "properties": { "amount_eur": { "type": "number", "required": true, "min": 0 } } },
    { "name": "refund", "refund_of": "original_event_id", "properties": {
        "original_event_id": { "type": "string", "required": true },
        "amount_eur": { "type": "number", "required": true, "min": 0 } } },
    { "name": "login" },
    { "name": "review" }
  ],
  "measures": [{ "id": "turnover", "window_days": 10,
    "add": [{ "event": "purchase", "property": "amount_eur" }],
    "subtract": [{ "event": "refund", "property": "amount_eur" }] }],
  "counters": [{ "name": "purchase_count", "event": "purchase" }],
  "rules": [
    { "id": "buy", "event": "purchase", "points": { "per_unit": { "property": "amount_eur", "unit": 1 } }, "pending_days": 3 },
    { "id": "login", "event": "login", "points": { "fixed": 5 }, "caps": { "per_day": 10 } },
    { "id": "review", "event": "review", "points": { "fixed": 20 } }
  ],
  "tiers": { "measure": "turnover", "downgrade": { "mode": "never" },
    "tiers": [{ "name": "NONE", "min": 0 }, { "name": "BRONZE", "min": 50 }, { "name": "GOLD", "min": 150 }] },
  "levels": { "thresholds": [0, 50, 200, 1000] }
}"#;

const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[derive(Clone, Debug)]
enum Op {
    /// (customer, kind, cents, minutes back, retry an earlier id, which purchase a refund names)
    Events(Vec<(u64, u8, u32, u32, bool, usize)>),
    Spend(u64, i64, bool),
    Grant(u64, i64),
    /// Minutes forward, then a tick.
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let ev = (1u64..4, 0u8..4, 0u32..30_000, 0u32..4_000, prop::bool::weighted(0.1), 0usize..50);
    prop_oneof![
        4 => prop::collection::vec(ev, 1..8).prop_map(Op::Events),
        1 => (1u64..4, 1i64..200, any::<bool>()).prop_map(|(c, n, r)| Op::Spend(c, n, r)),
        1 => (1u64..4, 1i64..100).prop_map(|(c, n)| Op::Grant(c, n)),
        2 => (1u32..20_000).prop_map(Op::Advance),
    ]
}

// ---- the model -------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MCredit {
    source: String,
    grant: bool,
    amount: i64,
    rem: i64,
    reversed: i64,
    created: i64,
    avail: i64,
    exp: i64,
    pending: bool,
}

#[derive(Clone, Debug, Default)]
struct MCust {
    credits: Vec<MCredit>,
    turnover: Vec<(i64, i64)>,
    purchases: i64,
    tier: usize,
    login_points: BTreeMap<i64, i64>,
    spends: BTreeMap<String, i64>,
}

impl MCust {
    /// Takes up to `want` points, one credit at a time: the one with points left that
    /// expires first, then the oldest, then the first made.
    fn take(&mut self, mut want: i64, with_pending: bool) -> i64 {
        let mut got = 0;
        while want > 0 {
            let best = (0..self.credits.len())
                .filter(|&i| self.credits[i].rem > 0 && (with_pending || !self.credits[i].pending))
                .min_by_key(|&i| (self.credits[i].exp, self.credits[i].created, i));
            let Some(i) = best else { break };
            let n = self.credits[i].rem.min(want);
            self.credits[i].rem -= n;
            want -= n;
            got += n;
        }
        got
    }
}

#[derive(Default)]
struct Model {
    custs: BTreeMap<u64, MCust>,
    seen: BTreeMap<String, i64>,
    clock: i64,
}

const TIER_MINS: [i64; 3] = [0, 5_000, 15_000];
const LEVELS: [i64; 4] = [0, 50, 200, 1000];

impl Model {
    fn events(&mut self, events: &[Event], logged: i64) {
        self.clock = self.clock.max(logged);
        let horizon = self.clock - 7 * DAY_MS;
        self.seen.retain(|_, t| *t > horizon);
        for e in events {
            if self.seen.contains_key(&e.event_id) {
                continue;
            }
            self.seen.insert(e.event_id.clone(), logged);
            let t = e.occurred_at_ms;
            let c = self.custs.entry(e.customer_id).or_default();
            let amount = match e.properties.get("amount_eur") {
                Some(PropValue::Float(x)) => *x,
                _ => 0.0,
            };
            let credit = |c: &mut MCust, pts: i64, pending: bool| {
                if pts > 0 {
                    c.credits.push(MCredit {
                        source: e.event_id.clone(),
                        grant: false,
                        amount: pts,
                        rem: pts,
                        reversed: 0,
                        created: t,
                        avail: t + if pending { 3 * DAY_MS } else { 0 },
                        exp: t + 20 * DAY_MS,
                        pending,
                    });
                }
            };
            let day = t.div_euclid(DAY_MS);
            match e.kind.as_str() {
                "purchase" => {
                    credit(c, amount.floor() as i64, true);
                    c.turnover.push((day, (amount * 100.0).round() as i64));
                    c.purchases += 1;
                }
                "login" => {
                    let used = c.login_points.entry(day).or_insert(0);
                    let n = 5.min(10 - *used);
                    *used += n;
                    credit(c, n, false);
                }
                "review" => credit(c, 20, false),
                "refund" => {
                    let Some(PropValue::Str(of)) = e.properties.get("original_event_id") else { panic!() };
                    let mut deficit = 0;
                    for cr in c.credits.iter_mut().filter(|cr| !cr.grant && &cr.source == of) {
                        let delta = cr.amount - cr.reversed;
                        cr.reversed = cr.amount;
                        let n = cr.rem.min(delta);
                        cr.rem -= n;
                        deficit += delta - n;
                    }
                    c.take(deficit, true);
                    c.turnover.push((day, -(amount * 100.0).round() as i64));
                }
                other => panic!("{other}"),
            }
            let today = self.clock.max(t).div_euclid(DAY_MS);
            let sum: i64 =
                c.turnover.iter().filter(|(d, _)| *d > today - 10 && *d <= today).map(|x| x.1).sum();
            let q = TIER_MINS.iter().rposition(|&m| sum.max(0) >= m).unwrap();
            c.tier = c.tier.max(q);
        }
    }

    fn tick(&mut self, now: i64) {
        self.clock = self.clock.max(now);
        let now = self.clock;
        for c in self.custs.values_mut() {
            for cr in &mut c.credits {
                if cr.pending && cr.avail <= now {
                    cr.pending = false;
                }
                if cr.exp <= now {
                    cr.rem = 0;
                }
            }
        }
    }

    fn spend(&mut self, cust: u64, id: &str, n: i64) -> bool {
        // A refused spend leaves no trace, not even the customer.
        let Some(c) = self.custs.get_mut(&cust) else { return false };
        if c.spends.contains_key(id) {
            return true;
        }
        let avail: i64 = c.credits.iter().filter(|x| !x.pending).map(|x| x.rem).sum();
        if avail < n {
            return false;
        }
        c.take(n, false);
        c.spends.insert(id.into(), n);
        true
    }

    fn grant(&mut self, cust: u64, id: &str, n: i64, logged: i64) {
        self.clock = self.clock.max(logged);
        let c = self.custs.entry(cust).or_default();
        if c.credits.iter().any(|x| x.grant && x.source == id) {
            return;
        }
        c.credits.push(MCredit {
            source: id.into(),
            grant: true,
            amount: n,
            rem: n,
            reversed: 0,
            created: logged,
            avail: logged,
            exp: logged + 20 * DAY_MS,
            pending: false,
        });
    }

    fn attrs(&self, id: u64) -> Vec<(String, AttrValue)> {
        let c = &self.custs[&id];
        let sum =
            |f: &dyn Fn(&MCredit) -> bool| c.credits.iter().filter(|x| f(x)).map(|x| x.rem).sum::<i64>();
        let lifetime: i64 = c.credits.iter().map(|x| x.amount - x.reversed).sum();
        let level = LEVELS.iter().filter(|&&t| lifetime >= t).count().max(1) as i64;
        let horizon = self.clock + 30 * DAY_MS;
        vec![
            ("points_balance".into(), AttrValue::Int(sum(&|x| !x.pending))),
            ("points_pending".into(), AttrValue::Int(sum(&|x| x.pending))),
            ("lifetime_points".into(), AttrValue::Int(lifetime)),
            ("points_expiring_30d".into(), AttrValue::Int(sum(&|x| x.exp <= horizon))),
            ("tier".into(), AttrValue::Str(["NONE", "BRONZE", "GOLD"][c.tier].into())),
            ("level".into(), AttrValue::Int(level)),
            ("purchase_count".into(), AttrValue::Int(c.purchases)),
        ]
    }
}

// ---- running ops on both -----------------------------------------------------------

struct Run {
    p: Program,
    st: GamifyState,
    model: Model,
    clock: i64,
    next_id: u64,
    ids: Vec<String>,
    purchases: Vec<(u64, String)>,
    spends: Vec<(u64, String, i64)>,
    emitted: BTreeMap<u64, Vec<(String, AttrValue)>>,
}

impl Run {
    fn new() -> Run {
        Run {
            p: Program::from_json(PROGRAM).unwrap(),
            st: GamifyState::new(),
            model: Model::default(),
            clock: START,
            next_id: 0,
            ids: Vec::new(),
            purchases: Vec::new(),
            spends: Vec::new(),
            emitted: BTreeMap::new(),
        }
    }

    fn make_events(&mut self, spec: &[(u64, u8, u32, u32, bool, usize)]) -> Vec<Event> {
        let mut out = Vec::new();
        for &(cust, kind, cents, back, retry, pick) in spec {
            let at = self.clock - back as i64 * 60_000;
            let id = if retry && !self.ids.is_empty() {
                self.ids[pick % self.ids.len()].clone()
            } else {
                self.next_id += 1;
                format!("e{}", self.next_id)
            };
            let amount = PropValue::Float(cents as f64 / 100.0);
            let mut props = BTreeMap::from([("amount_eur".to_string(), amount)]);
            let kind = match kind {
                3 if self.purchases.iter().any(|p| p.0 == cust) => {
                    let mine: Vec<&String> =
                        self.purchases.iter().filter(|p| p.0 == cust).map(|p| &p.1).collect();
                    props.insert("original_event_id".into(), PropValue::Str(mine[pick % mine.len()].clone()));
                    "refund"
                }
                0 | 3 => {
                    self.purchases.push((cust, id.clone()));
                    "purchase"
                }
                1 => {
                    props.clear();
                    "login"
                }
                _ => {
                    props.clear();
                    "review"
                }
            };
            self.ids.push(id.clone());
            out.push(Event {
                event_id: id,
                customer_id: cust,
                kind: kind.into(),
                occurred_at_ms: at,
                properties: props,
            });
        }
        out
    }

    fn record(&mut self, a: &Applied) {
        for c in &a.changed {
            self.emitted.insert(c.customer_id, c.named(&self.p));
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Events(spec) => {
                let events = self.make_events(spec);
                let a = self.st.apply_events(&self.p, &events, &MapFacts::default(), self.clock).unwrap();
                self.record(&a);
                self.model.events(&events, self.clock);
            }
            Op::Spend(cust, n, reuse) => {
                let (id, n) = match self.spends.iter().find(|s| s.0 == *cust) {
                    Some(s) if *reuse => (s.1.clone(), s.2),
                    _ => (format!("s{}", self.spends.len()), *n),
                };
                let s =
                    Spend { customer_id: *cust, wallet: "points".into(), request_id: id.clone(), points: n };
                let ok = self.model.spend(*cust, &id, n);
                match self.st.spend(&self.p, &s, self.clock) {
                    Ok((_, a)) => {
                        assert!(ok, "the model refused {s:?}");
                        self.record(&a);
                        self.spends.push((*cust, id, n));
                    }
                    Err(GamifyError::InsufficientPoints { .. }) => assert!(!ok, "the model accepted {s:?}"),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Grant(cust, n) => {
                let id = format!("g{}", self.next_id);
                self.next_id += 1;
                let g =
                    Grant { customer_id: *cust, wallet: "points".into(), request_id: id.clone(), points: *n };
                let (_, a) = self.st.grant(&self.p, &g, &MapFacts::default(), self.clock).unwrap();
                self.record(&a);
                self.model.grant(*cust, &id, *n, self.clock);
            }
            Op::Advance(minutes) => {
                self.clock += *minutes as i64 * 60_000;
                let a = self.st.tick(&self.p, self.clock).unwrap();
                self.record(&a);
                self.model.tick(self.clock);
                for (id, values) in &self.emitted {
                    assert_eq!(
                        Some(values),
                        self.st.attributes(&self.p, *id).as_ref(),
                        "emitted attributes of {id} are stale"
                    );
                }
            }
        }
    }

    fn check(&self) {
        self.st.check_invariants().unwrap();
        let ids: Vec<u64> = self.st.customers().map(|c| c.0).collect();
        assert_eq!(ids, self.model.custs.keys().copied().collect::<Vec<_>>());
        let keys = self.st.lookup_keys(&self.p);
        for id in ids {
            let attrs = self.st.attributes(&self.p, id).unwrap();
            assert_eq!(attrs, self.model.attrs(id), "customer {id}");
            // One attribute computed alone (what earning rules read) is the same value.
            let c = self.st.customer(id).unwrap();
            for (name, v) in &attrs {
                let one = super::state::attr_at(&self.p, &keys, c, self.st.clock_ms(), name);
                assert_eq!(one.as_ref(), Some(v), "customer {id} {name}");
            }
            assert_eq!(super::state::attr_at(&self.p, &keys, c, self.st.clock_ms(), "country"), None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The ledger invariant holds and the derived attributes equal the model's after any
    /// sequence; emitted attributes are current after every tick.
    #[test]
    fn attributes_equal_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut r = Run::new();
        for op in &ops {
            r.step(op);
            r.check();
        }
    }

    /// Snapshot bytes decode to the same state, and re-encode to the same bytes.
    #[test]
    fn state_round_trips(ops in prop::collection::vec(op(), 1..30)) {
        let mut r = Run::new();
        for op in &ops {
            r.step(op);
        }
        let bytes = record::encode_state(&r.st, &r.p);
        let back = record::decode_state(&bytes, &r.p).unwrap();
        prop_assert_eq!(&back, &r.st);
        prop_assert_eq!(record::encode_state(&back, &r.p), bytes);
    }

    /// The same events in any batching give the same state, outcomes and achievements;
    /// applying them again changes nothing.
    #[test]
    fn batching_does_not_matter_and_duplicates_change_nothing(
        prefix in prop::collection::vec(op(), 0..10),
        spec in prop::collection::vec((1u64..4, 0u8..4, 0u32..30_000, 0u32..4_000, prop::bool::weighted(0.1), 0usize..50), 1..40),
        cuts in prop::collection::vec(0usize..40, 0..6),
    ) {
        let mut r = Run::new();
        for op in &prefix {
            r.step(op);
        }
        let events = r.make_events(&spec);
        let facts = MapFacts::default();
        let mut whole = r.st.clone();
        let one = whole.apply_events(&r.p, &events, &facts, r.clock).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (events.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut parts = r.st.clone();
        let (mut outcomes, mut achievements) = (Vec::new(), Vec::new());
        let mut from = 0;
        for cut in cuts.into_iter().chain([events.len()]) {
            let a = parts.apply_events(&r.p, &events[from..cut], &facts, r.clock).unwrap();
            outcomes.extend(a.outcomes);
            achievements.extend(a.achievements);
            from = cut;
        }
        prop_assert_eq!(&parts, &whole);
        prop_assert_eq!(outcomes, one.outcomes);
        prop_assert_eq!(achievements, one.achievements);
        let again = whole.apply_events(&r.p, &events, &facts, r.clock).unwrap();
        prop_assert!(again.outcomes.iter().all(|o| *o == EventOutcome::Duplicate));
        prop_assert!(again.changed.is_empty() && again.achievements.is_empty());
        prop_assert_eq!(&whole, &parts);
    }
}
