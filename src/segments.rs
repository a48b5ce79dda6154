//! Saved segments: named definitions kept materialised and current on every write, so
//! counting one is O(1) and membership one container probe.
//!
//! A dynamic segment (a `where` text or predicate tree) is re-evaluated only for the rows a
//! batch changed, from those rows' values; a static segment is a list of customers edited
//! with add / remove. Every change of membership becomes an ENTERED / LEFT event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::index::Postings;
use crate::query::{self, eval, Expr, Limits, Plan, QueryError};
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEvent {
    pub segment_id: String,
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
    #[error("segment '{0}' is dynamic: its members follow its definition")]
    NotStatic(String),
    #[error("segment '{0}' is used by segment '{1}' (in_segment); delete that one first")]
    InUse(String, String),
    #[error("too many saved segments: the limit is {0}")]
    TooMany(usize),
    #[error(transparent)]
    Query(#[from] QueryError),
}

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

/// Every saved segment.
#[derive(Default)]
pub struct Segments {
    map: BTreeMap<String, SavedSegment>,
    /// Ids in creation order. A segment can only reference segments that already exist, so
    /// this is a dependency order (and reference cycles cannot be formed).
    order: Vec<String>,
    /// Most saved segments allowed (each costs up to rows/8 bytes and work per write).
    pub max_segments: usize,
}

fn compile(
    ds: &Dataset,
    def: &Definition,
    map: &BTreeMap<String, SavedSegment>,
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
    pub fn check_create(&self, ds: &Dataset, id: &str, def: &Definition) -> Result<(), SegmentError> {
        check_id(id)?;
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
        self.check_create(ds, id, &def)?;
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
            SavedSegment {
                id: id.into(),
                description: description.into(),
                definition: def,
                members,
                plan,
                refs,
                bound_at: ds.binding_generation(),
            },
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
        self.map.get(id).ok_or_else(|| SegmentError::NotFound(id.into()))
    }

    /// Every saved segment, by id.
    pub fn list(&self) -> impl Iterator<Item = &SavedSegment> {
        self.map.values()
    }

    /// Every saved segment in creation order: a snapshot restores dependencies first.
    pub fn in_creation_order(&self) -> impl Iterator<Item = &SavedSegment> {
        self.order.iter().map(|id| &self.map[id])
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds (or with `add == false` removes) customers of a static segment. Unknown ids are
    /// skipped; returns how many memberships changed, with their events.
    pub fn edit_members(
        &mut self,
        ds: &Dataset,
        id: &str,
        customer_ids: &[u64],
        add: bool,
        sequence: u64,
    ) -> Result<(u64, Vec<SegmentEvent>), SegmentError> {
        let seg = self.map.get_mut(id).ok_or_else(|| SegmentError::NotFound(id.into()))?;
        if seg.definition != Definition::Static {
            return Err(SegmentError::NotStatic(id.into()));
        }
        let mut events = vec![];
        for &cid in customer_ids {
            let Some(row) = ds.row_of(cid) else { continue };
            let members = Arc::make_mut(&mut seg.members);
            let changed = if add { members.insert(row) } else { members.remove(row) };
            if changed {
                let change = if add { Change::Entered } else { Change::Left };
                events.push(SegmentEvent { segment_id: id.into(), customer_id: cid, change, sequence });
            }
        }
        Ok((events.len() as u64, events))
    }

    /// Brings every segment up to date after a batch: `changed` rows are re-evaluated
    /// against dynamic segments, `deleted` (id, row) pairs leave every segment.
    pub fn on_write(
        &mut self,
        ds: &Dataset,
        changed: &[u32],
        deleted: &[(u64, u32)],
        sequence: u64,
    ) -> Vec<SegmentEvent> {
        let mut events = vec![];
        let generation = ds.binding_generation();
        // Rows whose membership changed in this write, per segment: a segment reading
        // another through in_segment re-evaluates them too.
        let mut moved: HashMap<String, Vec<u32>> = HashMap::new();
        for id in self.order.clone() {
            let mut seg = self.map.remove(&id).expect("order lists existing segments");
            // A value new to a dictionary may be one a plan's leaf named before it existed,
            // and in_segment reads other segments' current members: re-bind. (Row-level
            // evaluation reads only codes, value bounds and members.)
            if seg.bound_at != generation || !seg.refs.is_empty() {
                if let Ok(Some(p)) = compile(ds, &seg.definition, &self.map) {
                    seg.plan = Some(p);
                }
                seg.bound_at = generation;
            }
            let mut mine = vec![];
            for &(cid, row) in deleted {
                if Arc::make_mut(&mut seg.members).remove(row) {
                    events.push(SegmentEvent {
                        segment_id: id.clone(),
                        customer_id: cid,
                        change: Change::Left,
                        sequence,
                    });
                }
            }
            if let Some(plan) = &seg.plan {
                let mut rows: Vec<u32> = changed.to_vec();
                for r in &seg.refs {
                    rows.extend(moved.get(r).into_iter().flatten());
                }
                if !seg.refs.is_empty() {
                    rows.sort_unstable();
                    rows.dedup();
                }
                // Rows are checked in parallel (reads only); membership changes apply in order.
                let verdicts: Vec<(u32, bool)> = rows
                    .par_iter()
                    .with_min_len(512)
                    .map(|&row| (row, ds.live.contains(row) && eval::matches_row(ds, &plan.root, row)))
                    .collect();
                for (row, now) in verdicts {
                    if now != seg.members.contains(row) {
                        let members = Arc::make_mut(&mut seg.members);
                        if now {
                            members.insert(row);
                        } else {
                            members.remove(row);
                        }
                        mine.push(row);
                        let change = if now { Change::Entered } else { Change::Left };
                        events.push(SegmentEvent {
                            segment_id: id.clone(),
                            customer_id: ds.id_of(row),
                            change,
                            sequence,
                        });
                    }
                }
            }
            moved.insert(id.clone(), mine);
            self.map.insert(id, seg);
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
