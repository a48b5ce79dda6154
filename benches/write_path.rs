//! A fixed, seeded workload of the durable write path for profilers (`perf record`,
//! `valgrind --tool=callgrind`): not a timing benchmark. It does what the committer and
//! start-up replay do with 4 requests of 10,000 upserts per commit group, on the table of
//! `benches/common.rs` with the 100 saved segments of benches/updates.rs, and nothing else
//! (no gRPC, no fsync), so the profile shows the CPU work of a write alone.
//!
//! `SEGD_WRITE_PHASE` picks what is measured (the rest is set-up):
//! - `live` (default): per group, the committer's steps: check every request against the
//!   published version, encode the log records, clone the version, apply the group,
//!   publish it and its events, free the replaced version.
//! - `replay`: decode the same records and apply them as start-up replay does (groups of
//!   250,000 updates, events kept in the event log).
//! - `encode`, `decode`: the record codec alone.
//!
//! `SEGD_WRITE_GROUPS` (default 25: 1M updates). The measured part is the function
//! `measured_phase`; count its instructions with
//! `valgrind --tool=callgrind --toggle-collect='*measured_phase*' <bench binary>`.
//! It prints the phase's wall time and the process's RSS after it (`VmRSS`, `VmHWM`).

use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use segd::engine::{Engine, Mutation};
use segd::persist::record;
use segd::segments::Definition;
use segd::store::mutate::{CellValue, CustomerUpdate};

#[path = "common.rs"]
mod common;

/// Requests per commit group and customers per request (scripts/bench-realtime.sh's
/// 10,000 × 4 run).
const REQUESTS: usize = 4;
const BATCH: usize = 10_000;
/// Customer updates replayed as one group (`db::REPLAY_GROUP`).
const REPLAY_GROUP: usize = 250_000;

/// What `segd loadgen --rpc upsert` sends: 3 attributes of a random customer.
fn batch(r: &mut rand::rngs::SmallRng, rows: usize, n: usize) -> Vec<CustomerUpdate> {
    const TIERS: [&str; 5] = ["NONE", "BRONZE", "SILVER", "GOLD", "PLATINUM"];
    (0..n)
        .map(|_| CustomerUpdate {
            customer_id: r.random_range(1..=rows as u64),
            attributes: vec![
                ("total_spend_eur".into(), CellValue::Float(r.random_range(0..3_000_000) as f64 / 100.0)),
                ("last_purchase_days_ago".into(), CellValue::Int(r.random_range(0..400))),
                ("tier".into(), CellValue::Str(TIERS[r.random_range(0..5)].into())),
            ],
        })
        .collect()
}

fn status(key: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("?"))
        .unwrap_or("?")
        .into()
}

/// The committer's work for one group (see `db::commit_loop`), minus the log write.
fn commit_group(published: &mut Arc<Engine>, group: Vec<Mutation>, seq: &mut u64) -> usize {
    let mut valid = Vec::with_capacity(group.len());
    for m in group {
        published.check(&m).expect("valid");
        valid.push(m);
    }
    let mut buf = Vec::new();
    for m in &valid {
        record::encode_mutation(m, &mut buf);
    }
    let items: Vec<(u64, &Mutation)> = valid
        .iter()
        .map(|m| {
            *seq += 1;
            (*seq, m)
        })
        .collect();
    let mut next = Engine::clone(published);
    for r in next.apply_group(&items) {
        r.expect("applies");
    }
    let events = next.take_events();
    let next = Arc::new(next);
    let replaced = std::mem::replace(published, next.clone());
    next.publish_events(events);
    drop(replaced);
    buf.len()
}

#[inline(never)]
fn measured_phase(
    phase: &str,
    published: &mut Arc<Engine>,
    groups: Vec<Vec<Mutation>>,
    records: &[Vec<u8>],
    seq0: u64,
) -> usize {
    let mut seq = seq0;
    match phase {
        "live" => groups.into_iter().map(|g| commit_group(published, g, &mut seq)).sum(),
        "encode" => groups
            .iter()
            .flatten()
            .map(|m| {
                let mut buf = Vec::new();
                record::encode_mutation(m, &mut buf);
                buf.len()
            })
            .sum(),
        "decode" => records
            .iter()
            .map(|b| match record::decode_mutation(record::FORMAT, b).expect("decodes") {
                Mutation::Upsert(u) => u.len(),
                other => unreachable!("{}", other.summary()),
            })
            .sum(),
        "replay" => {
            // As `db::replay::replay_log`: decode, group by REPLAY_GROUP updates, apply,
            // publish the events.
            let engine = Arc::get_mut(published).expect("not shared");
            let mut pending: Vec<(u64, Mutation)> = vec![];
            let mut updates = 0;
            let flush = |engine: &mut Engine, pending: &mut Vec<(u64, Mutation)>| {
                let items: Vec<(u64, &Mutation)> = pending.iter().map(|(s, m)| (*s, m)).collect();
                for r in engine.apply_group(&items) {
                    r.expect("applies");
                }
                let events = engine.take_events();
                engine.publish_events(events);
                pending.clear();
            };
            for b in records {
                let m = record::decode_mutation(record::FORMAT, b).expect("decodes");
                seq += 1;
                updates += m.changes() as usize;
                pending.push((seq, m));
                if updates >= REPLAY_GROUP {
                    flush(engine, &mut pending);
                    updates = 0;
                }
            }
            flush(engine, &mut pending);
            records.len()
        }
        other => panic!("SEGD_WRITE_PHASE={other}: live, replay, encode or decode"),
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let phase = std::env::var("SEGD_WRITE_PHASE").unwrap_or_else(|_| "live".into());
    let n_groups: usize = std::env::var("SEGD_WRITE_GROUPS").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
    let (ds, rows) = common::dataset();
    let mut engine = Engine::new(ds, 1000, 1_000_000);
    let t = Instant::now();
    for (i, (id, text)) in segd::gen::benchmark_segments().into_iter().enumerate() {
        let m = Mutation::CreateSegment {
            id,
            description: String::new(),
            definition: Definition::Sql(text),
            members: vec![],
        };
        engine.apply(i as u64 + 1, &m).expect("segment");
    }
    let seq0 = 1000;
    engine.restored_at(seq0);
    eprintln!("100 saved segments in {:.2}s", t.elapsed().as_secs_f64());
    let mut r = rand::rngs::SmallRng::seed_from_u64(11);
    let groups: Vec<Vec<Mutation>> = (0..n_groups)
        .map(|_| (0..REQUESTS).map(|_| Mutation::Upsert(batch(&mut r, rows, BATCH))).collect())
        .collect();
    let records: Vec<Vec<u8>> = groups
        .iter()
        .flatten()
        .map(|m| {
            let mut buf = Vec::new();
            record::encode_mutation(m, &mut buf);
            buf
        })
        .collect();
    let mut published = Arc::new(engine);
    eprintln!("before: VmRSS {} kB", status("VmRSS:"));
    let t = Instant::now();
    let n = measured_phase(&phase, &mut published, groups, &records, seq0);
    let secs = t.elapsed().as_secs_f64();
    let events = published.events_since(seq0 + 1, &Default::default(), usize::MAX).map(|e| e.len());
    println!(
        "{phase}: {n_groups} groups of {REQUESTS} x {BATCH} at {rows} rows: {secs:.3} s ({n}); \
         events retained {events:?}; VmRSS {} kB, VmHWM {} kB",
        status("VmRSS:"),
        status("VmHWM:")
    );
}
