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

use super::program::Program;
use super::state::{attrs_at, Customer, GamifyState, Keys};
use super::tiers::{level_of, next_check, retier, today};
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

/// One customer's tier index and level under the new program.
fn next_of(state: &GamifyState, old: &Program, new: &Program, keys_new: &Keys, c: &Customer) -> (usize, u32) {
    let held = new.tier_index(&old.spec.tiers.tiers[c.tier as usize].name);
    let manual = c.manual_tier.and_then(|m| new.tier_index(&old.spec.tiers.tiers[m as usize].name));
    let m = &new.spec.measures[new.tier_measure];
    let value = c
        .measure(keys_new.measures[new.tier_measure])
        .map_or(0, |b| b.sum(today(new.tz, state.clock_ms()), m.window_days));
    let lifetime = c.wallet(keys_new.wallets[0]).map_or(0, |w| w.lifetime());
    (retier(new, held, manual, value), level_of(&new.spec.levels.thresholds, lifetime).0)
}

impl GamifyState {
    /// Checks that `new` can replace `old` on this state: no customer holds a manual tier
    /// the new program drops, and no wallet with points left is dropped.
    pub fn check_program_change(&self, old: &Program, new: &Program) -> Result<(), GamifyError> {
        for (id, c) in self.customers() {
            if let Some(m) = c.manual_tier {
                let name = &old.spec.tiers.tiers[m as usize].name;
                if new.tier_index(name).is_none() {
                    return Err(GamifyError::ProgramChange(format!(
                        "drops tier '{name}', which customer {id} holds as a manual tier"
                    )));
                }
            }
            for (k, w) in &c.wallets {
                let name = self.name(*k);
                if new.wallet_index(name).is_none() && w.available() + w.pending() > 0 {
                    return Err(GamifyError::ProgramChange(format!(
                        "drops wallet '{name}', where customer {id} holds points"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Exact tier → tier and level → level counts if `new` replaced `old` now.
    pub fn preview(&self, old: &Program, new: &Program) -> Result<Transitions, GamifyError> {
        self.check_program_change(old, new)?;
        let keys = self.lookup_keys(new);
        let mut t = Transitions::default();
        for (_, c) in self.customers() {
            let (tier, level) = next_of(self, old, new, &keys, c);
            let names =
                (old.spec.tiers.tiers[c.tier as usize].name.clone(), new.spec.tiers.tiers[tier].name.clone());
            *t.tiers.entry(names).or_default() += 1;
            *t.levels.entry((c.level, level)).or_default() += 1;
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
        for id in ids {
            let Some(c) = self.customers.get(&id) else { continue };
            let before = self.attrs_of(old, &old_keys, c);
            let (tier, level) = next_of(self, old, new, &keys, c);
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
            if after != before {
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
        attrs_at(program, &keys, &Customer { level, ..Customer::new() }, self.clock_ms)
    }

    /// Calls `f` with every customer's derived attributes, ascending by id (without
    /// collecting them: at 10M customers they would take gigabytes).
    pub fn for_each_attributes(&self, program: &Program, mut f: impl FnMut(u64, Vec<(String, AttrValue)>)) {
        let keys = self.lookup_keys(program);
        for (id, c) in self.customers() {
            f(id, self.attrs_of(program, &keys, c));
        }
    }
}
