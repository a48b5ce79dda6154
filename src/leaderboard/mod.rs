//! Exact leaderboards: a ranking per board and period, read whole or within any scope
//! bitmap (everyone, a saved segment's members, an ad-hoc `where`), with no copy of the
//! board per scope.
//!
//! - [`board`]: one ranking ([`Board`]): sorted blocks with a Fenwick tree over block
//!   sizes; `top`, `rank_of`, `around`, `count`, each whole or scoped.
//! - [`bands`]: key bands with cumulative bitmaps, so a scoped rank counts the scope's
//!   members ahead in a few bitmap AND-counts.
//! - [`period`]: [`PeriodBoard`]: the current period's board (day, week, month in the
//!   program's time zone, or all time), rolled over on a logged instant, with the last N
//!   closed periods kept for payouts.
//! - [`live`]: [`live::Boards`], the boards a gamification program defines, kept by the
//!   engine from logged changes, outside its versions (why: see there).
//!
//! # Tie-break
//! Higher score first; on equal scores, who reached the score first ranks higher
//! (`reached_at_ms`, then the logged sequence number, so two updates in one millisecond
//! still order exactly); then the lower customer id. A score set again to its current
//! value keeps its original instant.
//!
//! Pure: no I/O and no clock; every instant comes from the caller's logged record. The
//! snapshot form is [`crate::persist::leaderboard`]'s.

pub mod bands;
pub mod board;
pub mod live;
pub mod period;
#[cfg(test)]
mod tests;

pub use board::{Board, Key};
pub use period::{Period, PeriodBoard, PeriodSel};

use crate::index::Postings;

/// Whose ranks a read counts.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    Everyone,
    /// Rows of a bitmap: a saved segment's members or an evaluated ad-hoc `where`.
    Rows(&'a Postings),
}

/// One ranked entry of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranked {
    /// 1-based, within the scope of the read.
    pub rank: u64,
    pub row: u32,
    pub customer_id: u64,
    pub score: i64,
    pub reached_at_ms: i64,
    pub seq: u64,
}

impl Ranked {
    fn new(k: &Key, rank: u64) -> Self {
        Ranked {
            rank,
            row: k.row,
            customer_id: k.customer_id,
            score: k.score,
            reached_at_ms: k.reached_at_ms,
            seq: k.seq,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoardError {
    #[error("leaderboard score of row {row} would overflow: {score} + {delta}")]
    Overflow { row: u32, score: i64, delta: i64 },
    #[error("unknown time zone {0:?} in a leaderboard record")]
    TimeZone(String),
    #[error("leaderboard record field {field}: {reason}")]
    Record { field: &'static str, reason: String },
    #[error("keep must be at most {max} closed periods, got {got}")]
    Keep { got: u32, max: u32 },
    #[error(
        "no closed period {back} back: the board keeps {kept} (keep_closed), and an all-time board none"
    )]
    NoSuchPeriod { back: u32, kept: usize },
    #[error("unknown leaderboard '{id}' (the program defines: {known})")]
    UnknownBoard { id: String, known: String },
}
