//! `segd.v1.DecisionService` over HTTP: the gRPC adapter's conversions, the same
//! [`App`] calls. `DecideForSegment` answers newline-delimited JSON, one
//! `DecideForSegmentResponse` a line (an error mid-stream is a last line with the error
//! body, `{"code": ..., "message": ...}`).

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::{App, BlastRequest, ErrorCode, NboRequest};
use crate::decide::{ContactPolicy, Offer};
use crate::grpc::decide as conv;
use crate::grpc::pb;

use super::body::{decode, Pb};
use super::error::{http_status, HttpError};

type Body = Result<Bytes, BytesRejection>;
type Answer<T> = Result<Pb<T>, HttpError>;

/// `POST /v1/offers` (a `PutOfferRequest`)
pub async fn put_offer(State(app): State<App>, body: Body) -> Answer<pb::PutOfferResponse> {
    let pb::PutOfferRequest { offer } = decode(body)?;
    let offer = offer.ok_or_else(|| HttpError::new(ErrorCode::InvalidArgument, "offer: missing"))?;
    let (sequence, replaced) = app.put_offer(Offer::try_from(offer)?).await?;
    Ok(Pb(pb::PutOfferResponse { sequence, replaced }))
}

/// `GET /v1/offers`
pub async fn list_offers(State(app): State<App>) -> Answer<pb::ListOffersResponse> {
    Ok(Pb(pb::ListOffersResponse { offers: app.list_offers().iter().map(|o| conv::offer_pb(o)).collect() }))
}

/// `GET /v1/offers/{id}`
pub async fn get_offer(State(app): State<App>, Path(id): Path<String>) -> Answer<pb::Offer> {
    Ok(Pb(conv::offer_pb(app.get_offer(&id)?.as_ref())))
}

/// `DELETE /v1/offers/{id}`
pub async fn delete_offer(State(app): State<App>, Path(id): Path<String>) -> Answer<pb::DeleteOfferResponse> {
    Ok(Pb(pb::DeleteOfferResponse { sequence: app.delete_offer(id).await? }))
}

/// `GET /v1/contactPolicy`
pub async fn get_contact_policy(State(app): State<App>) -> Answer<pb::ContactPolicy> {
    Ok(Pb(conv::policy_pb(&app.contact_policy())))
}

/// `PUT /v1/contactPolicy` (a `ContactPolicy`)
pub async fn set_contact_policy(State(app): State<App>, body: Body) -> Answer<pb::SetContactPolicyResponse> {
    let p: pb::ContactPolicy = decode(body)?;
    Ok(Pb(pb::SetContactPolicyResponse {
        sequence: app.set_contact_policy(ContactPolicy::try_from(p)?).await?,
    }))
}

/// `POST /v1/decisions:nextBestOffer`
pub async fn next_best_offer(State(app): State<App>, body: Body) -> Answer<pb::NextBestOfferResponse> {
    let r: pb::NextBestOfferRequest = decode(body)?;
    Ok(Pb(conv::answer_pb(app.next_best_offer(NboRequest::try_from(r)?).await?)))
}

/// `POST /v1/decisions:recordOutcome`
pub async fn record_outcome(State(app): State<App>, body: Body) -> Answer<pb::RecordOutcomeResponse> {
    let pb::RecordOutcomeRequest { decision_id, offer_id, outcome, at_ms } = decode(body)?;
    let kind = conv::outcome_kind(outcome)?;
    let r = app.record_outcome(decision_id, offer_id, kind, at_ms).await?;
    Ok(Pb(pb::RecordOutcomeResponse { sequence: r.sequence, duplicate: r.duplicate }))
}

/// `POST /v1/offers:reachEstimate` (a `ReachEstimateRequest`)
pub async fn reach_estimate(State(app): State<App>, body: Body) -> Answer<pb::ReachEstimateResponse> {
    let pb::ReachEstimateRequest { offer_id, context } = decode(body)?;
    let (f, now_ms) = app.reach_estimate(&offer_id, conv::context(context)?).await?;
    Ok(Pb(conv::funnel_pb(f, now_ms)))
}

/// `GET /v1/decisions/{id}`
pub async fn get_decision(State(app): State<App>, Path(id): Path<String>) -> Answer<pb::GetDecisionResponse> {
    let id: u64 = id.parse().map_err(|_| {
        HttpError::new(ErrorCode::InvalidArgument, format!("decision id '{id}' is not a number 0..2^64"))
    })?;
    let (d, expires_ms) = app.get_decision(id)?;
    Ok(Pb(conv::stored_pb(&d, expires_ms)))
}

/// `POST /v1/decisions:decideForSegment`: one JSON message a line, as they are decided.
pub async fn decide_for_segment(State(app): State<App>, body: Body) -> Result<Response, HttpError> {
    let r: pb::DecideForSegmentRequest = decode(body)?;
    let rx = app.decide_for_segment(BlastRequest::try_from(r)?).await?;
    let lines = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |m| {
        let mut line = match m {
            Ok(m) => serde_json::to_vec(&conv::blast_pb(m)),
            Err(e) => {
                let e = HttpError::from(e);
                let (_, name) = http_status(e.code);
                serde_json::to_vec(&serde_json::json!({ "code": name, "message": e.message }))
            }
        }?;
        line.push(b'\n');
        Ok::<_, serde_json::Error>(Bytes::from(line))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], HttpBody::from_stream(lines)).into_response())
}
