//! The engine's leaderboards: [`crate::leaderboard::live::Boards`], shared by every
//! version and moved by the committer in log order (why they live outside the versions:
//! see that module). Called from one line of `Engine::apply`'s `Gamify` and `Delete` arms,
//! and for a run of event batches in a commit group from `Engine::apply_group`.

use parking_lot::RwLockReadGuard;

use super::{Engine, EngineError, Mutation, Outcome};
use crate::gamify::{Change, ChangeOutcome};
use crate::leaderboard::live::{Boards, EventRecord};
use crate::leaderboard::BoardError;

impl Engine {
    /// The boards as last applied (possibly ahead of this version by the commit group
    /// being applied, possibly holding part of a record's updates: see
    /// [`crate::leaderboard::live::Locked`]). Hold the guard briefly: the committer waits
    /// for it.
    pub fn boards(&self) -> RwLockReadGuard<'_, Boards> {
        self.boards.read()
    }

    /// The snapshot section (empty while no board was ever defined).
    pub fn boards_snapshot(&self) -> Vec<u8> {
        self.boards.read_whole(crate::persist::leaderboard::encode_boards)
    }

    /// Start-up only: the boards of a snapshot (replay then skips what they hold).
    pub fn restore_boards(&mut self, bytes: &[u8]) -> Result<(), BoardError> {
        *self.boards.write() = crate::persist::leaderboard::decode_boards(bytes)?;
        Ok(())
    }

    /// Start-up only, after replay: the log ends at this version's sequence.
    pub fn boards_replayed(&self) {
        self.boards.write().clamp_to(self.sequence);
    }

    /// After gamification change `c` was applied as record `sequence` with outcome `o`.
    pub(super) fn boards_after_gamify(&self, sequence: u64, c: &Change, o: &Outcome) {
        if matches!(o, Outcome::Gamify(ChangeOutcome::Rejected(_))) {
            return;
        }
        match c {
            Change::PutProgram { effective_ms, .. } => {
                if let Some(g) = self.gamification() {
                    self.boards.write().on_program(sequence, &g.program, *effective_ms);
                }
            }
            Change::RecordEvents { events, logged_at_ms } => {
                if let (Outcome::Gamify(ChangeOutcome::Events(outcomes)), Some(g)) = (o, self.gamification())
                {
                    let record = (sequence, *logged_at_ms, events.as_slice(), outcomes.as_slice());
                    self.boards.on_event_records(&[record], &g.program, |id| self.data.row_of(id));
                }
            }
            Change::SpendPoints { logged_at_ms, .. }
            | Change::GrantPoints { logged_at_ms, .. }
            | Change::SetManualTier { logged_at_ms, .. }
            | Change::JoinChallenge { logged_at_ms, .. } => {
                self.boards.write().on_logged(sequence, *logged_at_ms)
            }
            Change::Tick { now_ms } => self.boards.write().on_tick(sequence, *now_ms),
        }
    }

    /// Applies a run of `RecordEvents` changes (consecutive in a commit group) as
    /// [`Engine::apply`] would one by one, but moves the boards once for the run: one
    /// update per customer per board (see [`crate::leaderboard::live::Locked::on_event_records`]).
    pub(super) fn apply_events_run(
        &mut self,
        items: &[(u64, &Mutation)],
    ) -> Vec<Result<Outcome, EngineError>> {
        let mut out = Vec::with_capacity(items.len());
        for &(sequence, m) in items {
            let r = match m {
                Mutation::Gamify(c) => self.apply_gamify(sequence, c),
                other => unreachable!("a run of event batches holds {}", other.summary()),
            };
            if r.is_ok() {
                self.sequence = sequence;
            }
            out.push(r);
        }
        let records: Vec<EventRecord<'_>> = items
            .iter()
            .zip(&out)
            .filter_map(|(&(sequence, m), r)| match (m, r) {
                (
                    Mutation::Gamify(Change::RecordEvents { events, logged_at_ms }),
                    Ok(Outcome::Gamify(ChangeOutcome::Events(outcomes))),
                ) => Some((sequence, *logged_at_ms, events.as_slice(), outcomes.as_slice())),
                _ => None,
            })
            .collect();
        // A run holds event batches only, no program change: the program in force
        // applied every record of it.
        if let Some(g) = self.gamification() {
            self.boards.on_event_records(&records, &g.program, |id| self.data.row_of(id));
        }
        out
    }

    /// Customers (id, row) deleted by record `sequence` leave every board.
    pub(super) fn boards_on_delete(&self, sequence: u64, deleted: &[(u64, u32)]) {
        if deleted.is_empty() {
            return;
        }
        let rows: Vec<u32> = deleted.iter().map(|&(_, r)| r).collect();
        self.boards.write().on_delete(sequence, &rows);
    }
}

#[cfg(test)]
#[path = "engine_boards_tests.rs"]
mod tests;
