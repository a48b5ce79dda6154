//! Saved segments: named definitions kept materialised and current on every write, so
//! counting one is O(1) and membership one container probe.
//!
//! A dynamic segment (a `where` text or predicate tree) is re-evaluated only for the rows a
//! batch changed, from those rows' values; a static segment is a list of customers edited
//! with add / remove. Every change of membership becomes an ENTERED / LEFT event.

use std::collections::BTreeMap;

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
    #[error("too many saved segments: the limit is {0}")]
    TooMany(usize),
    #[error(transparent)]
    Query(#[from] QueryError),
}

pub struct SavedSegment {
    pub id: String,
    pub description: String,
    pub definition: Definition,
    pub members: Postings,
    plan: Option<Plan>,
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
    /// Most saved segments allowed (each costs up to rows/8 bytes and work per write).
    pub max_segments: usize,
}

fn compile(ds: &Dataset, def: &Definition) -> Result<Option<Plan>, QueryError> {
    let limits = Limits::default();
    Ok(match def {
        Definition::Sql(text) => Some(query::compile_sql(ds, text, &limits)?),
        Definition::Tree(e) => Some(query::compile_expr(ds, e, &limits)?),
        Definition::Static => None,
    })
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
        Segments { map: BTreeMap::new(), max_segments }
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
        compile(ds, def)?;
        Ok(())
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
        let plan = compile(ds, &def)?;
        let members = match &plan {
            Some(p) => eval::materialize(ds, p),
            None => Postings::default(),
        };
        let n = members.len;
        self.map.insert(
            id.into(),
            SavedSegment {
                id: id.into(),
                description: description.into(),
                definition: def,
                members,
                plan,
                bound_at: ds.binding_generation(),
            },
        );
        Ok(n)
    }

    pub fn delete(&mut self, id: &str) -> Result<(), SegmentError> {
        self.map.remove(id).map(|_| ()).ok_or_else(|| SegmentError::NotFound(id.into()))
    }

    pub fn get(&self, id: &str) -> Result<&SavedSegment, SegmentError> {
        self.map.get(id).ok_or_else(|| SegmentError::NotFound(id.into()))
    }

    pub fn list(&self) -> impl Iterator<Item = &SavedSegment> {
        self.map.values()
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
            let changed = if add { seg.members.insert(row) } else { seg.members.remove(row) };
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
        for seg in self.map.values_mut() {
            // A value new to a dictionary may be one a plan's leaf named before it existed:
            // re-bind. (Row-level evaluation reads only codes and value bounds, so nothing
            // else a write changes can make a plan stale.)
            if seg.bound_at != generation {
                if let Ok(Some(p)) = compile(ds, &seg.definition) {
                    seg.plan = Some(p);
                }
                seg.bound_at = generation;
            }
            for &(cid, row) in deleted {
                if seg.members.remove(row) {
                    events.push(SegmentEvent {
                        segment_id: seg.id.clone(),
                        customer_id: cid,
                        change: Change::Left,
                        sequence,
                    });
                }
            }
            let Some(plan) = &seg.plan else { continue };
            for &row in changed {
                let now = eval::matches_row(ds, &plan.root, row) && ds.live.contains(row);
                let was = seg.members.contains(row);
                if now != was {
                    if now {
                        seg.members.insert(row);
                    } else {
                        seg.members.remove(row);
                    }
                    let change = if now { Change::Entered } else { Change::Left };
                    events.push(SegmentEvent {
                        segment_id: seg.id.clone(),
                        customer_id: ds.id_of(row),
                        change,
                        sequence,
                    });
                }
            }
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
