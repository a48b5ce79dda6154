//! The application core: one [`App`] owns the state (a live [`Db`] or a fixed read-only
//! [`Engine`]), the plan cache, the limits and the commit watch, and offers one method
//! per use case with typed inputs and results and one error enum, [`AppError`]. No
//! transport here: the gRPC adapters (`crate::grpc`) only translate to and from these
//! types, so a second transport (HTTP, a CLI) calls the same methods.
//!
//! - [`config`]: the limits and tuning ([`Config`]).
//! - [`error`]: the one error enum, [`AppError`].
//! - [`reads`]: counts, memberships, explain, schema, breakdown, overlap, saved segments
//!   and customers as they are; how a request's segment is resolved against one version,
//!   and when a count is cached.
//! - [`writes`]: every write use case, each submitted to the database's group commit.
//! - [`watch`]: subscriptions to saved segments' ENTERED / LEFT events.
//! - [`stream`]: membership questions asked one after another on one stream
//!   ([`MemberSession`]), each failing alone.
//! - [`decide`]: next-best-offer: offers, contact policy, decisions, outcomes, reach.
//! - [`campaign`]: next-best-offer blasts over a segment (`DecideForSegment`) and
//!   decisions fetched again (`GetDecision`).
//! - [`gamify`]: gamification: programs, events, points, tiers, reads, clock ticks.
//! - [`leaderboard`]: leaderboard pages, ranks and neighbours, within any segment.
//!
//! Work that scans chunks runs on the rayon pool, never on the caller's (async) thread;
//! single-row work runs inline. Either way a panic becomes [`AppError::Internal`] for that
//! call and the process keeps serving.

pub mod campaign;
pub mod code;
pub mod config;
pub mod decide;
pub mod error;
pub mod gamify;
pub mod leaderboard;
pub mod reads;
pub mod replica;
pub mod stream;
pub mod watch;
pub mod writes;

#[cfg(test)]
mod gamify_tests;
#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::sync::{oneshot, watch as tokio_watch};

use crate::db::{Committed, Db, DbError, DbOptions};
use crate::engine::{Engine, Mutation, Outcome};
use crate::plan_cache::PlanCache;
use crate::store::Dataset;

pub use campaign::{BlastMessage, BlastRequest, BlastStream, MemberDecision};
pub use code::ErrorCode;
pub use config::Config;
pub use decide::{DecisionContext, NboAnswer, NboRequest, OutcomeRecorded};
pub use error::AppError;
pub use reads::{
    BatchMembership, Counted, CustomerRecord, Explained, Membership, Overlap, SchemaInfo, SegmentInfo,
    SegmentRef, SegmentsOf, Stats,
};
pub use stream::MemberSession;
pub use watch::{Subscription, WatchQuery};
pub use writes::{
    Deleted, MembersEdited, NewDefinition, NewSegment, PendingUpsert, SegmentCreated, Upserted,
};

/// Where the state lives.
enum Backing {
    /// A data dir: writes are logged, applied, acknowledged.
    Live(Arc<Db>),
    /// A fixed table (no data dir): reads only.
    Fixed(Arc<Engine>),
}

struct Inner {
    backing: Backing,
    config: Config,
    cache: Arc<PlanCache>,
    /// The last committed sequence; changes after every commit (wakes watchers). Kept
    /// here too so the channel stays open for a fixed table, where nothing commits.
    commits: Arc<tokio_watch::Sender<u64>>,
    /// Becomes true when the server stops: open streams end with `ShuttingDown`.
    closing: tokio_watch::Sender<bool>,
    /// The sequence the state was opened at: segment events are not persisted, so events
    /// at or before it are not retained.
    opened_at: u64,
    /// The last decision id handed out (see `decide.rs`).
    decision_ids: std::sync::atomic::AtomicU64,
    /// Hold-out and control-group bitmaps (reach funnels, blasts).
    draws: crate::decide::DrawCache,
    /// Offers' rules compiled for `NextBestOffer` (see `decide::rules`).
    rules: crate::decide::RuleCache,
}

/// The application. Cloning shares it.
#[derive(Clone)]
pub struct App(Arc<Inner>);

impl App {
    /// A fixed table: reads only, every write [`AppError::ReadOnly`].
    pub fn fixed(data: Dataset, config: Config) -> App {
        let cache = Arc::new(PlanCache::new(config.plan_cache_entries));
        let commits = Arc::new(tokio_watch::channel(0).0);
        App::with(Backing::Fixed(Arc::new(Engine::new(data, 0, 1))), config, cache, commits)
    }

    /// Opens (or creates) the data dir. `import` (the bulk load) runs only when it holds
    /// no snapshot. Every commit clears the plan cache and wakes watchers before its
    /// callers are answered, so an acknowledged write is never followed by a stale read.
    pub fn open(
        opts: DbOptions,
        import: impl FnOnce() -> Result<Dataset, DbError>,
        config: Config,
    ) -> Result<App, DbError> {
        let cache = Arc::new(PlanCache::new(config.plan_cache_entries));
        let commits = Arc::new(tokio_watch::channel(0).0);
        let on_commit = {
            let (cache, commits) = (cache.clone(), commits.clone());
            move |seq: u64| {
                cache.clear();
                commits.send_replace(seq);
            }
        };
        let db = Arc::new(Db::open(opts, import, on_commit)?);
        Ok(App::with(Backing::Live(db), config, cache, commits))
    }

    fn with(
        backing: Backing,
        config: Config,
        cache: Arc<PlanCache>,
        commits: Arc<tokio_watch::Sender<u64>>,
    ) -> App {
        let opened_at = match &backing {
            Backing::Live(db) => db.read().sequence(),
            Backing::Fixed(e) => e.sequence(),
        };
        commits.send_replace(opened_at);
        App(Arc::new(Inner {
            backing,
            config,
            cache,
            commits,
            closing: tokio_watch::channel(false).0,
            opened_at,
            decision_ids: Default::default(),
            draws: Default::default(),
            rules: Default::default(),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn plan_cache(&self) -> &PlanCache {
        &self.0.cache
    }

    /// The database, when serving a data dir.
    pub fn db(&self) -> Option<&Arc<Db>> {
        match &self.0.backing {
            Backing::Live(db) => Some(db),
            Backing::Fixed(_) => None,
        }
    }

    /// Ends open subscriptions and streams (they see [`AppError::ShuttingDown`]).
    pub fn close_streams(&self) {
        self.0.closing.send_replace(true);
    }

    /// Ends open streams, stops taking writes and writes the final snapshot.
    pub fn close(&self) -> Result<(), DbError> {
        self.close_streams();
        match self.db() {
            Some(db) => db.close(),
            None => Ok(()),
        }
    }

    /// Resolves once the application is stopping (for a transport's own streams).
    pub fn closing(&self) -> Closing {
        Closing(self.0.closing.subscribe())
    }

    /// The current version of the state. Holding it never blocks a writer (a write
    /// publishes a new version), so it may be held across a whole evaluation.
    fn read(&self) -> Arc<Engine> {
        match &self.0.backing {
            Backing::Live(db) => db.read(),
            Backing::Fixed(e) => e.clone(),
        }
    }

    /// Queues a mutation; the receiver answers once it is durable and visible.
    fn submit(&self, m: Mutation) -> Result<oneshot::Receiver<Result<Committed, DbError>>, AppError> {
        let Backing::Live(db) = &self.0.backing else { return Err(AppError::ReadOnly) };
        if let Some(r) = self.0.config.replica.as_ref().filter(|r| !r.takes_writes) {
            return Err(AppError::NotPrimary { primary: r.primary.clone() });
        }
        let (tx, rx) = oneshot::channel();
        db.submit(m, move |r| {
            let _ = tx.send(r);
        });
        Ok(rx)
    }

    /// Commits a mutation and waits for it.
    async fn commit(&self, m: Mutation) -> Result<Committed, AppError> {
        let rx = self.submit(m)?;
        Ok(rx.await.map_err(|_| DbError::Closed)??)
    }

    fn limit(
        &self,
        what: &'static str,
        got: usize,
        limit: usize,
        flag: &'static str,
    ) -> Result<(), AppError> {
        if got > limit {
            return Err(AppError::Limit { what, got, limit, flag });
        }
        Ok(())
    }

    /// Rejects a write batch over `--max-upsert-batch` before any work.
    fn batch_limit(&self, what: &'static str, got: usize) -> Result<(), AppError> {
        self.limit(what, got, self.0.config.max_upsert_batch, "max-upsert-batch")
    }
}

/// See [`App::closing`].
pub struct Closing(tokio_watch::Receiver<bool>);

impl Closing {
    /// Resolves once the application is stopping.
    pub async fn wait(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs CPU-bound work on the rayon pool and awaits it without blocking an async worker.
/// A panic becomes INTERNAL for this call instead of aborting the process (rayon's
/// default for a panicking spawned job).
async fn on_pool<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let (tx, rx) = oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => Err(AppError::Internal(panic_message(&panic))),
        Err(_) => Err(AppError::Internal("the worker dropped the call".into())),
    }
}

/// Inline work, with the same panic guard as [`on_pool`].
fn guarded<T>(f: impl FnOnce() -> Result<T, AppError>) -> Result<T, AppError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(AppError::Internal(panic_message(&p))))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("evaluation panicked: {}", msg.unwrap_or_default())
}

/// An outcome other than the one a mutation produces: a bug.
fn unexpected(o: Outcome) -> AppError {
    AppError::Internal(format!("unexpected outcome {o:?}"))
}
