//! Contact history, outcomes, caps, budgets and adaptive model counts: the decision state
//! of the engine, changed only by applying logged records ([`DecisionRecord`], outcomes)
//! in commit order.
//!
//! A decision is taken on a published version (possibly a little stale), logged, and then
//! applied here; [`ContactState::apply_decision`] re-checks every budget, cap, contact
//! limit and suppression against the state *as of commit order*, so two concurrent
//! decisions can never both take the last slot: the second one to commit loses the offer
//! (it is reported as dropped at apply). Budgets count acceptances plus open reservations
//! (a presented, unanswered offer holds one unit until it is accepted, rejected, or its
//! decision expires), so acceptances never exceed a budget either. Time comes only from
//! the records, never from the wall clock, so replay rebuilds the same state.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::arbitrate::{Context, DecisionRecord, DropReason, Dropped, ModelKey, Ranked};
use super::catalogue::{Catalogue, ContactPolicy};
use super::idmap::IdMap;
use super::offer::{Channel, Offer, OfferError, MAX_WINDOW_MS};

/// A customer's response to an offer of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    Impression,
    Click,
    Accept,
    Reject,
    Convert,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Impression,
        OutcomeKind::Click,
        OutcomeKind::Accept,
        OutcomeKind::Reject,
        OutcomeKind::Convert,
    ];

    fn bit(self) -> u8 {
        match self {
            OutcomeKind::Impression => 1,
            OutcomeKind::Click => 2,
            OutcomeKind::Accept => 4,
            OutcomeKind::Reject => 8,
            OutcomeKind::Convert => 16,
        }
    }

    /// ACCEPT and CONVERT are the adaptive model's successes; CLICK too cancels an ignore.
    fn positive(self) -> bool {
        match self {
            OutcomeKind::Accept | OutcomeKind::Convert | OutcomeKind::Click => true,
            OutcomeKind::Impression | OutcomeKind::Reject => false,
        }
    }

    fn success(self) -> bool {
        match self {
            OutcomeKind::Accept | OutcomeKind::Convert => true,
            OutcomeKind::Impression | OutcomeKind::Click | OutcomeKind::Reject => false,
        }
    }
}

/// How long history is kept. Times are the records' own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContactConfig {
    /// Contacts older than this are forgotten: must cover every cap, contact-limit and
    /// suppression window.
    pub history_ms: i64,
    /// A decision can be fetched, and its outcomes recorded, for this long; its budget
    /// reservations are released when it expires.
    pub decision_retention_ms: i64,
}

impl Default for ContactConfig {
    /// 90 days of history, decisions kept 1 day. Retained decisions cost memory in
    /// proportion to rate × retention (about 300 bytes each with a few offers: 1 day at
    /// 1,000 decisions/s is ~26 GB), so the retention is the knob to size.
    fn default() -> Self {
        ContactConfig { history_ms: 90 * 86_400_000, decision_retention_ms: 86_400_000 }
    }
}

impl ContactConfig {
    pub fn validate(&self) -> Result<(), OfferError> {
        for (field, v) in
            [("history_ms", self.history_ms), ("decision_retention_ms", self.decision_retention_ms)]
        {
            if !(1..=MAX_WINDOW_MS).contains(&v) {
                return Err(OfferError::Policy {
                    field: field.into(),
                    problem: format!("{v} ms is not in 1..={MAX_WINDOW_MS}"),
                });
            }
        }
        Ok(())
    }

    /// Whether every window of the offer fits in the history kept.
    pub fn check_offer(&self, o: &Offer) -> Result<(), OfferError> {
        let too_long = |field: &str, w: i64| OfferError::Invalid {
            offer: o.id.clone(),
            field: field.into(),
            problem: format!("{w} ms is longer than the contact history kept ({} ms)", self.history_ms),
        };
        if let Some(c) = o.cap.filter(|c| c.window_ms > self.history_ms) {
            return Err(too_long("cap.window_ms", c.window_ms));
        }
        if let Some(s) = &o.suppression {
            let span = s.within_ms + s.pause_ms + s.ignore_after_ms.unwrap_or(0);
            if span > self.history_ms {
                return Err(too_long("suppression", span));
            }
        }
        Ok(())
    }

    pub fn check_policy(&self, p: &ContactPolicy) -> Result<(), OfferError> {
        for (c, l) in &p.channel_limits {
            if l.window_ms > self.history_ms {
                return Err(OfferError::Policy {
                    field: format!("channel_limits.{c}.window_ms"),
                    problem: format!(
                        "{} ms is longer than the contact history kept ({} ms)",
                        l.window_ms, self.history_ms
                    ),
                });
            }
        }
        Ok(())
    }
}

/// One remembered contact of a customer.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    pub decision_id: u64,
    pub offer_id: Arc<str>,
    pub channel: Channel,
    pub at_ms: i64,
    pub kind: ContactKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactKind {
    /// Shown; `responded` once a CLICK, ACCEPT or CONVERT followed (then never an ignore).
    Impression {
        responded: bool,
    },
    Reject,
}

/// Successes and trials of one Beta-Bernoulli model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BetaCounts {
    pub successes: u64,
    pub trials: u64,
}

/// Per-offer totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfferStats {
    pub accepted: u64,
    /// Presented, unanswered offers of retained decisions holding a unit of the budget.
    pub reserved: u64,
    pub models: BTreeMap<ModelKey, BetaCounts>,
}

/// An offer a retained decision presented.
#[derive(Clone, Debug, PartialEq)]
pub struct TakenOffer {
    pub ranked: Ranked,
    /// Outcomes recorded (a bit per [`OutcomeKind`]).
    pub outcomes: u8,
    /// Counted as shown (an impression contact and a model trial exist).
    pub shown: bool,
    /// Holds a unit of the offer's budget.
    pub reserved: bool,
    pub success: bool,
}

impl TakenOffer {
    /// The outcomes recorded, in [`OutcomeKind::ALL`] order.
    pub fn recorded(&self) -> impl Iterator<Item = OutcomeKind> + '_ {
        OutcomeKind::ALL.into_iter().filter(|k| self.outcomes & k.bit() != 0)
    }
}

/// A decision as applied, kept for [`ContactState::decision`] and outcomes.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredDecision {
    pub decision_id: u64,
    pub customer_id: u64,
    pub context: Context,
    pub offers: Vec<TakenOffer>,
    pub fallback_used: bool,
    pub control_group: bool,
}

/// What applying a decision record kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub offers: Vec<Ranked>,
    pub fallback_used: bool,
    /// Offers of the record that lost their slot in commit order.
    pub dropped: Vec<Dropped>,
}

/// What recording an outcome did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeApplied {
    Recorded,
    /// The same (decision, offer, outcome) was recorded before: nothing changed.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("decision {0} was already taken")]
    DuplicateDecision(u64),
    #[error("unknown decision {0} (never taken, or older than the retention period)")]
    UnknownDecision(u64),
    #[error("offer '{offer}' was not presented by decision {decision}")]
    NotPresented { decision: u64, offer: String },
    #[error("outcome at {at_ms} ms is before its decision at {decision_at_ms} ms")]
    BeforeDecision { at_ms: i64, decision_at_ms: i64 },
    #[error("outcome at {at_ms} ms is after decision {decision} expired at {expires_ms} ms")]
    AfterExpiry { decision: u64, at_ms: i64, expires_ms: i64 },
}

/// The decision state. Cloning it for a copy-on-write version copies no map: the
/// per-customer, per-decision and per-offer maps and the expiry index are persistent trees
/// shared with the published version, and a write copies only the paths it touches (see
/// [`super::idmap`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactState {
    pub config: ContactConfig,
    /// Latest record time applied: expiry and history pruning follow it, not the wall clock.
    pub clock_ms: i64,
    /// Retained decisions by id.
    pub decisions: IdMap<StoredDecision>,
    /// (expires at, decision id), to release decisions in order.
    pub expiry: imbl::OrdSet<(i64, u64)>,
    /// Each customer's contacts within the history kept, in apply order.
    pub customers: IdMap<Vec<Contact>>,
    /// Per-offer totals in a persistent map: nearly every decision touches one (budget
    /// reservations, model trials), and a std map was copied whole, keys and all, by the
    /// first decision of each commit group. Now a group copies the paths it touches.
    pub offers: imbl::HashMap<Arc<str>, Arc<OfferStats>>,
    /// Highest decision id ever applied (expired ones included): the service numbers new
    /// decisions above it, so an id is never reused across restarts.
    pub last_decision_id: u64,
}

impl ContactState {
    pub fn new(config: ContactConfig) -> Result<ContactState, OfferError> {
        config.validate()?;
        Ok(ContactState { config, clock_ms: i64::MIN, ..Default::default() })
    }

    /// Moves the clock to `at` (never back): expires decisions (releasing their budget
    /// reservations) whose retention ended.
    fn advance(&mut self, at_ms: i64) {
        if at_ms <= self.clock_ms {
            return;
        }
        self.clock_ms = at_ms;
        while let Some(&(exp, id)) = self.expiry.get_min() {
            if exp > at_ms {
                break;
            }
            self.expiry.remove_min();
            if let Some(d) = self.decisions.remove(id) {
                for t in d.offers.iter().filter(|t| t.reserved) {
                    if let Some(s) = self.offers.get_mut(t.ranked.offer_id.as_str()) {
                        Arc::make_mut(s).reserved -= 1;
                    }
                }
            }
        }
    }

    /// An offer's totals, created empty the first time (without building a key when they
    /// exist: this runs for every offer a decision presents).
    fn stats_mut(&mut self, offer_id: &str) -> &mut OfferStats {
        if !self.offers.contains_key(offer_id) {
            self.offers.insert(offer_id.into(), Arc::default());
        }
        Arc::make_mut(self.offers.get_mut(offer_id).expect("inserted above"))
    }

    /// Adds a contact to a customer, forgetting contacts older than the history kept.
    fn push_contact(&mut self, customer_id: u64, c: Contact) {
        let horizon = self.clock_ms.saturating_sub(self.config.history_ms);
        let v = self.customers.get_or_default(customer_id);
        v.retain(|x| x.at_ms > horizon);
        v.push(c);
    }

    /// Checks a record before it is logged: only what cannot change between now and its
    /// apply (a duplicate id). Limits are re-checked at apply, in commit order.
    pub fn check_decision(&self, rec: &DecisionRecord) -> Result<(), HistoryError> {
        if self.decisions.contains_key(rec.decision_id) {
            return Err(HistoryError::DuplicateDecision(rec.decision_id));
        }
        Ok(())
    }

    /// Applies a logged decision: each presented offer that still fits its budget, cap,
    /// suppression and the channel's contact limit takes its slot, in rank order; the
    /// others are dropped. When none is left, the record's fallback is used.
    pub fn apply_decision(&mut self, cat: &Catalogue, rec: &DecisionRecord) -> Result<Applied, HistoryError> {
        self.check_decision(rec)?;
        let now = rec.context.now_ms;
        self.advance(now);
        let customer = rec.customer_id;
        let mut dropped = vec![];
        let mut kept: Vec<Ranked> = vec![];
        let limit = self.channel_limit(cat.policy(), customer, rec.context.channel, now);
        for r in &rec.offers {
            // An offer deleted since the decision was taken is gone: it cannot be presented.
            let reason = match cat.get(&r.offer_id) {
                None => Some(DropReason::Deleted),
                Some(o) => limit
                    .clone()
                    .or_else(|| self.offer_limit(o, customer, now))
                    .or_else(|| self.suppression(o, customer, now)),
            };
            match reason {
                Some(reason) => {
                    dropped.push(Dropped { offer_id: r.offer_id.clone(), reason, at_apply: true })
                }
                None => kept.push(r.clone()),
            }
        }
        let mut fallback_used = false;
        if kept.is_empty() {
            if let Some(f) = &rec.fallback {
                // The contact policy holds for the fallback too; its own limits do not exist.
                match (cat.get(&f.offer_id), &limit) {
                    (None, _) => dropped.push(Dropped {
                        offer_id: f.offer_id.clone(),
                        reason: DropReason::Deleted,
                        at_apply: true,
                    }),
                    (Some(_), Some(l)) => dropped.push(Dropped {
                        offer_id: f.offer_id.clone(),
                        reason: l.clone(),
                        at_apply: true,
                    }),
                    (Some(_), None) => {
                        kept.push(f.clone());
                        fallback_used = true;
                    }
                }
            }
        }
        let mut taken = Vec::with_capacity(kept.len());
        for r in &kept {
            let budgeted = cat.get(&r.offer_id).is_some_and(|o| o.budget.is_some());
            let stats = self.stats_mut(&r.offer_id);
            if budgeted {
                stats.reserved += 1;
            }
            taken.push(TakenOffer {
                ranked: r.clone(),
                outcomes: 0,
                shown: false,
                reserved: budgeted,
                success: false,
            });
        }
        let mut stored = StoredDecision {
            decision_id: rec.decision_id,
            customer_id: customer,
            context: rec.context.clone(),
            offers: taken,
            fallback_used,
            control_group: rec.control_group,
        };
        if rec.counts_as_impression {
            for i in 0..stored.offers.len() {
                self.show(&mut stored, i, now);
            }
        }
        self.expiry.insert((self.expires(&stored), rec.decision_id));
        self.last_decision_id = self.last_decision_id.max(rec.decision_id);
        self.decisions.insert(rec.decision_id, stored);
        Ok(Applied { offers: kept, fallback_used, dropped })
    }

    /// Counts offer `i` of the decision as shown: an impression contact and a model trial.
    fn show(&mut self, d: &mut StoredDecision, i: usize, at_ms: i64) {
        let t = &mut d.offers[i];
        if t.shown {
            return;
        }
        t.shown = true;
        let offer_id: Arc<str> = t.ranked.offer_id.as_str().into();
        if let Some(key) = &t.ranked.model {
            let stats = self.stats_mut(&t.ranked.offer_id);
            match stats.models.get_mut(key) {
                Some(n) => n.trials += 1,
                None => {
                    stats.models.insert(key.clone(), BetaCounts { successes: 0, trials: 1 });
                }
            }
        }
        let c = Contact {
            decision_id: d.decision_id,
            offer_id,
            channel: d.context.channel,
            at_ms,
            kind: ContactKind::Impression { responded: false },
        };
        self.push_contact(d.customer_id, c);
    }

    /// Checks an outcome before it is logged.
    pub fn check_outcome(&self, decision_id: u64, offer_id: &str, at_ms: i64) -> Result<(), HistoryError> {
        let d = self.decisions.get(decision_id).ok_or(HistoryError::UnknownDecision(decision_id))?;
        if !d.offers.iter().any(|t| t.ranked.offer_id == offer_id) {
            return Err(HistoryError::NotPresented { decision: decision_id, offer: offer_id.into() });
        }
        if at_ms < d.context.now_ms {
            return Err(HistoryError::BeforeDecision { at_ms, decision_at_ms: d.context.now_ms });
        }
        let expires_ms = self.expires(d);
        if at_ms >= expires_ms {
            return Err(HistoryError::AfterExpiry { decision: decision_id, at_ms, expires_ms });
        }
        Ok(())
    }

    fn expires(&self, d: &StoredDecision) -> i64 {
        d.context.now_ms.saturating_add(self.config.decision_retention_ms)
    }

    /// Applies a logged outcome; idempotent per (decision, offer, outcome). Any outcome
    /// implies the offer was shown (an impression and a model trial, once); ACCEPT or
    /// CONVERT is the model's success (once); ACCEPT moves a budget reservation to an
    /// acceptance; REJECT releases it and counts towards suppression.
    pub fn record_outcome(
        &mut self,
        decision_id: u64,
        offer_id: &str,
        kind: OutcomeKind,
        at_ms: i64,
    ) -> Result<OutcomeApplied, HistoryError> {
        self.check_outcome(decision_id, offer_id, at_ms)?;
        let d = self.decisions.get(decision_id).expect("checked");
        let i = d.offers.iter().position(|t| t.ranked.offer_id == offer_id).expect("checked");
        if d.offers[i].outcomes & kind.bit() != 0 {
            return Ok(OutcomeApplied::Duplicate);
        }
        self.advance(at_ms);
        let mut d = self.decisions.remove(decision_id).expect("not expired: checked");
        d.offers[i].outcomes |= kind.bit();
        self.show(&mut d, i, at_ms);
        let t = &mut d.offers[i];
        let stats = self.stats_mut(offer_id);
        if kind.success() && !t.success {
            t.success = true;
            if let Some(key) = &t.ranked.model {
                stats.models.entry(key.clone()).or_default().successes += 1;
            }
        }
        match kind {
            OutcomeKind::Accept => {
                stats.accepted += 1;
                if std::mem::take(&mut t.reserved) {
                    stats.reserved -= 1;
                }
            }
            OutcomeKind::Reject => {
                if std::mem::take(&mut t.reserved) {
                    stats.reserved -= 1;
                }
            }
            OutcomeKind::Impression | OutcomeKind::Click | OutcomeKind::Convert => {}
        }
        let customer = d.customer_id;
        if kind.positive() {
            if let Some(c) = self.customers.get_mut(customer).and_then(|v| {
                v.iter_mut().find(|c| {
                    c.decision_id == decision_id
                        && &*c.offer_id == offer_id
                        && matches!(c.kind, ContactKind::Impression { .. })
                })
            }) {
                c.kind = ContactKind::Impression { responded: true };
            }
        }
        if kind == OutcomeKind::Reject {
            let c = Contact {
                decision_id,
                offer_id: offer_id.into(),
                channel: d.context.channel,
                at_ms,
                kind: ContactKind::Reject,
            };
            self.push_contact(customer, c);
        }
        // `advance` cannot have expired it: the check refused outcomes after its expiry.
        self.decisions.insert(decision_id, d);
        Ok(OutcomeApplied::Recorded)
    }
}
