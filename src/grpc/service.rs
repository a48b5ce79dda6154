//! `segd.v1.SegmentService`: each method destructures its request, converts it to the
//! application's input, calls [`App`], and converts the result; errors become statuses
//! in [`status_of`]. No state, policy or evaluation here.

use std::future::Future;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::app::{App, AppError, NewSegment};
use crate::metrics::{Metrics, Rpc};

use super::convert::{self, segment_ref};
use super::pb::{self, segment_service_server::SegmentService};
use super::replica::{at_least, min_sequence};
use super::status::status_of;

/// What both services share: the application and the per-RPC metrics.
pub struct Ctx {
    pub app: App,
    pub metrics: std::sync::Arc<Metrics>,
}

impl Ctx {
    /// Runs one call, records its metrics, maps its error. The call's span is at DEBUG
    /// level: at the default (INFO) it is disabled, so a call pays no span creation,
    /// field formatting or registry bookkeeping (measured at ~4% of an IsMember's server
    /// CPU when it was an INFO span; BENCHMARKS.md §7).
    pub(super) async fn call<T>(
        &self,
        rpc: Rpc,
        work: impl Future<Output = Result<T, AppError>>,
    ) -> Result<Response<T>, Status> {
        let t = Instant::now();
        let span = tracing::debug_span!("rpc", rpc = rpc.name());
        let result = work.instrument(span.clone()).await.map_err(status_of);
        self.record(rpc, &span, t, result.as_ref().err());
        result.map(Response::new)
    }

    /// Records one call's metrics and logs its failure. Failures name the RPC themselves:
    /// at the default level the span is disabled and adds nothing to the event.
    pub(super) fn record(&self, rpc: Rpc, span: &tracing::Span, t: Instant, err: Option<&Status>) {
        let code = err.map_or(tonic::Code::Ok, |s| s.code());
        let elapsed = t.elapsed();
        self.metrics.observe(rpc, code as i32, elapsed);
        span.in_scope(|| match err {
            None => tracing::debug!(us = elapsed.as_micros() as u64, "ok"),
            Some(s) if s.code() == tonic::Code::Internal => {
                tracing::error!(rpc = rpc.name(), message = s.message(), "failed")
            }
            Some(s) => tracing::debug!(rpc = rpc.name(), code = ?s.code(), message = s.message(), "rejected"),
        });
    }
}

#[derive(Clone)]
pub struct SegmentSvc(pub std::sync::Arc<Ctx>);

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

#[tonic::async_trait]
impl SegmentService for SegmentSvc {
    async fn count_segment(
        &self,
        req: Request<pb::CountSegmentRequest>,
    ) -> Result<Response<pb::CountSegmentResponse>, Status> {
        let t = Instant::now();
        let min = min_sequence(&req);
        let pb::CountSegmentRequest { segment } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::CountSegment, async {
            at_least(&ctx.app, min).await?;
            let c = ctx.app.count(segment_ref(segment)?).await?;
            Ok(pb::CountSegmentResponse {
                count: c.count,
                total: c.total,
                server_time_us: micros(t),
                cached: c.cached,
            })
        })
        .await
    }

    async fn is_member(
        &self,
        req: Request<pb::IsMemberRequest>,
    ) -> Result<Response<pb::IsMemberResponse>, Status> {
        let min = min_sequence(&req);
        let pb::IsMemberRequest { customer_id, segment } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::IsMember, async {
            at_least(&ctx.app, min).await?;
            let m = ctx.app.is_member(customer_id, segment_ref(segment)?)?;
            Ok(pb::IsMemberResponse { is_member: m.is_member, customer_found: m.customer_found })
        })
        .await
    }

    async fn batch_is_member(
        &self,
        req: Request<pb::BatchIsMemberRequest>,
    ) -> Result<Response<pb::BatchIsMemberResponse>, Status> {
        let t = Instant::now();
        let min = min_sequence(&req);
        let pb::BatchIsMemberRequest { customer_ids, segment } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::BatchIsMember, async {
            at_least(&ctx.app, min).await?;
            let segment = segment_ref(segment)?;
            let b = ctx.app.batch_is_member(customer_ids, segment).await?;
            Ok(pb::BatchIsMemberResponse {
                is_member: b.is_member,
                customer_found: b.customer_found,
                members: b.members,
                server_time_us: micros(t),
            })
        })
        .await
    }

    type StreamIsMemberStream = super::member_stream::AnswerStream;

    async fn stream_is_member(
        &self,
        req: Request<tonic::Streaming<pb::StreamIsMemberRequest>>,
    ) -> Result<Response<Self::StreamIsMemberStream>, Status> {
        Ok(Response::new(super::member_stream::answers(self.0.clone(), req.into_inner())))
    }

    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let t = Instant::now();
        let pb::ExplainRequest { segment } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::Explain, async {
            let e = ctx.app.explain(segment_ref(segment)?).await?;
            let text = e.root.render();
            Ok(pb::ExplainResponse {
                root: Some(convert::plan_node(e.root)),
                text,
                total: e.total,
                server_time_us: micros(t),
            })
        })
        .await
    }

    async fn schema(&self, req: Request<pb::SchemaRequest>) -> Result<Response<pb::SchemaResponse>, Status> {
        let pb::SchemaRequest { max_values } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::Schema, async {
            let s = ctx.app.schema(max_values)?;
            Ok(pb::SchemaResponse {
                total: s.total,
                id_column: s.id_column,
                attributes: s.attributes.into_iter().map(convert::attribute).collect(),
            })
        })
        .await
    }

    async fn breakdown(
        &self,
        req: Request<pb::BreakdownRequest>,
    ) -> Result<Response<pb::BreakdownResponse>, Status> {
        let t = Instant::now();
        let pb::BreakdownRequest { segment, attribute, top_n } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::Breakdown, async {
            let segment = segment_ref(segment)?;
            let b = ctx.app.breakdown(segment, attribute, top_n).await?;
            Ok(convert::breakdown(b, micros(t)))
        })
        .await
    }

    async fn overlap(
        &self,
        req: Request<pb::OverlapRequest>,
    ) -> Result<Response<pb::OverlapResponse>, Status> {
        let t = Instant::now();
        let pb::OverlapRequest { segments } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::Overlap, async {
            let segments = segments
                .into_iter()
                .map(|pb::Segment { segment }| segment_ref(segment))
                .collect::<Result<_, _>>()?;
            let o = ctx.app.overlap(segments).await?;
            Ok(pb::OverlapResponse {
                rows: o.counts.into_iter().map(|counts| pb::OverlapRow { counts }).collect(),
                total: o.total,
                server_time_us: micros(t),
            })
        })
        .await
    }

    async fn create_segment(
        &self,
        req: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::CreateSegmentResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::CreateSegment, async {
            let c = ctx.app.create_segment(NewSegment::try_from(req.into_inner())?).await?;
            Ok(pb::CreateSegmentResponse { sequence: c.sequence, count: c.count })
        })
        .await
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::SavedSegment>, Status> {
        let min = min_sequence(&req);
        let pb::GetSegmentRequest { segment_id } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::GetSegment, async {
            at_least(&ctx.app, min).await?;
            Ok(convert::saved_segment(ctx.app.get_segment(&segment_id)?))
        })
        .await
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let pb::ListSegmentsRequest {} = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::ListSegments, async {
            let segments = ctx.app.list_segments().into_iter().map(convert::saved_segment).collect();
            Ok(pb::ListSegmentsResponse { segments })
        })
        .await
    }

    async fn delete_segment(
        &self,
        req: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        let pb::DeleteSegmentRequest { segment_id } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::DeleteSegment, async {
            Ok(pb::DeleteSegmentResponse { sequence: ctx.app.delete_segment(segment_id).await? })
        })
        .await
    }

    async fn add_members(
        &self,
        req: Request<pb::EditMembersRequest>,
    ) -> Result<Response<pb::EditMembersResponse>, Status> {
        let pb::EditMembersRequest { segment_id, customer_ids } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::AddMembers, async {
            let e = ctx.app.add_members(segment_id, customer_ids).await?;
            Ok(pb::EditMembersResponse { sequence: e.sequence, changed: e.changed })
        })
        .await
    }

    async fn remove_members(
        &self,
        req: Request<pb::EditMembersRequest>,
    ) -> Result<Response<pb::EditMembersResponse>, Status> {
        let pb::EditMembersRequest { segment_id, customer_ids } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::RemoveMembers, async {
            let e = ctx.app.remove_members(segment_id, customer_ids).await?;
            Ok(pb::EditMembersResponse { sequence: e.sequence, changed: e.changed })
        })
        .await
    }

    async fn segments_of(
        &self,
        req: Request<pb::SegmentsOfRequest>,
    ) -> Result<Response<pb::SegmentsOfResponse>, Status> {
        let pb::SegmentsOfRequest { customer_id } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::SegmentsOf, async {
            let s = ctx.app.segments_of(customer_id);
            Ok(pb::SegmentsOfResponse { segment_ids: s.segment_ids, customer_found: s.customer_found })
        })
        .await
    }

    type WatchSegmentsStream = super::watch::EventStream;

    async fn watch_segments(
        &self,
        req: Request<pb::WatchSegmentsRequest>,
    ) -> Result<Response<Self::WatchSegmentsStream>, Status> {
        let pb::WatchSegmentsRequest { segment_ids, from_sequence } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::WatchSegments, async {
            let sub = ctx.app.watch(crate::app::WatchQuery { segment_ids, from_sequence })?;
            Ok(super::watch::event_stream(sub))
        })
        .await
    }
}
