//! Saved segments: named definitions kept materialised and current on every write, so
//! counting one is O(1) and membership one container probe.
//!
//! A dynamic segment (a `where` text or predicate tree) is re-evaluated only for the rows a
//! batch changed in a column it reads (every changed row when it reads another segment),
//! from those rows' values; a static segment is a list of customers edited
//! with add / remove. Every change of membership becomes an ENTERED / LEFT event.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::index::Postings;
use crate::query::{self, eval, rows, Expr, Limits, Plan, QueryError};
use crate::store::mutate::Touched;
use crate::store::Dataset;

/// How a saved segment is defined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Definition {
    /// SQL `WHERE` text.
    Sql(String),
    /// A predicate tree.
    Tree(Expr),
    /// An explicit list of customers.
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Entered,
    Left,
}

/// A customer entering or leaving a saved segment, at a commit sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEvent {
    /// Shared by every event of the segment (a busy write can make millions of events).
    pub segment_id: Arc<str>,
    pub customer_id: u64,
    pub change: Change,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    #[error("unknown segment id '{0}'")]
    NotFound(String),
    #[error("segment '{0}' already exists")]
    Exists(String),
    #[error("bad segment id '{0}': 1-128 characters of letters, digits, '_', '-', '.'")]
    BadId(String),
    #[error("segment '{id}': the description is {len} bytes, the limit is {limit}")]
    DescriptionTooLong { id: String, len: usize, limit: usize },
    #[error("segment '{0}' is dynamic: its members follow its definition")]
    NotStatic(String),
    #[error("segment '{0}' is used by segment '{1}' (in_segment); delete that one first")]
    InUse(String, String),
    #[error("too many saved segments: the limit is {0}")]
    TooMany(usize),
    #[error(transparent)]
    Query(#[from] QueryError),
}

#[derive(Clone)]
pub struct SavedSegment {
    pub id: String,
    pub description: String,
    pub definition: Definition,
    /// Shared with plans that read it through `in_segment` (copied on the next write).
    pub members: Arc<Postings>,
    plan: Option<Plan>,
    /// Saved segments this one reads with `in_segment`.
    refs: Vec<String>,
    /// [`Dataset::binding_generation`] the plan was bound at.
    bound_at: u64,
}

impl SavedSegment {
    pub fn count(&self) -> u64 {
        self.members.len
    }
}

/// Every saved segment. Cloning shares each segment (`Arc`); a write copies the segments
/// whose members or plan it changes.
#[derive(Clone, Default)]
pub struct Segments {
    map: BTreeMap<String, Arc<SavedSegment>>,
    /// Ids in creation order. A segment can only reference segments that already exist, so
    /// this is a dependency order (and reference cycles cannot be formed).
    order: Vec<String>,
    /// Most saved segments allowed (each costs up to rows/8 bytes and work per write).
    pub max_segments: usize,
}

fn compile(
    ds: &Dataset,
    def: &Definition,
    map: &BTreeMap<String, Arc<SavedSegment>>,
) -> Result<Option<Plan>, QueryError> {
    let limits = Limits::default();
    let segs = |id: &str| map.get(id).map(|s| s.members.clone());
    Ok(match def {
        Definition::Sql(text) => Some(query::compile_sql_in(ds, text, &limits, &segs)?),
        Definition::Tree(e) => Some(query::compile_expr_in(ds, e, &limits, &segs)?),
        Definition::Static => None,
    })
}

fn refs_of(def: &Definition) -> Vec<String> {
    match def {
        Definition::Sql(text) => {
            query::sql::parse(text, &Limits::default()).map(|e| e.segment_refs()).unwrap_or_default()
        }
        Definition::Tree(e) => e.segment_refs(),
        Definition::Static => vec![],
    }
}

pub fn check_id(id: &str) -> Result<(), SegmentError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SegmentError::BadId(id.into()))
    }
}

impl Segments {
    pub fn new(max_segments: usize) -> Self {
        Segments { map: BTreeMap::new(), order: vec![], max_segments }
    }

    /// Whether `create` would succeed (no state change).
    pub fn check_create(
        &self,
        ds: &Dataset,
        id: &str,
        description: &str,
        def: &Definition,
    ) -> Result<(), SegmentError> {
        check_id(id)?;
        let limit = crate::store::mutate::MAX_STR_BYTES;
        if description.len() > limit {
            return Err(SegmentError::DescriptionTooLong { id: id.into(), len: description.len(), limit });
        }
        if self.map.contains_key(id) {
            return Err(SegmentError::Exists(id.into()));
        }
        if self.map.len() >= self.max_segments {
            return Err(SegmentError::TooMany(self.max_segments));
        }
        compile(ds, def, &self.map)?;
        Ok(())
    }

    /// Members of a saved segment, for binding `in_segment` in ad-hoc segments.
    pub fn members_of(&self, id: &str) -> Option<Arc<Postings>> {
        self.map.get(id).map(|s| s.members.clone())
    }

    /// Saves and materialises a segment; returns its count.
    pub fn create(
        &mut self,
        ds: &Dataset,
        id: &str,
        description: &str,
        def: Definition,
    ) -> Result<u64, SegmentError> {
        self.check_create(ds, id, description, &def)?;
        let plan = compile(ds, &def, &self.map)?;
        let members = Arc::new(match &plan {
            Some(p) => eval::materialize(ds, p),
            None => Postings::default(),
        });
        let refs = refs_of(&def);
        self.order.push(id.into());
        let n = members.len;
        self.map.insert(
            id.into(),
            Arc::new(SavedSegment {
                id: id.into(),
                description: description.into(),
                definition: def,
                members,
                plan,
                refs,
                bound_at: ds.binding_generation(),
            }),
        );
        Ok(n)
    }

    /// Whether `delete` would succeed.
    pub fn check_delete(&self, id: &str) -> Result<(), SegmentError> {
        self.get(id)?;
        match self.map.values().find(|s| s.refs.iter().any(|r| r == id)) {
            Some(user) => Err(SegmentError::InUse(id.into(), user.id.clone())),
            None => Ok(()),
        }
    }

    pub fn delete(&mut self, id: &str) -> Result<(), SegmentError> {
        self.check_delete(id)?;
        self.order.retain(|x| x != id);
        self.map.remove(id).map(|_| ()).ok_or_else(|| SegmentError::NotFound(id.into()))
    }

    pub fn get(&self, id: &str) -> Result<&SavedSegment, SegmentError> {
        self.map.get(id).map(|s| &**s).ok_or_else(|| SegmentError::NotFound(id.into()))
    }

    /// Every saved segment, by id.
    pub fn list(&self) -> impl Iterator<Item = &SavedSegment> {
        self.map.values().map(|s| &**s)
    }

    /// Every saved segment in creation order: a snapshot restores dependencies first.
    pub fn in_creation_order(&self) -> impl Iterator<Item = &SavedSegment> {
        self.order.iter().map(|id| &*self.map[id])
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds (or with `add == false` removes) customers of a static segment. Unknown ids are
    /// skipped; returns how many memberships changed, with their events (rows ascending).
    pub fn edit_members(
        &mut self,
        ds: &Dataset,
        id: &str,
        customer_ids: &[u64],
        add: bool,
        sequence: u64,
    ) -> Result<(u64, Vec<SegmentEvent>), SegmentError> {
        let seg = self.map.get_mut(id).ok_or_else(|| SegmentError::NotFound(id.into()))?;
        let seg = Arc::make_mut(seg);
        if seg.definition != Definition::Static {
            return Err(SegmentError::NotStatic(id.into()));
        }
        let mut events = vec![];
        let name: Arc<str> = id.into();
        for &cid in customer_ids {
            let Some(row) = ds.row_of(cid) else { continue };
            let members = Arc::make_mut(&mut seg.members);
            let changed = if add { members.insert(row) } else { members.remove(row) };
            if changed {
                let change = if add { Change::Entered } else { Change::Left };
                events.push((
                    row,
                    SegmentEvent { segment_id: name.clone(), customer_id: cid, change, sequence },
                ));
            }
        }
        // Rows ascending, as every other mutation's events: the order must not depend on
        // how the request listed its ids.
        events.sort_unstable_by_key(|&(row, _)| row);
        Ok((events.len() as u64, events.into_iter().map(|(_, e)| e).collect()))
    }

    /// Brings every segment up to date after a batch: `changed` rows (ascending) are
    /// re-evaluated against dynamic segments, `deleted` (id, row) pairs leave every segment.
    ///
    /// Changed rows are grouped by chunk and each chunk is evaluated in parallel for every
    /// segment, in creation order so that an `in_segment` leaf sees the verdict just
    /// computed for the segment it names. Segments are copied (from a published state) only
    /// when their members or plan change.
    ///
    /// `seqs` is empty (every event gets `sequence`) or gives each changed row the commit
    /// sequence of the batch that wrote it, when several batches were applied at once (each
    /// row written by one of them: see `Engine::apply_group`). Events come out ordered by
    /// sequence, then segment (creation order), then row.
    ///
    /// `touched` (None: every changed row may have changed anywhere) says which changed
    /// rows changed in which column: a segment whose plan reads only columns then re-evaluates
    /// only its rows that changed in one of them, and the write's new rows.
    pub fn on_write(
        &mut self,
        ds: &Dataset,
        changed: &[u32],
        touched: Option<&Touched>,
        seqs: &[u64],
        deleted: &[(u64, u32)],
        sequence: u64,
    ) -> Vec<SegmentEvent> {
        self.on_write_keyed(ds, changed, touched, seqs, deleted, sequence)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// [`Segments::on_write`], each event with its order key (sequence, segment index in
    /// creation order, row): events of several calls over one set of segments merge by it.
    pub fn on_write_keyed(
        &mut self,
        ds: &Dataset,
        changed: &[u32],
        touched: Option<&Touched>,
        seqs: &[u64],
        deleted: &[(u64, u32)],
        sequence: u64,
    ) -> Vec<((u64, u32, u32), SegmentEvent)> {
        debug_assert!(seqs.is_empty() || seqs.len() == changed.len());
        if self.order.is_empty() {
            return vec![];
        }
        let generation = ds.binding_generation();
        // A value new to a dictionary may be one a plan's leaf named before it existed, and
        // in_segment binds other segments' members: re-bind those plans.
        for id in &self.order {
            let seg = &self.map[id];
            if seg.plan.is_some() && (seg.bound_at != generation || !seg.refs.is_empty()) {
                let plan = compile(ds, &seg.definition, &self.map);
                let seg = Arc::make_mut(self.map.get_mut(id).expect("listed"));
                if let Ok(Some(p)) = plan {
                    seg.plan = Some(p);
                }
                seg.bound_at = generation;
            }
        }
        // Who each event is about: changed rows (ascending), then deleted ones.
        let subjects: Vec<(u32, u64, u64)> = changed
            .par_iter()
            .enumerate()
            .map(|(i, &row)| (row, ds.id_of(row), seqs.get(i).copied().unwrap_or(sequence)))
            .chain(deleted.par_iter().map(|&(id, row)| (row, id, sequence)))
            .collect();
        let segs: Vec<&SavedSegment> = self.order.iter().map(|id| &*self.map[id]).collect();
        let scope = Scope::new(&segs, changed, touched);
        // (segment index, subject index, now a member) for every membership that changes.
        let mut flips: Vec<(u32, u32, bool)> = chunk_groups(changed)
            .into_par_iter()
            .flat_map_iter(|(c, first, offs)| chunk_flips(ds, &segs, &scope, c, first, &offs))
            .collect();
        for (k, &(_, row)) in deleted.iter().enumerate() {
            for (i, s) in segs.iter().enumerate() {
                if s.members.contains(row) {
                    flips.push((i as u32, (changed.len() + k) as u32, false));
                }
            }
        }
        flips.par_sort_unstable_by_key(|&(i, k, _)| (i, subjects[k as usize].0));
        let mut events = Vec::with_capacity(flips.len());
        for group in flips.chunk_by(|a, b| a.0 == b.0) {
            let id = &self.order[group[0].0 as usize];
            let name: Arc<str> = id.as_str().into();
            let seg = Arc::make_mut(self.map.get_mut(id).expect("listed"));
            let members = Arc::make_mut(&mut seg.members);
            let row = |f: &(u32, u32, bool)| subjects[f.1 as usize].0;
            // One edit per container: rows are ascending within the segment's group.
            for part in group.chunk_by(|a, b| row(a) >> 16 == row(b) >> 16) {
                let add: Vec<u16> = part.iter().filter(|f| f.2).map(|f| row(f) as u16).collect();
                let remove: Vec<u16> = part.iter().filter(|f| !f.2).map(|f| row(f) as u16).collect();
                members.edit_chunk((row(&part[0]) >> 16) as usize, &add, &remove);
            }
            events.extend(group.iter().map(|&(i, k, now)| {
                let (row, customer_id, sequence) = subjects[k as usize];
                let change = if now { Change::Entered } else { Change::Left };
                ((sequence, i, row), SegmentEvent { segment_id: name.clone(), customer_id, change, sequence })
            }));
        }
        if !seqs.is_empty() {
            // Built in (segment, row) order; one key per (segment, row), so unstable is fine.
            events.par_sort_unstable_by_key(|&(k, _)| k);
        }
        events
    }

    /// The saved segments a customer is in (None for an unknown customer).
    pub fn segments_of(&self, ds: &Dataset, customer_id: u64) -> Option<Vec<&str>> {
        let row = ds.row_of(customer_id)?;
        Some(self.map.values().filter(|s| s.members.contains(row)).map(|s| s.id.as_str()).collect())
    }

    /// O(1) membership: None for an unknown customer.
    pub fn is_member(&self, ds: &Dataset, id: &str, customer_id: u64) -> Result<Option<bool>, SegmentError> {
        let seg = self.get(id)?;
        Ok(ds.row_of(customer_id).map(|r| seg.members.contains(r)))
    }
}

/// Rows grouped by chunk: (chunk, index of its first row in `rows`, offsets ascending).
fn chunk_groups(rows: &[u32]) -> Vec<(usize, usize, Vec<u16>)> {
    let mut out: Vec<(usize, usize, Vec<u16>)> = vec![];
    for (i, &r) in rows.iter().enumerate() {
        let c = (r >> 16) as usize;
        match out.last_mut() {
            Some((last, _, offs)) if *last == c => offs.push(r as u16),
            _ => out.push((c, i, vec![r as u16])),
        }
    }
    out
}

/// Which changed rows each segment must re-evaluate (see [`Segments::on_write`]).
struct Scope {
    /// Per segment: None for every changed row, else a flag per changed row.
    need: Vec<Option<Vec<bool>>>,
    /// Per segment: whether a later one reads it with `in_segment` (and so needs its
    /// verdict for every changed row).
    read_by_later: Vec<bool>,
}

impl Scope {
    fn new(segs: &[&SavedSegment], changed: &[u32], touched: Option<&Touched>) -> Scope {
        let read_by_later = segs
            .iter()
            .enumerate()
            .map(|(i, s)| segs[i + 1..].iter().any(|later| later.refs.contains(&s.id)))
            .collect();
        let Some(t) = touched else {
            return Scope { need: vec![None; segs.len()], read_by_later };
        };
        // The columns each plan reads (None: it reads a segment, so every changed row).
        let cols: Vec<Option<Vec<usize>>> = segs
            .iter()
            .map(|s| {
                let mut cols = vec![];
                s.plan.as_ref().is_some_and(|p| plan_columns(&p.root, &mut cols)).then_some(cols)
            })
            .collect();
        // Per column read, a flag per changed row (both lists ascend).
        let mut masks: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
        for &ci in cols.iter().flatten().flatten() {
            masks.entry(ci).or_insert_with(|| {
                let rows = t.by_column.get(ci).map_or(&[][..], Vec::as_slice);
                let mut m = vec![false; changed.len()];
                let mut j = 0;
                for &r in rows {
                    j += changed[j..].partition_point(|&x| x < r);
                    if changed.get(j) == Some(&r) {
                        m[j] = true;
                    }
                }
                m
            });
        }
        let fresh: Vec<bool> = changed.iter().map(|&r| r >= t.first_new).collect();
        let need = cols
            .into_iter()
            .map(|cols| {
                let mut need = fresh.clone();
                for ci in cols? {
                    for (n, &m) in need.iter_mut().zip(&masks[&ci]) {
                        *n |= m;
                    }
                }
                Some(need)
            })
            .collect();
        Scope { need, read_by_later }
    }
}

/// Adds the columns `node` reads to `out`; false when it reads a saved segment.
fn plan_columns(node: &query::plan::Node, out: &mut Vec<usize>) -> bool {
    match node {
        query::plan::Node::Const(_) => true,
        query::plan::Node::Leaf(l) => {
            if !out.contains(&l.col) {
                out.push(l.col);
            }
            true
        }
        query::plan::Node::Segment { .. } => false,
        query::plan::Node::And(kids) | query::plan::Node::Or(kids) => {
            kids.iter().all(|k| plan_columns(k, out))
        }
    }
}

/// The membership changes of one chunk's changed rows, for every dynamic segment.
fn chunk_flips(
    ds: &Dataset,
    segs: &[&SavedSegment],
    scope: &Scope,
    c: usize,
    first: usize,
    offs: &[u16],
) -> Vec<(u32, u32, bool)> {
    let live = ds.live.chunk(c);
    let alive: Vec<bool> = offs.iter().map(|&o| live.contains(o)).collect();
    let mut verdicts: Vec<Option<Vec<bool>>> = Vec::with_capacity(segs.len());
    let mut out = vec![];
    for (i, s) in segs.iter().enumerate() {
        let Some(plan) = &s.plan else {
            verdicts.push(None);
            continue;
        };
        let cont = s.members.chunk(c);
        // The rows this segment re-evaluates: all, or those where a column it reads
        // changed (a dead row is always re-evaluated: it leaves).
        let picked: Option<Vec<usize>> = scope.need[i]
            .as_ref()
            .map(|need| (0..offs.len()).filter(|&k| need[first + k] || !alive[k]).collect());
        let Some(picked) = picked else {
            let overrides = |id: &str| {
                let k = segs[..i].iter().position(|x| x.id == id)?;
                verdicts[k].as_deref()
            };
            let mut now = rows::matches_rows(ds, &plan.root, c, offs, &overrides);
            for (k, &o) in offs.iter().enumerate() {
                now[k] &= alive[k];
                if now[k] != cont.contains(o) {
                    out.push((i as u32, (first + k) as u32, now[k]));
                }
            }
            verdicts.push(Some(now));
            continue;
        };
        // A plan without `in_segment`: no overrides to consult. Rows not picked keep their
        // membership; a later segment reading this one then reads it from the members
        // (a None verdict), which is the same.
        let sub: Vec<u16> = picked.iter().map(|&k| offs[k]).collect();
        let got =
            if sub.is_empty() { vec![] } else { rows::matches_rows(ds, &plan.root, c, &sub, &|_| None) };
        let mut now = (scope.read_by_later[i] && !sub.is_empty())
            .then(|| offs.iter().map(|&o| cont.contains(o)).collect::<Vec<bool>>());
        for (&k, m) in picked.iter().zip(got) {
            let m = m && alive[k];
            if m != cont.contains(offs[k]) {
                out.push((i as u32, (first + k) as u32, m));
            }
            if let Some(now) = now.as_mut() {
                now[k] = m;
            }
        }
        verdicts.push(now);
    }
    out
}

#[cfg(test)]
#[path = "segments_tests.rs"]
mod tests;
