//! Offers' rules compiled once and reused by every decision until they could bind
//! differently.
//!
//! Compiling an offer's eligibility / applicability / suitability (parsing its `where`,
//! binding columns and dictionary codes) costs far more than testing the compiled plans on
//! the one row a decision asks about, so `NextBestOffer` keeps [`CompiledRules`] in a
//! [`RuleCache`] and only walks plans per call.
//!
//! What a compiled rule depends on, and so when an entry is reused:
//! - the offer: an entry is kept only for the very same `Arc<Offer>` of the catalogue (a
//!   `PutOffer` makes a new one, so a changed rule is recompiled, an unchanged offer is not);
//! - the table's bindings: column positions and dictionary codes, which change only when
//!   [`Dataset::binding_generation`] does (a new attribute or a new dictionary value);
//!   anything else a plan holds from the data (row estimates, range buckets) only orders
//!   or speeds bitmap evaluation, never the answer for a row;
//! - saved-segment membership: NOT part of the key. Upserts change memberships in almost
//!   every commit group, so a plan's `in_segment` / saved-segment nodes (and per-segment
//!   models) are answered from the membership of the version the decision reads
//!   ([`Members`]), never from the members captured when the plan was compiled.
//!
//! Decisions and outcomes (most commit groups under a decision load) change none of these,
//! so the entries survive them.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::catalogue::Catalogue;
use super::facts::{resolve, FactsError};
use super::offer::Offer;
use crate::index::Postings;
use crate::query::plan::{Node, Segments};
use crate::query::Limits;
use crate::store::Dataset;

/// A saved segment's members in the version a decision reads, borrowed from it.
pub type Members<'a> = &'a dyn Fn(&str) -> Option<&'a Postings>;

/// A compiled rule as a decision tests it on one row.
#[derive(Clone, Debug)]
pub enum Check {
    Const(bool),
    /// A saved segment, by its slot in [`CompiledRules::segment_id`] (live rules only):
    /// answered once per decision however many offers read it.
    Segment {
        slot: u32,
        negated: bool,
    },
    And(Vec<Check>),
    Or(Vec<Check>),
    /// Anything else of a plan, tested with [`crate::query::eval::matches_row`] (bound
    /// rules keep their whole plan here, saved segments included).
    Row(Node),
}

/// One offer's compiled rules.
pub struct Entry {
    pub offer: Arc<Offer>,
    /// Eligibility, applicability, suitability (in [`Offer::rules`] order).
    pub rules: [Check; 3],
    /// Segments of the offer's per-segment adaptive models, as resolved at compile time
    /// (for callers without a live membership lookup).
    pub saved: Vec<(String, Arc<Postings>)>,
}

/// Every offer of one catalogue compiled against one binding generation of a table.
pub struct CompiledRules {
    generation: u64,
    /// Built for live membership ([`RuleCache`]): saved segments are [`Check::Segment`]
    /// slots, answered from a [`Members`] lookup of the version read.
    live: bool,
    /// In catalogue (id) order, the order decisions walk the offers in.
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    /// Every entry's model segments, by id (bound rules).
    saved: HashMap<String, Arc<Postings>>,
    /// Saved segments live rules read, by slot, and the slot of each.
    slot_ids: Vec<String>,
    slots: HashMap<String, u32>,
}

impl CompiledRules {
    /// Compiles every offer of `cat` against `ds`, saved segments bound as `segs` has them.
    pub fn build(
        ds: &Dataset,
        cat: &Catalogue,
        segs: Segments<'_>,
        limits: &Limits,
    ) -> Result<CompiledRules, FactsError> {
        Self::build_from(ds, cat, segs, limits, None, false)
    }

    /// [`CompiledRules::build`], reusing the entries of `prev` that are still valid (same
    /// offer, same bindings); `live`: see the field.
    fn build_from(
        ds: &Dataset,
        cat: &Catalogue,
        segs: Segments<'_>,
        limits: &Limits,
        prev: Option<&CompiledRules>,
        live: bool,
    ) -> Result<CompiledRules, FactsError> {
        let generation = ds.binding_generation();
        let prev = prev.filter(|p| p.generation == generation && p.live == live);
        // Slots only grow, so reused entries keep theirs.
        let (mut slot_ids, mut slots) =
            prev.map(|p| (p.slot_ids.clone(), p.slots.clone())).unwrap_or_default();
        let mut entries = Vec::with_capacity(cat.len());
        for o in cat.offers() {
            let reused = prev.and_then(|p| p.by_id.get(&o.id).map(|&i| &p.entries[i]));
            let entry = match reused {
                Some(e) if Arc::ptr_eq(&e.offer, o) => {
                    Entry { offer: o.clone(), rules: e.rules.clone(), saved: e.saved.clone() }
                }
                _ => {
                    let r = resolve(ds, o, segs, limits)?;
                    let mut slot = |id: &str| match slots.get(id) {
                        Some(&s) => s,
                        None => {
                            slot_ids.push(id.to_string());
                            slots.insert(id.to_string(), slot_ids.len() as u32 - 1);
                            slot_ids.len() as u32 - 1
                        }
                    };
                    if live {
                        // Model segments get slots too: `in_saved` is asked per decision.
                        r.saved.iter().for_each(|(id, _)| {
                            slot(id);
                        });
                        let rules = r.rules.map(|p| check(p.root, &mut slot));
                        Entry { offer: o.clone(), rules, saved: vec![] }
                    } else {
                        Entry { offer: o.clone(), rules: r.rules.map(|p| Check::Row(p.root)), saved: r.saved }
                    }
                }
            };
            entries.push(entry);
        }
        let by_id = entries.iter().enumerate().map(|(i, e)| (e.offer.id.clone(), i)).collect();
        let saved = entries.iter().flat_map(|e| e.saved.iter().cloned()).collect();
        Ok(CompiledRules { generation, live, entries, by_id, saved, slot_ids, slots })
    }

    /// Whether these are the rules of exactly `cat`'s offers bound as `ds` binds.
    pub fn fits(&self, ds: &Dataset, cat: &Catalogue) -> bool {
        self.generation == ds.binding_generation()
            && self.entries.len() == cat.len()
            && self.entries.iter().zip(cat.offers()).all(|(e, o)| Arc::ptr_eq(&e.offer, o))
    }

    /// Whether these were compiled against `ds`'s bindings.
    pub fn fits_bindings(&self, ds: &Dataset) -> bool {
        self.generation == ds.binding_generation()
    }

    /// The entry of `offer`; `nth` (its position in the catalogue) is tried first.
    pub fn entry(&self, nth: usize, offer: &Offer) -> Option<&Entry> {
        match self.entries.get(nth) {
            Some(e) if std::ptr::eq(&*e.offer, offer) => Some(e),
            _ => self.by_id.get(&offer.id).map(|&i| &self.entries[i]),
        }
    }

    /// Whether saved segments must be read from a [`Members`] lookup (see the field).
    pub fn live(&self) -> bool {
        self.live
    }

    /// Saved segments live rules read (slots are `0..segments()`).
    pub fn segments(&self) -> usize {
        self.slot_ids.len()
    }

    pub fn segment_id(&self, slot: u32) -> &str {
        &self.slot_ids[slot as usize]
    }

    /// The slot of a saved segment live rules read.
    pub fn slot(&self, segment_id: &str) -> Option<u32> {
        self.slots.get(segment_id).copied()
    }

    /// A model segment's members as resolved at compile time (None when `live`).
    pub fn saved(&self, segment_id: &str) -> Option<&Postings> {
        self.saved.get(segment_id).map(|p| &**p)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A plan's tree as a [`Check`], saved segments turned into slots (the members bound into
/// the plan are dropped: they would pin old bitmaps of every segment in memory).
fn check(node: Node, slot: &mut impl FnMut(&str) -> u32) -> Check {
    match node {
        Node::Segment { id, negated, .. } => Check::Segment { slot: slot(&id), negated },
        Node::And(kids) => Check::And(kids.into_iter().map(|k| check(k, slot)).collect()),
        Node::Or(kids) => Check::Or(kids.into_iter().map(|k| check(k, slot)).collect()),
        Node::Const(b) => Check::Const(b),
        leaf @ Node::Leaf(_) => Check::Row(leaf),
    }
}

/// The last [`CompiledRules`] built, shared by concurrent decisions (one cache per set of
/// [`Limits`]: they are not part of the key).
#[derive(Default)]
pub struct RuleCache {
    last: RwLock<Option<Arc<CompiledRules>>>,
}

impl RuleCache {
    /// Rules of `cat` bound as `ds` binds: the cached ones when they fit, else compiled
    /// (outside the lock, reusing what still fits) and kept for the next caller.
    pub fn get(
        &self,
        ds: &Dataset,
        cat: &Catalogue,
        segs: Segments<'_>,
        limits: &Limits,
    ) -> Result<Arc<CompiledRules>, FactsError> {
        let prev = self.last.read().clone();
        if let Some(p) = prev.as_ref().filter(|p| p.fits(ds, cat)) {
            return Ok(p.clone());
        }
        let built = Arc::new(CompiledRules::build_from(ds, cat, segs, limits, prev.as_deref(), true)?);
        *self.last.write() = Some(built.clone());
        Ok(built)
    }
}
