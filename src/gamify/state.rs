//! [`GamifyState`]: every customer's gamification state and the mutations on it. Each
//! public `&mut self` method is one logged mutation of the engine (later): it checks
//! everything first and changes nothing on error, and it is a pure function of the state,
//! the program, its input and the logged time.
//!
//! Memory per customer (besides the ledger's credits and debits, see [`super::ledger`],
//! and the measures' day buckets, see [`super::tiers`]): the map entry (~40 bytes in a
//! B-tree node), [`Customer`] itself (~150 bytes), 12 bytes per counter, 16 per cap in
//! use, and an agenda entry (~24 bytes) when something is due. The dedup window holds
//! every event id of the last 7 days twice (map and queue): ~80 bytes per event.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::eval::Lookup;
use super::ledger::{NewCredit, Wallet, GRANT_RULE};
use super::program::{
    cents, ExpirySpec, Program, UnknownCustomers, DEDUP_WINDOW_MS, MAX_BATCH, MAX_FUTURE_SKEW_MS,
    MAX_ID_BYTES, MAX_POINTS,
};
use super::rules::{apply_caps, base_points, prune_caps, CapUse};
use super::tiers::{level_of, next_check, qualified, today, Buckets};
use super::time::{end_of_month_after, end_of_year_after, MAX_MS};
use super::{AttrValue, CustomerFacts, Event, GamifyError, PropValue, Value, DAY_MS};

/// One customer's gamification state.
#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    /// (interned wallet id, wallet), in the order first credited.
    pub wallets: Vec<(u16, Wallet)>,
    /// (interned measure id, day sums).
    pub measures: Vec<(u16, Buckets)>,
    /// (interned counter name, count or sum in hundredths).
    pub counters: Vec<(u16, i64)>,
    pub caps: Vec<CapUse>,
    /// Index into the program's tiers.
    pub tier: u16,
    pub manual_tier: Option<u16>,
    pub tier_since_ms: i64,
    /// The next downgrade check (`i64::MAX`: none).
    pub next_check_ms: i64,
    pub level: u32,
    /// The agenda key: the next instant a tick has work here (`i64::MAX`: none).
    pub due_ms: i64,
}

impl Customer {
    fn new() -> Customer {
        Customer {
            wallets: Vec::new(),
            measures: Vec::new(),
            counters: Vec::new(),
            caps: Vec::new(),
            tier: 0,
            manual_tier: None,
            tier_since_ms: 0,
            next_check_ms: i64::MAX,
            level: 1,
            due_ms: i64::MAX,
        }
    }

    pub fn wallet(&self, key: u16) -> Option<&Wallet> {
        self.wallets.iter().find(|w| w.0 == key).map(|w| &w.1)
    }

    fn wallet_mut(&mut self, key: u16) -> &mut Wallet {
        let i = match self.wallets.iter().position(|w| w.0 == key) {
            Some(i) => i,
            None => {
                self.wallets.push((key, Wallet::default()));
                self.wallets.len() - 1
            }
        };
        &mut self.wallets[i].1
    }

    pub fn measure(&self, key: u16) -> Option<&Buckets> {
        self.measures.iter().find(|m| m.0 == key).map(|m| &m.1)
    }

    fn measure_mut(&mut self, key: u16) -> &mut Buckets {
        let i = match self.measures.iter().position(|m| m.0 == key) {
            Some(i) => i,
            None => {
                self.measures.push((key, Buckets::default()));
                self.measures.len() - 1
            }
        };
        &mut self.measures[i].1
    }

    pub fn counter(&self, key: u16) -> i64 {
        self.counters.iter().find(|c| c.0 == key).map_or(0, |c| c.1)
    }

    fn add_counter(&mut self, key: u16, n: i64) {
        match self.counters.iter_mut().find(|c| c.0 == key) {
            Some(c) => c.1 = c.1.saturating_add(n),
            None => self.counters.push((key, n)),
        }
    }
}

/// The interned keys of a program's names.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub wallets: Vec<u16>,
    pub rules: Vec<u16>,
    pub measures: Vec<u16>,
    pub counters: Vec<u16>,
}

/// Why a customer's tier changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierReason {
    /// An event raised the measure.
    Qualified,
    /// A downgrade check at a period end (+ grace).
    PeriodEnd,
    /// A manual tier was set above the current one.
    Manual,
    /// A program change.
    Program,
}

/// Something worth telling the customer, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Achievement {
    TierChanged { customer_id: u64, from: String, to: String, reason: TierReason, at_ms: i64 },
    LevelUp { customer_id: u64, from: u32, to: u32, at_ms: i64 },
}

/// What happened to one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied: the points it credited (after caps), and for a refund the points reversed
    /// and the shortfall.
    Applied { credited: i64, reversed: i64, shortfall: i64 },
    /// Its `event_id` was seen within the dedup window: nothing changed.
    Duplicate,
}

/// The new derived attribute values of one customer, for the engine's indexed columns.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerAttrs {
    pub customer_id: u64,
    /// `points_balance`, `points_pending`, `lifetime_points`, `points_expiring_30d`,
    /// `tier`, `level`, then the program's counters in program order.
    pub values: Vec<(String, AttrValue)>,
}

/// The effects of one mutation, for the engine to write in the same apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Per event of the batch, in order (empty for other mutations).
    pub outcomes: Vec<EventOutcome>,
    /// Customers segd must create (unknown customers under `unknown_customers: create`).
    pub created: Vec<u64>,
    /// Customers the mutation touched, ascending by id, with all their derived values
    /// (after a program change: only those whose values changed).
    pub changed: Vec<CustomerAttrs>,
    pub achievements: Vec<Achievement>,
}

/// A spend of points (`SpendPoints`): idempotent by (customer, request id).
#[derive(Clone, Debug, PartialEq)]
pub struct Spend {
    pub customer_id: u64,
    pub wallet: String,
    pub request_id: String,
    pub points: i64,
}

/// A grant of points (`GrantPoints`): idempotent by (customer, request id).
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub customer_id: u64,
    pub wallet: String,
    pub request_id: String,
    pub points: i64,
}

/// A spend's or grant's result: its ledger sequence, and whether it had been done before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerOutcome {
    pub seq: u32,
    pub duplicate: bool,
}

/// Every customer's gamification state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GamifyState {
    pub(super) customers: BTreeMap<u64, Customer>,
    /// Interned names (wallet, rule, measure and counter ids); credits store 2 bytes.
    pub(super) names: Vec<Box<str>>,
    pub(super) name_ids: HashMap<Box<str>, u16>,
    /// Event ids of the dedup window and their logged time; the queue in logged order.
    pub(super) dedup: HashMap<Box<str>, i64>,
    pub(super) dedup_queue: VecDeque<(i64, Box<str>)>,
    /// (due, customer): who a tick must visit.
    pub(super) agenda: BTreeSet<(i64, u64)>,
    /// The latest logged time seen: "now" for the 30-day figure.
    pub(super) clock_ms: i64,
}

fn check_id(field: &'static str, id: &str) -> Result<(), GamifyError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(GamifyError::BadRequest {
            field,
            rule: "1 to 128 bytes",
            got: format!("{} bytes", id.len()),
        });
    }
    Ok(())
}

fn check_time(field: &'static str, ms: i64) -> Result<(), GamifyError> {
    if !(0..=MAX_MS).contains(&ms) {
        return Err(GamifyError::BadRequest { field, rule: "between 1970 and 9999", got: ms.to_string() });
    }
    Ok(())
}

/// When a credit made at `created` in wallet `w` expires.
pub fn expires_at(program: &Program, w: usize, created: i64) -> i64 {
    match program.spec.wallets[w].expiry {
        ExpirySpec::Never => i64::MAX,
        ExpirySpec::AfterDays { days } => created.saturating_add(days as i64 * DAY_MS),
        ExpirySpec::EndOfMonth { months } => end_of_month_after(program.tz, created, months),
        ExpirySpec::EndOfYear { years } => end_of_year_after(program.tz, created, years),
    }
}

impl GamifyState {
    pub fn new() -> GamifyState {
        GamifyState::default()
    }

    pub fn customer(&self, id: u64) -> Option<&Customer> {
        self.customers.get(&id)
    }

    pub fn customers(&self) -> impl Iterator<Item = (u64, &Customer)> {
        self.customers.iter().map(|(k, v)| (*k, v))
    }

    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// An interned name's text.
    pub fn name(&self, key: u16) -> &str {
        self.names.get(key as usize).map_or("?", |n| n)
    }

    pub(super) fn key_of(&self, name: &str) -> Option<u16> {
        self.name_ids.get(name).copied()
    }

    pub(super) fn intern(&mut self, name: &str) -> Result<u16, GamifyError> {
        if let Some(&k) = self.name_ids.get(name) {
            return Ok(k);
        }
        // u16::MAX is GRANT_RULE.
        if self.names.len() >= u16::MAX as usize {
            return Err(GamifyError::ProgramChange(format!("would intern more than {} names", u16::MAX)));
        }
        let k = self.names.len() as u16;
        self.names.push(name.into());
        self.name_ids.insert(name.into(), k);
        Ok(k)
    }

    fn names_fit(&self, program: &Program) -> Result<(), GamifyError> {
        let s = &program.spec;
        let all = s.wallets.iter().map(|w| &w.id).chain(s.rules.iter().map(|r| &r.id));
        let all = all.chain(s.measures.iter().map(|m| &m.id)).chain(s.counters.iter().map(|c| &c.name));
        let new = all.filter(|n| !self.name_ids.contains_key(n.as_str())).count();
        if self.names.len() + new >= u16::MAX as usize {
            return Err(GamifyError::ProgramChange(format!("would intern more than {} names", u16::MAX)));
        }
        Ok(())
    }

    pub(super) fn keys(&mut self, program: &Program) -> Result<Keys, GamifyError> {
        self.names_fit(program)?;
        let s = &program.spec;
        Ok(Keys {
            wallets: s.wallets.iter().map(|w| self.intern(&w.id)).collect::<Result<_, _>>()?,
            rules: s.rules.iter().map(|r| self.intern(&r.id)).collect::<Result<_, _>>()?,
            measures: s.measures.iter().map(|m| self.intern(&m.id)).collect::<Result<_, _>>()?,
            counters: s.counters.iter().map(|c| self.intern(&c.name)).collect::<Result<_, _>>()?,
        })
    }

    fn known(&self, facts: &dyn CustomerFacts, id: u64) -> bool {
        self.customers.contains_key(&id) || facts.exists(id)
    }

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
            self.dedup.insert(e.event_id.as_str().into(), logged_at_ms);
            self.dedup_queue.push_back((logged_at_ms, e.event_id.as_str().into()));
            if !self.customers.contains_key(&e.customer_id) && !facts.exists(e.customer_id) {
                out.created.push(e.customer_id);
            }
            self.touch(e.customer_id, &mut touched);
            let outcome = self.apply_event(program, &keys, facts, e, &mut out);
            out.outcomes.push(outcome);
        }
        self.finish(program, &keys, touched, &mut out);
        Ok(out)
    }

    /// Notes a customer this mutation touches (creating its state).
    fn touch(&mut self, id: u64, touched: &mut BTreeSet<u64>) {
        touched.insert(id);
        self.customers.entry(id).or_insert_with(Customer::new);
    }

    /// Reschedules the touched customers and reports all their derived values: a value
    /// may have moved with the clock since it was last reported (the 30-day figure), so
    /// touched customers are reported whole rather than diffed.
    fn finish(&mut self, program: &Program, keys: &Keys, touched: BTreeSet<u64>, out: &mut Applied) {
        for id in touched {
            self.reschedule(id);
            let Some(c) = self.customers.get(&id) else { continue };
            let values = self.attrs_of(program, keys, c);
            out.changed.push(CustomerAttrs { customer_id: id, values });
        }
    }

    fn prune_dedup(&mut self) {
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
        out: &mut Applied,
    ) -> EventOutcome {
        let t = e.occurred_at_ms;
        let tz = program.tz;
        let id = e.customer_id;
        // Out of the map while it changes; back in at the end.
        let mut cust = self.customers.remove(&id).unwrap_or_else(Customer::new);
        let c = &mut cust;
        // Rules see the customer as before the event.
        let earns: Vec<(usize, i64)> = {
            let view = CustomerLookup { clock_ms: self.clock_ms, program, keys, facts, id, c };
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
                    source: e.event_id.as_str().into(),
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
        let now = self.clock_ms.max(t);
        upgrade(program, keys, id, c, now, t, out);
        relevel(program, keys, id, c, t, out);
        self.customers.insert(id, cust);
        EventOutcome::Applied { credited, reversed, shortfall }
    }

    /// Puts a customer on the agenda at its next due instant.
    pub(super) fn reschedule(&mut self, id: u64) {
        let clock = self.clock_ms;
        let Some(c) = self.customers.get_mut(&id) else { return };
        self.agenda.remove(&(c.due_ms, id));
        let wallets = c.wallets.iter().map(|w| w.1.next_due(clock)).min().unwrap_or(i64::MAX);
        c.due_ms = wallets.min(c.next_check_ms);
        if c.due_ms != i64::MAX {
            self.agenda.insert((c.due_ms, id));
        }
    }

    /// The clock tick at `now_ms`: pending points whose window ended become available,
    /// credits whose time came expire, downgrade checks that fell due run (each at its
    /// own instant), and the 30-day figures move. Visits only customers with something
    /// due, in (due, id) order. A tick earlier than the clock changes nothing.
    pub fn tick(&mut self, program: &Program, now_ms: i64) -> Result<Applied, GamifyError> {
        check_time("now_ms", now_ms)?;
        let keys = self.keys(program)?;
        self.clock_ms = self.clock_ms.max(now_ms);
        let now = self.clock_ms;
        self.prune_dedup();
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        while let Some(&(due, id)) = self.agenda.first() {
            if due > now {
                break;
            }
            self.agenda.pop_first();
            if let Some(c) = self.customers.get_mut(&id) {
                c.due_ms = i64::MAX;
            }
            self.touch(id, &mut touched);
            if let Some(c) = self.customers.get_mut(&id) {
                settle(program, &keys, id, c, now, &mut out);
            }
        }
        self.finish(program, &keys, touched, &mut out);
        Ok(out)
    }

    /// Checks a spend without changing anything.
    pub fn check_spend(&self, program: &Program, s: &Spend) -> Result<(), GamifyError> {
        check_id("request_id", &s.request_id)?;
        if !(1..=MAX_POINTS).contains(&s.points) {
            return Err(GamifyError::BadRequest {
                field: "points",
                rule: "1 to 10^12",
                got: s.points.to_string(),
            });
        }
        program.wallet_index(&s.wallet).ok_or_else(|| GamifyError::UnknownWallet(s.wallet.clone()))?;
        let w = self.key_of(&s.wallet).and_then(|k| self.customers.get(&s.customer_id)?.wallet(k));
        if let Some(d) = w.and_then(|w| w.find_spend(&s.request_id)) {
            return if d.amount == s.points {
                Ok(())
            } else {
                Err(GamifyError::RequestIdReused {
                    customer_id: s.customer_id,
                    request_id: s.request_id.clone(),
                })
            };
        }
        let available = w.map_or(0, Wallet::available);
        if available < s.points {
            return Err(GamifyError::InsufficientPoints {
                customer_id: s.customer_id,
                wallet: s.wallet.clone(),
                available,
                requested: s.points,
            });
        }
        Ok(())
    }

    /// Spends points: from the credits that expire first. A repeated request id answers
    /// what the first did and changes nothing.
    pub fn spend(
        &mut self,
        program: &Program,
        s: &Spend,
        logged_at_ms: i64,
    ) -> Result<(LedgerOutcome, Applied), GamifyError> {
        self.check_spend(program, s)?;
        check_time("logged_at_ms", logged_at_ms)?;
        let keys = self.keys(program)?;
        let wkey = self.intern(&s.wallet)?;
        if let Some(d) =
            self.customers.get(&s.customer_id).and_then(|c| c.wallet(wkey)?.find_spend(&s.request_id))
        {
            return Ok((LedgerOutcome { seq: d.seq, duplicate: true }, Applied::default()));
        }
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        self.touch(s.customer_id, &mut touched);
        let c = self.customers.get_mut(&s.customer_id).ok_or(GamifyError::UnknownCustomer(s.customer_id))?;
        let seq = c.wallet_mut(wkey).spend(&s.request_id, s.points, logged_at_ms).map_err(|available| {
            GamifyError::InsufficientPoints {
                customer_id: s.customer_id,
                wallet: s.wallet.clone(),
                available,
                requested: s.points,
            }
        })?;
        self.finish(program, &keys, touched, &mut out);
        Ok((LedgerOutcome { seq, duplicate: false }, out))
    }

    /// Checks a grant without changing anything.
    pub fn check_grant(
        &self,
        program: &Program,
        g: &Grant,
        facts: &dyn CustomerFacts,
    ) -> Result<(), GamifyError> {
        check_id("request_id", &g.request_id)?;
        if !(1..=MAX_POINTS).contains(&g.points) {
            return Err(GamifyError::BadRequest {
                field: "points",
                rule: "1 to 10^12",
                got: g.points.to_string(),
            });
        }
        program.wallet_index(&g.wallet).ok_or_else(|| GamifyError::UnknownWallet(g.wallet.clone()))?;
        if program.spec.unknown_customers == UnknownCustomers::Reject && !self.known(facts, g.customer_id) {
            return Err(GamifyError::UnknownCustomer(g.customer_id));
        }
        let w = self.key_of(&g.wallet).and_then(|k| self.customers.get(&g.customer_id)?.wallet(k));
        if let Some(c) =
            w.and_then(|w| w.credits.iter().find(|c| c.rule == GRANT_RULE && *c.source == *g.request_id))
        {
            if c.amount != g.points {
                return Err(GamifyError::RequestIdReused {
                    customer_id: g.customer_id,
                    request_id: g.request_id.clone(),
                });
            }
        }
        Ok(())
    }

    /// Grants points, available at once, expiring by the wallet's rule from the logged
    /// time. A repeated request id changes nothing.
    pub fn grant(
        &mut self,
        program: &Program,
        g: &Grant,
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<(LedgerOutcome, Applied), GamifyError> {
        self.check_grant(program, g, facts)?;
        check_time("logged_at_ms", logged_at_ms)?;
        let keys = self.keys(program)?;
        let wi =
            program.wallet_index(&g.wallet).ok_or_else(|| GamifyError::UnknownWallet(g.wallet.clone()))?;
        let wkey = keys.wallets[wi];
        let existing = self.customers.get(&g.customer_id).and_then(|c| c.wallet(wkey)).and_then(|w| {
            w.credits.iter().find(|c| c.rule == GRANT_RULE && *c.source == *g.request_id).map(|c| c.seq)
        });
        if let Some(seq) = existing {
            return Ok((LedgerOutcome { seq, duplicate: true }, Applied::default()));
        }
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let mut out = Applied::default();
        if !self.known(facts, g.customer_id) {
            out.created.push(g.customer_id);
        }
        let mut touched = BTreeSet::new();
        self.touch(g.customer_id, &mut touched);
        let c = self.customers.get_mut(&g.customer_id).ok_or(GamifyError::UnknownCustomer(g.customer_id))?;
        let seq = c.wallet_mut(wkey).credit(NewCredit {
            rule: GRANT_RULE,
            source: g.request_id.as_str().into(),
            amount: g.points,
            basis: 0,
            created_ms: logged_at_ms,
            available_ms: logged_at_ms,
            expires_ms: expires_at(program, wi, logged_at_ms),
        });
        relevel(program, &keys, g.customer_id, c, logged_at_ms, &mut out);
        self.finish(program, &keys, touched, &mut out);
        Ok((LedgerOutcome { seq, duplicate: false }, out))
    }

    /// Sets (or clears, with None) a customer's manual tier: a floor. Setting it above
    /// the current tier raises the tier at once; clearing it lowers nothing until the
    /// next downgrade check.
    pub fn set_manual_tier(
        &mut self,
        program: &Program,
        customer_id: u64,
        tier: Option<&str>,
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<Applied, GamifyError> {
        check_time("logged_at_ms", logged_at_ms)?;
        let manual = match tier {
            None => None,
            Some(name) => {
                Some(program.tier_index(name).ok_or_else(|| GamifyError::UnknownTier(name.into()))? as u16)
            }
        };
        if !self.known(facts, customer_id) {
            return Err(GamifyError::UnknownCustomer(customer_id));
        }
        let keys = self.keys(program)?;
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let now = self.clock_ms;
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        self.touch(customer_id, &mut touched);
        if let Some(c) = self.customers.get_mut(&customer_id) {
            c.manual_tier = manual;
            if let Some(m) = manual.filter(|&m| m > c.tier) {
                set_tier(program, customer_id, c, m, TierReason::Manual, now, &mut out);
            }
            schedule_check(program, c, now);
        }
        self.finish(program, &keys, touched, &mut out);
        Ok(out)
    }

    /// Checks the ledger invariant of every wallet and the agenda's consistency.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, c) in &self.customers {
            for (k, w) in &c.wallets {
                w.check_invariant().map_err(|e| format!("customer {id} wallet {}: {e}", self.name(*k)))?;
            }
            if (c.due_ms != i64::MAX) != self.agenda.contains(&(c.due_ms, *id)) {
                return Err(format!("customer {id}: due {} but the agenda disagrees", c.due_ms));
            }
        }
        if self.agenda.len() != self.customers.values().filter(|c| c.due_ms != i64::MAX).count() {
            return Err("the agenda holds customers that are not due".into());
        }
        Ok(())
    }

    /// The derived attributes of a customer (what [`Applied::changed`] carries).
    pub fn attributes(&self, program: &Program, customer_id: u64) -> Option<Vec<(String, AttrValue)>> {
        let c = self.customers.get(&customer_id)?;
        let keys = self.lookup_keys(program);
        Some(self.attrs_of(program, &keys, c))
    }

    /// Keys of a program's names without interning (unknown names get a key no customer
    /// holds).
    pub(super) fn lookup_keys(&self, program: &Program) -> Keys {
        let s = &program.spec;
        let k = |n: &String| self.key_of(n).unwrap_or(GRANT_RULE);
        Keys {
            wallets: s.wallets.iter().map(|w| k(&w.id)).collect(),
            rules: s.rules.iter().map(|r| k(&r.id)).collect(),
            measures: s.measures.iter().map(|m| k(&m.id)).collect(),
            counters: s.counters.iter().map(|c| k(&c.name)).collect(),
        }
    }

    pub(super) fn attrs_of(&self, program: &Program, keys: &Keys, c: &Customer) -> Vec<(String, AttrValue)> {
        attrs_at(program, keys, c, self.clock_ms)
    }
}

/// A customer's derived attributes, the 30-day figure as of `clock_ms`.
fn attrs_at(program: &Program, keys: &Keys, c: &Customer, clock_ms: i64) -> Vec<(String, AttrValue)> {
    {
        let w = c.wallet(keys.wallets[0]);
        let mut v = vec![
            ("points_balance".to_string(), AttrValue::Int(w.map_or(0, Wallet::available))),
            ("points_pending".to_string(), AttrValue::Int(w.map_or(0, Wallet::pending))),
            ("lifetime_points".to_string(), AttrValue::Int(w.map_or(0, Wallet::lifetime))),
            (
                "points_expiring_30d".to_string(),
                AttrValue::Int(w.map_or(0, |w| w.expiring_within(clock_ms, 30))),
            ),
            ("tier".to_string(), AttrValue::Str(program.spec.tiers.tiers[c.tier as usize].name.clone())),
            ("level".to_string(), AttrValue::Int(c.level as i64)),
        ];
        for (ci, cs) in program.spec.counters.iter().enumerate() {
            let n = c.counter(keys.counters[ci]);
            v.push((
                cs.name.clone(),
                if cs.sum.is_some() { AttrValue::Float(n as f64 / 100.0) } else { AttrValue::Int(n) },
            ));
        }
        v
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

fn set_tier(
    program: &Program,
    id: u64,
    c: &mut Customer,
    to: u16,
    reason: TierReason,
    at_ms: i64,
    out: &mut Applied,
) {
    let names = &program.spec.tiers.tiers;
    out.achievements.push(Achievement::TierChanged {
        customer_id: id,
        from: names[c.tier as usize].name.clone(),
        to: names[to as usize].name.clone(),
        reason,
        at_ms,
    });
    c.tier = to;
    c.tier_since_ms = at_ms;
}

/// Schedules the next downgrade check when a downgrade is possible (the tier is above
/// the floor), and drops it when not.
fn schedule_check(program: &Program, c: &mut Customer, now: i64) {
    if c.tier > c.manual_tier.unwrap_or(0) {
        if c.next_check_ms == i64::MAX {
            c.next_check_ms = next_check(program, now).unwrap_or(i64::MAX);
        }
    } else {
        c.next_check_ms = i64::MAX;
    }
}

fn tier_value(program: &Program, keys: &Keys, c: &Customer, at: i64) -> i64 {
    let m = &program.spec.measures[program.tier_measure];
    c.measure(keys.measures[program.tier_measure]).map_or(0, |b| b.sum(today(program.tz, at), m.window_days))
}

fn upgrade(program: &Program, keys: &Keys, id: u64, c: &mut Customer, now: i64, at: i64, out: &mut Applied) {
    let q = qualified(program, tier_value(program, keys, c, now)) as u16;
    if q > c.tier {
        set_tier(program, id, c, q, TierReason::Qualified, at, out);
    }
    schedule_check(program, c, now);
}

fn relevel(program: &Program, keys: &Keys, id: u64, c: &mut Customer, at: i64, out: &mut Applied) {
    let lifetime = c.wallet(keys.wallets[0]).map_or(0, Wallet::lifetime);
    let (level, _) = level_of(&program.spec.levels.thresholds, lifetime);
    if level > c.level {
        out.achievements.push(Achievement::LevelUp { customer_id: id, from: c.level, to: level, at_ms: at });
    }
    c.level = level;
}

/// A tick's work on one customer.
fn settle(program: &Program, keys: &Keys, id: u64, c: &mut Customer, now: i64, out: &mut Applied) {
    for (_, w) in c.wallets.iter_mut() {
        w.release(now);
        w.expire(now);
    }
    while c.next_check_ms <= now {
        let at = c.next_check_ms;
        let floor = c.manual_tier.unwrap_or(0);
        let target = (qualified(program, tier_value(program, keys, c, at)) as u16).max(floor);
        if target < c.tier {
            set_tier(program, id, c, target, TierReason::PeriodEnd, at, out);
        }
        c.next_check_ms = i64::MAX;
        schedule_check(program, c, at);
    }
    // Accepted events are at most the dedup window old: older cap periods and days
    // beyond every window can go.
    prune_caps(program.tz, &mut c.caps, now - DEDUP_WINDOW_MS);
    let horizon = today(program.tz, now - DEDUP_WINDOW_MS);
    for (mi, m) in program.spec.measures.iter().enumerate() {
        if let Some((_, b)) = c.measures.iter_mut().find(|x| x.0 == keys.measures[mi]) {
            b.prune(horizon - m.window_days as i32);
        }
    }
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
        if BUILTIN.contains(&name) || self.program.spec.counters.iter().any(|c| c.name == name) {
            let attrs = attrs_at(self.program, self.keys, self.c, self.clock_ms);
            return match attrs.into_iter().find(|a| a.0 == name).map(|a| a.1) {
                Some(AttrValue::Int(i)) => Value::Int(i),
                Some(AttrValue::Float(x)) => Value::Float(x),
                Some(AttrValue::Str(s)) => Value::Str(s),
                None => Value::Null,
            };
        }
        self.facts.attribute(self.id, name)
    }
    fn in_segment(&self, segment_id: &str) -> bool {
        self.facts.in_segment(self.id, segment_id)
    }
}

use super::program::BUILTIN_ATTRIBUTES as BUILTIN;
