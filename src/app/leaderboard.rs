//! Leaderboard reads: the top of a board, the entries around a customer, a customer's
//! rank, each within a scope (everyone, a saved segment, an ad-hoc `where` or predicate)
//! resolved to a row bitmap against one version, as counts resolve it, and in a period
//! (the current one or a kept closed one). No copy of a board per scope exists: a scoped
//! read walks or counts the board through the bitmap (see [`crate::leaderboard::Board`]).
//!
//! The boards are the latest applied state (see [`crate::leaderboard::live`]); "current"
//! is the period holding the wall clock at the read (a period nothing was logged in yet
//! reads as empty).

use super::gamify::now_ms;
use super::reads::Target;
use super::{on_pool, App, AppError, SegmentRef};
use crate::engine::Engine;
use crate::index::Postings;
use crate::leaderboard::live::LiveBoard;
use crate::leaderboard::period::period_bounds;
use crate::leaderboard::{Board, PeriodSel, Ranked, Scope};
use crate::query::eval::materialize;

/// The largest `offset` of a leaderboard page: a scoped page walks `offset / density`
/// entries, so deep pages are refused rather than slow.
pub const MAX_OFFSET: u64 = 100_000;
/// The most entries on each side of a customer in `AroundMe`.
pub const MAX_AROUND: usize = 100;
/// The most entries of one leaderboard page.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 10;
pub const DEFAULT_AROUND: usize = 5;

/// Whose ranks a read counts.
#[derive(Clone, Debug, PartialEq)]
pub enum BoardScope {
    Everyone,
    Segment(SegmentRef),
}

/// The period a read answered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodSpan {
    /// Local days since 1970-01-01, ISO weeks since 1969-12-29, `year * 12 + month0`;
    /// 0 for all time.
    pub index: i64,
    /// `[start_ms, end_ms)` in the program's time zone; None for all time.
    pub bounds: Option<(i64, i64)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoardEntry {
    /// 1-based, within the scope.
    pub rank: u64,
    pub customer_id: u64,
    /// Hundredths for a sum metric.
    pub score: i64,
    /// The score in the metric's unit.
    pub value: f64,
    /// The logged instant the score was reached (the tie-break).
    pub reached_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BoardPage {
    pub board: String,
    pub name: String,
    pub period: PeriodSpan,
    pub entries: Vec<BoardEntry>,
    /// Entries of the scope on the board in that period.
    pub count: u64,
}

/// A customer's place on one board.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardRank {
    pub board: String,
    pub name: String,
    pub period: PeriodSpan,
    /// None: not on the board in that period (or not in the scope).
    pub entry: Option<BoardEntry>,
    /// Entries of the scope on the board in that period.
    pub count: u64,
}

fn entry(b: &LiveBoard, r: &Ranked) -> BoardEntry {
    BoardEntry {
        rank: r.rank,
        customer_id: r.customer_id,
        score: r.score,
        value: b.value_of(r.score),
        reached_at_ms: r.reached_at_ms,
    }
}

/// The board of `period` as a read now sees it, and the period's span.
fn period_of(b: &LiveBoard, period: PeriodSel) -> Result<(&Board, PeriodSpan), AppError> {
    let (board, index) = b.board.board_at(period, now_ms())?;
    let bounds = period_bounds(b.board.tz(), index, b.board.period());
    Ok((board, PeriodSpan { index, bounds }))
}

impl App {
    /// The scope as rows of this version (a `where` text evaluated once, on the caller's
    /// pool thread).
    fn scope_rows(&self, eng: &Engine, scope: &BoardScope) -> Result<Option<Postings>, AppError> {
        match scope {
            BoardScope::Everyone => Ok(None),
            BoardScope::Segment(s) => Ok(Some(match self.target(eng, s)? {
                Target::Saved(s) => Postings::clone(&s.members),
                Target::Plan(c) => materialize(eng.data(), &c.plan),
            })),
        }
    }

    fn check_scope(&self, scope: &BoardScope) -> Result<(), AppError> {
        match scope {
            BoardScope::Everyone => Ok(()),
            BoardScope::Segment(s) => self.check_segment(s),
        }
    }

    /// Entries ranked `offset + 1 ..= offset + limit` (limit 0: 10) within the scope.
    pub async fn leaderboard(
        &self,
        board: String,
        scope: BoardScope,
        period: PeriodSel,
        limit: usize,
        offset: u64,
    ) -> Result<BoardPage, AppError> {
        let limit = if limit == 0 { DEFAULT_PAGE } else { limit };
        at_most("limit", limit as u64, MAX_PAGE as u64)?;
        at_most("offset", offset, MAX_OFFSET)?;
        self.on_board(board, scope, None, move |b, _, scope| {
            page(b, period, scope, |pb| pb.top(limit, offset, scope))
        })
        .await
    }

    /// Up to `k` (0: 5) entries on each side of a customer within the scope, the customer
    /// included; no entries when the customer is not on the board or not in the scope.
    pub async fn around_me(
        &self,
        board: String,
        scope: BoardScope,
        period: PeriodSel,
        customer_id: u64,
        k: usize,
    ) -> Result<BoardPage, AppError> {
        let k = if k == 0 { DEFAULT_AROUND } else { k };
        at_most("k", k as u64, MAX_AROUND as u64)?;
        self.on_board(board, scope, Some(customer_id), move |b, row, scope| {
            page(b, period, scope, |pb| pb.around(row, k, scope))
        })
        .await
    }

    /// A customer's rank within the scope, and how many the scope ranks.
    pub async fn rank_of(
        &self,
        board: String,
        scope: BoardScope,
        period: PeriodSel,
        customer_id: u64,
    ) -> Result<BoardRank, AppError> {
        self.on_board(board, scope, Some(customer_id), move |b, row, scope| rank_on(b, period, row, scope))
            .await
    }

    /// What the three reads share: on the pool, against the current version, `read` gets
    /// the board, the named customer's row (`NOT_FOUND` first when the table does not hold
    /// it; row 0 when none is named) and the scope.
    async fn on_board<T: Send + 'static>(
        &self,
        board: String,
        scope: BoardScope,
        customer_id: Option<u64>,
        read: impl FnOnce(&LiveBoard, u32, Scope<'_>) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        self.check_scope(&scope)?;
        let app = self.clone();
        on_pool(move || {
            let eng = app.read();
            let row = match customer_id {
                Some(id) => eng.data().row_of(id).ok_or(AppError::UnknownCustomer(id))?,
                None => 0,
            };
            let rows = app.scope_rows(&eng, &scope)?;
            let boards = eng.boards();
            read(boards.get(&board)?, row, rows.as_ref().map_or(Scope::Everyone, Scope::Rows))
        })
        .await
    }

    /// A customer's rank on every board, among everyone, in the current period (what
    /// `GetGamificationState` shows); empty for a customer the table does not hold.
    pub fn board_ranks(&self, customer_id: u64) -> Result<Vec<BoardRank>, AppError> {
        let eng = self.read();
        let Some(row) = eng.data().row_of(customer_id) else { return Ok(vec![]) };
        let boards = eng.boards();
        boards.all().iter().map(|b| rank_on(b, PeriodSel::Current, row, Scope::Everyone)).collect()
    }
}

fn at_most(field: &'static str, got: u64, max: u64) -> Result<(), AppError> {
    if got > max {
        return Err(AppError::Invalid { field, msg: format!("{got} is above the largest, {max}") });
    }
    Ok(())
}

/// A page of `b`'s entries in `period`, as `ranked` picks them, with the scope's count.
fn page(
    b: &LiveBoard,
    period: PeriodSel,
    scope: Scope<'_>,
    ranked: impl FnOnce(&Board) -> Vec<Ranked>,
) -> Result<BoardPage, AppError> {
    let (pb, span) = period_of(b, period)?;
    let entries = ranked(pb).iter().map(|r| entry(b, r)).collect();
    Ok(BoardPage {
        board: b.spec.id.clone(),
        name: b.spec.name.clone(),
        period: span,
        entries,
        count: pb.count(scope),
    })
}

fn rank_on(b: &LiveBoard, period: PeriodSel, row: u32, scope: Scope<'_>) -> Result<BoardRank, AppError> {
    let (pb, span) = period_of(b, period)?;
    let entry = match (pb.rank_of(row, scope), pb.entry(row)) {
        (Some(rank), Some(k)) => Some(BoardEntry {
            rank,
            customer_id: k.customer_id,
            score: k.score,
            value: b.value_of(k.score),
            reached_at_ms: k.reached_at_ms,
        }),
        (None, _) | (_, None) => None,
    };
    Ok(BoardRank {
        board: b.spec.id.clone(),
        name: b.spec.name.clone(),
        period: span,
        entry,
        count: pb.count(scope),
    })
}
