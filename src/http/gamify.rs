//! The event and gamification use cases over HTTP (`EventService.RecordEvents` and
//! `GamificationService`), with the gRPC adapter's conversions (`crate::grpc::gamify`).
//! The streams (RecordEventStream, WatchAchievements) are gRPC only.

use axum::extract::{Path, RawQuery, State};

use crate::app::gamify::{ProgramInfo, Recorded};
use crate::app::{App, ErrorCode};
use crate::gamify::{Grant, Spend};
use crate::grpc::gamify::{events, ledger_pb, page_limit, points_pb, recorded_pb, state_pb, transitions_pb};
use crate::grpc::pb;

use super::body::{decode, Pb};
use super::error::HttpError;
use super::routes::{customer_id, Answer, Body};

/// `POST /v1/events:record`
pub async fn record_events(State(app): State<App>, body: Body) -> Answer<pb::RecordEventsResponse> {
    Ok(Pb(recorded_pb(app.record_events(events(decode(body)?)?).await?)))
}

/// `GET /v1/program`
pub async fn get_program(State(app): State<App>) -> Answer<pb::GetProgramResponse> {
    let ProgramInfo { json, effective_ms } = app.get_program()?;
    Ok(Pb(pb::GetProgramResponse { program_json: json, effective_ms }))
}

/// `POST /v1/program`
pub async fn put_program(State(app): State<App>, body: Body) -> Answer<pb::PutProgramResponse> {
    let pb::PutProgramRequest { program_json } = decode(body)?;
    let Recorded { sequence, result } = app.put_program(&program_json).await?;
    Ok(Pb(pb::PutProgramResponse { sequence, customers_changed: result }))
}

/// `POST /v1/program:preview`
pub async fn preview_program(State(app): State<App>, body: Body) -> Answer<pb::PreviewProgramResponse> {
    let pb::PreviewProgramRequest { program_json } = decode(body)?;
    Ok(Pb(transitions_pb(app.preview_program(&program_json).await?)))
}

/// `GET /v1/customers/{id}/gamification`
pub async fn gamification_state(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Answer<pb::GamificationState> {
    let id = customer_id(&id)?;
    let mut state = state_pb(app.gamification_state(id)?);
    state.leaderboards = crate::grpc::leaderboard::ranks_pb(app.board_ranks(id)?);
    Ok(Pb(state))
}

/// `GET /v1/customers/{id}/ledger?wallet=W&afterSeq=N&limit=N` (the request's other
/// fields as query parameters).
pub async fn ledger(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer<pb::GetLedgerResponse> {
    let (mut wallet, mut after_seq, mut limit) = (String::new(), None, 0u32);
    let number = |k: &str, v: &str| {
        v.parse::<u32>().map_err(|_| {
            HttpError::new(ErrorCode::InvalidArgument, format!("{k}: '{v}' is not a number 0..2^32"))
        })
    };
    for (k, v) in query.iter().flat_map(|q| q.split('&')).filter_map(|kv| kv.split_once('=')) {
        match k {
            "wallet" => wallet = v.to_string(),
            "afterSeq" | "after_seq" => after_seq = Some(number(k, v)?),
            "limit" => limit = number(k, v)?,
            _ => {
                return Err(HttpError::new(
                    ErrorCode::InvalidArgument,
                    format!("unknown query parameter '{k}' (wallet, afterSeq, limit)"),
                ))
            }
        }
    }
    Ok(Pb(ledger_pb(app.ledger(customer_id(&id)?, wallet, after_seq, page_limit(limit)?)?)))
}

/// `POST /v1/points:spend`
pub async fn spend_points(State(app): State<App>, body: Body) -> Answer<pb::PointsResponse> {
    let pb::PointsRequest { customer_id, wallet, request_id, points } = decode(body)?;
    Ok(Pb(points_pb(app.spend_points(Spend { customer_id, wallet, request_id, points }).await?)))
}

/// `POST /v1/points:grant`
pub async fn grant_points(State(app): State<App>, body: Body) -> Answer<pb::PointsResponse> {
    let pb::PointsRequest { customer_id, wallet, request_id, points } = decode(body)?;
    Ok(Pb(points_pb(app.grant_points(Grant { customer_id, wallet, request_id, points }).await?)))
}

/// `POST /v1/tiers:setManual` (an empty `tier` clears the floor)
pub async fn set_manual_tier(State(app): State<App>, body: Body) -> Answer<pb::SetManualTierResponse> {
    let pb::SetManualTierRequest { customer_id, tier } = decode(body)?;
    let tier = (!tier.is_empty()).then_some(tier);
    Ok(Pb(pb::SetManualTierResponse { sequence: app.set_manual_tier(customer_id, tier).await? }))
}
