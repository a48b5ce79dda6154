//! [`GamifyState`]: every customer's gamification state and the mutations on it. Each
//! public `&mut self` method is one logged mutation of the engine (later): it checks
//! everything first and changes nothing on error, and it is a pure function of the state,
//! the program, its input and the logged time.
//!
//! Memory per customer (besides the ledger's credits and debits, see [`super::ledger`],
//! and the measures' day buckets, see [`super::tiers`]): the map entry (~40 bytes in a
//! B-tree node), [`Customer`] itself (at most 144 bytes; badges, challenges and streaks
//! behind one box, see [`super::achieve_state`]), 16 bytes per counter, 16 per cap in
//! use, and an agenda entry (~24 bytes) when something is due. The dedup window holds
//! every event id of the last 7 days twice (map and queue): ~80 bytes per event.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::ledger::{Wallet, GRANT_RULE};
use super::program::{ExpirySpec, Program, BUILTIN_ATTRIBUTES, DEDUP_WINDOW_MS};
use super::rules::{prune_caps, CapUse};
use super::tiers::{level_of, next_check, qualified, today, Buckets};
use super::time::{end_of_month_after, end_of_year_after, MAX_MS};
use super::{Achievement, Applied, AttrValue, CustomerAttrs, CustomerFacts, GamifyError, TierReason, DAY_MS};

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
    /// Badges, challenge progress and streaks ([`super::achieve_state`]); boxed so a
    /// customer without any costs one pointer.
    pub achieve: Option<Box<super::achieve_state::CustomerAchieve>>,
}

impl Customer {
    pub(super) fn new() -> Customer {
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
            achieve: None,
        }
    }

    pub fn wallet(&self, key: u16) -> Option<&Wallet> {
        self.wallets.iter().find(|w| w.0 == key).map(|w| &w.1)
    }

    pub(super) fn wallet_mut(&mut self, key: u16) -> &mut Wallet {
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

    pub(super) fn measure_mut(&mut self, key: u16) -> &mut Buckets {
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

    pub(super) fn add_counter(&mut self, key: u16, n: i64) {
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
    pub achieve: super::achieve_state::AchieveKeys,
}

/// Every customer's state, in a persistent map (`imbl`): the engine clones the whole
/// state for every commit group, and a clone shares every node; a write copies the
/// path to the customer it changes and, through [`Arc::make_mut`], that one customer
/// (a node copy clones 64 `Arc`s, never 64 ledgers).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Customers(imbl::OrdMap<u64, Arc<Customer>>);

impl Customers {
    pub fn get(&self, id: &u64) -> Option<&Customer> {
        self.0.get(id).map(|c| &**c)
    }
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut Customer> {
        self.0.get_mut(id).map(Arc::make_mut)
    }
    pub fn contains_key(&self, id: &u64) -> bool {
        self.0.contains_key(id)
    }
    pub fn insert(&mut self, id: u64, c: Customer) {
        self.0.insert(id, Arc::new(c));
    }
    pub fn remove(&mut self, id: &u64) -> Option<Customer> {
        self.0.remove(id).map(Arc::unwrap_or_clone)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Ascending by id.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Customer)> {
        self.0.iter().map(|(k, v)| (k, &**v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &u64> {
        self.0.keys()
    }
    pub fn values(&self) -> impl Iterator<Item = &Customer> {
        self.0.values().map(|v| &**v)
    }
    /// The customers with ids in `from..=to`, ascending.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (&u64, &Customer)> {
        self.0.range(from..=to).map(|(k, v)| (k, &**v))
    }
    /// `parts` contiguous id ranges (inclusive) that together hold every customer:
    /// the map's id span cut evenly, for visiting the customers on every core (a part may
    /// hold more customers than another; more parts than cores let the pool even it out).
    pub fn id_ranges(&self, parts: u64) -> Vec<(u64, u64)> {
        let (Some((lo, _)), Some((hi, _))) = (self.0.get_min(), self.0.get_max()) else { return vec![] };
        let (lo, hi) = (*lo, *hi);
        let step = ((hi - lo) / parts.max(1)).max(1);
        let mut out = Vec::new();
        let mut from = lo;
        loop {
            let to = from.saturating_add(step - 1).min(hi);
            out.push((from, to));
            if to == hi {
                return out;
            }
            from = to + 1;
        }
    }
    pub(super) fn get_or_create(&mut self, id: u64) -> &mut Customer {
        Arc::make_mut(self.0.entry(id).or_insert_with(|| Arc::new(Customer::new())))
    }
}

/// Every customer's gamification state. Cloning is O(1) and shares structure (see
/// [`Customers`]; the dedup window and the agenda are persistent collections too).
/// The fields are the crate's so that `persist::gamify` writes and reads them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GamifyState {
    pub(crate) customers: Customers,
    /// Interned names (wallet, rule, measure and counter ids); credits store 2 bytes.
    pub(crate) names: Vec<Box<str>>,
    pub(crate) name_ids: HashMap<Box<str>, u16>,
    /// Event ids of the dedup window and their logged time; the queue in logged order
    /// (one copy of each id, shared by both).
    pub(crate) dedup: imbl::HashMap<Arc<str>, i64>,
    pub(crate) dedup_queue: imbl::Vector<(i64, Arc<str>)>,
    /// (due, customer): who a tick must visit.
    pub(crate) agenda: imbl::OrdSet<(i64, u64)>,
    /// The latest logged time seen: "now" for the 30-day figure.
    pub(crate) clock_ms: i64,
}

pub fn check_time(field: &'static str, ms: i64) -> Result<(), GamifyError> {
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

    /// The earliest instant a tick has work (None: nothing is due, ever).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.agenda.get_min().map(|&(due, _)| due)
    }

    /// Customers with gamification state.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
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

    pub(super) fn names_fit(&self, program: &Program) -> Result<(), GamifyError> {
        let s = &program.spec;
        let all = s.wallets.iter().map(|w| &w.id).chain(s.rules.iter().map(|r| &r.id));
        let all = all.chain(s.measures.iter().map(|m| &m.id)).chain(s.counters.iter().map(|c| &c.name));
        let new = all.filter(|n| !self.name_ids.contains_key(n.as_str())).count()
            + super::achieve_state::names(program)
                .filter(|n| !self.name_ids.contains_key(n.as_str()))
                .count();
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
            achieve: super::achieve_state::AchieveKeys::intern(self, program)?,
        })
    }

    pub(super) fn known(&self, facts: &dyn CustomerFacts, id: u64) -> bool {
        self.customers.contains_key(&id) || facts.exists(id)
    }

    /// Notes a customer this mutation touches (creating its state).
    pub(super) fn touch(&mut self, id: u64, touched: &mut BTreeSet<u64>) {
        touched.insert(id);
        self.customers.get_or_create(id);
    }

    /// Reschedules the touched customers and reports all their derived values: a value
    /// may have moved with the clock since it was last reported (the 30-day figure), so
    /// touched customers are reported whole rather than diffed.
    pub(super) fn finish(
        &mut self,
        program: &Program,
        keys: &Keys,
        touched: BTreeSet<u64>,
        out: &mut Applied,
    ) {
        for id in touched {
            self.reschedule(id);
            let Some(c) = self.customers.get(&id) else { continue };
            let values = self.attrs_of(program, keys, c);
            out.changed.push(CustomerAttrs { customer_id: id, values });
        }
    }

    /// Puts a customer on the agenda at its next due instant.
    pub(super) fn reschedule(&mut self, id: u64) {
        let clock = self.clock_ms;
        let Some(c) = self.customers.get_mut(&id) else { return };
        self.agenda.remove(&(c.due_ms, id));
        let wallets = c.wallets.iter().map(|w| w.1.next_due(clock)).min().unwrap_or(i64::MAX);
        let achieve = c.achieve.as_ref().map_or(i64::MAX, |a| a.next_due(clock));
        c.due_ms = wallets.min(c.next_check_ms).min(achieve);
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
        while let Some(&(due, id)) = self.agenda.get_min() {
            if due > now {
                break;
            }
            self.agenda.remove_min();
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

    /// Checks the ledger invariant of every wallet and the agenda's consistency.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, c) in self.customers.iter() {
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

    /// The derived attributes of a customer, named (what [`Applied::changed`] carries,
    /// with [`Program::attr_names`]).
    pub fn attributes(&self, program: &Program, customer_id: u64) -> Option<Vec<(String, AttrValue)>> {
        let c = self.customers.get(&customer_id)?;
        let keys = self.lookup_keys(program);
        Some(program.attr_names.iter().cloned().zip(self.attrs_of(program, &keys, c)).collect())
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
            achieve: super::achieve_state::AchieveKeys::lookup(self, program),
        }
    }

    pub(super) fn attrs_of(&self, program: &Program, keys: &Keys, c: &Customer) -> Vec<AttrValue> {
        attrs_at(program, keys, c, self.clock_ms)
    }
}

/// A customer's derived attributes, the 30-day figure as of `clock_ms`, in the order of
/// [`Program::attr_names`].
pub(super) fn attrs_at(program: &Program, keys: &Keys, c: &Customer, clock_ms: i64) -> Vec<AttrValue> {
    let mut v = Vec::with_capacity(program.attr_names.len());
    for k in 0..BUILTIN_ATTRIBUTES.len() {
        v.push(builtin_at(program, keys, c, clock_ms, k));
    }
    for ci in 0..program.spec.counters.len() {
        v.push(counter_at(program, keys, c, ci));
    }
    super::achieve_state::attrs(program, keys, c, clock_ms, &mut v);
    v
}

/// Derived attribute `name` of a customer as of `clock_ms` (None: the program derives no
/// such attribute), computing that one alone: an earning rule's customer condition reads
/// one or two of them (`tier`) per rule per event, and building all of them (strings,
/// the badge list) there was a quarter of the commit thread.
pub(super) fn attr_at(
    program: &Program,
    keys: &Keys,
    c: &Customer,
    clock_ms: i64,
    name: &str,
) -> Option<AttrValue> {
    let k = program.attr_index(name)?;
    let counters = program.spec.counters.len();
    Some(if k < BUILTIN_ATTRIBUTES.len() {
        builtin_at(program, keys, c, clock_ms, k)
    } else if k < BUILTIN_ATTRIBUTES.len() + counters {
        counter_at(program, keys, c, k - BUILTIN_ATTRIBUTES.len())
    } else {
        // Badges, streaks and challenges: rarer in conditions, computed together.
        let mut v = Vec::new();
        super::achieve_state::attrs(program, keys, c, clock_ms, &mut v);
        v.into_iter().nth(k - BUILTIN_ATTRIBUTES.len() - counters)?
    })
}

/// The `k`-th of [`BUILTIN_ATTRIBUTES`].
fn builtin_at(program: &Program, keys: &Keys, c: &Customer, clock_ms: i64, k: usize) -> AttrValue {
    let w = c.wallet(keys.wallets[0]);
    match k {
        0 => AttrValue::Int(w.map_or(0, Wallet::available)),
        1 => AttrValue::Int(w.map_or(0, Wallet::pending)),
        2 => AttrValue::Int(w.map_or(0, Wallet::lifetime)),
        3 => AttrValue::Int(w.map_or(0, |w| w.expiring_within(clock_ms, 30))),
        4 => AttrValue::Str(program.spec.tiers.tiers[c.tier as usize].name.clone()),
        _ => AttrValue::Int(c.level as i64),
    }
}

/// The value of counter `ci` (program order).
fn counter_at(program: &Program, keys: &Keys, c: &Customer, ci: usize) -> AttrValue {
    let n = c.counter(keys.counters[ci]);
    if program.spec.counters[ci].sum.is_some() {
        AttrValue::Float(n as f64 / 100.0)
    } else {
        AttrValue::Int(n)
    }
}

pub(super) fn set_tier(
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
pub(super) fn schedule_check(program: &Program, c: &mut Customer, now: i64) {
    if c.tier > c.manual_tier.unwrap_or(0) {
        if c.next_check_ms == i64::MAX {
            c.next_check_ms = next_check(program, now).unwrap_or(i64::MAX);
        }
    } else {
        c.next_check_ms = i64::MAX;
    }
}

pub(super) fn tier_value(program: &Program, keys: &Keys, c: &Customer, at: i64) -> i64 {
    let m = &program.spec.measures[program.tier_measure];
    c.measure(keys.measures[program.tier_measure]).map_or(0, |b| b.sum(today(program.tz, at), m.window_days))
}

pub(super) fn relevel(program: &Program, keys: &Keys, id: u64, c: &mut Customer, at: i64, out: &mut Applied) {
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
