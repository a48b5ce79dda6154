//! The whole mutable state, changed only by [`Mutation`]s applied in commit order: the
//! customer table, the saved segments and the recent segment events. Logging mutations
//! durably before they are applied is [`crate::db`]'s job; this module is the state machine
//! that both the live path and log replay drive, so they cannot disagree.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

use crate::decide;
use crate::gamify::{self, ChangeOutcome, GamifyError};
use crate::segments::{Definition, SegmentError, SegmentEvent, Segments};
use crate::store::mutate::{CustomerUpdate, MutationError, NewAttribute};
use crate::store::Dataset;

/// One logged change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    Upsert(Vec<CustomerUpdate>),
    Delete(Vec<u64>),
    AddAttribute {
        name: String,
        kind: NewAttribute,
    },
    /// A static definition may come with its first members, so a crash never leaves the
    /// segment created but empty; a dynamic one takes none (its definition decides).
    CreateSegment {
        id: String,
        description: String,
        definition: Definition,
        members: Vec<u64>,
    },
    DeleteSegment {
        id: String,
    },
    EditMembers {
        id: String,
        customer_ids: Vec<u64>,
        add: bool,
    },
    /// Next-best-offer decisions: offers, the contact policy, decisions and outcomes.
    /// Logged as its own record (`segd.log.v1` field 30), never as serde.
    #[serde(skip)]
    Decide(decide::Change),
    /// A gamification write (`engine_gamify.rs`). Never in the format-1 JSON log.
    #[serde(skip)]
    Gamify(gamify::Change),
}

impl Mutation {
    /// Customer changes this mutation logs (what `--snapshot-every` counts).
    pub fn changes(&self) -> u64 {
        match self {
            Mutation::Upsert(b) => b.len() as u64,
            Mutation::Delete(ids) => ids.len() as u64,
            Mutation::EditMembers { customer_ids, .. } => customer_ids.len() as u64,
            Mutation::CreateSegment { members, .. } => members.len().max(1) as u64,
            Mutation::AddAttribute { .. } | Mutation::DeleteSegment { .. } | Mutation::Decide(_) => 1,
            Mutation::Gamify(c) => c.changes(),
        }
    }

    /// Whether a later mutation's validity can depend on this one having been applied
    /// (a new attribute, a new or deleted segment): a commit group ends after it, because
    /// every mutation of a group is checked against the state before the group.
    pub fn changes_schema(&self) -> bool {
        match self {
            Mutation::AddAttribute { .. }
            | Mutation::CreateSegment { .. }
            | Mutation::DeleteSegment { .. } => true,
            // Their checks read only the schema and the saved segments, which these leave alone.
            Mutation::Upsert(_) | Mutation::Delete(_) | Mutation::EditMembers { .. } => false,
            Mutation::Decide(c) => c.changes_catalogue(),
            Mutation::Gamify(c) => c.changes_schema(),
        }
    }

    /// A batch of gamification events (`Engine::apply_group` applies a run of them together).
    pub fn is_events(&self) -> bool {
        matches!(self, Mutation::Gamify(gamify::Change::RecordEvents { .. }))
    }

    /// A one-line description for logs and start-up errors: the kind, the object and the
    /// size, never the whole payload (an upsert can hold 100,000 customers).
    pub fn summary(&self) -> String {
        /// The first few ids, so an operator can find the request.
        fn some_ids(ids: impl ExactSizeIterator<Item = u64>) -> String {
            let n = ids.len();
            let shown: Vec<String> = ids.take(5).map(|i| i.to_string()).collect();
            let more = if n > shown.len() { ", ..." } else { "" };
            format!("[{}{more}]", shown.join(", "))
        }
        match self {
            Mutation::Upsert(b) => {
                format!("upsert of {} customers {}", b.len(), some_ids(b.iter().map(|u| u.customer_id)))
            }
            Mutation::Delete(ids) => {
                format!("delete of {} customers {}", ids.len(), some_ids(ids.iter().copied()))
            }
            Mutation::AddAttribute { name, kind } => format!("add attribute '{name}' ({kind:?})"),
            Mutation::CreateSegment { id, definition, .. } => {
                let kind = match definition {
                    Definition::Sql(_) => "where",
                    Definition::Tree(_) => "predicate",
                    Definition::Static => "static",
                };
                format!("create segment '{id}' ({kind})")
            }
            Mutation::DeleteSegment { id } => format!("delete segment '{id}'"),
            Mutation::EditMembers { id, customer_ids, add } => format!(
                "{} {} members of segment '{id}' {}",
                if *add { "add" } else { "remove" },
                customer_ids.len(),
                some_ids(customer_ids.iter().copied())
            ),
            Mutation::Decide(c) => c.summary(),
            Mutation::Gamify(c) => c.summary(),
        }
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
    Decide(decide::ChangeOutcome),
    Gamify(ChangeOutcome),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Mutation(#[from] MutationError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Decide(#[from] decide::ChangeError),
    #[error(transparent)]
    Gamify(#[from] GamifyError),
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
        // Whole ranges rather than one event at a time: a replayed group of 250,000
        // updates brings ~5M events to a log of 1M.
        let mut events = events.into_iter();
        let skip = events.len().saturating_sub(self.capacity);
        if skip > 0 {
            self.events.clear();
            if let Some(last) = events.nth(skip - 1) {
                self.dropped_through = last.sequence;
            }
        }
        let over = (self.events.len() + events.len()).saturating_sub(self.capacity);
        if over > 0 {
            if let Some(last) = self.events.drain(..over).next_back() {
                self.dropped_through = last.sequence;
            }
        }
        self.events.extend(events);
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
/// Events: applying a mutation derives its segment events from that mutation alone (see
/// [`Engine::apply_group`]) and holds them in the version being built; whoever publishes
/// the version moves them into the shared [`EventLog`] with [`Engine::publish_events`]
/// once the version is visible, so a watcher never sees an event of a sequence that reads
/// cannot see yet.
/// The fields are private: readers go through the accessors below, and only
/// [`Engine::apply`] / [`Engine::apply_group`] (plus start-up's restore) change a version.
pub struct Engine {
    data: Dataset,
    segments: Segments,
    /// Offers, contact policy and contact history (shared whole by versions it did not change).
    decide: Arc<decide::State>,
    /// Shared by every version: the events of published versions.
    events: Arc<Mutex<EventLog>>,
    /// Sequence of the last mutation applied.
    sequence: u64,
    /// Events of mutations applied to this version and not yet published, in log order.
    unpublished: Vec<SegmentEvent>,
    /// The gamification program, state and achievements (`engine_gamify.rs`).
    gamify: gamify_glue::GamifyPart,
    /// Leaderboards: shared by every version, moved in log order (`engine_boards.rs`).
    boards: crate::leaderboard::live::Shared,
}

#[path = "engine_boards.rs"]
mod boards_glue;

#[path = "engine_gamify.rs"]
mod gamify_glue;
pub use gamify_glue::{AchievementEvent, Gamification};

impl Clone for Engine {
    /// A clone starts with no unpublished events: they belong to the version that made them.
    fn clone(&self) -> Self {
        Engine {
            data: self.data.clone(),
            segments: self.segments.clone(),
            decide: self.decide.clone(),
            events: self.events.clone(),
            sequence: self.sequence,
            unpublished: vec![],
            gamify: self.gamify.clone(),
            boards: self.boards.clone(),
        }
    }
}

impl Engine {
    pub fn new(data: Dataset, max_segments: usize, event_capacity: usize) -> Self {
        Engine {
            data,
            segments: Segments::new(max_segments),
            decide: Arc::default(),
            events: Arc::new(Mutex::new(EventLog::new(event_capacity))),
            sequence: 0,
            unpublished: vec![],
            gamify: gamify_glue::GamifyPart::new(event_capacity),
            boards: Default::default(),
        }
    }

    /// Takes the events of the mutations applied since the last call, in log order (for a
    /// caller that publishes them itself, or drops them).
    pub fn take_events(&mut self) -> Vec<SegmentEvent> {
        std::mem::take(&mut self.unpublished)
    }

    /// Appends `events` (from [`Engine::take_events`] of a version now published) to the
    /// shared event log, where watchers read them.
    pub fn publish_events(&self, events: Vec<SegmentEvent>) {
        if !events.is_empty() {
            self.events.lock().push(events);
        }
        self.gamify.publish();
    }

    /// The customer table of this version.
    pub fn data(&self) -> &Dataset {
        &self.data
    }

    /// The saved segments of this version.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// The decision state of this version.
    pub fn decide(&self) -> &decide::State {
        &self.decide
    }

    /// Start-up only: the decision state of a snapshot.
    pub fn restore_decide(&mut self, state: decide::State) {
        self.decide = Arc::new(state);
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
        self.gamify.forget_through(sequence);
    }

    /// Replay only: the record at `sequence` was skipped by the operator
    /// (`--skip-sequence`); it counts as applied, as nothing.
    pub fn skipped(&mut self, sequence: u64) {
        self.sequence = sequence;
    }

    /// Start-up only: events at or before `sequence` (the snapshot's) are not retained
    /// across a restart; replayed ones after it are, being a function of the log.
    pub fn forget_events_through(&self, sequence: u64) {
        self.events.lock().forget_through(sequence);
        self.gamify.forget_through(sequence);
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
            Mutation::CreateSegment { id, description, definition, members } => {
                self.segments.check_create(&self.data, id, description, definition)?;
                if !members.is_empty() && *definition != Definition::Static {
                    return Err(SegmentError::NotStatic(id.clone()).into());
                }
            }
            Mutation::DeleteSegment { id } => {
                self.segments.check_delete(id)?;
                self.decide.check_delete_segment(id)?;
            }
            Mutation::Decide(c) => {
                let segs = |id: &str| self.segments.members_of(id);
                self.decide.check(&self.data, &segs, c)?;
            }
            Mutation::EditMembers { id, .. } => {
                if self.segments.get(id)?.definition != Definition::Static {
                    return Err(SegmentError::NotStatic(id.clone()).into());
                }
            }
            Mutation::Gamify(c) => self.check_gamify(c)?,
        }
        Ok(())
    }

    /// Applies a commit group in order, with the same final state and the same events as
    /// [`Engine::apply`] one by one, but with each run of consecutive upserts applied in
    /// batches: every written chunk and container is copied once per batch instead of
    /// once per request, and saved segments re-check each changed row once per batch.
    ///
    /// Events are a function of the log alone, whatever the grouping: each mutation gets
    /// the ENTERED / LEFT events of its own change, with its own sequence, ordered by
    /// sequence, then segment (creation order), then row. A run is therefore applied in
    /// layers: layer 0 holds each customer's first write within the run, layer 1 the
    /// second, and so on. After layer `j` every row it wrote holds exactly the value its
    /// `j`-th writer left, so re-checking those rows gives that writer's events. Writes
    /// to distinct customers (the usual group) make one layer; a customer written by `k`
    /// requests of a run costs `k` layers, each touching only the rows written again.
    ///
    /// A run of consecutive `RecordEvents` changes is applied change by change too, but
    /// its leaderboard updates are applied once for the run (`engine_boards.rs`): one
    /// score move per customer per board, the same boards as event by event.
    ///
    /// Upserts must have passed [`Engine::check`] against the state they apply to (the
    /// committer checks every write before logging it): they are not checked again.
    pub fn apply_group(&mut self, items: &[(u64, &Mutation)]) -> Vec<Result<Outcome, EngineError>> {
        let mut out = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            // Event batches: their leaderboard updates are applied once for the run.
            let events = items[i..].iter().take_while(|(_, m)| m.is_events()).count();
            if events >= 2 {
                out.extend(self.apply_events_run(&items[i..i + events]));
                i += events;
                continue;
            }
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
                    other => unreachable!("a run of upserts holds {}", other.summary()),
                })
                .collect();
            let seqs: Vec<u64> = run.iter().map(|&(s, _)| s).collect();
            self.apply_upsert_run(&batches, &seqs);
            out.extend(batches.iter().map(|b| Ok(Outcome::Upserted { applied: b.len() as u32 })));
            i += run.len();
        }
        out
    }

    /// Applies consecutive upserts `batches` (with sequences `seqs`) in layers (see
    /// [`Engine::apply_group`]). They were checked ([`Engine::check`]) before they were
    /// logged, so they are not checked again: one check per write.
    fn apply_upsert_run(&mut self, batches: &[&[CustomerUpdate]], seqs: &[u64]) {
        let t0 = std::time::Instant::now();
        // Layers exist for the events; without saved segments there are none to derive,
        // and one pass gives the same table.
        let layer_of = if self.segments.is_empty() { None } else { layers(batches) };
        let depth = layer_of.as_ref().map_or(1, |(deepest, _)| deepest + 1);
        // Each layer's events come out ordered by (sequence, segment, row).
        let mut per_layer: Vec<Vec<EventKeyed>> = Vec::with_capacity(depth);
        let mut rows_written = 0;
        for j in 0..depth {
            let (changed, touched) = match &layer_of {
                None => self.data.apply_checked_upsert_batches(batches),
                Some((_, of)) => {
                    let n = of.iter().flatten().filter(|&&l| l == j).count();
                    let part = batches.iter().zip(of).enumerate().flat_map(|(b, (batch, of))| {
                        batch.iter().zip(of).filter(move |&(_, &l)| l == j).map(move |(u, _)| (b, u))
                    });
                    self.data.apply_checked_updates(n, part)
                }
            };
            rows_written += changed.len();
            let rows: Vec<u32> = changed.iter().map(|&(r, _)| r).collect();
            let row_seqs: Vec<u64> = changed.iter().map(|&(_, b)| seqs[b]).collect();
            per_layer.push(self.segments.on_write_keyed(
                &self.data,
                &rows,
                Some(&touched),
                &row_seqs,
                &[],
                seqs[0],
            ));
        }
        // A mutation's events can come from several layers: merge the sorted lists, the
        // small deep layers first.
        let mut events = per_layer.pop().expect("one layer at least");
        while let Some(shallower) = per_layer.pop() {
            events = merge_by_key(shallower, events);
        }
        tracing::debug!(
            batches = batches.len(),
            layers = depth,
            rows = rows_written,
            events = events.len(),
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "upserts applied"
        );
        self.unpublished.extend(events.into_iter().map(|(_, e)| e));
        self.sequence = *seqs.last().expect("a run is not empty");
    }

    /// Applies `m` as commit `sequence`, keeping saved segments current and recording their
    /// enter / leave events (published with the version, see [`Engine::publish_events`]).
    pub fn apply(&mut self, sequence: u64, m: &Mutation) -> Result<Outcome, EngineError> {
        let outcome = match m {
            Mutation::Upsert(batch) => {
                let changed = self.data.apply_upserts(batch)?;
                let events = self.segments.on_write(&self.data, &changed, None, &[], &[], sequence);
                self.unpublished.extend(events);
                Outcome::Upserted { applied: batch.len() as u32 }
            }
            Mutation::Delete(ids) => {
                let deleted = self.data.delete_customers(ids);
                self.boards_on_delete(sequence, &deleted);
                let events = self.segments.on_write(&self.data, &[], None, &[], &deleted, sequence);
                self.unpublished.extend(events);
                Outcome::Deleted { deleted: deleted.len() as u32 }
            }
            Mutation::AddAttribute { name, kind } => {
                self.data.add_attribute(name, *kind)?;
                Outcome::AttributeAdded
            }
            Mutation::CreateSegment { id, description, definition, members } => {
                let mut count = self.segments.create(&self.data, id, description, definition.clone())?;
                if !members.is_empty() {
                    // A new segment has no dependents yet: only its own events.
                    let (changed, events) =
                        self.segments.edit_members(&self.data, id, members, true, sequence)?;
                    self.events.lock().push(events);
                    count = changed;
                }
                Outcome::SegmentCreated { count }
            }
            Mutation::DeleteSegment { id } => {
                self.segments.delete(id)?;
                Outcome::SegmentDeleted
            }
            Mutation::EditMembers { id, customer_ids, add } => {
                let (changed, events) =
                    self.segments.edit_members(&self.data, id, customer_ids, *add, sequence)?;
                // Segments reading this one through in_segment follow its edited rows
                // (created after it, so their events come after its own).
                let mut rows: Vec<u32> =
                    events.iter().filter_map(|e| self.data.row_of(e.customer_id)).collect();
                rows.sort_unstable();
                self.unpublished.extend(events);
                let follow = self.segments.on_write(&self.data, &rows, None, &[], &[], sequence);
                self.unpublished.extend(follow);
                Outcome::MembersEdited { changed }
            }
            Mutation::Decide(c) => Outcome::Decide(decide::change::apply_shared(&mut self.decide, c)?),
            Mutation::Gamify(c) => {
                let o = self.apply_gamify(sequence, c)?;
                self.boards_after_gamify(sequence, c, &o);
                o
            }
        };
        self.sequence = sequence;
        Ok(outcome)
    }
}

/// A segment event with its order key (sequence, segment index, row).
type EventKeyed = ((u64, u32, u32), SegmentEvent);

/// Merges two lists sorted by key (no key is in both) into one.
fn merge_by_key(a: Vec<EventKeyed>, b: Vec<EventKeyed>) -> Vec<EventKeyed> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let from_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.0 < y.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if from_a { a.next() } else { b.next() });
    }
}

/// Splits a run of upsert batches into layers: an update goes to layer `j` when `j`
/// earlier batches of the run wrote its customer (updates of one customer within one
/// batch stay together: they are one mutation's write). New customers first appear in
/// layer 0 in the run's order, so they get the rows sequential apply would give them.
/// Returns the deepest layer and each update's layer, per batch; None when every update
/// is in layer 0 (no customer is written by two batches of the run).
fn layers(batches: &[&[CustomerUpdate]]) -> Option<(usize, Vec<Vec<usize>>)> {
    // Per customer: (index of the last batch that wrote it, batches that wrote it).
    let mut seen: HashMap<u64, (usize, usize)> = HashMap::new();
    let mut deepest = 0;
    let mut layer_of: Vec<Vec<usize>> = Vec::with_capacity(batches.len());
    for (b, batch) in batches.iter().enumerate() {
        let mut of = Vec::with_capacity(batch.len());
        for u in batch.iter() {
            let e = seen.entry(u.customer_id).or_insert((b, 0));
            if e.0 != b {
                *e = (b, e.1 + 1);
            }
            deepest = deepest.max(e.1);
            of.push(e.1);
        }
        layer_of.push(of);
    }
    (deepest > 0).then_some((deepest, layer_of))
}

#[cfg(test)]
#[path = "engine_tests.rs"]
pub(crate) mod tests;
