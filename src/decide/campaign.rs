//! Campaign blasts: the decision for every member of a segment, in row order.
//!
//! [`Blaster`] is the fast path. Everything that does not depend on the customer is
//! settled once per call: which offers are in their window, on the channel and within
//! budget, their context weight, their value / propensity sources and adaptive counts.
//! Per 65,536-row chunk, each offer's three rules are one fused bitmap evaluation masked by
//! the chunk's members, minus the control group and the offer's hold-out (cached bitmaps,
//! [`super::draws`]); the (member, offer) pairs left are bucketed by member, and only then
//! is each member scored and ranked, into buffers reused across chunks. Caps, contact
//! limits and suppression are asked only for members with a contact history, with the same
//! questions [`decide`] asks. So a member costs its qualifying offers' scoring and a sort,
//! never a pass over the catalogue, and no allocation.
//!
//! [`decide_for_segment`] is the slow path: [`decide`] for each member, with every dropped
//! offer explained (and the oracle of [`Blaster`] in the tests).
//!
//! Every decision reads the same version of the state; a logged blast is then applied in
//! order, so budgets and caps are settled by
//! [`super::history::ContactState::apply_decision`] exactly as for single decisions (a
//! budget of 1,000 keeps the first 1,000 presentations).

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use super::arbitrate::MAX_RESULTS;
use super::arbitrate::{
    decide, thompson, Context, DecideError, Decision, DecisionRecord, ModelKey, Ranked, Request,
};
use super::catalogue::Catalogue;
use super::draws::DrawCache;
use super::facts::{number_at, numeric_column, resolve, CustomerFacts, FactsError};
use super::history::{BetaCounts, ContactState};
use super::offer::{Offer, Propensity, SegmentRef, Value, MAX_TEXT};
use crate::index::container::{self as ct, zeroed, Words};
use crate::index::Postings;
use crate::query::eval::{eval_chunk, Scratch};
use crate::query::plan::{Node, Segments};
use crate::query::Limits;
use crate::store::Dataset;

/// What every decision of a blast shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Blast {
    /// The i-th member's decision has id `first_decision_id + i`.
    pub first_decision_id: u64,
    pub context: Context,
    pub max_results: usize,
    pub counts_as_impression: bool,
}

/// Decides for each member of `members` (rows of `ds`), in row order, each with its full
/// explanation ([`decide`] per member).
pub fn decide_for_segment<'a>(
    cat: &'a Catalogue,
    state: &'a ContactState,
    facts: &'a dyn CustomerFacts,
    ds: &'a Dataset,
    members: &'a Postings,
    blast: Blast,
) -> impl Iterator<Item = Result<Decision, DecideError>> + 'a {
    let rows = members.chunks.iter().enumerate().flat_map(|(c, cont)| {
        let mut offs = Vec::with_capacity(cont.len() as usize);
        cont.for_each(|o| offs.push(((c as u32) << 16) | o as u32));
        offs
    });
    rows.filter(move |&row| ds.live.contains(row)).enumerate().map(move |(i, row)| {
        let req = Request {
            decision_id: blast.first_decision_id + i as u64,
            customer_id: ds.id_of(row),
            context: blast.context.clone(),
            max_results: blast.max_results,
            counts_as_impression: blast.counts_as_impression,
        };
        decide(cat, state, facts, &req)
    })
}

/// Which adaptive model a score was drawn from: the offer-wide one or the offer's i-th
/// per-segment model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRef {
    Offer,
    Segment(u16),
}

/// One scored offer of a member: `offer` indexes [`Blaster::offer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub offer: u32,
    pub priority: f64,
    pub propensity: f64,
    pub weight: f64,
    pub value: f64,
    pub lever: f64,
    pub model: Option<ModelRef>,
}

/// One member's decision; `ranked` and `fallback` index [`BlastBatch::scored`].
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub row: u32,
    pub customer_id: u64,
    pub decision_id: u64,
    pub control_group: bool,
    /// Non-fallback offers in rank order (at most `max_results`).
    pub ranked: Range<usize>,
    /// The best qualifying fallback offer.
    pub fallback: Option<usize>,
}

impl Member {
    /// Whether the fallback is what the member is shown.
    pub fn fallback_used(&self) -> bool {
        self.ranked.is_empty() && self.fallback.is_some()
    }

    /// What the member is shown, in rank order.
    pub fn presented(&self) -> Range<usize> {
        match self.fallback {
            Some(f) if self.ranked.is_empty() => f..f + 1,
            _ => self.ranked.clone(),
        }
    }
}

/// Decisions of consecutive members; cleared and refilled without giving memory back.
#[derive(Debug, Default)]
pub struct BlastBatch {
    pub members: Vec<Member>,
    pub scored: Vec<Scored>,
}

impl BlastBatch {
    pub fn clear(&mut self) {
        self.members.clear();
        self.scored.clear();
    }
}

enum ValueSrc {
    Constant(f64),
    Column { col: usize, factor: f64 },
}

enum PropensitySrc {
    Constant(f64),
    Column(usize),
    Adaptive { alpha: f64, beta: f64, segments: Vec<(Arc<Postings>, BetaCounts)>, offer_wide: BetaCounts },
}

/// An offer that can be presented in this blast at all.
struct Live {
    offer: Arc<Offer>,
    rules: Vec<Node>,
    held: Option<Arc<Postings>>,
    weight: f64,
    value: ValueSrc,
    propensity: PropensitySrc,
}

/// A blast compiled against one version: see the module doc.
pub struct Blaster<'a> {
    ds: &'a Dataset,
    state: &'a ContactState,
    cat: &'a Catalogue,
    members: &'a Postings,
    blast: Blast,
    offers: Vec<Live>,
    control: Option<Arc<Postings>>,
    /// Live members before each chunk (the decision id offset of its first member).
    before: Vec<u64>,
    total: u64,
}

/// Per-worker buffers.
pub struct BlastScratch {
    members: Box<Words>,
    open: Box<Words>,
    w: Box<Words>,
    tmp: Box<Words>,
    eval: Scratch,
    /// (offset, offer) pairs, then the offers bucketed by offset.
    pairs: Vec<(u16, u32)>,
    bucketed: Vec<u32>,
    starts: Vec<u32>,
    next: Vec<u32>,
    cand: Vec<Scored>,
    fallbacks: Vec<Scored>,
}

impl Default for BlastScratch {
    fn default() -> Self {
        BlastScratch {
            members: zeroed(),
            open: zeroed(),
            w: zeroed(),
            tmp: zeroed(),
            eval: Scratch::new(),
            pairs: vec![],
            bucketed: vec![],
            starts: vec![0; ct::WORDS * 64 + 1],
            next: vec![0; ct::WORDS * 64 + 1],
            cand: vec![],
            fallbacks: vec![],
        }
    }
}

/// The k-th best priority of `v` (reordering it), or -inf when it holds fewer than k.
fn kth(v: &mut [Scored], k: usize) -> f64 {
    if k == 0 || v.len() < k {
        return f64::NEG_INFINITY;
    }
    v.select_nth_unstable_by(k - 1, by_priority);
    v[k - 1].priority
}

fn by_priority(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    // Offers are indexed in catalogue (id) order: the index breaks ties as the id does.
    b.priority.total_cmp(&a.priority).then_with(|| a.offer.cmp(&b.offer))
}

impl<'a> Blaster<'a> {
    /// Compiles the blast: the offers that can be presented, their rules against `ds`
    /// (resolving saved segments through `segs`), the draws they need.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cat: &'a Catalogue,
        state: &'a ContactState,
        ds: &'a Dataset,
        segs: Segments<'_>,
        limits: &Limits,
        draws: &DrawCache,
        members: &'a Postings,
        blast: Blast,
    ) -> Result<Blaster<'a>, DecideError> {
        if !(1..=MAX_RESULTS).contains(&blast.max_results) {
            return Err(DecideError::MaxResults(blast.max_results));
        }
        for (field, v) in [("placement", &blast.context.placement), ("intent", &blast.context.intent)] {
            if v.len() > MAX_TEXT {
                return Err(DecideError::ContextTooLong { field });
            }
        }
        let ctx = &blast.context;
        let mut offers = vec![];
        for o in cat.offers() {
            // Every offer is resolved (as `DatasetFacts` does), so a blast fails on a broken
            // offer exactly when a single decision would.
            let r = resolve(ds, o, segs, limits)?;
            let spent = o.budget.is_some_and(|b| state.budget_used(&o.id, ctx.now_ms) >= b);
            if !o.in_window(ctx.now_ms) || !o.channels.contains(&ctx.channel) || spent {
                continue;
            }
            let rules = o
                .rules()
                .iter()
                .zip(r.rules)
                .filter(|((_, seg), _)| !matches!(seg, SegmentRef::All))
                .map(|(_, plan)| plan.root)
                .collect();
            let held = (o.holdout_pct > 0.0).then(|| draws.holdout(ds, &o.id, o.holdout_pct));
            let col = |name: &str| {
                numeric_column(ds, name)
                    .map_err(|found| FactsError::NotNumericAttribute { attribute: name.into(), found })
            };
            let value = match &o.value {
                Value::Constant(v) => ValueSrc::Constant(*v),
                Value::Attribute { name, factor } => ValueSrc::Column { col: col(name)?, factor: *factor },
            };
            let propensity = match &o.propensity {
                Propensity::Constant(p) => PropensitySrc::Constant(*p),
                Propensity::Attribute(name) => PropensitySrc::Column(col(name)?),
                Propensity::Adaptive { alpha, beta, per_segment } => PropensitySrc::Adaptive {
                    alpha: *alpha,
                    beta: *beta,
                    segments: per_segment
                        .iter()
                        .zip(r.saved)
                        .map(|(s, (_, members))| (members, state.model(&o.id, &ModelKey::Segment(s.clone()))))
                        .collect(),
                    offer_wide: state.model(&o.id, &ModelKey::Offer),
                },
            };
            let weight = o.weights.weight(ctx.channel, &ctx.placement, &ctx.intent);
            offers.push(Live { offer: o.clone(), rules, held, weight, value, propensity });
        }
        let control_pct = cat.policy().control_pct;
        let control = (control_pct > 0.0).then(|| draws.control(ds, control_pct));
        let mut before = Vec::with_capacity(ds.n_chunks() + 1);
        let mut total = 0u64;
        let mut w = zeroed();
        for c in 0..ds.n_chunks() {
            before.push(total);
            ds.live.chunk(c).write_to(&mut w);
            total += members.chunk(c).and_count(&w) as u64;
        }
        before.push(total);
        Ok(Blaster { ds, state, cat, members, blast, offers, control, before, total })
    }

    /// Live members: decisions the blast takes.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Chunks of the table (the unit of [`Blaster::decide_chunk`]).
    pub fn chunks(&self) -> usize {
        self.ds.n_chunks()
    }

    /// Numbers the decisions from `first_decision_id` (once the blast's size is known).
    pub fn start_at(&mut self, first_decision_id: u64) {
        self.blast.first_decision_id = first_decision_id;
    }

    pub fn blast(&self) -> &Blast {
        &self.blast
    }

    /// The offer a [`Scored::offer`] names.
    pub fn offer(&self, i: u32) -> &Arc<Offer> {
        &self.offers[i as usize].offer
    }

    /// Decides for the members of chunks `range`, each chunk on a rayon worker; one batch
    /// per chunk, in order.
    pub fn decide_par(&self, range: Range<usize>) -> Vec<BlastBatch> {
        range
            .into_par_iter()
            .map_init(BlastScratch::default, |s, c| {
                let mut b = BlastBatch::default();
                self.decide_chunk(c, &mut b, s);
                b
            })
            .collect()
    }

    /// Appends the decisions of chunk `c`'s members to `out`, in row order.
    pub fn decide_chunk(&self, c: usize, out: &mut BlastBatch, s: &mut BlastScratch) {
        let ds = self.ds;
        self.members.chunk(c).write_to(&mut s.members);
        ds.live.chunk(c).and_into(&mut s.members);
        if ct::is_zero(&s.members) {
            return;
        }
        s.open.copy_from_slice(&s.members[..]);
        if let Some(ctl) = &self.control {
            ctl.chunk(c).andnot_into(&mut s.open);
        }
        // (offset, offer) for every member passing an offer's rules, draws and budget.
        s.pairs.clear();
        if !ct::is_zero(&s.open) {
            for (k, o) in self.offers.iter().enumerate() {
                s.w.copy_from_slice(&s.open[..]);
                if let Some(h) = &o.held {
                    h.chunk(c).andnot_into(&mut s.w);
                }
                for node in &o.rules {
                    if ct::is_zero(&s.w) {
                        break;
                    }
                    eval_chunk(ds, node, c, &mut s.tmp, &mut s.eval, 1, Some(&*s.w));
                    ct::and_words(&mut s.w, &s.tmp);
                }
                let pairs = &mut s.pairs;
                ct::for_each_set(&s.w, |off| pairs.push((off, k as u32)));
            }
        }
        // Bucket by offset (counting sort, stable: offers stay in catalogue order).
        s.starts.fill(0);
        for &(off, _) in &s.pairs {
            s.starts[off as usize + 1] += 1;
        }
        for i in 1..s.starts.len() {
            s.starts[i] += s.starts[i - 1];
        }
        s.bucketed.clear();
        s.bucketed.resize(s.pairs.len(), 0);
        s.next.copy_from_slice(&s.starts);
        for &(off, k) in &s.pairs {
            s.bucketed[s.next[off as usize] as usize] = k;
            s.next[off as usize] += 1;
        }
        let mut index = self.before[c];
        let base = (c as u32) << 16;
        let control = self.control.as_ref().map(|p| p.chunk(c));
        let words: &Words = &s.members;
        let (starts, bucketed, cand, fallbacks) = (&s.starts, &s.bucketed, &mut s.cand, &mut s.fallbacks);
        ct::for_each_set(words, |off| {
            let row = base | off as u32;
            let decision_id = self.blast.first_decision_id + index;
            index += 1;
            let offers = &bucketed[starts[off as usize] as usize..starts[off as usize + 1] as usize];
            let control_group = control.is_some_and(|ctl| ctl.contains(off));
            let customer_id = ds.id_of(row);
            self.member(row, customer_id, decision_id, control_group, offers, cand, fallbacks, out);
        });
    }

    /// Scores and ranks one member's qualifying offers into `out`.
    #[allow(clippy::too_many_arguments)]
    fn member(
        &self,
        row: u32,
        customer_id: u64,
        decision_id: u64,
        control_group: bool,
        offers: &[u32],
        cand: &mut Vec<Scored>,
        fallbacks: &mut Vec<Scored>,
        out: &mut BlastBatch,
    ) {
        cand.clear();
        fallbacks.clear();
        let ctx = &self.blast.context;
        let now = ctx.now_ms;
        let history = !self.state.contacts(customer_id).is_empty();
        // The contact policy rules out every offer of the channel alike.
        let limited =
            history && self.state.channel_limit(self.cat.policy(), customer_id, ctx.channel, now).is_some();
        if !limited {
            // Offers with a fixed propensity first; then an adaptive offer is drawn only if
            // its best possible priority (propensity 1) reaches the k-th priority already
            // there: one that cannot is never presented nor in the record, so skipping its
            // draw changes nothing (a Thompson draw is most of a member's cost).
            let (mut cut, mut fallback_cut) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
            for adaptive in [false, true] {
                for &k in offers {
                    let o = &self.offers[k as usize];
                    if matches!(o.propensity, PropensitySrc::Adaptive { .. }) != adaptive {
                        continue;
                    }
                    if history && self.limited(&o.offer, customer_id, now) {
                        continue;
                    }
                    let floor = if o.offer.fallback { fallback_cut } else { cut };
                    if let Some(s) = self.score(k, o, row, decision_id, floor) {
                        if o.offer.fallback {
                            fallbacks.push(s);
                        } else {
                            cand.push(s);
                        }
                    }
                }
                cut = kth(cand, self.blast.max_results);
                fallback_cut = kth(fallbacks, 1);
            }
        }
        cand.sort_unstable_by(by_priority);
        cand.truncate(self.blast.max_results);
        let start = out.scored.len();
        out.scored.extend_from_slice(cand);
        let ranked = start..out.scored.len();
        let fallback = fallbacks.iter().min_by(|a, b| by_priority(a, b)).map(|f| {
            out.scored.push(*f);
            out.scored.len() - 1
        });
        out.members.push(Member { row, customer_id, decision_id, control_group, ranked, fallback });
    }

    /// The cap and suppression, as [`decide`] asks them (the budget was settled per call).
    fn limited(&self, o: &Offer, customer_id: u64, now: i64) -> bool {
        let capped = o
            .cap
            .is_some_and(|cap| self.state.impressions(customer_id, &o.id, now, cap.window_ms) >= cap.max);
        capped || self.state.suppression(o, customer_id, now).is_some()
    }

    /// The four factors and the priority, or None when there is no score (as [`decide`])
    /// or, for an adaptive offer, when even propensity 1 would leave it below `floor`.
    fn score(&self, k: u32, o: &Live, row: u32, decision_id: u64, floor: f64) -> Option<Scored> {
        let value = match o.value {
            ValueSrc::Constant(v) => v,
            ValueSrc::Column { col, factor } => {
                let v = number_at(self.ds, col, row)? * factor;
                if !v.is_finite() || v < 0.0 {
                    return None;
                }
                v
            }
        };
        let (propensity, model) = match &o.propensity {
            PropensitySrc::Constant(p) => (*p, None),
            PropensitySrc::Column(col) => match number_at(self.ds, *col, row) {
                Some(p) if (0.0..=1.0).contains(&p) => (p, None),
                _ => return None,
            },
            PropensitySrc::Adaptive { alpha, beta, segments, offer_wide } => {
                // A draw is at most 1, and products of non-negative numbers are monotone.
                if 1.0 * o.weight * value * o.offer.lever < floor {
                    return None;
                }
                let (model, n) = segments
                    .iter()
                    .enumerate()
                    .find(|(_, (members, _))| members.contains(row))
                    .map_or((ModelRef::Offer, *offer_wide), |(i, (_, n))| (ModelRef::Segment(i as u16), *n));
                let a = alpha + n.successes as f64;
                let b = beta + n.trials.saturating_sub(n.successes) as f64;
                (thompson(a, b, decision_id, &o.offer.id), Some(model))
            }
        };
        let lever = o.offer.lever;
        let priority = propensity * o.weight * value * lever;
        if !priority.is_finite() {
            return None;
        }
        Some(Scored { offer: k, priority, propensity, weight: o.weight, value, lever, model })
    }

    /// A scored offer in the core's ranked form (allocates its id).
    pub fn ranked(&self, s: &Scored) -> Ranked {
        let o = &self.offers[s.offer as usize].offer;
        let model = s.model.map(|m| match (m, &o.propensity) {
            (ModelRef::Segment(i), Propensity::Adaptive { per_segment, .. }) => {
                ModelKey::Segment(per_segment[i as usize].clone())
            }
            (ModelRef::Segment(_), _) | (ModelRef::Offer, _) => ModelKey::Offer,
        });
        Ranked {
            offer_id: o.id.clone(),
            priority: s.priority,
            propensity: s.propensity,
            weight: s.weight,
            value: s.value,
            lever: s.lever,
            model,
        }
    }

    /// The member's decision as it is logged: the same record [`decide`] makes.
    pub fn record(&self, b: &BlastBatch, m: &Member) -> DecisionRecord {
        DecisionRecord {
            decision_id: m.decision_id,
            customer_id: m.customer_id,
            context: self.blast.context.clone(),
            counts_as_impression: self.blast.counts_as_impression,
            control_group: m.control_group,
            offers: b.scored[m.ranked.clone()].iter().map(|s| self.ranked(s)).collect(),
            fallback: m.fallback.map(|f| self.ranked(&b.scored[f])),
        }
    }
}
