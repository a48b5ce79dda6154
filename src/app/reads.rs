//! The read use cases. A request's segment ([`SegmentRef`]) is checked against the
//! limits before any state is touched, then resolved against one version of the state
//! ([`Target`]): a `where` text through the plan cache at that version, a predicate tree
//! compiled for this call, a saved segment by id.
//!
//! Count caching: a saved segment's count and the memoised count of a cached `where` text
//! at this very version are answered inline; anything else is counted on the pool (and,
//! for a `where` text with `--no-count-cache` off, memoised for the next caller).

use std::sync::Arc;

use crate::analytics::{self, AttributeInfo, Breakdown, Members};
use crate::engine::Engine;
use crate::plan_cache::Cached;
use crate::query::eval::{self, count, matches_row};
use crate::query::explain::{explain, ExplainNode};
use crate::query::{self, Expr};
use crate::segments::{Definition, SavedSegment};
use crate::store::mutate::CellValue;
use crate::store::MemoryReport;

use super::{guarded, on_pool, App, AppError};

/// A segment as a request names it.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentRef {
    /// SQL `WHERE` text (compiled through the plan cache).
    Where(String),
    /// A predicate tree.
    Tree(Expr),
    /// A saved segment's id.
    Saved(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub count: u64,
    /// Customers held.
    pub total: u64,
    /// Answered from the count memo of this version.
    pub cached: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub is_member: bool,
    /// False for an id not held (then `is_member` is false).
    pub customer_found: bool,
}

/// Answers in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchMembership {
    pub is_member: Vec<bool>,
    pub customer_found: Vec<bool>,
    pub members: u64,
}

#[derive(Clone, Debug)]
pub struct Explained {
    pub root: ExplainNode,
    pub total: u64,
}

#[derive(Clone, Debug)]
pub struct SchemaInfo {
    pub total: u64,
    pub id_column: String,
    pub attributes: Vec<AttributeInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// `counts[i][j] = |segment i & segment j|`; the diagonal holds each count.
    pub counts: Vec<Vec<u64>>,
    pub total: u64,
}

/// A saved segment as callers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentInfo {
    pub id: String,
    pub description: String,
    pub definition: Definition,
    pub count: u64,
}

impl From<&SavedSegment> for SegmentInfo {
    fn from(s: &SavedSegment) -> Self {
        SegmentInfo {
            id: s.id.clone(),
            description: s.description.clone(),
            definition: s.definition.clone(),
            count: s.count(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentsOf {
    pub segment_ids: Vec<String>,
    /// False for an id not held (then `segment_ids` is empty).
    pub customer_found: bool,
}

/// Every attribute of one customer but the id column.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerRecord {
    pub customer_id: u64,
    pub attributes: Vec<(String, CellValue)>,
}

/// What the metrics endpoint reports about the state and the plan cache.
#[derive(Clone, Debug)]
pub struct Stats {
    pub customers: u64,
    pub memory: MemoryReport,
    pub sequence: u64,
    pub saved_segments: usize,
    pub plan_cache_entries: usize,
    pub plan_cache_hits: u64,
    pub plan_cache_misses: u64,
    pub plan_cache_generation: u64,
}

/// A request's segment against one version.
pub(super) enum Target<'e> {
    Plan(Arc<Cached>),
    Saved(&'e SavedSegment),
}

impl Target<'_> {
    fn members(&self) -> Members<'_> {
        match self {
            Target::Plan(c) => Members::Plan(&c.plan),
            Target::Saved(s) => Members::Saved(&s.members),
        }
    }

    pub(super) fn is_member(&self, eng: &Engine, row: u32) -> bool {
        match self {
            Target::Plan(c) => matches_row(eng.data(), &c.plan.root, row),
            Target::Saved(s) => s.members.contains(row),
        }
    }

    /// The compiled plan, for a `where` text or a tree (a saved segment has none).
    pub(super) fn plan(&self) -> Option<Arc<Cached>> {
        match self {
            Target::Plan(c) => Some(c.clone()),
            Target::Saved(_) => None,
        }
    }
}

/// Below this many ids a batch is answered inline: shipping it to the pool costs more.
const INLINE_BATCH: usize = 256;

impl App {
    /// Checks a segment's size limits before any state is touched (an oversized text is
    /// not even hashed).
    pub(super) fn check_segment(&self, s: &SegmentRef) -> Result<(), AppError> {
        match s {
            SegmentRef::Where(text) => self.check_text(text),
            SegmentRef::Tree(e) => Ok(query::check_limits(e, &self.0.config.limits)?),
            SegmentRef::Saved(_) => Ok(()),
        }
    }

    pub(super) fn check_text(&self, text: &str) -> Result<(), AppError> {
        let max = self.0.config.limits.max_text;
        self.limit("segment text bytes", text.len(), max, "max-where-bytes")
    }

    /// The segment against this version: a compiled plan (`where` texts through the cache,
    /// at this version) or a saved segment.
    pub(super) fn target<'e>(&self, eng: &'e Engine, s: &SegmentRef) -> Result<Target<'e>, AppError> {
        let limits = &self.0.config.limits;
        let segs = |id: &str| eng.segments().members_of(id);
        Ok(match s {
            SegmentRef::Where(text) => {
                Target::Plan(self.0.cache.get_or_compile(text, eng.sequence(), |t| {
                    query::compile_sql_in(eng.data(), t, limits, &segs)
                })?)
            }
            SegmentRef::Tree(e) => Target::Plan(Arc::new(Cached::new(
                query::compile_expr_in(eng.data(), e, limits, &segs)?,
                eng.sequence(),
            ))),
            SegmentRef::Saved(id) => Target::Saved(eng.segments().get(id)?),
        })
    }

    /// Customers in a segment.
    pub async fn count(&self, segment: SegmentRef) -> Result<Counted, AppError> {
        self.check_segment(&segment)?;
        let memo = self.0.config.cache_counts;
        if !matches!(segment, SegmentRef::Tree(_)) {
            let fast = guarded(|| {
                let eng = self.read();
                let total = eng.data().customers();
                Ok(match self.target(&eng, &segment)? {
                    Target::Saved(s) => Some(Counted { count: s.count(), total, cached: false }),
                    Target::Plan(e) => {
                        e.count().filter(|_| memo).map(|count| Counted { count, total, cached: true })
                    }
                })
            })?;
            if let Some(c) = fast {
                return Ok(c);
            }
        }
        let app = self.clone();
        on_pool(move || {
            let eng = app.read();
            let total = eng.data().customers();
            let count = match app.target(&eng, &segment)? {
                Target::Saved(s) => s.count(),
                Target::Plan(e) => match e.count().filter(|_| memo) {
                    Some(n) => n,
                    None => {
                        let n = count(eng.data(), &e.plan);
                        if memo {
                            e.set_count(n);
                        }
                        n
                    }
                },
            };
            Ok(Counted { count, total, cached: false })
        })
        .await
    }

    /// Whether one customer is in a segment (single-row work: inline).
    pub fn is_member(&self, customer_id: u64, segment: SegmentRef) -> Result<Membership, AppError> {
        self.check_segment(&segment)?;
        guarded(|| {
            let eng = self.read();
            let target = self.target(&eng, &segment)?;
            Ok(self.membership(&eng, customer_id, |row| target.is_member(&eng, row)))
        })
    }

    /// One customer's membership, given the segment's row test.
    pub(super) fn membership(
        &self,
        eng: &Engine,
        customer_id: u64,
        is_member: impl FnOnce(u32) -> bool,
    ) -> Membership {
        match eng.data().row_of(customer_id) {
            Some(row) => Membership { is_member: is_member(row), customer_found: true },
            None => Membership { is_member: false, customer_found: false },
        }
    }

    /// Many customers against one segment, answers in request order. Small batches are
    /// answered inline, large ones on the pool (split across it).
    pub async fn batch_is_member(
        &self,
        customer_ids: Vec<u64>,
        segment: SegmentRef,
    ) -> Result<BatchMembership, AppError> {
        let max = self.0.config.max_batch_ids;
        self.limit("customer_ids length", customer_ids.len(), max, "max-batch-ids")?;
        self.check_segment(&segment)?;
        let small = customer_ids.len() <= INLINE_BATCH;
        let answer = move |app: &App| -> Result<BatchMembership, AppError> {
            let eng = app.read();
            let target = app.target(&eng, &segment)?;
            let found = eval::membership_batch(eng.data(), &customer_ids, |row| target.is_member(&eng, row));
            let members = found.iter().filter(|&&m| m == Some(true)).count() as u64;
            let (is_member, customer_found) = found.iter().map(|m| (*m == Some(true), m.is_some())).unzip();
            Ok(BatchMembership { is_member, customer_found, members })
        };
        if small {
            return guarded(|| answer(self));
        }
        let app = self.clone();
        on_pool(move || answer(&app)).await
    }

    /// The plan with estimated and actual rows per node.
    pub async fn explain(&self, segment: SegmentRef) -> Result<Explained, AppError> {
        self.check_segment(&segment)?;
        let app = self.clone();
        on_pool(move || {
            let eng = app.read();
            let limits = &app.0.config.limits;
            let segs = |id: &str| eng.segments().members_of(id);
            let plan = match &segment {
                // A saved segment: its definition's plan, or one node for a static list.
                SegmentRef::Saved(id) => {
                    let s = eng.segments().get(id)?;
                    match &s.definition {
                        Definition::Sql(text) => query::compile_sql_in(eng.data(), text, limits, &segs)?,
                        Definition::Tree(e) => query::compile_expr_in(eng.data(), e, limits, &segs)?,
                        Definition::Static => {
                            let root = ExplainNode {
                                op: format!("SAVED STATIC SEGMENT '{id}'"),
                                estimated: s.count(),
                                actual: s.count(),
                                children: vec![],
                            };
                            return Ok(Explained { root, total: eng.data().customers() });
                        }
                    }
                }
                SegmentRef::Where(_) | SegmentRef::Tree(_) => match app.target(&eng, &segment)? {
                    Target::Plan(e) => e.plan.clone(),
                    Target::Saved(_) => unreachable!("a where text or tree resolves to a plan"),
                },
            };
            Ok(Explained { root: explain(eng.data(), &plan), total: eng.data().customers() })
        })
        .await
    }

    /// Every attribute, listing the values of those with at most `max_values` (0: 64;
    /// capped at `--max-breakdown-top-n`).
    pub fn schema(&self, max_values: u32) -> Result<SchemaInfo, AppError> {
        let max_values = match max_values as usize {
            0 => 64,
            n => n.min(self.0.config.max_top_n),
        };
        guarded(|| {
            let eng = self.read();
            let ds = eng.data();
            Ok(SchemaInfo {
                total: ds.customers(),
                id_column: ds.id_column().name.clone(),
                attributes: analytics::describe(ds, max_values),
            })
        })
    }

    /// A segment's counts per value of one attribute, the `top_n` largest (0: 20).
    pub async fn breakdown(
        &self,
        segment: SegmentRef,
        attribute: String,
        top_n: u32,
    ) -> Result<Breakdown, AppError> {
        let top_n = match top_n as usize {
            0 => 20,
            n => n,
        };
        self.limit("top_n", top_n, self.0.config.max_top_n, "max-breakdown-top-n")?;
        self.check_segment(&segment)?;
        let app = self.clone();
        on_pool(move || {
            let eng = app.read();
            let target = app.target(&eng, &segment)?;
            Ok(analytics::breakdown_of(eng.data(), target.members(), &attribute, top_n)?)
        })
        .await
    }

    /// Pairwise intersection counts of 1 to `--max-overlap-segments` segments.
    pub async fn overlap(&self, segments: Vec<SegmentRef>) -> Result<Overlap, AppError> {
        let max = self.0.config.max_overlap_segments;
        self.limit("segments length", segments.len(), max, "max-overlap-segments")?;
        if segments.is_empty() {
            return Err(AppError::Invalid {
                field: "segments",
                msg: format!("give between 1 and {max} segments"),
            });
        }
        for s in &segments {
            self.check_segment(s)?;
        }
        let app = self.clone();
        on_pool(move || {
            let eng = app.read();
            let targets = segments.iter().map(|s| app.target(&eng, s)).collect::<Result<Vec<_>, _>>()?;
            let members: Vec<Members<'_>> = targets.iter().map(Target::members).collect();
            Ok(Overlap { counts: analytics::overlap_of(eng.data(), &members), total: eng.data().customers() })
        })
        .await
    }

    pub fn get_segment(&self, id: &str) -> Result<SegmentInfo, AppError> {
        Ok(self.read().segments().get(id)?.into())
    }

    /// Every saved segment, by id.
    pub fn list_segments(&self) -> Vec<SegmentInfo> {
        self.read().segments().list().map(SegmentInfo::from).collect()
    }

    /// The saved segments one customer is in.
    pub fn segments_of(&self, customer_id: u64) -> SegmentsOf {
        let eng = self.read();
        match eng.segments().segments_of(eng.data(), customer_id) {
            Some(ids) => {
                SegmentsOf { segment_ids: ids.into_iter().map(String::from).collect(), customer_found: true }
            }
            None => SegmentsOf { segment_ids: vec![], customer_found: false },
        }
    }

    /// Every attribute of one customer (the id column left out).
    pub fn get_customer(&self, customer_id: u64) -> Result<CustomerRecord, AppError> {
        guarded(|| {
            let eng = self.read();
            let id_col = &eng.data().id_column().name;
            let mut attributes =
                eng.data().customer(customer_id).ok_or(AppError::UnknownCustomer(customer_id))?;
            attributes.retain(|(name, _)| name != id_col);
            Ok(CustomerRecord { customer_id, attributes })
        })
    }

    /// The state's size and the plan cache's counters.
    pub fn stats(&self) -> Stats {
        let eng = self.read();
        let cache = &self.0.cache;
        let (plan_cache_hits, plan_cache_misses) = cache.stats();
        Stats {
            customers: eng.data().customers(),
            memory: eng.data().memory(),
            sequence: eng.sequence(),
            saved_segments: eng.segments().len(),
            plan_cache_entries: cache.len(),
            plan_cache_hits,
            plan_cache_misses,
            plan_cache_generation: cache.generation(),
        }
    }
}
