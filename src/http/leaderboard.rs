//! `LeaderboardService` and `JoinChallenge` over HTTP, with the gRPC adapter's
//! conversions (`crate::grpc::leaderboard`): the bodies are the proto3 JSON of the same
//! request messages, so a scope is `{"segmentId": …}`, `{"where": …}` or a predicate.

use axum::extract::State;

use crate::app::gamify::Recorded;
use crate::app::App;
use crate::grpc::leaderboard::{page_pb, period, rank_pb, scope};
use crate::grpc::pb;

use super::body::{decode, Pb};
use super::routes::{Answer, Body};

/// `POST /v1/leaderboards:top`
pub async fn leaderboard(State(app): State<App>, body: Body) -> Answer<pb::LeaderboardResponse> {
    let pb::LeaderboardRequest { board, scope: s, previous, limit, offset } = decode(body)?;
    Ok(Pb(page_pb(app.leaderboard(board, scope(s)?, period(previous), limit as usize, offset).await?)))
}

/// `POST /v1/leaderboards:aroundMe`
pub async fn around_me(State(app): State<App>, body: Body) -> Answer<pb::LeaderboardResponse> {
    let pb::AroundMeRequest { board, scope: s, previous, customer_id, k } = decode(body)?;
    Ok(Pb(page_pb(app.around_me(board, scope(s)?, period(previous), customer_id, k as usize).await?)))
}

/// `POST /v1/leaderboards:rankOf`
pub async fn rank_of(State(app): State<App>, body: Body) -> Answer<pb::BoardRank> {
    let pb::RankOfRequest { board, scope: s, previous, customer_id } = decode(body)?;
    Ok(Pb(rank_pb(app.rank_of(board, scope(s)?, period(previous), customer_id).await?)))
}

/// `POST /v1/challenges:join`
pub async fn join_challenge(State(app): State<App>, body: Body) -> Answer<pb::JoinChallengeResponse> {
    let pb::JoinChallengeRequest { customer_id, challenge } = decode(body)?;
    let Recorded { sequence, result } = app.join_challenge(customer_id, challenge).await?;
    Ok(Pb(pb::JoinChallengeResponse { sequence, already_joined: result }))
}
