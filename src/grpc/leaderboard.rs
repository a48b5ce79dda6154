//! `segd.v1.LeaderboardService`: translation between the proto messages and the
//! application's leaderboard reads (every message destructured). Errors go through
//! `AppError::code`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::app::leaderboard::{BoardEntry, BoardPage, BoardRank, BoardScope, PeriodSpan};
use crate::app::AppError;
use crate::leaderboard::PeriodSel;
use crate::metrics::Rpc;

use super::pb::{self, leaderboard_service_server::LeaderboardService};
use super::service::Ctx;

#[derive(Clone)]
pub struct LeaderboardSvc(pub Arc<Ctx>);

/// Unset: everyone; set: its segment oneof must be too.
pub(crate) fn scope(s: Option<pb::Segment>) -> Result<BoardScope, AppError> {
    match s {
        None => Ok(BoardScope::Everyone),
        Some(pb::Segment { segment }) => Ok(BoardScope::Segment(super::convert::segment_ref(segment)?)),
    }
}

pub(crate) fn period(previous: u32) -> PeriodSel {
    match previous {
        0 => PeriodSel::Current,
        n => PeriodSel::Previous(n),
    }
}

fn period_pb(p: PeriodSpan) -> pb::BoardPeriod {
    let PeriodSpan { index, bounds } = p;
    let (start_ms, end_ms) = bounds.unwrap_or((0, 0));
    pb::BoardPeriod { index, start_ms, end_ms }
}

fn entry_pb(e: BoardEntry) -> pb::BoardEntry {
    let BoardEntry { rank, customer_id, score, value, reached_at_ms } = e;
    pb::BoardEntry { rank, customer_id, score, value, reached_at_ms }
}

pub(crate) fn page_pb(p: BoardPage) -> pb::LeaderboardResponse {
    let BoardPage { board, name, period, entries, count } = p;
    pb::LeaderboardResponse {
        board,
        name,
        period: Some(period_pb(period)),
        entries: entries.into_iter().map(entry_pb).collect(),
        count,
    }
}

pub fn rank_pb(r: BoardRank) -> pb::BoardRank {
    let BoardRank { board, name, period, entry, count } = r;
    pb::BoardRank {
        board,
        name,
        period: Some(period_pb(period)),
        ranked: entry.is_some(),
        entry: entry.map(entry_pb),
        count,
    }
}

/// `GetGamificationState`'s leaderboards field.
pub fn ranks_pb(r: Vec<BoardRank>) -> Vec<pb::BoardRank> {
    r.into_iter().map(rank_pb).collect()
}

#[tonic::async_trait]
impl LeaderboardService for LeaderboardSvc {
    async fn leaderboard(
        &self,
        req: Request<pb::LeaderboardRequest>,
    ) -> Result<Response<pb::LeaderboardResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::Leaderboard, async {
            let pb::LeaderboardRequest { board, scope: s, previous, limit, offset } = req.into_inner();
            let page =
                ctx.app.leaderboard(board, scope(s)?, period(previous), limit as usize, offset).await?;
            Ok(page_pb(page))
        })
        .await
    }

    async fn around_me(
        &self,
        req: Request<pb::AroundMeRequest>,
    ) -> Result<Response<pb::LeaderboardResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::AroundMe, async {
            let pb::AroundMeRequest { board, scope: s, previous, customer_id, k } = req.into_inner();
            let page = ctx.app.around_me(board, scope(s)?, period(previous), customer_id, k as usize).await?;
            Ok(page_pb(page))
        })
        .await
    }

    async fn rank_of(&self, req: Request<pb::RankOfRequest>) -> Result<Response<pb::BoardRank>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::RankOf, async {
            let pb::RankOfRequest { board, scope: s, previous, customer_id } = req.into_inner();
            Ok(rank_pb(ctx.app.rank_of(board, scope(s)?, period(previous), customer_id).await?))
        })
        .await
    }
}
