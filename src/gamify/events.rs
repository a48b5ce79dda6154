//! Events: a batch is checked whole, then each event applied in order: its earning
//! rules (see [`super::rules`] for the order), a refund's reversal, measures and counters,
//! then an immediate tier upgrade and the level. Duplicates within the dedup window
//! change nothing.

use std::collections::BTreeSet;

use super::achieve_state::value_of;
use super::eval::Lookup;
use super::ledger::NewCredit;
use super::program::{cents, Program, UnknownCustomers, DEDUP_WINDOW_MS, MAX_BATCH, MAX_FUTURE_SKEW_MS};
use super::rules::{apply_caps, base_points};
use super::state::{
    attr_at, check_time, expires_at, relevel, schedule_check, set_tier, tier_value, Customer, GamifyState,
    Keys,
};
use super::tiers::{qualified, today};
use super::{Applied, CustomerFacts, Event, EventOutcome, GamifyError, PropValue, TierReason, Value, DAY_MS};

impl GamifyState {
    /// Checks a batch of events without changing anything: the batch is valid whole, or
    /// the error names the first bad event (index, id) and what is wrong.
    pub fn check_events(
        &self,
        program: &Program,
        events: &[Event],
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<(), GamifyError> {
        if events.len() > MAX_BATCH {
            return Err(GamifyError::BatchTooLarge { got: events.len(), limit: MAX_BATCH });
        }
        check_time("logged_at_ms", logged_at_ms)?;
        self.names_fit(program)?;
        for (index, e) in events.iter().enumerate() {
            let bad = |reason: String| GamifyError::Event { index, event_id: e.event_id.clone(), reason };
            program.check_event(e).map_err(bad)?;
            let earliest = logged_at_ms - DEDUP_WINDOW_MS;
            let latest = logged_at_ms + MAX_FUTURE_SKEW_MS;
            if e.occurred_at_ms < earliest || e.occurred_at_ms > latest {
                return Err(bad(format!(
                    "occurred_at_ms {} must lie between {earliest} (the 7-day dedup window) and {latest} (5 minutes of clock skew)",
                    e.occurred_at_ms
                )));
            }
            if program.spec.unknown_customers == UnknownCustomers::Reject && !self.known(facts, e.customer_id)
            {
                return Err(bad(format!(
                    "customer {} is unknown and the program rejects unknown customers",
                    e.customer_id
                )));
            }
        }
        Ok(())
    }

    /// Applies a batch of events: checked whole first (an error changes nothing), then
    /// each event in order. Duplicates (an `event_id` seen in the last 7 days of logged
    /// time, or earlier in the batch) change nothing.
    pub fn apply_events(
        &mut self,
        program: &Program,
        events: &[Event],
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<Applied, GamifyError> {
        self.check_events(program, events, facts, logged_at_ms)?;
        let keys = self.keys(program)?;
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        self.prune_dedup();
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        for e in events {
            if self.dedup.contains_key(e.event_id.as_str()) {
                out.outcomes.push(EventOutcome::Duplicate);
                continue;
            }
            let event_id: std::sync::Arc<str> = e.event_id.as_str().into();
            self.dedup.insert(event_id.clone(), logged_at_ms);
            self.dedup_queue.push_back((logged_at_ms, event_id.clone()));
            if !self.customers.contains_key(&e.customer_id) && !facts.exists(e.customer_id) {
                out.created.push(e.customer_id);
            }
            // apply_event creates the customer's state when it has none.
            touched.insert(e.customer_id);
            let outcome = self.apply_event(program, &keys, facts, e, &event_id, &mut out);
            out.outcomes.push(outcome);
        }
        self.finish(program, &keys, touched, &mut out);
        Ok(out)
    }

    pub(super) fn prune_dedup(&mut self) {
        let horizon = self.clock_ms - DEDUP_WINDOW_MS;
        while let Some((t, _)) = self.dedup_queue.front() {
            if *t > horizon {
                break;
            }
            if let Some((t, id)) = self.dedup_queue.pop_front() {
                // A later sighting of the same id (impossible while it is in the window,
                // kept for safety) keeps its own entry.
                if self.dedup.get(&id) == Some(&t) {
                    self.dedup.remove(&id);
                }
            }
        }
    }

    fn apply_event(
        &mut self,
        program: &Program,
        keys: &Keys,
        facts: &dyn CustomerFacts,
        e: &Event,
        event_id: &std::sync::Arc<str>,
        out: &mut Applied,
    ) -> EventOutcome {
        let t = e.occurred_at_ms;
        let tz = program.tz;
        let id = e.customer_id;
        let clock_ms = self.clock_ms;
        // Changed in place: one lookup, and a copy of the customer only on its first change
        // since the version was cloned.
        let c = self.customers.get_or_create(id);
        // Rules see the customer as before the event.
        let earns: Vec<(usize, i64)> = {
            let view = CustomerLookup { clock_ms, program, keys, facts, id, c };
            let rules = program.rules_by_event.get(&e.kind).into_iter().flatten();
            rules.map(|&ri| (ri, base_points(&program.rules[ri], e, &view))).collect()
        };
        let basis = refund_basis(program, e);
        let etype = program.event_types.get(&e.kind).map(|t| &t.spec);
        let mut credited = 0;
        for (ri, points) in earns {
            if points <= 0 {
                continue;
            }
            let rule = &program.rules[ri];
            let granted = apply_caps(tz, rule, keys.rules[ri], t, points, &mut c.caps);
            if granted > 0 {
                c.wallet_mut(keys.wallets[rule.wallet]).credit(NewCredit {
                    rule: keys.rules[ri],
                    source: event_id.clone(),
                    amount: granted,
                    basis,
                    created_ms: t,
                    available_ms: t + rule.spec.pending_days as i64 * DAY_MS,
                    expires_ms: expires_at(program, rule.wallet, t),
                });
                credited += granted;
            }
        }
        let (mut reversed, mut shortfall) = (0, 0);
        if let Some(et) = etype {
            if let Some(PropValue::Str(original)) = et.refund_of.as_ref().and_then(|p| e.properties.get(p)) {
                let share = et
                    .refund_amount
                    .as_ref()
                    .and_then(|p| e.properties.get(p))
                    .and_then(PropValue::as_f64)
                    .map(cents);
                for (_, w) in c.wallets.iter_mut() {
                    if let Some((r, s)) = w.reverse(original, &e.event_id, share, t) {
                        reversed += r;
                        shortfall += s;
                    }
                }
            }
        }
        let day = today(tz, t);
        for (mi, m) in program.spec.measures.iter().enumerate() {
            let terms = m.add.iter().map(|x| (x, 1)).chain(m.subtract.iter().map(|x| (x, -1)));
            for (term, sign) in terms {
                if term.event == e.kind {
                    if let Some(x) = e.properties.get(&term.property).and_then(PropValue::as_f64) {
                        c.measure_mut(keys.measures[mi]).add(day, sign * cents(x));
                    }
                }
            }
        }
        for (ci, cs) in program.spec.counters.iter().enumerate() {
            if cs.event == e.kind {
                let n = match &cs.sum {
                    None => 1,
                    Some(p) => e.properties.get(p).and_then(PropValue::as_f64).map_or(0, cents),
                };
                c.add_counter(keys.counters[ci], n);
            }
        }
        let now = clock_ms.max(t);
        upgrade(program, keys, id, c, now, t, out);
        relevel(program, keys, id, c, t, out);
        let challenges = super::achieve_state::on_event(program, keys, facts, id, c, e, clock_ms, out);
        EventOutcome::Applied { credited, reversed, shortfall, challenges }
    }
}

/// The purchase amount (hundredths) a later refund's share is measured against: the
/// `refund_amount` property of the first refund type that the event carries.
fn refund_basis(program: &Program, e: &Event) -> i64 {
    program
        .spec
        .event_types
        .iter()
        .filter_map(|t| t.refund_amount.as_ref())
        .find_map(|p| e.properties.get(p).and_then(PropValue::as_f64))
        .map_or(0, cents)
}

fn upgrade(program: &Program, keys: &Keys, id: u64, c: &mut Customer, now: i64, at: i64, out: &mut Applied) {
    let q = qualified(program, tier_value(program, keys, c, now)) as u16;
    if q > c.tier {
        set_tier(program, id, c, q, TierReason::Qualified, at, out);
    }
    schedule_check(program, c, now);
}

/// A customer as earning rules see it: gamification attributes from the state (so a
/// batch sees its own earlier events), the rest from the engine's facts.
struct CustomerLookup<'a> {
    clock_ms: i64,
    program: &'a Program,
    keys: &'a Keys,
    facts: &'a dyn CustomerFacts,
    id: u64,
    c: &'a Customer,
}

impl Lookup for CustomerLookup<'_> {
    fn value(&self, name: &str) -> Value {
        match attr_at(self.program, self.keys, self.c, self.clock_ms, name) {
            Some(v) => value_of(&v),
            None => self.facts.attribute(self.id, name),
        }
    }
    fn in_segment(&self, segment_id: &str) -> bool {
        self.facts.in_segment(self.id, segment_id)
    }
}
