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
        let held = self.same_name[c.tier as usize];
        let manual = c.manual_tier.and_then(|m| self.same_name[m as usize]);
        (retier(self.new, held, manual, value), level_of(&self.new.spec.levels.thresholds, lifetime).0)
    }

    /// [`Retier::next_of`] for many customers at once, in stages: each stage makes one
    /// dependent load per customer (the customer, then its measure and wallet lists, where
    /// the lifetime points are kept, then the measure's day sums), so the loads of one stage
    /// are independent of each other and the core overlaps their cache misses. One
    /// customer at a time, a preview waited for four misses in a row per customer (the
    /// profile: ~90% of its time in loads); the answer is the same, customer by customer.
    /// Each stage also prefetches what the next one reads (17% off the in-process bench).
    fn next_of_many(&self, part: &[&Customer], out: &mut Vec<(usize, u32)>) {
        let (measure, wallet, window) = (self.measure, self.wallet, self.window());
        type Lists<'c> = (&'c [(u16, Buckets)], &'c [(u16, Wallet)]);
        let lists: Vec<Lists> = part
            .iter()
            .map(|c| {
                prefetch(c.measures.as_ptr());
                prefetch(c.wallets.as_ptr());
                (&c.measures[..], &c.wallets[..])
            })
            .collect();
        let found: Vec<(Option<&Buckets>, i64)> = lists
            .iter()
            .map(|(m, w)| {
                (
                    m.iter().find(|m| m.0 == measure).map(|m| {
                        prefetch(m.1 .0.as_ptr());
                        &m.1
                    }),
                    w.iter().find(|w| w.0 == wallet).map_or(0, |w| w.1.lifetime()),
                )
            })
            .collect();
        out.clear();
        out.extend(part.iter().zip(found).map(|(c, (b, lifetime))| {
            let value = b.map_or(0, |b| b.sum(self.today, window));
            self.decide(c, value, lifetime)
        }));
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
        let dropped_wallet: Vec<bool> = self.names.iter().map(|n| new.wallet_index(n).is_none()).collect();
        // The usual change (a threshold, a rule) drops no tier and no wallet: no customer
        // to visit. Points only ever enter the wallets of the program in force, and a
        // change that drops one holding points is refused here, so a wallet holding points
        // is always one of `old`'s.
        let keeps_wallets = old.spec.wallets.iter().all(|w| new.wallet_index(&w.id).is_some());
        if !dropped_tier.contains(&true) && keeps_wallets {
            return Ok(());
        }
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
        let counted = ranges
            .into_par_iter()
            .map(|(from, to)| {
                let mut tiers = vec![0u64; n_old * n_new];
                let mut levels: BTreeMap<(u32, u32), u64> = BTreeMap::new();
                let mut next = Vec::with_capacity(4096);
                let mut part: Vec<&Customer> = Vec::with_capacity(4096);
                let mut walk = self.customers.range(from, to).map(|(_, c)| c).peekable();
                while walk.peek().is_some() {
                    part.clear();
                    part.extend(walk.by_ref().take(4096));
                    retier.next_of_many(&part, &mut next);
                    for (&c, &(tier, level)) in part.iter().zip(&next) {
                        tiers[c.tier as usize * n_new + tier] += 1;
                        *levels.entry((c.level, level)).or_default() += 1;
                    }
                }
                (tiers, levels)
            })
            .reduce(
                || (vec![0u64; n_old * n_new], BTreeMap::new()),
                |(mut ta, mut la), (tb, lb)| {
                    ta.iter_mut().zip(tb).for_each(|(a, b)| *a += b);
                    for (k, v) in lb {
                        *la.entry(k).or_default() += v;
                    }
                    (ta, la)
                },
            );
        let (tiers, levels) = counted;
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
