//! The snapshot form of leaderboards: protobuf messages whose field numbers are the
//! compatibility contract, and the explicit conversions from and to
//! [`crate::leaderboard`]'s types (which know nothing of prost). A board is stored as its
//! entries in rank order; restoring re-inserts them, so the restored board equals the
//! original entry for entry.

use std::collections::VecDeque;

use chrono_tz::Tz;
use prost::Message;

use crate::gamify::leaderboards::{LeaderboardSpec, MetricSpec};
use crate::leaderboard::live::{Boards, LiveBoard};
use crate::leaderboard::{period, Board, BoardError, Key, Period, PeriodBoard};

#[derive(Clone, PartialEq, Message)]
pub struct EntryRecord {
    #[prost(uint32, tag = "1")]
    pub row: u32,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(sint64, tag = "3")]
    pub score: i64,
    #[prost(int64, tag = "4")]
    pub reached_at_ms: i64,
    #[prost(uint64, tag = "5")]
    pub seq: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct BoardRecord {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<EntryRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClosedRecord {
    #[prost(int64, tag = "1")]
    pub index: i64,
    #[prost(message, optional, tag = "2")]
    pub board: Option<BoardRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PeriodBoardRecord {
    /// 0 all time, 1 day, 2 week, 3 month.
    #[prost(uint32, tag = "1")]
    pub period: u32,
    /// IANA name.
    #[prost(string, tag = "2")]
    pub tz: String,
    #[prost(uint32, tag = "3")]
    pub keep: u32,
    #[prost(int64, tag = "4")]
    pub index: i64,
    #[prost(message, optional, tag = "5")]
    pub current: Option<BoardRecord>,
    #[prost(message, repeated, tag = "6")]
    pub closed: Vec<ClosedRecord>,
}

/// The engine's boards (`leaderboard::live`): snapshot field 40 of `segd.log.v1.SnapshotMeta`.
#[derive(Clone, PartialEq, Message)]
pub struct LiveBoardsRecord {
    #[prost(uint64, tag = "1")]
    pub applied_through: u64,
    #[prost(message, repeated, tag = "2")]
    pub boards: Vec<LiveBoardRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LiveBoardRecord {
    /// The board's definition in the program's JSON form (`gamify::leaderboards`).
    #[prost(string, tag = "1")]
    pub spec_json: String,
    #[prost(message, optional, tag = "2")]
    pub board: Option<PeriodBoardRecord>,
    /// A challenge-progress board's counting rules (`gamify::leaderboards::ChallengeCounts`
    /// as JSON), absent for the other metrics; snapshots before it had no such board.
    #[prost(string, optional, tag = "3")]
    pub counts_json: Option<String>,
}

pub fn board_to_record(b: &Board) -> BoardRecord {
    BoardRecord {
        entries: b
            .keys()
            .map(|k| EntryRecord {
                row: k.row,
                customer_id: k.customer_id,
                score: k.score,
                reached_at_ms: k.reached_at_ms,
                seq: k.seq,
            })
            .collect(),
    }
}

/// Rebuilds a board in O(n); entries out of rank order or a row listed twice are an
/// error (a corrupt snapshot).
pub fn board_from_record(r: &BoardRecord) -> Result<Board, BoardError> {
    let keys = r
        .entries
        .iter()
        .map(|e| Key {
            score: e.score,
            reached_at_ms: e.reached_at_ms,
            seq: e.seq,
            customer_id: e.customer_id,
            row: e.row,
        })
        .collect();
    Board::from_sorted_keys(keys).ok_or(BoardError::Record {
        field: "entries",
        reason: "not in strict rank order, or a row listed twice".into(),
    })
}

fn period_code(p: Period) -> u32 {
    match p {
        Period::AllTime => 0,
        Period::Day => 1,
        Period::Week => 2,
        Period::Month => 3,
    }
}

pub fn period_to_record(p: &PeriodBoard) -> PeriodBoardRecord {
    PeriodBoardRecord {
        period: period_code(p.period),
        tz: p.tz.name().to_string(),
        keep: p.keep,
        index: p.index,
        current: Some(board_to_record(&p.current)),
        closed: p
            .closed
            .iter()
            .map(|(i, b)| ClosedRecord { index: *i, board: Some(board_to_record(b)) })
            .collect(),
    }
}

pub fn period_from_record(r: &PeriodBoardRecord) -> Result<PeriodBoard, BoardError> {
    let period = match r.period {
        0 => Period::AllTime,
        1 => Period::Day,
        2 => Period::Week,
        3 => Period::Month,
        other => return Err(BoardError::Record { field: "period", reason: format!("unknown code {other}") }),
    };
    let tz: Tz = r.tz.parse().map_err(|_| BoardError::TimeZone(r.tz.clone()))?;
    if r.keep > period::MAX_KEEP {
        return Err(BoardError::Keep { got: r.keep, max: period::MAX_KEEP });
    }
    let mut closed = VecDeque::with_capacity(r.closed.len());
    for c in &r.closed {
        if c.index >= r.index || closed.back().is_some_and(|(i, _)| *i >= c.index) {
            return Err(BoardError::Record {
                field: "closed.index",
                reason: format!("{} is not ascending below the current {}", c.index, r.index),
            });
        }
        closed.push_back((c.index, board_from_record(c.board.as_ref().unwrap_or(&Default::default()))?));
    }
    Ok(PeriodBoard {
        period,
        tz,
        keep: r.keep,
        index: r.index,
        current: board_from_record(r.current.as_ref().unwrap_or(&Default::default()))?,
        closed,
    })
}

/// A period board's encoded bytes.
pub fn encode_period(p: &PeriodBoard) -> Vec<u8> {
    period_to_record(p).encode_to_vec()
}

pub fn decode_period(bytes: &[u8]) -> Result<PeriodBoard, BoardError> {
    let r = PeriodBoardRecord::decode(bytes)
        .map_err(|e| BoardError::Record { field: "bytes", reason: e.to_string() })?;
    period_from_record(&r)
}

/// The engine's boards as the snapshot section (empty while no program ever defined a
/// board).
pub fn encode_boards(b: &Boards) -> Vec<u8> {
    if b.boards.is_empty() && b.applied_through == 0 {
        return vec![];
    }
    LiveBoardsRecord {
        applied_through: b.applied_through,
        boards: b
            .boards
            .iter()
            .map(|b| LiveBoardRecord {
                spec_json: serde_json::to_string(&b.spec).unwrap_or_default(),
                board: Some(period_to_record(&b.board)),
                counts_json: b.counts.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default()),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// What [`encode_boards`] wrote.
pub fn decode_boards(bytes: &[u8]) -> Result<Boards, BoardError> {
    if bytes.is_empty() {
        return Ok(Boards::default());
    }
    let r = LiveBoardsRecord::decode(bytes)
        .map_err(|e| BoardError::Record { field: "leaderboards", reason: e.to_string() })?;
    let mut boards = Vec::with_capacity(r.boards.len());
    for b in &r.boards {
        let spec: LeaderboardSpec = serde_json::from_str(&b.spec_json)
            .map_err(|e| BoardError::Record { field: "spec_json", reason: e.to_string() })?;
        let board = period_from_record(b.board.as_ref().unwrap_or(&Default::default()))?;
        let counts = match &b.counts_json {
            Some(j) => Some(
                serde_json::from_str(j)
                    .map_err(|e| BoardError::Record { field: "counts_json", reason: e.to_string() })?,
            ),
            None => None,
        };
        if matches!(spec.metric, MetricSpec::ChallengeProgress { .. }) != counts.is_some() {
            let reason =
                format!("board '{}': counts_json goes with a challenge_progress metric only", spec.id);
            return Err(BoardError::Record { field: "counts_json", reason });
        }
        boards.push(LiveBoard { spec, counts, board });
    }
    Ok(Boards { boards, applied_through: r.applied_through })
}
