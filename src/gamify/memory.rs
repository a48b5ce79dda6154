//! What the gamification state holds, by structure: the bytes behind issue 10's memory
//! figure ("say what each structure costs per customer"), read by the metrics endpoint.
//!
//! Counted: each structure's own allocations, buffers by capacity, map entries by their
//! size. Not counted: the persistent maps' node slack and the allocator's overhead, so
//! the process's RSS is above the sum; the difference is what those cost. An event id
//! (`Arc<str>`) is held by the dedup window and by the credits it earned: each holder
//! counts its share (bytes / holders), so an id is counted once in all.

use std::mem::size_of;
use std::sync::Arc;

use super::ledger::{Credit, Debit, Wallet};
use super::rules::CapUse;
use super::state::{Customer, GamifyState};
use super::tiers::Buckets;

/// Bytes by structure (see the module doc for what is counted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMemory {
    /// Customers with state.
    pub customers: u64,
    /// The per-customer records and the map entries that hold them.
    pub records: usize,
    /// Wallets: credits (with their share of the event ids), debits and their parts.
    pub ledger: usize,
    /// Day sums of the measures (tier qualification windows).
    pub measures: usize,
    /// Event counters and earning caps in use.
    pub counters_caps: usize,
    /// Badges, streaks and challenges.
    pub achievements: usize,
    /// The 7-day dedup window: the map, the queue and their share of the event ids.
    pub dedup: usize,
    /// The tick agenda.
    pub agenda: usize,
}

impl StateMemory {
    /// Every structure together.
    pub fn total(&self) -> usize {
        self.records
            + self.ledger
            + self.measures
            + self.counters_caps
            + self.achievements
            + self.dedup
            + self.agenda
    }

    /// (name, bytes) per structure, in a stable order (the metrics' `part` label).
    pub fn parts(&self) -> [(&'static str, usize); 7] {
        [
            ("records", self.records),
            ("ledger", self.ledger),
            ("measures", self.measures),
            ("counters_caps", self.counters_caps),
            ("achievements", self.achievements),
            ("dedup", self.dedup),
            ("agenda", self.agenda),
        ]
    }
}

/// An `Arc<str>`'s bytes (counts and text) shared out among its holders.
fn share(s: &Arc<str>) -> usize {
    (2 * size_of::<usize>() + s.len()) / Arc::strong_count(s).max(1)
}

fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

fn wallet_bytes(w: &Wallet) -> usize {
    vec_bytes(&w.credits)
        + w.credits.iter().map(|c: &Credit| share(&c.source)).sum::<usize>()
        + vec_bytes(&w.debits)
        + w.debits.iter().map(|d: &Debit| d.source.len() + vec_bytes(&d.parts)).sum::<usize>()
}

impl GamifyState {
    /// The bytes this state holds, by structure. A walk over every customer: for an
    /// operator's scrape or a benchmark, not for a hot path.
    pub fn memory(&self) -> StateMemory {
        let mut m = StateMemory {
            dedup: self.dedup.len() * size_of::<(Arc<str>, i64)>()
                + self.dedup_queue.len() * size_of::<(i64, Arc<str>)>()
                + self.dedup.keys().map(share).sum::<usize>()
                + self.dedup_queue.iter().map(|(_, id)| share(id)).sum::<usize>(),
            agenda: self.agenda.len() * size_of::<(i64, u64)>(),
            ..StateMemory::default()
        };
        for (_, c) in self.customers() {
            m.customers += 1;
            // The map's entry (id, pointer) and the shared record with its counts.
            m.records += size_of::<(u64, Arc<Customer>)>() + 2 * size_of::<usize>() + size_of::<Customer>();
            m.ledger += vec_bytes(&c.wallets) + c.wallets.iter().map(|(_, w)| wallet_bytes(w)).sum::<usize>();
            m.measures += vec_bytes(&c.measures)
                + c.measures.iter().map(|(_, b): &(u16, Buckets)| vec_bytes(&b.0)).sum::<usize>();
            m.counters_caps += vec_bytes(&c.counters) + c.caps.capacity() * size_of::<CapUse>();
            if let Some(a) = &c.achieve {
                m.achievements += size_of::<super::achieve_state::CustomerAchieve>()
                    + a.badges.heap_bytes()
                    + vec_bytes(&a.streaks)
                    + vec_bytes(&a.challenges);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamify::{Event, MapFacts, Program, PropValue};
    use std::collections::BTreeMap;

    /// Counted against the structures' own sizes, read here field by field: two
    /// customers, one purchase each, then one more for the first.
    #[test]
    fn every_structure_is_counted_once() {
        let program = Program::demo();
        let mut s = GamifyState::new();
        let facts = MapFacts {
            customers: [(1, BTreeMap::new()), (2, BTreeMap::new())].into(),
            ..MapFacts::default()
        };
        let t0 = 1_768_046_400_000;
        let purchase = |id: &str, customer: u64| Event {
            event_id: id.into(),
            customer_id: customer,
            kind: "purchase".into(),
            occurred_at_ms: t0,
            properties: BTreeMap::from([("amount_eur".to_string(), PropValue::Float(20.0))]),
        };
        s.apply_events(&program, &[purchase("e1", 1), purchase("e2", 2)], &facts, t0).unwrap();
        s.apply_events(&program, &[purchase("e3", 1)], &facts, t0 + 1000).unwrap();
        let m = s.memory();
        assert_eq!(m.customers, 2);
        assert_eq!(m.agenda, s.agenda.len() * 16);
        // Three ids of two bytes, each with its two counts, in the map and the queue.
        assert_eq!(s.dedup.len(), 3);
        let ids: usize = 3 * (16 + 2);
        let entries = 3 * size_of::<(Arc<str>, i64)>() + 3 * size_of::<(i64, Arc<str>)>();
        // The credits hold the ids too: the dedup's share is what is left of them.
        let credit_holders: usize =
            s.customers().flat_map(|(_, c)| c.wallets.iter()).map(|(_, w)| w.credits.len()).sum();
        assert!(credit_holders >= 3, "every purchase earned a credit");
        assert!(m.dedup >= entries && m.dedup < entries + ids, "{m:?}");
        let records = 2 * (size_of::<(u64, Arc<Customer>)>() + 16 + size_of::<Customer>());
        assert_eq!(m.records, records);
        let mut ledger = 0;
        let mut measures = 0;
        for (_, c) in s.customers() {
            ledger += c.wallets.capacity() * size_of::<(u16, Wallet)>();
            for (_, w) in &c.wallets {
                ledger += w.credits.capacity() * size_of::<Credit>();
                ledger += w
                    .credits
                    .iter()
                    .map(|cr| (16 + cr.source.len()) / Arc::strong_count(&cr.source))
                    .sum::<usize>();
                ledger += w.debits.capacity() * size_of::<Debit>();
            }
            measures += c.measures.capacity() * size_of::<(u16, Buckets)>();
            measures +=
                c.measures.iter().map(|(_, b)| b.0.capacity() * size_of::<(i32, i64)>()).sum::<usize>();
        }
        assert_eq!(m.ledger, ledger);
        assert_eq!(m.measures, measures);
        // The shares of every holder of an id add up to its bytes once (each share rounded
        // down: at most a byte short per holder).
        let id_total: usize = m.dedup - entries
            + s.customers()
                .flat_map(|(_, c)| c.wallets.iter())
                .flat_map(|(_, w)| w.credits.iter())
                .map(|cr| (16 + cr.source.len()) / Arc::strong_count(&cr.source))
                .sum::<usize>();
        let holders = 2 * 3 + credit_holders;
        assert!(id_total <= ids && id_total + holders >= ids, "{id_total} against {ids}");
        assert_eq!(m.total(), m.parts().iter().map(|p| p.1).sum::<usize>());
    }
}
