//! One handler per use case: decode the proto3 JSON body (or the path), convert with the
//! gRPC adapter's conversions, call [`App`], convert the answer. No logic of its own.

use std::time::Instant;

use crate::app::ErrorCode;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};

use crate::app::{App, NewSegment};
use crate::grpc::convert::{self, segment_ref};
use crate::grpc::pb;
use crate::store::mutate::CustomerUpdate;

use super::body::{decode, Pb};
use super::error::HttpError;

pub(super) type Body = Result<Bytes, BytesRejection>;
pub(super) type Answer<T> = Result<Pb<T>, HttpError>;

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// `POST /v1/segments:count`
pub async fn count(State(app): State<App>, body: Body) -> Answer<pb::CountSegmentResponse> {
    let t = Instant::now();
    let pb::CountSegmentRequest { segment } = decode(body)?;
    let c = app.count(segment_ref(segment)?).await?;
    Ok(Pb(pb::CountSegmentResponse {
        count: c.count,
        total: c.total,
        server_time_us: micros(t),
        cached: c.cached,
    }))
}

/// `POST /v1/segments:isMember`
pub async fn is_member(State(app): State<App>, body: Body) -> Answer<pb::IsMemberResponse> {
    let pb::IsMemberRequest { customer_id, segment } = decode(body)?;
    let m = app.is_member(customer_id, segment_ref(segment)?)?;
    Ok(Pb(pb::IsMemberResponse { is_member: m.is_member, customer_found: m.customer_found }))
}

/// `POST /v1/segments:batchIsMember`
pub async fn batch_is_member(State(app): State<App>, body: Body) -> Answer<pb::BatchIsMemberResponse> {
    let t = Instant::now();
    let pb::BatchIsMemberRequest { customer_ids, segment } = decode(body)?;
    let b = app.batch_is_member(customer_ids, segment_ref(segment)?).await?;
    Ok(Pb(pb::BatchIsMemberResponse {
        is_member: b.is_member,
        customer_found: b.customer_found,
        members: b.members,
        server_time_us: micros(t),
    }))
}

/// `POST /v1/segments:explain`
pub async fn explain(State(app): State<App>, body: Body) -> Answer<pb::ExplainResponse> {
    let t = Instant::now();
    let pb::ExplainRequest { segment } = decode(body)?;
    let e = app.explain(segment_ref(segment)?).await?;
    let text = e.root.render();
    Ok(Pb(pb::ExplainResponse {
        root: Some(convert::plan_node(e.root)),
        text,
        total: e.total,
        server_time_us: micros(t),
    }))
}

/// `GET /v1/schema?maxValues=N` (the request's one field, as a query parameter).
pub async fn schema(State(app): State<App>, RawQuery(query): RawQuery) -> Answer<pb::SchemaResponse> {
    let mut max_values = 0;
    for (k, v) in query.iter().flat_map(|q| q.split('&')).filter_map(|kv| kv.split_once('=')) {
        match k {
            "maxValues" | "max_values" => {
                max_values = v.parse().map_err(|_| {
                    HttpError::new(
                        ErrorCode::InvalidArgument,
                        format!("maxValues: '{v}' is not a number 0..2^32"),
                    )
                })?;
            }
            _ => {
                return Err(HttpError::new(
                    ErrorCode::InvalidArgument,
                    format!("unknown query parameter '{k}'"),
                ))
            }
        }
    }
    let s = app.schema(max_values)?;
    Ok(Pb(pb::SchemaResponse {
        total: s.total,
        id_column: s.id_column,
        attributes: s.attributes.into_iter().map(convert::attribute).collect(),
    }))
}

/// `POST /v1/segments:breakdown`
pub async fn breakdown(State(app): State<App>, body: Body) -> Answer<pb::BreakdownResponse> {
    let t = Instant::now();
    let pb::BreakdownRequest { segment, attribute, top_n } = decode(body)?;
    let b = app.breakdown(segment_ref(segment)?, attribute, top_n).await?;
    Ok(Pb(convert::breakdown(b, micros(t))))
}

/// `POST /v1/segments:overlap`
pub async fn overlap(State(app): State<App>, body: Body) -> Answer<pb::OverlapResponse> {
    let t = Instant::now();
    let pb::OverlapRequest { segments } = decode(body)?;
    let segments =
        segments.into_iter().map(|pb::Segment { segment }| segment_ref(segment)).collect::<Result<_, _>>()?;
    let o = app.overlap(segments).await?;
    Ok(Pb(pb::OverlapResponse {
        rows: o.counts.into_iter().map(|counts| pb::OverlapRow { counts }).collect(),
        total: o.total,
        server_time_us: micros(t),
    }))
}

/// `POST /v1/segments`
pub async fn create_segment(State(app): State<App>, body: Body) -> Answer<pb::CreateSegmentResponse> {
    let req: pb::CreateSegmentRequest = decode(body)?;
    let c = app.create_segment(NewSegment::try_from(req)?).await?;
    Ok(Pb(pb::CreateSegmentResponse { sequence: c.sequence, count: c.count }))
}

/// `GET /v1/segments`
pub async fn list_segments(State(app): State<App>) -> Answer<pb::ListSegmentsResponse> {
    Ok(Pb(pb::ListSegmentsResponse {
        segments: app.list_segments().into_iter().map(convert::saved_segment).collect(),
    }))
}

/// `GET /v1/segments/{id}`
pub async fn get_segment(State(app): State<App>, Path(id): Path<String>) -> Answer<pb::SavedSegment> {
    Ok(Pb(convert::saved_segment(app.get_segment(&id)?)))
}

/// `DELETE /v1/segments/{id}`
pub async fn delete_segment(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Answer<pb::DeleteSegmentResponse> {
    Ok(Pb(pb::DeleteSegmentResponse { sequence: app.delete_segment(id).await? }))
}

/// `POST /v1/segments/{id}:addMembers` and `…:removeMembers`: a custom method on one
/// segment (the id itself cannot hold ':'). The body's `segmentId`, when given, must
/// name the same segment.
pub async fn edit_members(
    State(app): State<App>,
    Path(id_method): Path<String>,
    body: Body,
) -> Answer<pb::EditMembersResponse> {
    let Some((id, method)) = id_method.rsplit_once(':') else {
        return Err(HttpError::new(
            ErrorCode::NotFound,
            format!("POST /v1/segments/{id_method}: use /v1/segments/{{id}}:addMembers or :removeMembers"),
        ));
    };
    let pb::EditMembersRequest { segment_id, customer_ids } = decode(body)?;
    if !segment_id.is_empty() && segment_id != id {
        return Err(HttpError::new(
            ErrorCode::InvalidArgument,
            format!("segmentId '{segment_id}' in the body differs from '{id}' in the path"),
        ));
    }
    let e = match method {
        "addMembers" => app.add_members(id.to_string(), customer_ids).await?,
        "removeMembers" => app.remove_members(id.to_string(), customer_ids).await?,
        other => {
            return Err(HttpError::new(
                ErrorCode::NotFound,
                format!("unknown method ':{other}' on a segment: use :addMembers or :removeMembers"),
            ))
        }
    };
    Ok(Pb(pb::EditMembersResponse { sequence: e.sequence, changed: e.changed }))
}

/// A customer id from the path.
pub(super) fn customer_id(s: &str) -> Result<u64, HttpError> {
    s.parse().map_err(|_| {
        HttpError::new(ErrorCode::InvalidArgument, format!("customer id '{s}' is not a number 0..2^64"))
    })
}

/// `GET /v1/customers/{id}/segments`
pub async fn segments_of(State(app): State<App>, Path(id): Path<String>) -> Answer<pb::SegmentsOfResponse> {
    let s = app.segments_of(customer_id(&id)?);
    Ok(Pb(pb::SegmentsOfResponse { segment_ids: s.segment_ids, customer_found: s.customer_found }))
}

/// `POST /v1/customers:upsert`
pub async fn upsert_customers(State(app): State<App>, body: Body) -> Answer<pb::UpsertCustomersResponse> {
    let pb::UpsertCustomersRequest { customers } = decode(body)?;
    let batch = customers.into_iter().map(CustomerUpdate::try_from).collect::<Result<Vec<_>, _>>()?;
    let u = app.upsert(batch).await?;
    Ok(Pb(pb::UpsertCustomersResponse { sequence: u.sequence, applied: u.applied }))
}

/// `POST /v1/customers:delete`
pub async fn delete_customers(State(app): State<App>, body: Body) -> Answer<pb::DeleteCustomersResponse> {
    let pb::DeleteCustomersRequest { customer_ids } = decode(body)?;
    let d = app.delete_customers(customer_ids).await?;
    Ok(Pb(pb::DeleteCustomersResponse { sequence: d.sequence, deleted: d.deleted }))
}

/// `GET /v1/customers/{id}`
pub async fn get_customer(State(app): State<App>, Path(id): Path<String>) -> Answer<pb::Customer> {
    let c = app.get_customer(customer_id(&id)?)?;
    Ok(Pb(convert::customer_pb(c.customer_id, c.attributes)))
}

/// `POST /v1/attributes`
pub async fn add_attribute(State(app): State<App>, body: Body) -> Answer<pb::AddAttributeResponse> {
    let pb::AddAttributeRequest { name, r#type } = decode(body)?;
    let kind = convert::attribute_type(r#type)?;
    Ok(Pb(pb::AddAttributeResponse { sequence: app.add_attribute(name, kind).await? }))
}
