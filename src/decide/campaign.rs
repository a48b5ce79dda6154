//! Campaign blasts: the decision for every member of a segment, in row order.
//!
//! Every decision reads the same version of the state; the caller logs and applies them in
//! order, so budgets and caps are settled by [`super::history::ContactState::apply_decision`]
//! exactly as for single decisions (a budget of 1,000 keeps the first 1,000 presentations).

use super::arbitrate::{decide, Context, DecideError, Decision, Request};
use super::catalogue::Catalogue;
use super::facts::CustomerFacts;
use super::history::ContactState;
use crate::index::Postings;
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

/// Decides for each member of `members` (rows of `ds`), in row order.
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
