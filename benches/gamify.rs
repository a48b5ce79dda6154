//! PreviewProgram in process (issue 10: "≤ 50 ms at 10M"): the demo program's state for
//! `SEGD_BENCH_CUSTOMERS` customers with state (default 1,000,000), one purchase each of
//! 0–1,499 €, then the preview of a tier-threshold change (GOLD from 1,000 to 900 €).
//! The preview visits every customer with state; customers without state keep the first
//! tier and level 1 under any program, so they cost nothing.
use criterion::{criterion_group, criterion_main, Criterion};

use segd::gamify::{CustomerFacts, Event, GamifyState, Program, ProgramSpec, Value};

/// Every customer exists and lives in Germany (the demo's rules read `country`).
struct AllInGermany;

impl CustomerFacts for AllInGermany {
    fn exists(&self, _: u64) -> bool {
        true
    }
    fn attribute(&self, _: u64, name: &str) -> Value {
        match name {
            "country" => Value::Str("DE".into()),
            _ => Value::Null,
        }
    }
    fn in_segment(&self, _: u64, _: &str) -> bool {
        false
    }
}

fn bench(c: &mut Criterion) {
    let n: u64 = std::env::var("SEGD_BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let p = Program::demo();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut st = GamifyState::new();
    let events: Vec<Event> = (1..=n)
        .map(|id| Event {
            event_id: format!("b{id}"),
            customer_id: id,
            kind: "purchase".into(),
            occurred_at_ms: now - 60_000,
            properties: [("amount_eur".to_string(), segd::gamify::PropValue::Float((id * 37 % 1500) as f64))]
                .into(),
        })
        .collect();
    for part in events.chunks(10_000) {
        st.apply_events(&p, part, &AllInGermany, now).expect("the demo's purchases apply");
    }
    let mut spec: ProgramSpec = serde_json::from_str(&p.to_json()).unwrap();
    let gold = spec.tiers.tiers.iter_mut().find(|t| t.name == "GOLD").expect("the demo has GOLD");
    gold.min = 900.0;
    let new = Program::new(spec).unwrap();
    let mut g = c.benchmark_group("preview_program");
    g.sample_size(10);
    g.bench_function(format!("gold_1000_to_900/customers_with_state_{n}"), |b| {
        b.iter(|| st.preview(&p, &new).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
