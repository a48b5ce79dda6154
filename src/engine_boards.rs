//! The engine's leaderboards: [`crate::leaderboard::live::Boards`], shared by every
//! version and moved by the committer in log order (why they live outside the versions:
//! see that module). Called from one line of `Engine::apply`'s `Gamify` and `Delete` arms.

use parking_lot::RwLockReadGuard;

use super::{Engine, Outcome};
use crate::gamify::{Change, ChangeOutcome};
use crate::leaderboard::live::Boards;
use crate::leaderboard::BoardError;

impl Engine {
    /// The boards as last applied (possibly ahead of this version by the commit group
    /// being applied). Hold the guard briefly: the committer waits for it.
    pub fn boards(&self) -> RwLockReadGuard<'_, Boards> {
        self.boards.read()
    }

    /// The snapshot section (empty while no board was ever defined).
    pub fn boards_snapshot(&self) -> Vec<u8> {
        self.boards.read().encode()
    }

    /// Start-up only: the boards of a snapshot (replay then skips what they hold).
    pub fn restore_boards(&mut self, bytes: &[u8]) -> Result<(), BoardError> {
        *self.boards.write() = Boards::decode(bytes)?;
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
        let mut boards = self.boards.write();
        match c {
            Change::PutProgram { effective_ms, .. } => {
                if let Some(g) = self.gamification() {
                    boards.on_program(sequence, &g.program, *effective_ms);
                }
            }
            Change::RecordEvents { events, logged_at_ms } => {
                if let Outcome::Gamify(ChangeOutcome::Events(outcomes)) = o {
                    boards.on_events(sequence, *logged_at_ms, events, outcomes, |id| self.data.row_of(id));
                }
            }
            Change::SpendPoints { logged_at_ms, .. }
            | Change::GrantPoints { logged_at_ms, .. }
            | Change::SetManualTier { logged_at_ms, .. }
            | Change::JoinChallenge { logged_at_ms, .. } => boards.on_logged(sequence, *logged_at_ms),
            Change::Tick { now_ms } => boards.on_tick(sequence, *now_ms),
        }
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
