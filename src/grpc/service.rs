//! `segd.v1.SegmentService`: each method unpacks its request, calls the core, converts
//! the result. Evaluation that scans chunks runs on the rayon pool, never on a tokio
//! worker; single-row work (IsMember, compiling a segment, a saved segment's count) runs
//! inline. Every read holds the engine's read lock only while it computes: inline reads
//! take it on the tokio worker, pool work takes it inside the pool task.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::analytics::{self, Members};
use crate::db::{Committed, Db, DbError};
use crate::engine::{Engine, Mutation, Outcome};
use crate::metrics::{Metrics, CODES, RPCS};
use crate::plan_cache::{Cached, PlanCache};
use crate::query::eval::{count, matches_row};
use crate::query::explain::{explain, ExplainNode};
use crate::query::{self, Expr};
use crate::segments::{Definition, SavedSegment};
use crate::server::Config;

use super::convert::{self, Spec};
use super::pb::{self, segment_service_server::SegmentService};
use super::status::{status_of, ServiceError};

/// Where the state lives.
pub enum Backing {
    /// A data dir: writes are logged, applied, acknowledged.
    Live(Arc<Db>),
    /// A fixed table (no data dir): reads only.
    Fixed(Arc<Engine>),
}

/// What every call shares.
pub struct State {
    pub backing: Backing,
    pub config: Config,
    pub cache: Arc<PlanCache>,
    pub metrics: Metrics,
    /// The last committed sequence; changes after every commit (wakes watchers).
    pub commits: watch::Receiver<u64>,
    /// Keeps `commits` open for a fixed table (nothing commits).
    pub commits_tx: Arc<watch::Sender<u64>>,
    /// Becomes true when the server stops: open streams end with UNAVAILABLE.
    pub closing: watch::Sender<bool>,
    /// The sequence the state was opened at: segment events are not persisted, so events
    /// at or before it are not retained.
    pub opened_at: u64,
}

impl State {
    /// The current version of the state. Holding it never blocks a writer (a write
    /// publishes a new version), so it may be held across a whole evaluation.
    pub fn read(&self) -> Arc<Engine> {
        match &self.backing {
            Backing::Live(db) => db.read(),
            Backing::Fixed(e) => e.clone(),
        }
    }

    /// Queues a mutation; the receiver answers once it is durable and visible.
    pub fn submit(&self, m: Mutation) -> Result<oneshot::Receiver<Result<Committed, DbError>>, ServiceError> {
        let Backing::Live(db) = &self.backing else { return Err(ServiceError::ReadOnly) };
        let (tx, rx) = oneshot::channel();
        db.submit(m, move |r| {
            let _ = tx.send(r);
        });
        Ok(rx)
    }

    /// Commits a mutation and waits for it.
    pub async fn commit(&self, m: Mutation) -> Result<Committed, ServiceError> {
        let rx = self.submit(m)?;
        Ok(rx.await.map_err(|_| DbError::Closed)??)
    }

    /// A request's segment, checked and converted before any lock is taken.
    pub(super) fn want(&self, spec: Option<Spec>) -> Result<Want, ServiceError> {
        let limits = &self.config.limits;
        Ok(match spec.ok_or(ServiceError::MissingSegment)? {
            Spec::Where(text) => {
                self.check_text(&text)?;
                Want::Where(text)
            }
            Spec::Predicate(p) => Want::Tree(convert::expr_of(p, limits)?),
            Spec::Id(id) => Want::Id(id),
        })
    }

    /// Checked here as well as in the parser so an oversized text is not even hashed.
    pub(super) fn check_text(&self, text: &str) -> Result<(), ServiceError> {
        let limits = &self.config.limits;
        if text.len() > limits.max_text {
            return Err(ServiceError::Limit {
                what: "segment text bytes",
                got: text.len(),
                limit: limits.max_text,
                flag: "max-where-bytes",
            });
        }
        Ok(())
    }

    /// The segment against this state: a compiled plan (`where` texts through the cache,
    /// at this state's version) or a saved segment.
    pub(super) fn target<'e>(&self, eng: &'e Engine, want: &Want) -> Result<Target<'e>, ServiceError> {
        let limits = &self.config.limits;
        Ok(match want {
            Want::Where(text) => Target::Plan(self.cache.get_or_compile(text, eng.sequence(), |t| {
                query::compile_sql_in(eng.data(), t, limits, &|id| eng.segments().members_of(id))
            })?),
            Want::Tree(e) => Target::Plan(Arc::new(Cached::new(
                query::compile_expr_in(eng.data(), e, limits, &|id| eng.segments().members_of(id))?,
                eng.sequence(),
            ))),
            Want::Id(id) => Target::Saved(eng.segments().get(id)?),
        })
    }

    /// Runs one call in its span, records its metrics, maps its error.
    pub(super) async fn call<T>(
        &self,
        rpc: usize,
        work: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<Response<T>, Status> {
        let t = Instant::now();
        let span = tracing::info_span!("rpc", rpc = RPCS[rpc]);
        let result = work.instrument(span.clone()).await.map_err(status_of);
        self.record(rpc, &span, t, result.as_ref().err());
        result.map(Response::new)
    }

    /// Records one call's metrics and logs its failure.
    pub(super) fn record(&self, rpc: usize, span: &tracing::Span, t: Instant, err: Option<&Status>) {
        let code = err.map_or(0, |s| s.code() as i32);
        self.metrics.observe(rpc, code, t.elapsed());
        span.in_scope(|| match err {
            None => tracing::debug!(us = t.elapsed().as_micros() as u64, "ok"),
            Some(s) if s.code() == tonic::Code::Internal => tracing::error!(message = s.message(), "failed"),
            Some(s) => tracing::debug!(code = CODES[code as usize], message = s.message(), "rejected"),
        });
    }

    pub(super) fn limit(
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

    /// Rejects a write batch over `--max-upsert-batch` before any work.
    pub(super) fn batch_limit(&self, what: &'static str, got: usize) -> Result<(), ServiceError> {
        self.limit(what, got, self.config.max_upsert_batch, "max-upsert-batch")
    }
}

/// A request's segment before it meets the state.
#[derive(Clone, Debug)]
pub enum Want {
    Where(String),
    Tree(Expr),
    Id(String),
}

/// A request's segment against one state.
pub enum Target<'e> {
    Plan(Arc<Cached>),
    Saved(&'e SavedSegment),
}

impl Target<'_> {
    fn members(&self) -> Members<'_> {
        match self {
            Target::Plan(c) => Members::Plan(&c.plan),
            Target::Saved(s) => Members::Saved(&s.members),
        }
    }

    fn is_member(&self, eng: &Engine, row: u32) -> bool {
        match self {
            Target::Plan(c) => matches_row(eng.data(), &c.plan.root, row),
            Target::Saved(s) => s.members.contains(row),
        }
    }
}

#[derive(Clone)]
pub struct SegmentSvc(pub Arc<State>);

/// Rows of [`crate::metrics::RPCS`].
pub(super) mod rpc {
    pub const COUNT: usize = 0;
    pub const IS_MEMBER: usize = 1;
    pub const BATCH: usize = 2;
    pub const EXPLAIN: usize = 3;
    pub const SCHEMA: usize = 4;
    pub const BREAKDOWN: usize = 5;
    pub const OVERLAP: usize = 6;
    pub const CREATE_SEGMENT: usize = 7;
    pub const GET_SEGMENT: usize = 8;
    pub const LIST_SEGMENTS: usize = 9;
    pub const DELETE_SEGMENT: usize = 10;
    pub const ADD_MEMBERS: usize = 11;
    pub const REMOVE_MEMBERS: usize = 12;
    pub const SEGMENTS_OF: usize = 13;
    pub const WATCH: usize = 14;
    pub const UPSERT: usize = 15;
    pub const STREAM_UPSERTS: usize = 16;
    pub const DELETE_CUSTOMERS: usize = 17;
    pub const GET_CUSTOMER: usize = 18;
    pub const ADD_ATTRIBUTE: usize = 19;
}

/// Below this many ids a batch is answered inline: shipping it to the pool costs more.
const INLINE_BATCH: usize = 256;

/// Runs CPU-bound work on the rayon pool and awaits it without blocking a tokio worker.
/// A panic becomes INTERNAL for this call instead of aborting the process (rayon's
/// default for a panicking spawned job).
pub(super) async fn on_pool<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
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

/// Resolves once the server is stopping.
pub(super) async fn until_closing(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Inline work, with the same panic guard as [`on_pool`].
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T, ServiceError>) -> Result<T, ServiceError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(ServiceError::Internal(panic_message(&p))))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("evaluation panicked: {}", msg.unwrap_or_default())
}

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// An outcome other than the one a mutation produces: a bug.
fn unexpected(o: Outcome) -> ServiceError {
    ServiceError::Internal(format!("unexpected outcome {o:?}"))
}

impl SegmentSvc {
    async fn edit_members(
        &self,
        rpc: usize,
        req: pb::EditMembersRequest,
        add: bool,
    ) -> Result<Response<pb::EditMembersResponse>, Status> {
        let pb::EditMembersRequest { segment_id, customer_ids } = req;
        let st = &self.0;
        st.call(rpc, async {
            st.batch_limit("customer_ids length", customer_ids.len())?;
            let c = st.commit(Mutation::EditMembers { id: segment_id, customer_ids, add }).await?;
            match c.outcome {
                Outcome::MembersEdited { changed } => {
                    Ok(pb::EditMembersResponse { sequence: c.sequence, changed })
                }
                o => Err(unexpected(o)),
            }
        })
        .await
    }
}

#[tonic::async_trait]
impl SegmentService for SegmentSvc {
    async fn count_segment(
        &self,
        req: Request<pb::CountSegmentRequest>,
    ) -> Result<Response<pb::CountSegmentResponse>, Status> {
        let t = Instant::now();
        let pb::CountSegmentRequest { segment } = req.into_inner();
        let st = &self.0;
        st.call(rpc::COUNT, async {
            let want = guarded(|| st.want(segment.map(Spec::from)))?;
            let memo = st.config.cache_counts;
            // A saved segment's count, or the memoised count of this very state: inline.
            if !matches!(want, Want::Tree(_)) {
                let fast = guarded(|| {
                    let eng = st.read();
                    let total = eng.data().customers();
                    Ok(match st.target(&eng, &want)? {
                        Target::Saved(s) => Some((s.count(), total, false)),
                        Target::Plan(e) => e.count().filter(|_| memo).map(|n| (n, total, true)),
                    })
                })?;
                if let Some((count, total, cached)) = fast {
                    return Ok(pb::CountSegmentResponse { count, total, server_time_us: micros(t), cached });
                }
            }
            let st = st.clone();
            let (count, total) = on_pool(move || -> Result<(u64, u64), ServiceError> {
                let eng = st.read();
                let total = eng.data().customers();
                let n = match st.target(&eng, &want)? {
                    Target::Saved(s) => s.count(),
                    Target::Plan(e) => match e.count().filter(|_| memo) {
                        Some(n) => n,
                        None => {
                            let n = count(eng.data(), &e.plan);
                            if memo {
                                e.set_count(n);
                            }
                            n
                        }
                    },
                };
                Ok((n, total))
            })
            .await??;
            Ok(pb::CountSegmentResponse { count, total, server_time_us: micros(t), cached: false })
        })
        .await
    }

    async fn is_member(
        &self,
        req: Request<pb::IsMemberRequest>,
    ) -> Result<Response<pb::IsMemberResponse>, Status> {
        let pb::IsMemberRequest { customer_id, segment } = req.into_inner();
        let st = &self.0;
        st.call(rpc::IS_MEMBER, async {
            guarded(|| {
                let want = st.want(segment.map(Spec::from))?;
                let eng = st.read();
                let target = st.target(&eng, &want)?;
                Ok(match eng.data().row_of(customer_id) {
                    Some(row) => {
                        pb::IsMemberResponse { is_member: target.is_member(&eng, row), customer_found: true }
                    }
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
        let st = &self.0;
        st.call(rpc::BATCH, async {
            let max = st.config.max_batch_ids;
            st.limit("customer_ids length", customer_ids.len(), max, "max-batch-ids")?;
            let want = guarded(|| st.want(segment.map(Spec::from)))?;
            let small = customer_ids.len() <= INLINE_BATCH;
            let answer = move |eng: &Engine, target: &Target<'_>| -> Vec<(bool, bool)> {
                let one = |&id: &u64| match eng.data().row_of(id) {
                    Some(row) => (target.is_member(eng, row), true),
                    None => (false, false),
                };
                if small {
                    customer_ids.iter().map(one).collect()
                } else {
                    customer_ids.par_iter().with_min_len(1024).map(one).collect()
                }
            };
            let pairs = if small {
                guarded(|| {
                    let eng = st.read();
                    let target = st.target(&eng, &want)?;
                    Ok(answer(&eng, &target))
                })?
            } else {
                let st = st.clone();
                on_pool(move || {
                    let eng = st.read();
                    let target = st.target(&eng, &want)?;
                    Ok::<_, ServiceError>(answer(&eng, &target))
                })
                .await??
            };
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
        let st = &self.0;
        st.call(rpc::EXPLAIN, async {
            let want = guarded(|| st.want(segment.map(Spec::from)))?;
            let st2 = st.clone();
            let (node, total) = on_pool(move || -> Result<(ExplainNode, u64), ServiceError> {
                let eng = st2.read();
                let limits = &st2.config.limits;
                let plan = match &want {
                    // A saved segment: its definition's plan, or one node for a static list.
                    Want::Id(id) => {
                        let s = eng.segments().get(id)?;
                        match &s.definition {
                            Definition::Sql(text) => {
                                query::compile_sql_in(eng.data(), text, limits, &|id| {
                                    eng.segments().members_of(id)
                                })?
                            }
                            Definition::Tree(e) => query::compile_expr_in(eng.data(), e, limits, &|id| {
                                eng.segments().members_of(id)
                            })?,
                            Definition::Static => {
                                let node = ExplainNode {
                                    op: format!("SAVED STATIC SEGMENT '{id}'"),
                                    estimated: s.count(),
                                    actual: s.count(),
                                    children: vec![],
                                };
                                return Ok((node, eng.data().customers()));
                            }
                        }
                    }
                    w => match st2.target(&eng, w)? {
                        Target::Plan(e) => e.plan.clone(),
                        Target::Saved(_) => unreachable!("ids are handled above"),
                    },
                };
                Ok((explain(eng.data(), &plan), eng.data().customers()))
            })
            .await??;
            let text = node.render();
            Ok(pb::ExplainResponse {
                root: Some(convert::plan_node(node)),
                text,
                total,
                server_time_us: micros(t),
            })
        })
        .await
    }

    async fn schema(&self, req: Request<pb::SchemaRequest>) -> Result<Response<pb::SchemaResponse>, Status> {
        let pb::SchemaRequest { max_values } = req.into_inner();
        let st = &self.0;
        st.call(rpc::SCHEMA, async {
            let max_values = match max_values as usize {
                0 => 64,
                n => n.min(st.config.max_top_n),
            };
            guarded(|| {
                let eng = st.read();
                let ds = eng.data();
                let attributes = analytics::describe(ds, max_values);
                Ok(pb::SchemaResponse {
                    total: ds.customers(),
                    id_column: ds.id_column().name.clone(),
                    attributes: attributes.into_iter().map(convert::attribute).collect(),
                })
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
        let st = &self.0;
        st.call(rpc::BREAKDOWN, async {
            let top_n = match top_n as usize {
                0 => 20,
                n => n,
            };
            st.limit("top_n", top_n, st.config.max_top_n, "max-breakdown-top-n")?;
            let want = guarded(|| st.want(segment.map(Spec::from)))?;
            let st = st.clone();
            let b = on_pool(move || -> Result<_, ServiceError> {
                let eng = st.read();
                let target = st.target(&eng, &want)?;
                Ok(analytics::breakdown_of(eng.data(), target.members(), &attribute, top_n)?)
            })
            .await??;
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
        let st = &self.0;
        st.call(rpc::OVERLAP, async {
            let max = st.config.max_overlap_segments;
            st.limit("segments length", segments.len(), max, "max-overlap-segments")?;
            if segments.is_empty() {
                return Err(ServiceError::Invalid {
                    field: "segments",
                    msg: format!("give between 1 and {max} segments"),
                });
            }
            let wants = guarded(|| {
                segments
                    .into_iter()
                    .map(|pb::Segment { segment }| st.want(segment.map(Spec::from)))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            let st = st.clone();
            let (m, total) = on_pool(move || -> Result<_, ServiceError> {
                let eng = st.read();
                let targets = wants.iter().map(|w| st.target(&eng, w)).collect::<Result<Vec<_>, _>>()?;
                let members: Vec<Members<'_>> = targets.iter().map(Target::members).collect();
                Ok((analytics::overlap_of(eng.data(), &members), eng.data().customers()))
            })
            .await??;
            Ok(pb::OverlapResponse {
                rows: m.into_iter().map(|counts| pb::OverlapRow { counts }).collect(),
                total,
                server_time_us: micros(t),
            })
        })
        .await
    }

    async fn create_segment(
        &self,
        req: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::CreateSegmentResponse>, Status> {
        use pb::create_segment_request::Definition as D;
        let pb::CreateSegmentRequest { segment_id, definition, description } = req.into_inner();
        let st = &self.0;
        st.call(rpc::CREATE_SEGMENT, async {
            let mut members = vec![];
            let definition = match definition {
                None => {
                    return Err(ServiceError::Invalid {
                        field: "definition",
                        msg: "set one of 'where', 'predicate' or 'static_members'".into(),
                    })
                }
                Some(D::Where(text)) => {
                    st.check_text(&text)?;
                    Definition::Sql(text)
                }
                Some(D::Predicate(p)) => Definition::Tree(convert::expr_of(p, &st.config.limits)?),
                Some(D::StaticMembers(pb::StaticMembers { customer_ids })) => {
                    st.batch_limit("static_members.customer_ids length", customer_ids.len())?;
                    members = customer_ids;
                    Definition::Static
                }
            };
            let id = segment_id.clone();
            let c = st.commit(Mutation::CreateSegment { id: segment_id, description, definition }).await?;
            let Outcome::SegmentCreated { count } = c.outcome else { return Err(unexpected(c.outcome)) };
            if members.is_empty() {
                return Ok(pb::CreateSegmentResponse { sequence: c.sequence, count });
            }
            let c = st.commit(Mutation::EditMembers { id, customer_ids: members, add: true }).await?;
            match c.outcome {
                Outcome::MembersEdited { changed } => {
                    Ok(pb::CreateSegmentResponse { sequence: c.sequence, count: changed })
                }
                o => Err(unexpected(o)),
            }
        })
        .await
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::SavedSegment>, Status> {
        let pb::GetSegmentRequest { segment_id } = req.into_inner();
        let st = &self.0;
        st.call(rpc::GET_SEGMENT, async {
            let eng = st.read();
            Ok(convert::saved_segment(eng.segments().get(&segment_id)?))
        })
        .await
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let pb::ListSegmentsRequest {} = req.into_inner();
        let st = &self.0;
        st.call(rpc::LIST_SEGMENTS, async {
            let eng = st.read();
            Ok(pb::ListSegmentsResponse {
                segments: eng.segments().list().map(convert::saved_segment).collect(),
            })
        })
        .await
    }

    async fn delete_segment(
        &self,
        req: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        let pb::DeleteSegmentRequest { segment_id } = req.into_inner();
        let st = &self.0;
        st.call(rpc::DELETE_SEGMENT, async {
            let c = st.commit(Mutation::DeleteSegment { id: segment_id }).await?;
            Ok(pb::DeleteSegmentResponse { sequence: c.sequence })
        })
        .await
    }

    async fn add_members(
        &self,
        req: Request<pb::EditMembersRequest>,
    ) -> Result<Response<pb::EditMembersResponse>, Status> {
        self.edit_members(rpc::ADD_MEMBERS, req.into_inner(), true).await
    }

    async fn remove_members(
        &self,
        req: Request<pb::EditMembersRequest>,
    ) -> Result<Response<pb::EditMembersResponse>, Status> {
        self.edit_members(rpc::REMOVE_MEMBERS, req.into_inner(), false).await
    }

    async fn segments_of(
        &self,
        req: Request<pb::SegmentsOfRequest>,
    ) -> Result<Response<pb::SegmentsOfResponse>, Status> {
        let pb::SegmentsOfRequest { customer_id } = req.into_inner();
        let st = &self.0;
        st.call(rpc::SEGMENTS_OF, async {
            let eng = st.read();
            Ok(match eng.segments().segments_of(eng.data(), customer_id) {
                Some(ids) => pb::SegmentsOfResponse {
                    segment_ids: ids.into_iter().map(String::from).collect(),
                    customer_found: true,
                },
                None => pb::SegmentsOfResponse { segment_ids: vec![], customer_found: false },
            })
        })
        .await
    }

    type WatchSegmentsStream = super::watch::EventStream;

    async fn watch_segments(
        &self,
        req: Request<pb::WatchSegmentsRequest>,
    ) -> Result<Response<Self::WatchSegmentsStream>, Status> {
        let pb::WatchSegmentsRequest { segment_ids, from_sequence } = req.into_inner();
        let st = &self.0;
        st.call(rpc::WATCH, async { super::watch::start(st.clone(), segment_ids, from_sequence) }).await
    }
}
