//! `segd.v1.SegmentService`: each method unpacks its request, calls the core, converts
//! the result. Evaluation that scans chunks runs on the rayon pool, never on a tokio
//! worker; single-row work (IsMember, compiling a segment) runs inline.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::analytics;
use crate::metrics::{Metrics, CODES, RPCS};
use crate::plan_cache::{Cached, PlanCache};
use crate::query::eval::{count, matches_row};
use crate::query::{self, explain::explain};
use crate::server::Config;
use crate::store::Dataset;

use super::convert::{self, Spec};
use super::pb::{self, segment_service_server::SegmentService};
use super::status::{status_of, ServiceError};

/// What every call shares.
pub struct State {
    pub ds: Arc<Dataset>,
    pub config: Config,
    pub cache: PlanCache,
    pub metrics: Metrics,
}

#[derive(Clone)]
pub struct SegmentSvc(pub Arc<State>);

/// Rows of [`crate::metrics::RPCS`].
mod rpc {
    pub const COUNT: usize = 0;
    pub const IS_MEMBER: usize = 1;
    pub const BATCH: usize = 2;
    pub const EXPLAIN: usize = 3;
    pub const SCHEMA: usize = 4;
    pub const BREAKDOWN: usize = 5;
    pub const OVERLAP: usize = 6;
}

/// Below this many ids a batch is answered inline: shipping it to the pool costs more.
const INLINE_BATCH: usize = 256;

impl SegmentSvc {
    /// The compiled segment: `where` texts through the cache, trees compiled per call.
    fn resolve(&self, spec: Option<Spec>) -> Result<Arc<Cached>, ServiceError> {
        let State { ds, config, cache, .. } = &*self.0;
        let limits = &config.limits;
        match spec.ok_or(ServiceError::MissingSegment)? {
            Spec::Where(text) => {
                // Checked here as well as in the parser so an oversized text is not even hashed.
                if text.len() > limits.max_text {
                    return Err(ServiceError::Limit {
                        what: "segment text bytes",
                        got: text.len(),
                        limit: limits.max_text,
                        flag: "max-where-bytes",
                    });
                }
                Ok(cache.get_or_compile(&text, |t| query::compile_sql(ds, t, limits))?)
            }
            Spec::Predicate(p) => {
                let e = convert::expr_of(p, limits)?;
                Ok(Arc::new(Cached::new(query::compile_expr(ds, &e, limits)?)))
            }
            Spec::Id(id) => Err(ServiceError::UnknownSegment(id)),
        }
    }

    /// Runs one call in its span, records its metrics, maps its error.
    async fn call<T>(
        &self,
        rpc: usize,
        work: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<Response<T>, Status> {
        let t = Instant::now();
        let span = tracing::info_span!("rpc", rpc = RPCS[rpc]);
        let result = work.instrument(span.clone()).await.map_err(status_of);
        let code = result.as_ref().map_or_else(|s| s.code() as i32, |_| 0);
        self.0.metrics.observe(rpc, code, t.elapsed());
        span.in_scope(|| match &result {
            Ok(_) => tracing::debug!(us = t.elapsed().as_micros() as u64, "ok"),
            Err(s) if s.code() == tonic::Code::Internal => tracing::error!(message = s.message(), "failed"),
            Err(s) => tracing::debug!(code = CODES[code as usize], message = s.message(), "rejected"),
        });
        result.map(Response::new)
    }

    fn limit(
        &self,
        what: &'static str,
        got: usize,
        limit: usize,
        flag: &'static str,
    ) -> Result<(), ServiceError> {
        if got > limit {
            return Err(ServiceError::Limit { what, got, limit, flag });
        }
        Ok(())
    }
}

/// Runs CPU-bound work on the rayon pool and awaits it without blocking a tokio worker.
/// A panic becomes INTERNAL for this call instead of aborting the process (rayon's
/// default for a panicking spawned job).
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(ServiceError::Internal(panic_message(&panic))),
        Err(_) => Err(ServiceError::Internal("the worker dropped the call".into())),
    }
}

/// Inline work, with the same panic guard as [`on_pool`].
fn guarded<T>(f: impl FnOnce() -> Result<T, ServiceError>) -> Result<T, ServiceError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(ServiceError::Internal(panic_message(&p))))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("evaluation panicked: {}", msg.unwrap_or_default())
}

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
        let pb::CountSegmentRequest { segment } = req.into_inner();
        self.call(rpc::COUNT, async {
            let entry = guarded(|| self.resolve(segment.map(Spec::from)))?;
            let total = self.0.ds.customers();
            let memo = self.0.config.cache_counts;
            if let Some(count) = entry.count().filter(|_| memo) {
                return Ok(pb::CountSegmentResponse {
                    count,
                    total,
                    server_time_us: micros(t),
                    cached: true,
                });
            }
            let ds = self.0.ds.clone();
            let count = on_pool(move || {
                let n = count(&ds, &entry.plan);
                if memo {
                    entry.set_count(n);
                }
                n
            })
            .await?;
            Ok(pb::CountSegmentResponse { count, total, server_time_us: micros(t), cached: false })
        })
        .await
    }

    async fn is_member(
        &self,
        req: Request<pb::IsMemberRequest>,
    ) -> Result<Response<pb::IsMemberResponse>, Status> {
        let pb::IsMemberRequest { customer_id, segment } = req.into_inner();
        self.call(rpc::IS_MEMBER, async {
            guarded(|| {
                let entry = self.resolve(segment.map(Spec::from))?;
                let ds = &self.0.ds;
                Ok(match ds.row_of(customer_id) {
                    Some(row) => pb::IsMemberResponse {
                        is_member: matches_row(ds, &entry.plan.root, row),
                        customer_found: true,
                    },
                    None => pb::IsMemberResponse { is_member: false, customer_found: false },
                })
            })
        })
        .await
    }

    async fn batch_is_member(
        &self,
        req: Request<pb::BatchIsMemberRequest>,
    ) -> Result<Response<pb::BatchIsMemberResponse>, Status> {
        let t = Instant::now();
        let pb::BatchIsMemberRequest { customer_ids, segment } = req.into_inner();
        self.call(rpc::BATCH, async {
            let max = self.0.config.max_batch_ids;
            self.limit("customer_ids length", customer_ids.len(), max, "max-batch-ids")?;
            let entry = guarded(|| self.resolve(segment.map(Spec::from)))?;
            let ds = self.0.ds.clone();
            let small = customer_ids.len() <= INLINE_BATCH;
            let answer = move || -> Vec<(bool, bool)> {
                let one = |&id: &u64| match ds.row_of(id) {
                    Some(row) => (matches_row(&ds, &entry.plan.root, row), true),
                    None => (false, false),
                };
                if small {
                    customer_ids.iter().map(one).collect()
                } else {
                    customer_ids.par_iter().with_min_len(1024).map(one).collect()
                }
            };
            let pairs = if small { guarded(|| Ok(answer()))? } else { on_pool(answer).await? };
            let members = pairs.iter().filter(|p| p.0).count() as u64;
            let (is_member, customer_found) = pairs.into_iter().unzip();
            Ok(pb::BatchIsMemberResponse { is_member, customer_found, members, server_time_us: micros(t) })
        })
        .await
    }

    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let t = Instant::now();
        let pb::ExplainRequest { segment } = req.into_inner();
        self.call(rpc::EXPLAIN, async {
            let entry = guarded(|| self.resolve(segment.map(Spec::from)))?;
            let ds = self.0.ds.clone();
            let node = on_pool(move || explain(&ds, &entry.plan)).await?;
            let text = node.render();
            Ok(pb::ExplainResponse {
                root: Some(convert::plan_node(node)),
                text,
                total: self.0.ds.customers(),
                server_time_us: micros(t),
            })
        })
        .await
    }

    async fn schema(&self, req: Request<pb::SchemaRequest>) -> Result<Response<pb::SchemaResponse>, Status> {
        let pb::SchemaRequest { max_values } = req.into_inner();
        self.call(rpc::SCHEMA, async {
            let max_values = match max_values as usize {
                0 => 64,
                n => n.min(self.0.config.max_top_n),
            };
            let ds = &self.0.ds;
            let attributes = guarded(|| Ok(analytics::describe(ds, max_values)))?;
            Ok(pb::SchemaResponse {
                total: ds.customers(),
                id_column: ds.id_column().name.clone(),
                attributes: attributes.into_iter().map(convert::attribute).collect(),
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
        self.call(rpc::BREAKDOWN, async {
            let top_n = match top_n as usize {
                0 => 20,
                n => n,
            };
            self.limit("top_n", top_n, self.0.config.max_top_n, "max-breakdown-top-n")?;
            let entry = guarded(|| self.resolve(segment.map(Spec::from)))?;
            let ds = self.0.ds.clone();
            let b = on_pool(move || analytics::breakdown(&ds, &entry.plan, &attribute, top_n)).await??;
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
        self.call(rpc::OVERLAP, async {
            let max = self.0.config.max_overlap_segments;
            self.limit("segments length", segments.len(), max, "max-overlap-segments")?;
            if segments.is_empty() {
                return Err(ServiceError::Invalid {
                    field: "segments",
                    msg: format!("give between 1 and {max} segments"),
                });
            }
            let entries = guarded(|| {
                segments
                    .into_iter()
                    .map(|pb::Segment { segment }| self.resolve(segment.map(Spec::from)))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            let ds = self.0.ds.clone();
            let m = on_pool(move || {
                let plans: Vec<&query::Plan> = entries.iter().map(|e| &e.plan).collect();
                analytics::overlap(&ds, &plans)
            })
            .await?;
            Ok(pb::OverlapResponse {
                rows: m.into_iter().map(|counts| pb::OverlapRow { counts }).collect(),
                total: self.0.ds.customers(),
                server_time_us: micros(t),
            })
        })
        .await
    }
}
