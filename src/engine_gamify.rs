//! The engine's gamification part: the program in force and every customer's state
//! ([`Gamification`]), applied by `Mutation::Gamify` in commit order like every other
//! mutation, and the achievements (tier changes, level-ups) each change produced.
//!
//! A change's derived attributes (`points_balance`, `points_pending`, `lifetime_points`,
//! `points_expiring_30d`, `tier`, `level` and the program's counters) are written into
//! indexed customer columns in the same apply, through the upsert path: counts see them,
//! saved segments follow, and `WatchSegments` reports who entered in the same commit.
//! A program adds the columns it needs (those that exist must take its values) and owns
//! them: a PutProgram writes every customer's values, over whatever the table held.
//!
//! Achievements, like segment events, are a function of the log alone and are published
//! with their version (see [`Engine::publish_events`]): a watcher never sees one of a
//! sequence a read cannot see yet.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Engine, EngineError, Gone, Outcome};
use crate::gamify::state::check_time;
use crate::gamify::{
    Achievement, Applied, AttrValue, Change, ChangeOutcome, CustomerFacts, GamifyError, GamifyState, Program,
    Value,
};
use crate::segments::Segments;
use crate::store::mutate::{CellValue, CustomerUpdate, NewAttribute};
use crate::store::Dataset;

/// The program in force and every customer's state. Cloning is O(1) (the state is
/// persistent, see [`crate::gamify::state::Customers`]).
#[derive(Clone, Debug)]
pub struct Gamification {
    pub program: Arc<Program>,
    /// The logged time the program took effect.
    pub effective_ms: i64,
    pub state: GamifyState,
}

/// An achievement with the commit sequence of the change that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct AchievementEvent {
    pub sequence: u64,
    pub achievement: Achievement,
}

impl AchievementEvent {
    pub fn customer_id(&self) -> u64 {
        match &self.achievement {
            Achievement::TierChanged { customer_id, .. }
            | Achievement::LevelUp { customer_id, .. }
            | Achievement::BadgeAwarded { customer_id, .. }
            | Achievement::ChallengeCompleted { customer_id, .. }
            | Achievement::StreakMilestone { customer_id, .. } => *customer_id,
        }
    }
}

/// The most recent achievements, bounded like the segment event log.
struct AchievementLog {
    events: VecDeque<AchievementEvent>,
    capacity: usize,
    /// Highest sequence whose achievements were (partly) dropped.
    dropped_through: u64,
}

impl AchievementLog {
    fn push(&mut self, events: Vec<AchievementEvent>) {
        for e in events {
            if self.events.len() == self.capacity {
                if let Some(old) = self.events.pop_front() {
                    self.dropped_through = old.sequence;
                }
            }
            self.events.push_back(e);
        }
    }

    fn forget_through(&mut self, sequence: u64) {
        self.events.retain(|e| e.sequence > sequence);
        self.dropped_through = self.dropped_through.max(sequence);
    }

    fn since(&self, from: u64, customers: &HashSet<u64>, max: usize) -> Result<Vec<AchievementEvent>, Gone> {
        if from <= self.dropped_through {
            return Err(Gone { asked: from, oldest: self.dropped_through + 1 });
        }
        let start = self.events.partition_point(|e| e.sequence < from);
        Ok(self
            .events
            .range(start..)
            .filter(|e| customers.is_empty() || customers.contains(&e.customer_id()))
            .take(max)
            .cloned()
            .collect())
    }
}

/// [`Engine`]'s gamification field.
pub(super) struct GamifyPart {
    live: Option<Gamification>,
    /// Shared by every version: achievements of published versions.
    log: Arc<Mutex<AchievementLog>>,
    /// Achievements of changes applied to this version, not yet published (a lock so
    /// that publishing, from a shared version, can take them).
    unpublished: Mutex<Vec<AchievementEvent>>,
}

impl GamifyPart {
    pub(super) fn new(capacity: usize) -> GamifyPart {
        GamifyPart {
            live: None,
            log: Arc::new(Mutex::new(AchievementLog {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                dropped_through: 0,
            })),
            unpublished: Mutex::new(vec![]),
        }
    }

    /// Moves this version's achievements to the shared log (once it is published).
    pub(super) fn publish(&self) {
        let events = std::mem::take(&mut *self.unpublished.lock());
        if !events.is_empty() {
            self.log.lock().push(events);
        }
    }

    pub(super) fn forget_through(&self, sequence: u64) {
        self.log.lock().forget_through(sequence);
    }
}

impl Clone for GamifyPart {
    /// A clone starts with no unpublished achievements: they belong to the version that
    /// made them.
    fn clone(&self) -> Self {
        GamifyPart { live: self.live.clone(), log: self.log.clone(), unpublished: Mutex::new(vec![]) }
    }
}

/// What the gamification core may read of the table: existence, attributes, segments.
struct TableFacts<'a> {
    data: &'a Dataset,
    segments: &'a Segments,
}

impl CustomerFacts for TableFacts<'_> {
    fn exists(&self, customer_id: u64) -> bool {
        self.data.row_of(customer_id).is_some()
    }

    fn attribute(&self, customer_id: u64, name: &str) -> Value {
        let (Some(ci), Some(row)) = (self.data.column_index(name), self.data.row_of(customer_id)) else {
            return Value::Null;
        };
        match self.data.cell(ci, row) {
            CellValue::Null => Value::Null,
            CellValue::Bool(b) => Value::Bool(b),
            CellValue::Int(i) => Value::Int(i),
            CellValue::Float(x) => Value::Float(x),
            CellValue::Str(s) => Value::Str(s),
            CellValue::List(items) => Value::List(items),
        }
    }

    fn in_segment(&self, customer_id: u64, segment_id: &str) -> bool {
        matches!(self.segments.is_member(self.data, segment_id, customer_id), Ok(Some(true)))
    }
}

/// The columns a program writes: (name, the kind it is added with, a value as large as
/// any it will hold: an existing column must take it).
fn derived_columns(program: &Program) -> Vec<(String, NewAttribute, CellValue)> {
    let int = |n: &str| (n.to_string(), NewAttribute::Int, CellValue::Int(i64::MAX));
    let longest = program.spec.tiers.tiers.iter().map(|t| t.name.clone()).max_by_key(|n| n.len());
    let mut v = vec![
        int("points_balance"),
        int("points_pending"),
        int("lifetime_points"),
        int("points_expiring_30d"),
        ("tier".to_string(), NewAttribute::String, CellValue::Str(longest.unwrap_or_default())),
        ("level".to_string(), NewAttribute::Int, CellValue::Int(program.spec.levels.thresholds.len() as i64)),
    ];
    for c in &program.spec.counters {
        v.push(match c.sum {
            // Sums are hundredths shown as a float: a 64-bit float column holds them.
            Some(_) => (c.name.clone(), NewAttribute::Float, CellValue::Float(1e12 + 0.25)),
            None => int(&c.name),
        });
    }
    // Badges, challenges and streaks (`gamify::achieve`): the probe's kind is the column's.
    for (name, probe) in program.achieve.columns() {
        let kind = match probe {
            AttrValue::Int(_) => NewAttribute::Int,
            AttrValue::Float(_) => NewAttribute::Float,
            AttrValue::Str(_) => NewAttribute::String,
            AttrValue::Bool(_) => NewAttribute::Bool,
            AttrValue::List(_) => NewAttribute::StringList,
        };
        v.push((name, kind, cell(probe)));
    }
    v
}

/// Whether the table can take `program`'s derived attributes: a missing column must be
/// a valid new attribute name, an existing one must hold every value the program writes.
fn check_columns(data: &Dataset, program: &Program) -> Result<(), GamifyError> {
    for (name, _, probe) in derived_columns(program) {
        let err = |e: &dyn std::fmt::Display| {
            GamifyError::Program(format!("attribute '{name}' cannot hold the program's values: {e}"))
        };
        if data.column_index(&name).is_none() {
            data.check_new_attribute(&name).map_err(|e| err(&e))?;
        } else {
            let probe = CustomerUpdate { customer_id: 1, attributes: vec![(name.clone(), probe)] };
            data.check_upserts(&[probe]).map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

/// Whether a cell holds `want` (an int written to a float column reads back as a float).
fn same_cell(have: &CellValue, want: &CellValue) -> bool {
    match (have, want) {
        (CellValue::Float(x), CellValue::Int(i)) | (CellValue::Int(i), CellValue::Float(x)) => {
            *i as f64 == *x
        }
        _ => have == want,
    }
}

fn cell(v: AttrValue) -> CellValue {
    match v {
        AttrValue::Int(i) => CellValue::Int(i),
        AttrValue::Float(x) => CellValue::Float(x),
        AttrValue::Str(s) => CellValue::Str(s),
        AttrValue::Bool(b) => CellValue::Bool(b),
        AttrValue::List(l) => CellValue::List(l),
    }
}

impl Engine {
    /// The program in force and the state, or None before the first program.
    pub fn gamification(&self) -> Option<&Gamification> {
        self.gamify.live.as_ref()
    }

    /// Up to `max` retained achievements with `sequence >= from`, of the given customers
    /// (all when empty).
    pub fn achievements_since(
        &self,
        from: u64,
        customers: &HashSet<u64>,
        max: usize,
    ) -> Result<Vec<AchievementEvent>, Gone> {
        self.gamify.log.lock().since(from, customers, max)
    }

    /// The snapshot section (empty before the first program).
    pub fn gamify_snapshot(&self) -> Vec<u8> {
        match &self.gamify.live {
            Some(g) => crate::persist::gamify::change::encode_snapshot(&g.program, g.effective_ms, &g.state),
            None => vec![],
        }
    }

    /// Start-up only: the snapshot section [`Engine::gamify_snapshot`] wrote.
    pub fn restore_gamify(&mut self, bytes: &[u8]) -> Result<(), GamifyError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (program, effective_ms, state) = crate::persist::gamify::change::decode_snapshot(bytes)?;
        self.gamify.live = Some(Gamification { program: Arc::new(program), effective_ms, state });
        Ok(())
    }

    /// Whether `c` would apply against this version (nothing changes).
    pub(super) fn check_gamify(&self, c: &Change) -> Result<(), EngineError> {
        let facts = TableFacts { data: &self.data, segments: &self.segments };
        if let Change::PutProgram { program, effective_ms } = c {
            check_time("effective_ms", *effective_ms)?;
            check_columns(&self.data, program)?;
            let known = |n: &str| self.data.column_index(n).is_some();
            program.achieve.check_names(&program.spec, &known).map_err(GamifyError::Program)?;
            if let Some(g) = &self.gamify.live {
                g.state.check_program_change(&g.program, program)?;
            }
            return Ok(());
        }
        let g = self.gamify.live.as_ref().ok_or(GamifyError::NoProgram)?;
        let (program, state) = (&*g.program, &g.state);
        // A customer the change would create must have an id the table's id column holds.
        let id_fits = |id: u64| {
            let known = state.customer(id).is_some() || self.data.row_of(id).is_some();
            let probe = CustomerUpdate { customer_id: id, attributes: vec![] };
            if known {
                Ok(())
            } else {
                self.data.check_upserts(&[probe])
            }
        };
        match c {
            Change::PutProgram { .. } => unreachable!("answered above"),
            Change::RecordEvents { events, logged_at_ms } => {
                state.check_events(program, events, &facts, *logged_at_ms)?;
                for (index, e) in events.iter().enumerate() {
                    id_fits(e.customer_id).map_err(|err| GamifyError::Event {
                        index,
                        event_id: e.event_id.clone(),
                        reason: format!("customer_id: {err}"),
                    })?;
                }
            }
            Change::SpendPoints { spend, logged_at_ms } => {
                check_time("logged_at_ms", *logged_at_ms)?;
                state.check_spend(program, spend)?;
            }
            Change::GrantPoints { grant, logged_at_ms } => {
                check_time("logged_at_ms", *logged_at_ms)?;
                state.check_grant(program, grant, &facts)?;
                id_fits(grant.customer_id)?;
            }
            Change::SetManualTier { customer_id, tier, logged_at_ms } => {
                check_time("logged_at_ms", *logged_at_ms)?;
                if let Some(t) = tier {
                    program.tier_index(t).ok_or_else(|| GamifyError::UnknownTier(t.clone()))?;
                }
                if state.customer(*customer_id).is_none() && !facts.exists(*customer_id) {
                    return Err(GamifyError::UnknownCustomer(*customer_id).into());
                }
            }
            Change::Tick { now_ms } => check_time("now_ms", *now_ms)?,
            Change::JoinChallenge { customer_id, challenge, logged_at_ms } => {
                check_time("logged_at_ms", *logged_at_ms)?;
                state.check_join(program, *customer_id, challenge, &facts)?;
            }
        }
        Ok(())
    }

    /// Applies `c` as commit `sequence`. A change the core refuses at its turn (see
    /// [`ChangeOutcome::Rejected`]) changes nothing; an error here is a bug (the table
    /// refused derived values the program check admitted).
    pub(super) fn apply_gamify(&mut self, sequence: u64, c: &Change) -> Result<Outcome, EngineError> {
        let done = |o: ChangeOutcome| Ok(Outcome::Gamify(o));
        if let Change::PutProgram { program, effective_ms } = c {
            let applied = match self.gamify.live.as_mut() {
                Some(g) => {
                    // The core checks before it changes anything, so an error leaves the
                    // state as it was.
                    match g.state.apply_program(&g.program, program, *effective_ms) {
                        Ok(a) => a,
                        Err(e) => return done(ChangeOutcome::Rejected(e)),
                    }
                }
                None => Applied::default(),
            };
            for (name, kind, _) in derived_columns(program) {
                if self.data.column_index(&name).is_none() {
                    self.data.add_attribute(&name, kind)?;
                }
            }
            let state = self.gamify.live.take().map(|g| g.state).unwrap_or_default();
            self.gamify.live =
                Some(Gamification { program: program.clone(), effective_ms: *effective_ms, state });
            // Every row's columns are compared and rewritten below, so the changed
            // customers' values need no upsert of their own: only the achievements.
            let Applied { achievements, .. } = applied;
            let customers_changed = self.own_columns(sequence)?;
            self.write_derived(sequence, Applied { achievements, ..Applied::default() })?;
            return done(ChangeOutcome::ProgramPut { customers_changed });
        }
        let Some(g) = self.gamify.live.as_mut() else {
            return done(ChangeOutcome::Rejected(GamifyError::NoProgram));
        };
        let program = g.program.clone();
        // Out of the engine while the core reads the table through `facts`; the core
        // changes nothing on error, so it goes back as it was then.
        let mut state = std::mem::take(&mut g.state);
        let facts = TableFacts { data: &self.data, segments: &self.segments };
        let result = match c {
            Change::PutProgram { .. } => unreachable!("applied above"),
            Change::RecordEvents { events, logged_at_ms } => state
                .apply_events(&program, events, &facts, *logged_at_ms)
                .map(|a| (ChangeOutcome::Events(a.outcomes.clone()), a)),
            Change::SpendPoints { spend, logged_at_ms } => {
                state.spend(&program, spend, *logged_at_ms).map(|(o, a)| (ChangeOutcome::Spent(o), a))
            }
            Change::GrantPoints { grant, logged_at_ms } => state
                .grant(&program, grant, &facts, *logged_at_ms)
                .map(|(o, a)| (ChangeOutcome::Granted(o), a)),
            Change::SetManualTier { customer_id, tier, logged_at_ms } => state
                .set_manual_tier(&program, *customer_id, tier.as_deref(), &facts, *logged_at_ms)
                .map(|a| (ChangeOutcome::ManualTierSet, a)),
            Change::Tick { now_ms } => state
                .tick(&program, *now_ms)
                .map(|a| (ChangeOutcome::Ticked { customers_changed: a.changed.len() as u64 }, a)),
            Change::JoinChallenge { customer_id, challenge, logged_at_ms } => state
                .join_challenge(&program, *customer_id, challenge, &facts, *logged_at_ms)
                .map(|(already, a)| (ChangeOutcome::Joined { already }, a)),
        };
        if let Some(g) = self.gamify.live.as_mut() {
            g.state = state;
        }
        match result {
            Ok((outcome, applied)) => {
                self.write_derived(sequence, applied)?;
                done(outcome)
            }
            Err(e) => done(ChangeOutcome::Rejected(e)),
        }
    }

    /// The program owns its derived columns: after a PutProgram every customer's row
    /// holds the program's values, its state's or, for a customer no change has touched
    /// yet, the starting values (tier the first one, level 1, zero points and counters),
    /// whatever the table held before (the demo table's generated `tier` and `level`, an
    /// upsert's value). Only cells that differ are written, a column at a time (at 10M
    /// rows a column of cells is ~400 MB, an update per customer would be gigabytes);
    /// saved segments follow in the same apply. Answers the customers whose row changed.
    fn own_columns(&mut self, sequence: u64) -> Result<u64, EngineError> {
        use rayon::prelude::*;
        let Some(g) = self.gamify.live.as_ref() else { return Ok(0) };
        let start: Vec<(String, CellValue)> =
            g.state.starting_attributes(&g.program).into_iter().map(|(n, v)| (n, cell(v))).collect();
        let mut cols = Vec::with_capacity(start.len());
        for (name, _) in &start {
            let ci = self.data.column_index(name).ok_or_else(|| {
                GamifyError::Corrupt(format!("the program's column '{name}' was not added"))
            })?;
            cols.push(ci);
        }
        let rows = self.data.rows();
        let mut has_state = vec![false; rows];
        // Cells of customers with state that differ from their state, per column.
        let mut cells: Vec<Vec<(u32, CellValue)>> = vec![vec![]; cols.len()];
        let data = &self.data;
        g.state.for_each_attributes(&g.program, |id, attrs| {
            let Some(row) = data.row_of(id) else { return };
            has_state[row as usize] = true;
            for (k, v) in attrs.into_iter().enumerate() {
                let v = cell(v);
                if let Some(&ci) = cols.get(k) {
                    if !same_cell(&data.cell(ci, row), &v) {
                        cells[k].push((row, v));
                    }
                }
            }
        });
        let mut changed = vec![false; rows];
        for (k, mut cells) in cells.into_iter().enumerate() {
            let (ci, want) = (cols[k], &start[k].1);
            let data = &self.data;
            let stale: Vec<u32> = (0..rows as u32)
                .into_par_iter()
                .filter(|&r| {
                    !has_state[r as usize] && data.live.contains(r) && !same_cell(&data.cell(ci, r), want)
                })
                .collect();
            cells.extend(stale.into_iter().map(|r| (r, want.clone())));
            for &(r, _) in &cells {
                changed[r as usize] = true;
            }
            self.data.write_column_cells(ci, cells);
        }
        let changed: Vec<u32> = (0..rows as u32).filter(|&r| changed[r as usize]).collect();
        if !changed.is_empty() {
            let events = self.segments.on_write(&self.data, &changed, None, &[], &[], sequence);
            self.unpublished.extend(events);
        }
        Ok(changed.len() as u64)
    }

    /// Writes a change's derived attributes into the table (new customers get rows),
    /// with the saved segments' events, and keeps its achievements for publication.
    /// The program's columns are looked up once here, and each customer's values move
    /// into their columns (no name, no copy per value).
    fn write_derived(&mut self, sequence: u64, applied: Applied) -> Result<(), EngineError> {
        let Applied { outcomes: _, created: _, changed, achievements } = applied;
        // Created customers are among the changed ones (every touched customer is).
        if !changed.is_empty() {
            let program =
                self.gamify.live.as_ref().map(|g| g.program.clone()).ok_or(GamifyError::NoProgram)?;
            let mut columns = Vec::with_capacity(program.attr_names.len());
            for name in &program.attr_names {
                let ci = self.data.column_index(name).ok_or_else(|| {
                    GamifyError::Corrupt(format!("the program's column '{name}' was not added"))
                })?;
                columns.push((ci, Vec::with_capacity(changed.len())));
            }
            let mut ids = Vec::with_capacity(changed.len());
            for c in changed {
                if c.values.len() != columns.len() {
                    return Err(GamifyError::Corrupt(format!(
                        "customer {}: {} derived values for {} columns",
                        c.customer_id,
                        c.values.len(),
                        columns.len()
                    ))
                    .into());
                }
                ids.push(c.customer_id);
                for (col, v) in columns.iter_mut().zip(c.values) {
                    col.1.push(cell(v));
                }
            }
            let (rows, touched) = self.data.apply_checked_columns(&ids, columns);
            let events = self.segments.on_write(&self.data, &rows, Some(&touched), &[], &[], sequence);
            self.unpublished.extend(events);
        }
        if !achievements.is_empty() {
            let mut u = self.gamify.unpublished.lock();
            u.extend(achievements.into_iter().map(|achievement| AchievementEvent { sequence, achievement }));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "engine_achieve_tests.rs"]
mod achieve_tests;
#[cfg(test)]
#[path = "engine_gamify_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine_gamify_columns_tests.rs"]
mod columns_tests;
