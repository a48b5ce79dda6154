//! The exact funnel of one offer over the whole customer base, for a context: how many
//! customers pass each stage of [`super::arbitrate`], cumulatively, in the same order.
//!
//! The three segment rules are one fused bitmap evaluation ([`crate::query::eval`]); the
//! control group and hold-out are cached bitmaps of the stable draws ([`super::draws`]); caps,
//! contact limits and suppression can only remove customers that have a contact history,
//! so only those are checked. Nothing calls `decide` per customer.

use rayon::prelude::*;

use super::arbitrate::Context;
use super::catalogue::ContactPolicy;
use super::draws::DrawCache;
use super::facts::{compile, FactsError};
use super::history::ContactState;
use super::offer::Offer;
use crate::index::container::{self as ct, zeroed};
use crate::query::plan::{Node, Plan, Segments};
use crate::query::{eval, Limits};
use crate::store::Dataset;

/// Customers left after each stage (each count includes the stages above it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Funnel {
    pub customers: u64,
    pub in_window: u64,
    pub on_channel: u64,
    pub eligible: u64,
    pub applicable: u64,
    pub suitable: u64,
    pub not_control: u64,
    pub not_held_out: u64,
    pub within_budget: u64,
    pub not_capped: u64,
    pub within_contact_policy: u64,
    pub not_suppressed: u64,
}

/// Counts the funnel of `offer` in `ctx` against one version of the table and history.
#[allow(clippy::too_many_arguments)]
pub fn reach_estimate(
    ds: &Dataset,
    segs: Segments<'_>,
    limits: &Limits,
    offer: &Offer,
    policy: &ContactPolicy,
    ctx: &Context,
    state: &ContactState,
    draws: &DrawCache,
) -> Result<Funnel, FactsError> {
    let mut f = Funnel { customers: ds.customers(), ..Funnel::default() };
    let mut plans = Vec::with_capacity(3);
    for (rule, seg) in offer.rules() {
        let err =
            |source| FactsError::Segment { offer: offer.id.clone(), field: rule.field().into(), source };
        plans.push(compile(ds, seg, segs, limits).map_err(err)?.root);
    }
    if !offer.in_window(ctx.now_ms) {
        return Ok(f);
    }
    f.in_window = f.customers;
    if !offer.channels.contains(&ctx.channel) {
        return Ok(f);
    }
    f.on_channel = f.customers;
    let prefix = |n: usize| Plan { root: Node::And(plans[..n].to_vec()) };
    f.eligible = eval::count(ds, &prefix(1));
    f.applicable = eval::count(ds, &prefix(2));
    let suitable = eval::materialize(ds, &prefix(3));
    f.suitable = suitable.len;
    // The control group and the hold-out as cached bitmaps of drawn rows (see
    // [`super::draws`]): two container AND-NOTs instead of a hash per suitable customer.
    let control = (policy.control_pct > 0.0).then(|| draws.control(ds, policy.control_pct));
    let held = (offer.holdout_pct > 0.0).then(|| draws.holdout(ds, &offer.id, offer.holdout_pct));
    let (not_control, not_held_out) = suitable
        .chunks
        .par_iter()
        .enumerate()
        .map_init(zeroed, |w, (c, cont)| {
            cont.write_to(w);
            if let Some(ctl) = &control {
                ctl.chunk(c).andnot_into(w);
            }
            let a = ct::popcount(w) as u64;
            if let Some(h) = &held {
                h.chunk(c).andnot_into(w);
            }
            (a, ct::popcount(w) as u64)
        })
        .reduce(|| (0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    f.not_control = not_control;
    f.not_held_out = not_held_out;
    let passes = |row: u32| {
        !control.as_ref().is_some_and(|p| p.contains(row)) && !held.as_ref().is_some_and(|p| p.contains(row))
    };
    if offer.budget.is_some_and(|b| state.budget_used(&offer.id, ctx.now_ms) >= b) {
        return Ok(f);
    }
    f.within_budget = f.not_held_out;
    // Only customers with a history can be capped, contact-limited or suppressed.
    let (mut capped, mut limited, mut suppressed) = (0, 0, 0);
    let now = ctx.now_ms;
    for (id, _) in state.customers.iter() {
        let Some(row) = ds.row_of(id) else { continue };
        if !suitable.contains(row) || !passes(row) {
            continue;
        }
        if state.offer_limit(offer, id, now).is_some() {
            capped += 1;
        } else if state.channel_limit(policy, id, ctx.channel, now).is_some() {
            limited += 1;
        } else if state.suppression(offer, id, now).is_some() {
            suppressed += 1;
        }
    }
    f.not_capped = f.within_budget - capped;
    f.within_contact_policy = f.not_capped - limited;
    f.not_suppressed = f.within_contact_policy - suppressed;
    Ok(f)
}
