//! Next-best-offer arbitration: every offer of the catalogue is taken through the stages
//! (window, channel, eligibility, applicability, suitability, control group, hold-out,
//! budget, cap, contact policy, suppression, scoring), the survivors are ranked by
//! priority = propensity × context weight × value × lever, and every offer not presented
//! is listed with the stage that dropped it.
//!
//! Deciding reads one version of the state and changes nothing: the result's
//! [`DecisionRecord`] is what the engine logs, and applying it
//! ([`super::history::ContactState::apply_decision`]) takes the slots in commit order.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

use super::catalogue::Catalogue;
use super::facts::{CustomerFacts, FactsError};
use super::hash;
use super::history::{Applied, ContactState};
use super::offer::{Channel, Offer, Propensity, Rule, SegmentRef, Value, MAX_TEXT};

/// Most offers one decision presents.
pub const MAX_RESULTS: usize = 25;

/// Where and when the decision is asked for. `now_ms` is fixed by the caller before the
/// decision is logged (never read from the clock on apply).
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    pub channel: Channel,
    pub placement: String,
    pub intent: String,
    pub now_ms: i64,
}

/// Which adaptive model an offer's propensity was drawn from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelKey {
    /// The offer-wide model.
    Offer,
    /// The model of customers in this saved segment.
    Segment(String),
}

/// A presented offer with the four factors of its priority.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    pub offer_id: String,
    /// propensity × weight × value × lever.
    pub priority: f64,
    pub propensity: f64,
    pub weight: f64,
    pub value: f64,
    pub lever: f64,
    /// The adaptive model the propensity was sampled from (outcomes update it).
    pub model: Option<ModelKey>,
}

/// The funnel stages, in the order an offer goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Window,
    Channel,
    Eligibility,
    Applicability,
    Suitability,
    ControlGroup,
    HoldOut,
    Budget,
    Cap,
    ContactPolicy,
    Suppression,
    Scoring,
    Arbitration,
    Fallback,
    Catalogue,
}

/// Why an offer was not presented.
#[derive(Clone, Debug, PartialEq)]
pub enum DropReason {
    OutsideWindow {
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    },
    WrongChannel {
        channel: Channel,
    },
    NotEligible,
    NotApplicable,
    NotSuitable,
    /// The customer is in the global control group: no offer at all.
    ControlGroup,
    HeldOut {
        pct: f64,
    },
    BudgetSpent {
        used: u64,
        budget: u64,
    },
    Capped {
        shown: u32,
        max: u32,
    },
    ContactLimit {
        channel: Channel,
        contacts: u32,
        max: u32,
    },
    Suppressed {
        until_ms: i64,
    },
    /// A value or propensity attribute is NULL or out of range for this customer.
    NoScore {
        field: String,
        value: Option<f64>,
    },
    /// Qualified, but ranked below `max_results` (rank is 1-based among qualifiers).
    LostArbitration {
        rank: u32,
        priority: f64,
    },
    /// A qualifying fallback offer, not needed because other offers qualified.
    FallbackNotNeeded,
    /// Deleted from the catalogue between decision and apply.
    Deleted,
}

impl DropReason {
    pub fn stage(&self) -> Stage {
        match self {
            DropReason::OutsideWindow { .. } => Stage::Window,
            DropReason::WrongChannel { .. } => Stage::Channel,
            DropReason::NotEligible => Stage::Eligibility,
            DropReason::NotApplicable => Stage::Applicability,
            DropReason::NotSuitable => Stage::Suitability,
            DropReason::ControlGroup => Stage::ControlGroup,
            DropReason::HeldOut { .. } => Stage::HoldOut,
            DropReason::BudgetSpent { .. } => Stage::Budget,
            DropReason::Capped { .. } => Stage::Cap,
            DropReason::ContactLimit { .. } => Stage::ContactPolicy,
            DropReason::Suppressed { .. } => Stage::Suppression,
            DropReason::NoScore { .. } => Stage::Scoring,
            DropReason::LostArbitration { .. } => Stage::Arbitration,
            DropReason::FallbackNotNeeded => Stage::Fallback,
            DropReason::Deleted => Stage::Catalogue,
        }
    }
}

/// An offer not presented, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    pub offer_id: String,
    pub reason: DropReason,
    /// Dropped when the logged decision was applied (another decision took the slot first).
    pub at_apply: bool,
}

/// "Decision taken": what the engine logs. Applying it is deterministic from the state.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRecord {
    pub decision_id: u64,
    pub customer_id: u64,
    pub context: Context,
    /// Whether presenting counts as an impression (caps, contact policy, model trials) at
    /// once, rather than when an IMPRESSION outcome is recorded.
    pub counts_as_impression: bool,
    pub control_group: bool,
    /// Non-fallback offers in rank order.
    pub offers: Vec<Ranked>,
    /// The best qualifying fallback offer, used if no offer is left at apply.
    pub fallback: Option<Ranked>,
}

/// A decision with its explanation.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub record: DecisionRecord,
    /// What the customer is shown, in rank order (the fallback alone when it is used).
    pub presented: Vec<Ranked>,
    pub fallback_used: bool,
    /// Every other offer of the catalogue, in catalogue (id) order, then those dropped at
    /// apply.
    pub dropped: Vec<Dropped>,
}

impl Decision {
    /// Takes in what applying the record kept: offers that lost their slot move to
    /// `dropped`, and a fallback used only at apply leaves it.
    pub fn settle(&mut self, applied: Applied) {
        (self.presented, self.fallback_used) = settle(&mut self.dropped, applied);
    }
}

/// What applying a decision's record kept, merged into its explanation `dropped`: returns
/// the offers presented and whether the fallback is one of them; offers that lost their
/// slot join `dropped`, and a fallback used only at apply leaves it.
pub fn settle(dropped: &mut Vec<Dropped>, applied: Applied) -> (Vec<Ranked>, bool) {
    let Applied { offers, fallback_used, dropped: at_apply } = applied;
    dropped.retain(|d| !offers.iter().any(|r| r.offer_id == d.offer_id));
    dropped.extend(at_apply);
    (offers, fallback_used)
}

/// One call's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub decision_id: u64,
    pub customer_id: u64,
    pub context: Context,
    /// 1..=[`MAX_RESULTS`].
    pub max_results: usize,
    pub counts_as_impression: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecideError {
    #[error("max_results {0} is not in 1..={MAX_RESULTS}")]
    MaxResults(usize),
    #[error("context {field} is longer than {MAX_TEXT} bytes")]
    ContextTooLong { field: &'static str },
    #[error(transparent)]
    Facts(#[from] FactsError),
}

/// Decides for one customer against one version of the state, with every offer of the
/// catalogue that is not presented listed in `dropped`.
pub fn decide(
    cat: &Catalogue,
    state: &ContactState,
    facts: &dyn CustomerFacts,
    req: &Request,
) -> Result<Decision, DecideError> {
    decide_with(cat, state, facts, req, true)
}

/// An offer that passed every stage, scored, borrowed from the catalogue: only those
/// presented (or kept as the fallback) become [`Ranked`]s, so the losers of arbitration
/// cost no allocation.
struct Scored<'c> {
    offer: &'c Offer,
    priority: f64,
    propensity: f64,
    weight: f64,
    value: f64,
    model: Option<ModelKey>,
}

impl Scored<'_> {
    fn ranked(self) -> Ranked {
        let Scored { offer, priority, propensity, weight, value, model } = self;
        Ranked { offer_id: offer.id.clone(), priority, propensity, weight, value, lever: offer.lever, model }
    }
}

/// Best first; ties by offer id.
fn by_priority(a: &Scored<'_>, b: &Scored<'_>) -> std::cmp::Ordering {
    b.priority.total_cmp(&a.priority).then_with(|| a.offer.id.cmp(&b.offer.id))
}

/// [`decide`]; with `explain` false `dropped` stays empty and nothing is built for an
/// offer that is not presented (the record, and so what is presented, is the same). A
/// served decision without explanation spent most of its time building and freeing
/// ~200 dropped entries it then threw away.
pub fn decide_with(
    cat: &Catalogue,
    state: &ContactState,
    facts: &dyn CustomerFacts,
    req: &Request,
    explain: bool,
) -> Result<Decision, DecideError> {
    if !(1..=MAX_RESULTS).contains(&req.max_results) {
        return Err(DecideError::MaxResults(req.max_results));
    }
    for (field, v) in [("placement", &req.context.placement), ("intent", &req.context.intent)] {
        if v.len() > MAX_TEXT {
            return Err(DecideError::ContextTooLong { field });
        }
    }
    let customer = req.customer_id;
    if !facts.known(customer) {
        return Err(FactsError::UnknownCustomer(customer).into());
    }
    let ctx = &req.context;
    let control_group = hash::in_control(customer, cat.policy().control_pct);
    let contact_limit = state.channel_limit(cat.policy(), customer, ctx.channel, ctx.now_ms);
    let mut dropped = vec![];
    let mut ranked = vec![];
    let mut fallbacks = vec![];
    for (nth, o) in cat.offers().enumerate() {
        let verdict = match stages(o, nth, state, facts, req, control_group, &contact_limit)? {
            Ok(()) => score(o, state, facts, req)?,
            Err(reason) => Err(reason),
        };
        match verdict {
            Ok(r) if o.fallback => fallbacks.push(r),
            Ok(r) => ranked.push(r),
            Err(reason) if explain => {
                dropped.push(Dropped { offer_id: o.id.clone(), reason, at_apply: false })
            }
            Err(_) => {}
        }
    }
    let lost = |i: usize, s: &Scored<'_>| Dropped {
        offer_id: s.offer.id.clone(),
        reason: DropReason::LostArbitration { rank: i as u32 + 1, priority: s.priority },
        at_apply: false,
    };
    if explain {
        ranked.sort_by(by_priority);
        dropped.extend(ranked.iter().enumerate().skip(req.max_results).map(|(i, s)| lost(i, s)));
        fallbacks.sort_by(by_priority);
        dropped.extend(fallbacks.iter().enumerate().skip(1).map(|(i, s)| lost(i, s)));
    } else {
        // Only the winners' order matters: select them, then sort just those.
        if ranked.len() > req.max_results {
            ranked.select_nth_unstable_by(req.max_results - 1, by_priority);
        }
        ranked.truncate(req.max_results);
        ranked.sort_by(by_priority);
        let best = (0..fallbacks.len()).min_by(|&a, &b| by_priority(&fallbacks[a], &fallbacks[b]));
        if let Some(best) = best {
            fallbacks.swap(0, best);
        }
    }
    ranked.truncate(req.max_results);
    let ranked: Vec<Ranked> = ranked.into_iter().map(Scored::ranked).collect();
    let fallback = fallbacks.into_iter().next().map(Scored::ranked);
    let fallback_used = ranked.is_empty() && fallback.is_some();
    let presented = match (&fallback, fallback_used) {
        (Some(f), true) => vec![f.clone()],
        (Some(f), false) => {
            if explain {
                dropped.push(Dropped {
                    offer_id: f.offer_id.clone(),
                    reason: DropReason::FallbackNotNeeded,
                    at_apply: false,
                });
            }
            ranked.clone()
        }
        (None, _) => ranked.clone(),
    };
    let record = DecisionRecord {
        decision_id: req.decision_id,
        customer_id: customer,
        context: ctx.clone(),
        counts_as_impression: req.counts_as_impression,
        control_group,
        offers: ranked,
        fallback,
    };
    Ok(Decision { record, presented, fallback_used, dropped })
}

/// The stages before scoring; the outer error is a failure to read facts, the inner one
/// the stage that drops the offer.
fn stages(
    o: &Offer,
    nth: usize,
    state: &ContactState,
    facts: &dyn CustomerFacts,
    req: &Request,
    control_group: bool,
    contact_limit: &Option<DropReason>,
) -> Result<Result<(), DropReason>, FactsError> {
    let (ctx, customer) = (&req.context, req.customer_id);
    if !o.in_window(ctx.now_ms) {
        return Ok(Err(DropReason::OutsideWindow { start_ms: o.start_ms, end_ms: o.end_ms }));
    }
    if !o.channels.contains(&ctx.channel) {
        return Ok(Err(DropReason::WrongChannel { channel: ctx.channel }));
    }
    for (rule, seg) in o.rules() {
        if !matches!(seg, SegmentRef::All) && !facts.passes_nth(customer, nth, o, rule)? {
            return Ok(Err(match rule {
                Rule::Eligibility => DropReason::NotEligible,
                Rule::Applicability => DropReason::NotApplicable,
                Rule::Suitability => DropReason::NotSuitable,
            }));
        }
    }
    if control_group {
        return Ok(Err(DropReason::ControlGroup));
    }
    if o.holdout_pct > 0.0 && hash::held_out(customer, &o.id, o.holdout_pct) {
        return Ok(Err(DropReason::HeldOut { pct: o.holdout_pct }));
    }
    if let Some(reason) = state.offer_limit(o, customer, ctx.now_ms) {
        return Ok(Err(reason));
    }
    if let Some(reason) = contact_limit {
        return Ok(Err(reason.clone()));
    }
    if let Some(reason) = state.suppression(o, customer, ctx.now_ms) {
        return Ok(Err(reason));
    }
    Ok(Ok(()))
}

/// The four factors and the priority, or the reason there is no score.
fn score<'c>(
    o: &'c Offer,
    state: &ContactState,
    facts: &dyn CustomerFacts,
    req: &Request,
) -> Result<Result<Scored<'c>, DropReason>, FactsError> {
    let customer = req.customer_id;
    let no_score = |field: &str, value| Ok(Err(DropReason::NoScore { field: field.into(), value }));
    let value = match &o.value {
        Value::Constant(v) => *v,
        Value::Attribute { name, factor } => match facts.number(customer, name)? {
            None => return no_score("value", None),
            Some(x) if !(x * factor).is_finite() || x * factor < 0.0 => {
                return no_score("value", Some(x * factor))
            }
            Some(x) => x * factor,
        },
    };
    let mut model = None;
    let propensity = match &o.propensity {
        Propensity::Constant(p) => *p,
        Propensity::Attribute(name) => match facts.number(customer, name)? {
            Some(p) if (0.0..=1.0).contains(&p) => p,
            v => return no_score("propensity", v),
        },
        Propensity::Adaptive { alpha, beta, per_segment } => {
            let mut key = ModelKey::Offer;
            for s in per_segment {
                if facts.in_saved(customer, s)? {
                    key = ModelKey::Segment(s.clone());
                    break;
                }
            }
            let n = state.model(&o.id, &key);
            let p = thompson(
                alpha + n.successes as f64,
                beta + n.trials.saturating_sub(n.successes) as f64,
                req.decision_id,
                &o.id,
            );
            model = Some(key);
            p
        }
    };
    let weight = o.weights.weight(req.context.channel, &req.context.placement, &req.context.intent);
    let priority = propensity * weight * value * o.lever;
    if !priority.is_finite() {
        return no_score("priority", Some(priority));
    }
    Ok(Ok(Scored { offer: o, priority, propensity, weight, value, model }))
}

/// One draw from Beta(a, b), reproducible from the decision and offer ids.
pub fn thompson(a: f64, b: f64, decision_id: u64, offer_id: &str) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(hash::sampling_seed(decision_id, offer_id));
    // a, b > 0 and finite: priors are validated, counts only add.
    Beta::new(a, b).expect("valid Beta parameters").sample(&mut rng)
}
