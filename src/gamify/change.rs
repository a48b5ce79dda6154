//! A program change: re-evaluates every customer's tier and level in the same mutation,
//! and the transition matrix that [`GamifyState::preview`] answers before it is applied.
//!
//! On a change, a customer keeps their tier by name when the new program still has it
//! (downgrades stay the downgrade mode's job, at period ends, measured with the new
//! thresholds), rises to what their measure qualifies for under the new thresholds, and
//! never falls below a manual tier. Levels are a function of lifetime points, so they
//! follow the new thresholds at once. Counters and measures the new program adds start
//! at zero (they are not back-filled).

use std::collections::BTreeMap;

use super::ledger::Wallet;
use super::program::Program;
use super::state::{attrs_at, Customer, GamifyState, Keys};
use super::tiers::{level_of, next_check, retier, today, Buckets};
use super::GamifyError;
use super::{Achievement, Applied, AttrValue, CustomerAttrs, TierReason};

/// Customers worked at once by [`Retier::next_of_many`]: their prefetched lines stay in
/// a core's L2 cache between its stages.
const BATCH: usize = 1024;

/// Exact counts of customers moving between tiers and levels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    /// (old tier, new tier) -> customers, unchanged ones included.
    pub tiers: BTreeMap<(String, String), u64>,
    /// (old level, new level) -> customers.
    pub levels: BTreeMap<(u32, u32), u64>,
}

/// What every customer's re-evaluation shares: computed once per program change (the
/// time zone's "today" and the tier names' mapping cost more than the rest of a customer).
struct Retier<'a> {
    new: &'a Program,
    /// Old tier index -> the same name's index in the new program.
    same_name: Vec<Option<usize>>,
    today: i32,
    measure: u16,
    wallet: u16,
}

impl<'a> Retier<'a> {
    fn new(state: &GamifyState, old: &Program, new: &'a Program, keys_new: &Keys) -> Self {
        Retier {
            new,
            same_name: old.spec.tiers.tiers.iter().map(|t| new.tier_index(&t.name)).collect(),
            today: today(new.tz, state.clock_ms()),
            measure: keys_new.measures[new.tier_measure],
            wallet: keys_new.wallets[0],
        }
    }

    /// One customer's tier index and level under the new program.
    fn next_of(&self, c: &Customer) -> (usize, u32) {
        let value = c.measure(self.measure).map_or(0, |b| b.sum(self.today, self.window()));
        let lifetime = c.wallet(self.wallet).map_or(0, |w| w.lifetime());
        self.decide(c, value, lifetime)
    }

    fn window(&self) -> u32 {
        self.new.spec.measures[self.new.tier_measure].window_days
    }

    /// The tier index and level of a customer whose measure and lifetime points are known.
    fn decide(&self, c: &Customer, value: i64, lifetime: i64) -> (usize, u32) {
        self.decide_of(c.tier, c.manual_tier, value, lifetime)
    }

    /// [`Retier::decide`] from the customer's tier and manual tier, read beforehand.
    fn decide_of(&self, tier: u16, manual: Option<u16>, value: i64, lifetime: i64) -> (usize, u32) {
        let held = self.same_name[tier as usize];
        let manual = manual.and_then(|m| self.same_name[m as usize]);
        (retier(self.new, held, manual, value), level_of(&self.new.spec.levels.thresholds, lifetime).0)
    }

    /// [`Retier::next_of`] for many customers at once, in stages: each stage makes one
    /// dependent load per customer (the customer, then its measure and wallet lists, where
    /// the lifetime points are kept, then the measure's day sums), so the loads of one stage
    /// are independent of each other and the core overlaps their cache misses. One
    /// customer at a time, a preview waited for four misses in a row per customer (the
    /// profile: ~90% of its time in loads); the answer is the same, customer by customer.
    /// Each stage also prefetches what the next one reads (17% off the in-process bench).
    /// A customer spans three cache lines and its tier and level are not on the line of
    /// its lists: both lines are asked for by the caller's walk ([`prefetch_customer`]),
    /// and everything the counts need is read here once, so no later step reloads a
    /// customer whose line the rest of the batch has since evicted.
    fn next_of_many(&self, part: &[&Customer], out: &mut Vec<Moved>) {
        let (measure, wallet, window) = (self.measure, self.wallet, self.window());
        struct Seen<'c> {
            tier: u16,
            manual: Option<u16>,
            level: u32,
            measures: &'c [(u16, Buckets)],
            wallets: &'c [(u16, Wallet)],
        }
        let seen: Vec<Seen> = part
            .iter()
            .map(|c| {
                prefetch(c.measures.as_ptr());
                prefetch(c.wallets.as_ptr());
                Seen {
                    tier: c.tier,
                    manual: c.manual_tier,
                    level: c.level,
                    measures: &c.measures[..],
                    wallets: &c.wallets[..],
                }
            })
            .collect();
        let found: Vec<(Option<&Buckets>, i64)> = seen
            .iter()
            .map(|s| {
                (
                    s.measures.iter().find(|m| m.0 == measure).map(|m| {
                        prefetch(m.1 .0.as_ptr());
                        &m.1
                    }),
                    s.wallets.iter().find(|w| w.0 == wallet).map_or(0, |w| w.1.lifetime()),
                )
            })
            .collect();
        out.clear();
        out.extend(seen.iter().zip(found).map(|(s, (b, lifetime))| {
            let value = b.map_or(0, |b| b.sum(self.today, window));
            let (tier, level) = self.decide_of(s.tier, s.manual, value, lifetime);
            Moved { from: (s.tier, s.level), to: (tier, level) }
        }));
    }
}

/// One customer's tier index and level before and after a program change.
#[derive(Clone, Copy, Debug)]
struct Moved {
    from: (u16, u32),
    to: (usize, u32),
}

/// Asks for both cache lines of a customer that [`Retier::next_of_many`] reads: the one
/// holding its lists and the one holding its tier and level.
#[inline(always)]
fn prefetch_customer(c: &Customer) {
    prefetch(&c.measures);
    prefetch(&c.tier);
}

/// Transition counts between small indexes (tier or level pairs): a dense table while
/// the pairs fit one, a map for any pair outside it, so a count is an add, not a map
/// lookup per customer.
struct PairCounts {
    width: usize,
    dense: Vec<u64>,
    rest: BTreeMap<(u32, u32), u64>,
}

impl PairCounts {
    /// Pairs with both sides `< side` (at most 64: each of the preview's tasks has a
    /// table of its own) are counted densely.
    fn new(side: usize) -> Self {
        let side = side.min(64);
        PairCounts { width: side, dense: vec![0; side * side], rest: BTreeMap::new() }
    }

    fn add(&mut self, from: u32, to: u32, n: u64) {
        let (f, t) = (from as usize, to as usize);
        if f < self.width && t < self.width {
            self.dense[f * self.width + t] += n;
        } else {
            *self.rest.entry((from, to)).or_default() += n;
        }
    }

    fn merge(mut self, other: PairCounts) -> PairCounts {
        for (i, &n) in other.dense.iter().enumerate().filter(|(_, &n)| n > 0) {
            self.add((i / other.width) as u32, (i % other.width) as u32, n);
        }
        for ((f, t), n) in other.rest {
            self.add(f, t, n);
        }
        self
    }

    fn into_map(self) -> BTreeMap<(u32, u32), u64> {
        let mut out = self.rest;
        for (i, &n) in self.dense.iter().enumerate().filter(|(_, &n)| n > 0) {
            *out.entry(((i / self.width) as u32, (i % self.width) as u32)).or_default() += n;
        }
        out
    }
}

/// Asks for the cache line at `p` without waiting for it.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and has no effect a program can
    // observe, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl GamifyState {
    /// Checks that `new` can replace `old` on this state: no customer holds a manual tier
    /// the new program drops, and no wallet with points left is dropped.
    pub fn check_program_change(&self, old: &Program, new: &Program) -> Result<(), GamifyError> {
        // Names are looked up once per tier and per interned name, not per customer.
        let dropped_tier: Vec<bool> =
            old.spec.tiers.tiers.iter().map(|t| new.tier_index(&t.name).is_none()).collect();
        // The usual change (a threshold, a rule) drops no tier and no wallet: no customer
        // to visit. Points only ever enter the wallets of the program in force, and a
        // change that drops one holding points is refused here, so a wallet holding points
        // is always one of `old`'s.
        let keeps_wallets = old.spec.wallets.iter().all(|w| new.wallet_index(&w.id).is_some());
        if !dropped_tier.contains(&true) && keeps_wallets {
            return Ok(());
        }
        let dropped_wallet: Vec<bool> = self.names.iter().map(|n| new.wallet_index(n).is_none()).collect();
        for (id, c) in self.customers() {
            if let Some(m) = c.manual_tier.filter(|&m| dropped_tier[m as usize]) {
                let name = &old.spec.tiers.tiers[m as usize].name;
                return Err(GamifyError::ProgramChange(format!(
                    "drops tier '{name}', which customer {id} holds as a manual tier"
                )));
            }
            for (k, w) in &c.wallets {
                if dropped_wallet.get(*k as usize).copied().unwrap_or(true) && w.available() + w.pending() > 0
                {
                    let name = self.name(*k);
                    return Err(GamifyError::ProgramChange(format!(
                        "drops wallet '{name}', where customer {id} holds points"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Exact tier → tier and level → level counts if `new` replaced `old` now.
    ///
    /// A marketer tries thresholds one after another, so this runs on every core and
    /// counts by tier index (names are compared once per tier, not once per customer).
    pub fn preview(&self, old: &Program, new: &Program) -> Result<Transitions, GamifyError> {
        use rayon::prelude::*;
        self.check_program_change(old, new)?;
        let keys = self.lookup_keys(new);
        let retier = Retier::new(self, old, new, &keys);
        let (n_old, n_new) = (old.spec.tiers.tiers.len(), new.spec.tiers.tiers.len());
        // Id ranges rather than one list of every customer: walking the map is a part of
        // the work, and it is shared by the cores too.
        let ranges = self.customers.id_ranges(64 * rayon::current_num_threads() as u64);
        // Levels are counted densely up to the larger program's number of levels.
        let level_side = old.spec.levels.thresholds.len().max(new.spec.levels.thresholds.len()) + 1;
        let counted = ranges
            .into_par_iter()
            .map(|(from, to)| {
                let mut tiers = vec![0u64; n_old * n_new];
                let mut levels = PairCounts::new(level_side);
                let mut next = Vec::with_capacity(BATCH);
                let mut part: Vec<&Customer> = Vec::with_capacity(BATCH);
                let mut walk = self.customers.range(from, to).map(|(_, c)| c).peekable();
                while walk.peek().is_some() {
                    part.clear();
                    part.extend(walk.by_ref().take(BATCH).inspect(|c| prefetch_customer(c)));
                    retier.next_of_many(&part, &mut next);
                    for m in &next {
                        tiers[m.from.0 as usize * n_new + m.to.0] += 1;
                        levels.add(m.from.1, m.to.1, 1);
                    }
                }
                (tiers, levels)
            })
            .reduce(
                || (vec![0u64; n_old * n_new], PairCounts::new(level_side)),
                |(mut ta, la), (tb, lb)| {
                    ta.iter_mut().zip(tb).for_each(|(a, b)| *a += b);
                    (ta, la.merge(lb))
                },
            );
        let (tiers, levels) = counted;
        let levels = levels.into_map();
        let mut t = Transitions { tiers: BTreeMap::new(), levels };
        for (i, &n) in tiers.iter().enumerate().filter(|(_, &n)| n > 0) {
            let names =
                (old.spec.tiers.tiers[i / n_new].name.clone(), new.spec.tiers.tiers[i % n_new].name.clone());
            *t.tiers.entry(names).or_default() += n;
        }
        Ok(t)
    }

    /// Replaces `old` by `new`: every customer re-tiered and re-levelled in this one
    /// mutation; their changed attributes and achievements reported.
    pub fn apply_program(
        &mut self,
        old: &Program,
        new: &Program,
        logged_at_ms: i64,
    ) -> Result<Applied, GamifyError> {
        self.check_program_change(old, new)?;
        let keys = self.keys(new)?;
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let now = self.clock_ms;
        let old_keys = self.lookup_keys(old);
        let ids: Vec<u64> = self.customers.keys().copied().collect();
        let mut out = Applied::default();
        let retier = Retier::new(self, old, new, &keys);
        for id in ids {
            let Some(c) = self.customers.get(&id) else { continue };
            let before = self.attrs_of(old, &old_keys, c);
            let (tier, level) = retier.next_of(c);
            let from = old.spec.tiers.tiers[c.tier as usize].name.clone();
            let manual = c.manual_tier.and_then(|m| new.tier_index(&old.spec.tiers.tiers[m as usize].name));
            let Some(c) = self.customers.get_mut(&id) else { continue };
            let to = &new.spec.tiers.tiers[tier].name;
            if *to != from {
                out.achievements.push(Achievement::TierChanged {
                    customer_id: id,
                    from,
                    to: to.clone(),
                    reason: TierReason::Program,
                    at_ms: now,
                });
                c.tier_since_ms = now;
            }
            if level > c.level {
                out.achievements.push(Achievement::LevelUp {
                    customer_id: id,
                    from: c.level,
                    to: level,
                    at_ms: now,
                });
            }
            c.tier = tier as u16;
            c.manual_tier = manual.map(|m| m as u16);
            c.level = level;
            // The downgrade schedule may have changed with the mode or period.
            c.next_check_ms = if c.tier > c.manual_tier.unwrap_or(0) {
                next_check(new, now).unwrap_or(i64::MAX)
            } else {
                i64::MAX
            };
            self.reschedule(id);
            let Some(c) = self.customers.get(&id) else { continue };
            let after = self.attrs_of(new, &keys, c);
            // Named values compared: a renamed attribute is a change even if its value is not.
            if after != before || old.attr_names != new.attr_names {
                out.changed.push(CustomerAttrs { customer_id: id, values: after });
            }
        }
        Ok(out)
    }
}

impl GamifyState {
    /// The derived attributes of a customer no change has touched: what the program's
    /// columns hold for every customer without gamification state.
    pub fn starting_attributes(&self, program: &Program) -> Vec<(String, AttrValue)> {
        let keys = self.lookup_keys(program);
        let level = level_of(&program.spec.levels.thresholds, 0).0;
        let values = attrs_at(program, &keys, &Customer { level, ..Customer::new() }, self.clock_ms);
        program.attr_names.iter().cloned().zip(values).collect()
    }

    /// Calls `f` with every customer's derived attributes (in the order of
    /// [`Program::attr_names`]), ascending by id (without collecting them: at 10M
    /// customers they would take gigabytes).
    pub fn for_each_attributes(&self, program: &Program, mut f: impl FnMut(u64, Vec<AttrValue>)) {
        let keys = self.lookup_keys(program);
        for (id, c) in self.customers() {
            f(id, self.attrs_of(program, &keys, c));
        }
    }
}

#[cfg(test)]
mod pair_counts_tests {
    use super::*;

    /// Pairs inside and outside the dense table, counted in two parts and merged, equal a
    /// map counted pair by pair.
    #[test]
    fn dense_and_spilled_pairs_merge_to_the_plain_count() {
        let pairs: Vec<(u32, u32)> = (0..5_000u32).map(|i| ((i * 7) % 90, (i * 13) % 70)).collect();
        let mut oracle: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for &p in &pairs {
            *oracle.entry(p).or_default() += 1;
        }
        let (mut a, mut b) = (PairCounts::new(200), PairCounts::new(200));
        for (i, &(f, t)) in pairs.iter().enumerate() {
            if i % 3 == 0 {
                a.add(f, t, 1)
            } else {
                b.add(f, t, 1)
            }
        }
        assert_eq!(a.merge(b).into_map(), oracle);
        let mut small = PairCounts::new(3);
        small.add(2, 2, 4);
        small.add(3, 1, 1);
        assert_eq!(small.into_map(), BTreeMap::from([((2, 2), 4), ((3, 1), 1)]));
    }
}
