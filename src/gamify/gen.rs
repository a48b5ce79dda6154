//! A seeded, deterministic event stream for the demo program: purchases with amounts and
//! categories, logins, reviews, and refunds of earlier purchases, in time order. The same
//! (customers, events, seed, start) always gives the same events (StdRng is ChaCha12,
//! whose stream is platform-independent).
//!
//! Mix: 45 % logins, 35 % purchases, 12 % reviews, 8 % refunds (of one of the last 1,000
//! purchases, a quarter of them partial). Purchase amounts are skewed: most are
//! 5–60 €, a few reach 400 €. Customers are drawn with a skew too (a third of the events
//! come from a tenth of the customers), so tiers fill up.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Event, PropValue, DAY_MS};

pub const CATEGORIES: [&str; 8] =
    ["books", "electronics", "fashion", "grocery", "home", "sports", "toys", "beauty"];
pub const CHANNELS: [&str; 3] = ["app", "web", "store"];

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Customer ids are 1..=customers.
    pub customers: u64,
    pub events: u64,
    pub seed: u64,
    /// The first event's time.
    pub start_ms: i64,
    /// Events are spread evenly over this many days.
    pub span_days: u32,
}

/// The event stream, as an iterator (a file of any size needs no memory).
pub struct EventGen {
    cfg: GenConfig,
    rng: StdRng,
    n: u64,
    recent: VecDeque<(u64, String, f64)>,
}

impl EventGen {
    pub fn new(cfg: GenConfig) -> EventGen {
        EventGen { cfg, rng: StdRng::seed_from_u64(cfg.seed), n: 0, recent: VecDeque::with_capacity(1000) }
    }

    fn customer(&mut self) -> u64 {
        let c = self.cfg.customers.max(1);
        if self.rng.random_bool(1.0 / 3.0) {
            1 + self.rng.random_range(0..c.div_ceil(10))
        } else {
            1 + self.rng.random_range(0..c)
        }
    }
}

impl Iterator for EventGen {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.n >= self.cfg.events {
            return None;
        }
        let i = self.n;
        self.n += 1;
        let span = self.cfg.span_days as i64 * DAY_MS;
        let at = self.cfg.start_ms + (span as i128 * i as i128 / self.cfg.events.max(1) as i128) as i64;
        let event_id = format!("e{i}");
        let roll: f64 = self.rng.random();
        let mut props = BTreeMap::new();
        let (customer_id, kind) = if roll < 0.08 && !self.recent.is_empty() {
            let k = self.rng.random_range(0..self.recent.len());
            let (c, id, amount) = self.recent[k].clone();
            let refunded =
                if self.rng.random_bool(0.25) { (amount * 0.5 * 100.0).round() / 100.0 } else { amount };
            props.insert("original_event_id".into(), PropValue::Str(id));
            props.insert("amount_eur".into(), PropValue::Float(refunded));
            (c, "refund")
        } else if roll < 0.43 {
            let c = self.customer();
            let u: f64 = self.rng.random();
            let amount = ((5.0 + 55.0 * u + if u > 0.95 { 340.0 * (u - 0.95) * 20.0 } else { 0.0 }) * 100.0)
                .round()
                / 100.0;
            let cat = CATEGORIES[self.rng.random_range(0..CATEGORIES.len())];
            props.insert("amount_eur".into(), PropValue::Float(amount));
            props.insert("category".into(), PropValue::Str(cat.into()));
            if self.recent.len() == 1000 {
                self.recent.pop_front();
            }
            self.recent.push_back((c, event_id.clone(), amount));
            (c, "purchase")
        } else if roll < 0.55 {
            let c = self.customer();
            props.insert("rating".into(), PropValue::Int(self.rng.random_range(1..=5)));
            props.insert("has_photo".into(), PropValue::Bool(self.rng.random_bool(0.2)));
            (c, "review")
        } else {
            let c = self.customer();
            props.insert(
                "channel".into(),
                PropValue::Str(CHANNELS[self.rng.random_range(0..CHANNELS.len())].into()),
            );
            (c, "login")
        };
        Some(Event { event_id, customer_id, kind: kind.into(), occurred_at_ms: at, properties: props })
    }
}

/// Writes the stream as JSON lines (one [`Event`] per line).
pub fn write_json_lines(cfg: GenConfig, out: &mut impl std::io::Write) -> std::io::Result<u64> {
    let mut n = 0;
    for e in EventGen::new(cfg) {
        serde_json::to_writer(&mut *out, &e)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamify::Program;

    fn cfg(seed: u64) -> GenConfig {
        GenConfig { customers: 50, events: 2_000, seed, start_ms: 1_767_225_600_000, span_days: 60 }
    }

    #[test]
    fn seeded_deterministic_valid_and_mixed() {
        let a: Vec<Event> = EventGen::new(cfg(7)).collect();
        assert_eq!(a, EventGen::new(cfg(7)).collect::<Vec<_>>());
        assert_ne!(a, EventGen::new(cfg(8)).collect::<Vec<_>>());
        let p = Program::demo();
        for e in &a {
            p.check_event(e).unwrap();
            assert!((1..=50).contains(&e.customer_id));
        }
        assert!(a.windows(2).all(|w| w[0].occurred_at_ms <= w[1].occurred_at_ms));
        for kind in ["purchase", "login", "review", "refund"] {
            let n = a.iter().filter(|e| e.kind == kind).count();
            assert!(n > 50, "{kind}: {n}");
        }
        // A refund names an earlier purchase of the same customer.
        for r in a.iter().filter(|e| e.kind == "refund") {
            let Some(PropValue::Str(of)) = r.properties.get("original_event_id") else { panic!() };
            let p = a.iter().find(|e| &e.event_id == of).unwrap();
            assert_eq!((p.kind.as_str(), p.customer_id), ("purchase", r.customer_id));
        }
        let mut buf = Vec::new();
        assert_eq!(write_json_lines(cfg(7), &mut buf).unwrap(), 2_000);
        let first: Event = serde_json::from_slice(buf.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first, a[0]);
    }
}
