//! The whole mutable state, changed only by [`Mutation`]s applied in commit order: the
//! customer table, the saved segments and the recent segment events. Logging mutations
//! durably before they are applied is [`crate::db`]'s job; this module is the state machine
//! that both the live path and log replay drive, so they cannot disagree.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

use crate::segments::{Definition, SegmentError, SegmentEvent, Segments};
use crate::store::mutate::{CustomerUpdate, MutationError, NewAttribute};
use crate::store::Dataset;

/// One logged change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    Upsert(Vec<CustomerUpdate>),
    Delete(Vec<u64>),
    AddAttribute { name: String, kind: NewAttribute },
    CreateSegment { id: String, description: String, definition: Definition },
    DeleteSegment { id: String },
    EditMembers { id: String, customer_ids: Vec<u64>, add: bool },
}

impl Mutation {
    /// Customer changes this mutation logs (what `--snapshot-every` counts).
    pub fn changes(&self) -> u64 {
        match self {
            Mutation::Upsert(b) => b.len() as u64,
            Mutation::Delete(ids) => ids.len() as u64,
            Mutation::EditMembers { customer_ids, .. } => customer_ids.len() as u64,
            _ => 1,
        }
    }

    /// Whether a later mutation's validity can depend on this one having been applied
    /// (a new attribute, a new or deleted segment): a commit group ends after it.
    pub fn changes_schema(&self) -> bool {
        matches!(
            self,
            Mutation::AddAttribute { .. } | Mutation::CreateSegment { .. } | Mutation::DeleteSegment { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Upserted { applied: u32 },
    Deleted { deleted: u32 },
    AttributeAdded,
    SegmentCreated { count: u64 },
    SegmentDeleted,
    MembersEdited { changed: u64 },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Mutation(#[from] MutationError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// A watcher asked for events older than the retention window.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("events before sequence {oldest} are no longer retained (asked from {asked}); re-read the segment and watch from now")]
pub struct Gone {
    pub asked: u64,
    pub oldest: u64,
}

/// The most recent segment events, bounded: memory never grows with a slow watcher.
pub struct EventLog {
    events: VecDeque<SegmentEvent>,
    capacity: usize,
    /// Highest sequence whose events were (partly) dropped.
    dropped_through: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        EventLog { events: VecDeque::new(), capacity: capacity.max(1), dropped_through: 0 }
    }

    pub fn push(&mut self, events: Vec<SegmentEvent>) {
        for e in events {
            if self.events.len() == self.capacity {
                if let Some(old) = self.events.pop_front() {
                    self.dropped_through = old.sequence;
                }
            }
            self.events.push_back(e);
        }
    }

    /// Marks every event up to `sequence` as gone (after a restart: events are not kept
    /// across one, so a watcher cannot resume from before it).
    pub fn forget_through(&mut self, sequence: u64) {
        self.events.retain(|e| e.sequence > sequence);
        self.dropped_through = self.dropped_through.max(sequence);
    }

    /// Up to `max` events with `sequence >= from`, of the given segments (all when empty).
    pub fn since(
        &self,
        from: u64,
        segments: &HashSet<String>,
        max: usize,
    ) -> Result<Vec<SegmentEvent>, Gone> {
        if from <= self.dropped_through {
            return Err(Gone { asked: from, oldest: self.dropped_through + 1 });
        }
        let start = self.events.partition_point(|e| e.sequence < from);
        Ok(self
            .events
            .range(start..)
            .filter(|e| segments.is_empty() || segments.contains(&*e.segment_id))
            .take(max)
            .cloned()
            .collect())
    }
}

/// One version of the state. Cloning it is cheap and shares everything (see
/// [`Dataset`]): the committer applies a group to a clone of the published version and
/// publishes the result, so readers never wait for a write.
///
/// The fields are private: readers go through the accessors below, and only
/// [`Engine::apply`] / [`Engine::apply_group`] (plus start-up's restore) change a version.
#[derive(Clone)]
pub struct Engine {
    data: Dataset,
    segments: Segments,
    /// Shared by every version: events are appended as commits are applied.
    events: Arc<Mutex<EventLog>>,
    /// Sequence of the last mutation applied.
    sequence: u64,
}

impl Engine {
    pub fn new(data: Dataset, max_segments: usize, event_capacity: usize) -> Self {
        Engine {
            data,
            segments: Segments::new(max_segments),
            events: Arc::new(Mutex::new(EventLog::new(event_capacity))),
            sequence: 0,
        }
    }

    /// The customer table of this version.
    pub fn data(&self) -> &Dataset {
        &self.data
    }

    /// The saved segments of this version.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// Sequence of the last mutation applied (the data version plans and counts are
    /// cached at).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Up to `max` retained events with `sequence >= from`, of the given segments (all
    /// when empty).
    pub fn events_since(
        &self,
        from: u64,
        segments: &HashSet<String>,
        max: usize,
    ) -> Result<Vec<SegmentEvent>, Gone> {
        self.events.lock().since(from, segments, max)
    }

    /// Start-up only: the state was restored (snapshot, log replay) up to `sequence`, and
    /// events at or before it are not retained (they are not kept across a restart).
    pub fn restored_at(&mut self, sequence: u64) {
        self.sequence = sequence;
        self.events.lock().forget_through(sequence);
    }

    /// Start-up only: re-creates a saved segment from a snapshot (`members`: the customer
    /// ids of a static one), with no events.
    pub fn restore_segment(
        &mut self,
        id: &str,
        description: &str,
        definition: Definition,
        members: &[u64],
    ) -> Result<(), SegmentError> {
        let is_static = definition == Definition::Static;
        self.segments.create(&self.data, id, description, definition)?;
        if is_static {
            self.segments.edit_members(&self.data, id, members, true, 0)?;
        }
        Ok(())
    }

    /// Whether `m` would apply (nothing changes).
    pub fn check(&self, m: &Mutation) -> Result<(), EngineError> {
        match m {
            Mutation::Upsert(batch) => self.data.check_upserts(batch)?,
            Mutation::Delete(_) => {}
            Mutation::AddAttribute { name, .. } => self.data.check_new_attribute(name)?,
            Mutation::CreateSegment { id, definition, .. } => {
                self.segments.check_create(&self.data, id, definition)?
            }
            Mutation::DeleteSegment { id } => self.segments.check_delete(id)?,
            Mutation::EditMembers { id, .. } => {
                if self.segments.get(id)?.definition != Definition::Static {
                    return Err(SegmentError::NotStatic(id.clone()).into());
                }
            }
        }
        Ok(())
    }

    /// Applies a commit group in order, as [`Engine::apply`] would one by one, but with
    /// each run of consecutive upserts applied as one batch: every written chunk and
    /// container is copied once per run instead of once per request, and saved segments
    /// re-check each changed row once. The final state is the same; a customer changed by
    /// several upserts of one run gets one event per segment for the net change, carrying
    /// the sequence of the last upsert that changed it (no reader can see the states in
    /// between: a group is published whole).
    pub fn apply_group(&mut self, items: &[(u64, &Mutation)]) -> Vec<Result<Outcome, EngineError>> {
        let mut out = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            let run = items[i..].iter().take_while(|(_, m)| matches!(m, Mutation::Upsert(_))).count();
            if run < 2 {
                let (seq, m) = items[i];
                out.push(self.apply(seq, m));
                i += 1;
                continue;
            }
            let run = &items[i..i + run];
            let batches: Vec<&[CustomerUpdate]> = run
                .iter()
                .map(|(_, m)| match m {
                    Mutation::Upsert(b) => b.as_slice(),
                    _ => unreachable!("a run of upserts"),
                })
                .collect();
            let t0 = std::time::Instant::now();
            match self.data.apply_upsert_batches(&batches) {
                Ok(changed) => {
                    let t1 = t0.elapsed();
                    let rows: Vec<u32> = changed.iter().map(|&(r, _)| r).collect();
                    let seqs: Vec<u64> = changed.iter().map(|&(_, b)| run[b].0).collect();
                    let last = run[run.len() - 1].0;
                    let events = self.segments.on_write(&self.data, &rows, &seqs, &[], last);
                    let t2 = t0.elapsed();
                    let ne = events.len();
                    self.events.lock().push(events);
                    tracing::debug!(
                        batches = run.len(),
                        rows = rows.len(),
                        events = ne,
                        columns_ms = t1.as_secs_f64() * 1e3,
                        segments_ms = (t2 - t1).as_secs_f64() * 1e3,
                        "upserts applied"
                    );
                    self.sequence = last;
                    out.extend(batches.iter().map(|b| Ok(Outcome::Upserted { applied: b.len() as u32 })));
                }
                // Nothing changed: apply one by one so each gets its own answer.
                Err(_) => out.extend(run.iter().map(|(seq, m)| self.apply(*seq, m))),
            }
            i += run.len();
        }
        out
    }

    /// Applies `m` as commit `sequence`, keeping saved segments current and logging their
    /// enter / leave events.
    pub fn apply(&mut self, sequence: u64, m: &Mutation) -> Result<Outcome, EngineError> {
        let outcome = match m {
            Mutation::Upsert(batch) => {
                let changed = self.data.apply_upserts(batch)?;
                let events = self.segments.on_write(&self.data, &changed, &[], &[], sequence);
                self.events.lock().push(events);
                Outcome::Upserted { applied: batch.len() as u32 }
            }
            Mutation::Delete(ids) => {
                let deleted = self.data.delete_customers(ids);
                let events = self.segments.on_write(&self.data, &[], &[], &deleted, sequence);
                self.events.lock().push(events);
                Outcome::Deleted { deleted: deleted.len() as u32 }
            }
            Mutation::AddAttribute { name, kind } => {
                self.data.add_attribute(name, *kind)?;
                Outcome::AttributeAdded
            }
            Mutation::CreateSegment { id, description, definition } => {
                let count = self.segments.create(&self.data, id, description, definition.clone())?;
                Outcome::SegmentCreated { count }
            }
            Mutation::DeleteSegment { id } => {
                self.segments.delete(id)?;
                Outcome::SegmentDeleted
            }
            Mutation::EditMembers { id, customer_ids, add } => {
                let (changed, mut events) =
                    self.segments.edit_members(&self.data, id, customer_ids, *add, sequence)?;
                // Segments reading this one through in_segment follow its edited rows.
                let mut rows: Vec<u32> =
                    events.iter().filter_map(|e| self.data.row_of(e.customer_id)).collect();
                rows.sort_unstable();
                events.extend(self.segments.on_write(&self.data, &rows, &[], &[], sequence));
                self.events.lock().push(events);
                Outcome::MembersEdited { changed }
            }
        };
        self.sequence = sequence;
        Ok(outcome)
    }
}
