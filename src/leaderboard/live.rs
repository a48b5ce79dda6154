//! [`Boards`]: the leaderboards a gamification program defines, kept current from the
//! engine's logged gamification changes.
//!
//! # Where the boards live, and why
//! The engine is cloned for every commit group (each published version), and a board of
//! 10M entries is ~1.1 GB whose bitmaps (members, bands) are whole `Postings`: a
//! copy-on-write board would still copy tens of MB per version on its first write. So
//! boards are kept OUTSIDE the versioned engine: one `Boards` behind a lock, shared by
//! every version, changed only by the committer as it applies mutations in log order
//! (live writes, replay and replicas alike). Reads see the latest applied state, which
//! may be ahead of the version they read the rest from by the group being applied (a
//! customer just created there may be ranked before the version that holds their row
//! is published), and, as the committer lets readers in every few dozen score updates
//! (see [`Locked`]), part of a commit group's updates.
//!
//! Every change carries its log sequence, and `applied_through` (the last sequence the
//! boards took) makes each one apply at most once: a version cloned and applied twice
//! (tests, locating a failed record) and a replay from a snapshot whose boards are
//! ahead of its table both skip what the boards already hold. Snapshots therefore write
//! the boards as they are when the snapshot thread reads them (≥ the snapshot's
//! sequence, never behind it: the table's version is published before), and start-up
//! replays the log over them, skipping what they hold: the same boards as before the
//! restart, entry for entry.
//!
//! Costs of that choice: the snapshot thread holds the boards' read lock while it
//! encodes them (at 10M entries, on the order of a second in which the committer's next
//! gamification write waits), and memory is ~110 bytes per entry per period held: a
//! closed period kept is a whole board, so `keep_closed` multiplies a board's size.
//!
//! # Scores
//! Only logged records move a board: an applied (non-duplicate) event of a
//! `RecordEvents` change adds its metric to its customer's score with the change's
//! logged instant (`logged_at_ms`, never the wall clock, never the client's
//! `occurred_at_ms`) and the tie-break sequence `log sequence × 16384 + the event's index
//! in its batch` (so who reached a score first is exact within one record and one
//! millisecond). Points: what the event credited (after caps, every wallet) minus what
//! a refund reversed; zero-point events leave the board alone. An event count: +1 per
//! event of the type. An event sum: the property in hundredths. A challenge's progress:
//! what the challenge's progress took from the event ([`crate::gamify::ChallengeStep`],
//! reported by the event's own apply: the board never judges a match itself, so it
//! counts exactly what the challenge counts, opt-in and eligibility included), uncapped.
//! Grants, spends, expiry and joins do not move boards (they are not earned by events).
//!
//! Periods roll over on the logged instant of any gamification change (events, ticks,
//! a program) that falls in a later period; a read asking for the current period at a
//! wall-clock time past the last rollover sees an empty board, and the periods before
//! it move back by one (see [`crate::leaderboard::PeriodBoard::board_at`]).
//!
//! # Program changes
//! A program change keeps a board whose id, metric, period, `keep_closed` and (for a
//! periodic board) time zone are unchanged, and for a challenge-progress board its
//! challenge's counting rules ([`ChallengeCounts`]), scores and closed periods included
//! (a new name is just a label). A board that is new, or whose ranking changed, starts empty
//! in the period holding the program's effective instant: past events are not kept, so
//! it cannot be recomputed, and an empty start is the same on every replay. A board the
//! new program drops is discarded.
//!
//! A deleted customer leaves every board and period (their row is never reused).

use std::sync::Arc;

use super::{BoardError, PeriodBoard};
use crate::gamify::leaderboards::{ChallengeCounts, LeaderboardSpec, MetricSpec};
use crate::gamify::program::cents;
use crate::gamify::{ChallengeStep, Event, EventOutcome, Program, PropValue};

/// Events in one batch are below this (`gamify::program::MAX_BATCH` is 10,000), so the
/// tie-break sequence of event `i` of record `s` is `s * SEQ_STRIDE + i`.
pub const SEQ_STRIDE: u64 = 1 << 14;

/// One board: its definition and its periods.
#[derive(Clone, Debug)]
pub struct LiveBoard {
    pub spec: LeaderboardSpec,
    /// A challenge-progress board's counting rules, as its scores were counted (None for
    /// the other metrics).
    pub counts: Option<ChallengeCounts>,
    pub board: PeriodBoard,
}

impl LiveBoard {
    /// A score in the metric's unit (sums are kept in hundredths).
    pub fn value_of(&self, score: i64) -> f64 {
        let hundredths = match self.spec.metric {
            MetricSpec::EventSum { .. } => true,
            MetricSpec::ChallengeProgress { .. } => {
                self.counts.as_ref().is_some_and(ChallengeCounts::hundredths)
            }
            MetricSpec::Points | MetricSpec::EventCount { .. } => false,
        };
        if hundredths {
            score as f64 / 100.0
        } else {
            score as f64
        }
    }

    /// What event `e` with outcome (credited, reversed, challenge steps) adds to this
    /// board, if anything; `challenge`: the index of a challenge-progress board's
    /// challenge in the program that applied the event.
    fn delta(
        &self,
        e: &Event,
        (credited, reversed, steps): (i64, i64, &[ChallengeStep]),
        challenge: Option<u16>,
    ) -> Option<i64> {
        match &self.spec.metric {
            MetricSpec::Points => Some(credited - reversed).filter(|&d| d != 0),
            MetricSpec::EventCount { event } => (e.kind == *event).then_some(1),
            MetricSpec::EventSum { event, property } => (e.kind == *event)
                .then(|| e.properties.get(property).and_then(PropValue::as_f64).map_or(0, cents)),
            MetricSpec::ChallengeProgress { .. } => {
                let ci = challenge?;
                steps.iter().find(|s| s.challenge == ci).map(|s| s.amount)
            }
        }
    }
}

/// Every board of the program in force, in program order.
#[derive(Clone, Debug, Default)]
pub struct Boards {
    pub(crate) boards: Vec<LiveBoard>,
    /// The last log sequence these boards took (see the module doc).
    pub(crate) applied_through: u64,
}

impl Boards {
    pub fn applied_through(&self) -> u64 {
        self.applied_through
    }

    pub fn all(&self) -> &[LiveBoard] {
        &self.boards
    }

    pub fn get(&self, id: &str) -> Result<&LiveBoard, BoardError> {
        self.boards.iter().find(|b| b.spec.id == id).ok_or_else(|| BoardError::UnknownBoard {
            id: id.to_string(),
            known: self.boards.iter().map(|b| b.spec.id.clone()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Whether record `seq` is new to the boards (then it is taken as applied).
    fn take(&mut self, seq: u64) -> bool {
        if seq <= self.applied_through {
            return false;
        }
        self.applied_through = seq;
        true
    }

    /// A program came into force at `effective_ms` (see the module doc's "Program changes").
    pub fn on_program(&mut self, seq: u64, program: &Program, effective_ms: i64) {
        if !self.take(seq) {
            return;
        }
        let mut old = std::mem::take(&mut self.boards);
        for spec in &program.spec.leaderboards {
            let counts = spec.counts(&program.spec);
            let kept = old.iter().position(|b| {
                b.spec.id == spec.id
                    && b.spec.same_ranking(spec)
                    && b.counts == counts
                    && (b.board.tz() == program.tz || spec.period() == super::Period::AllTime)
            });
            let board = match kept {
                Some(i) => old.swap_remove(i).board,
                // keep_closed was validated with the program: ≤ MAX_KEEP.
                None => match PeriodBoard::new(spec.period(), program.tz, spec.keep(), effective_ms) {
                    Ok(b) => b,
                    Err(e) => unreachable!("a validated program's board {}: {e}", spec.id),
                },
            };
            self.boards.push(LiveBoard { spec: spec.clone(), counts, board });
        }
        self.roll_to(effective_ms);
    }

    fn roll_to(&mut self, at_ms: i64) {
        for b in &mut self.boards {
            b.board.roll_to(at_ms);
        }
    }

    /// A logged clock tick: periods that ended roll over.
    pub fn on_tick(&mut self, seq: u64, now_ms: i64) {
        if self.take(seq) {
            self.roll_to(now_ms);
        }
    }

    /// Any other gamification change logged at `at_ms` (spends, grants, tiers): periods
    /// roll over, scores stay.
    pub fn on_logged(&mut self, seq: u64, at_ms: i64) {
        self.on_tick(seq, at_ms);
    }

    /// A batch of events applied as record `seq` under `program` with these outcomes
    /// (one per event); `row_of` finds each customer's row (every applied event's
    /// customer has one).
    pub fn on_events(
        &mut self,
        seq: u64,
        logged_at_ms: i64,
        (events, outcomes): (&[Event], &[EventOutcome]),
        program: &Program,
        row_of: impl Fn(u64) -> Option<u32>,
    ) {
        let mut me = self;
        records_into(&mut me, &[(seq, logged_at_ms, events, outcomes)], program, row_of, |_| {});
    }

    /// Customers deleted by record `seq` leave every board.
    pub fn on_delete(&mut self, seq: u64, rows: &[u32]) {
        if !self.take(seq) {
            return;
        }
        for b in &mut self.boards {
            for &r in rows {
                b.board.remove(r);
            }
        }
    }

    /// Start-up: the log ends at `last` but the boards say they took records after it
    /// (a snapshot survived a log tail that did not): later records with those sequences
    /// are new and must count.
    pub fn clamp_to(&mut self, last: u64) {
        if self.applied_through > last {
            tracing::warn!(
                boards = self.applied_through,
                log = last,
                "leaderboards hold records the log lost; records from here on count"
            );
            self.applied_through = last;
        }
    }
}

/// Rows whose scores are moved between two chances for waiting readers to take the
/// lock (see [`Locked`]): ~100 µs of work at 10M entries.
const SLICE: usize = 64;

/// One record of events as the boards take it: (log sequence, logged instant, events,
/// their outcomes).
pub type EventRecord<'a> = (u64, i64, &'a [Event], &'a [EventOutcome]);

/// A score update staged for a run of records: (board, row, add for [`Board::add_all`]).
///
/// [`Board::add_all`]: super::Board::add_all
type Staged = (usize, u32, (u64, i64, i64, u64));

/// The records' score updates on `boards` (a guard or a plain reference): staged, then
/// applied once per board and row, calling `bump` every [`SLICE`] rows. The updates of
/// a row are applied in log order with [`super::Board::add_all`], so the entry is what
/// adding them one event at a time leaves; a record whose instant starts a new period
/// first applies what is staged (it belongs to the period ending).
fn records_into<G: std::ops::DerefMut<Target = Boards>>(
    boards: &mut G,
    records: &[EventRecord<'_>],
    program: &Program,
    row_of: impl Fn(u64) -> Option<u32>,
    bump: impl Fn(&mut G),
) {
    let mut staged: Vec<Staged> = Vec::new();
    // The program that applied the records (the boards took it with its PutProgram):
    // each challenge-progress board's challenge, by its index there.
    let challenge_of: Vec<Option<u16>> = boards
        .boards
        .iter()
        .map(|b| match &b.spec.metric {
            MetricSpec::ChallengeProgress { challenge } => {
                program.achieve.challenges.iter().position(|c| c.def.id == *challenge).map(|i| i as u16)
            }
            _ => None,
        })
        .collect();
    for &(seq, logged_at_ms, events, outcomes) in records {
        if !boards.take(seq) {
            continue;
        }
        if boards.boards.iter().any(|b| b.board.would_roll(logged_at_ms)) {
            flush(boards, &mut staged, &bump);
            boards.roll_to(logged_at_ms);
        }
        for (i, (e, o)) in events.iter().zip(outcomes).enumerate() {
            let outcome = match o {
                EventOutcome::Applied { credited, reversed, shortfall: _, challenges } => {
                    (*credited, *reversed, challenges.as_slice())
                }
                EventOutcome::Duplicate => continue,
            };
            let Some(row) = row_of(e.customer_id) else { continue };
            let tie = seq.saturating_mul(SEQ_STRIDE).saturating_add(i as u64);
            for (bi, b) in boards.boards.iter().enumerate() {
                if let Some(delta) = b.delta(e, outcome, challenge_of[bi]) {
                    staged.push((bi, row, (e.customer_id, delta, logged_at_ms, tie)));
                }
            }
        }
    }
    flush(boards, &mut staged, &bump);
}

/// Applies the staged updates, a board and row at a time (in log order within each).
fn flush<G: std::ops::DerefMut<Target = Boards>>(
    boards: &mut G,
    staged: &mut Vec<Staged>,
    bump: &impl Fn(&mut G),
) {
    // Stable: a row's updates stay in log order.
    staged.sort_by_key(|&(board, row, _)| (board, row));
    let mut adds = Vec::new();
    let mut rows = 0;
    for group in staged.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        adds.clear();
        adds.extend(group.iter().map(|s| s.2));
        let b = &mut boards.boards[group[0].0];
        for err in b.board.add_all_rolled(group[0].1, &adds) {
            // Deterministic (the same on replay): the score stays where it was.
            tracing::warn!(board = %b.spec.id, error = %err, "leaderboard score not changed");
        }
        rows += 1;
        if rows == SLICE {
            rows = 0;
            bump(boards);
        }
    }
    staged.clear();
}

/// The boards behind their lock, with a second lock that keeps a snapshot from reading
/// a record's updates half applied.
///
/// A batch of 1,000 events is ~2,000 score updates, milliseconds of work at 10M
/// entries: under one write lock, every read of a board (`GetGamificationState`'s ranks,
/// `RankOf`, ...) waited for all of it. The committer now yields the write lock to
/// waiting readers every [`SLICE`] rows it moves, so a read may see part of a run of
/// records' updates (as it could already see records the version it read does not hold
/// yet). A snapshot must not: its `applied_through` would count those records whole, so
/// it takes `record` first, which the committer holds for the whole run.
#[derive(Debug, Default)]
pub struct Locked {
    boards: parking_lot::RwLock<Boards>,
    record: parking_lot::Mutex<()>,
}

impl Locked {
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Boards> {
        self.boards.read()
    }

    /// For a change applied under one guard (a program, a tick, a delete, a restore).
    pub fn write(&self) -> parking_lot::RwLockWriteGuard<'_, Boards> {
        self.boards.write()
    }

    /// A read that never sees a record half applied (snapshots).
    pub fn read_whole<T>(&self, f: impl FnOnce(&Boards) -> T) -> T {
        let _record = self.record.lock();
        f(&self.boards.read())
    }

    /// [`Boards::on_events`] for a run of records (a commit group's consecutive event
    /// batches): each customer's score moves once per board, not once per event, and
    /// the write lock is yielded to waiting readers every [`SLICE`] rows (see the
    /// type's doc). `program`: the one that applied the records; `row_of` as of the end
    /// of the run (rows are never reused).
    pub fn on_event_records(
        &self,
        records: &[EventRecord<'_>],
        program: &Program,
        row_of: impl Fn(u64) -> Option<u32>,
    ) {
        let _record = self.record.lock();
        let mut boards = self.boards.write();
        records_into(&mut boards, records, program, row_of, |g| parking_lot::RwLockWriteGuard::bump(g));
    }
}

/// The engine's handle: one `Boards` shared by every version (see the module doc).
pub type Shared = Arc<Locked>;
