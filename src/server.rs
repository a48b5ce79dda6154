//! Runs the gRPC server: `segd.v1.SegmentService`, `segd.v1.CustomerService`,
//! `grpc.health.v1`, reflection v1 and v1alpha, on one listener; optionally the Prometheus
//! endpoint on another. Used by `segd serve` and by the integration tests (which bind
//! `127.0.0.1:0`).
//!
//! The state is a [`Db`] (a data dir: writes are logged, applied and acknowledged; every
//! commit clears the plan cache and wakes segment watchers) or, for [`Server::new`], a
//! fixed table that only answers reads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::db::{Db, DbError, DbOptions};
use crate::engine::Engine;
use crate::grpc::customers::CustomerSvc;
use crate::grpc::pb::customer_service_server::CustomerServiceServer;
use crate::grpc::pb::segment_service_server::SegmentServiceServer;
use crate::grpc::service::{Backing, SegmentSvc, State};
use crate::metrics::Metrics;
use crate::plan_cache::PlanCache;
use crate::query::Limits;
use crate::store::Dataset;

/// Server limits and tuning; every field is a `segd serve` flag.
#[derive(Clone, Debug)]
pub struct Config {
    /// Segment text bytes, predicate depth, IN-list length.
    pub limits: Limits,
    /// Largest request message tonic will decode (OUT_OF_RANGE above it).
    pub max_request_bytes: usize,
    pub max_batch_ids: usize,
    pub max_overlap_segments: usize,
    pub max_top_n: usize,
    /// Compiled `where` texts kept (0 disables the cache).
    pub plan_cache_entries: usize,
    /// Memoise the count of a cached `where` text (per state of the data: every commit
    /// starts afresh).
    pub cache_counts: bool,
    /// Most customers (or ids) in one write request: larger batches are INVALID_ARGUMENT
    /// before any work.
    pub max_upsert_batch: usize,
    /// Events buffered per WatchSegments stream.
    pub watch_buffer: usize,
    /// A watcher whose buffer stays full this long is ended with RESOURCE_EXHAUSTED.
    pub slow_consumer: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            max_request_bytes: 4 << 20,
            max_batch_ids: 100_000,
            max_overlap_segments: 16,
            max_top_n: 1000,
            plan_cache_entries: 4096,
            cache_counts: true,
            max_upsert_batch: 100_000,
            watch_buffer: 1024,
            slow_consumer: Duration::from_secs(5),
        }
    }
}

/// The service state plus the wiring around it.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl Server {
    /// Serves a fixed table: reads only, every write FAILED_PRECONDITION (no data dir).
    /// The table moves into the server (rebuilt from its columns if the Arc is shared).
    pub fn new(ds: Arc<Dataset>, config: Config) -> Server {
        let ds = Arc::try_unwrap(ds).unwrap_or_else(|ds| {
            Dataset::from_batches(ds.export_schema(), ds.export().into_iter().map(Ok), &ds.id_column().name)
                .expect("a loaded table rebuilds from its own columns")
        });
        let engine = Engine::new(ds, 0, 1);
        let cache = Arc::new(PlanCache::new(config.plan_cache_entries));
        let (tx, rx) = tokio::sync::watch::channel(0);
        Server {
            state: Arc::new(Self::state(Backing::Fixed(Arc::new(engine)), config, cache, rx, Arc::new(tx))),
        }
    }

    /// Opens (or creates) the data dir and serves it. `import` (the bulk-load path) runs
    /// only when the data dir holds no snapshot.
    pub fn open(
        opts: DbOptions,
        import: impl FnOnce() -> Result<Dataset, DbError>,
        config: Config,
    ) -> Result<Server, DbError> {
        let cache = Arc::new(PlanCache::new(config.plan_cache_entries));
        let (tx, rx) = tokio::sync::watch::channel(0);
        let tx = Arc::new(tx);
        let on_commit = {
            let (cache, tx) = (cache.clone(), tx.clone());
            move |seq: u64| {
                cache.clear();
                tx.send_replace(seq);
            }
        };
        let db = Arc::new(Db::open(opts, import, on_commit)?);
        Ok(Server { state: Arc::new(Self::state(Backing::Live(db), config, cache, rx, tx)) })
    }

    fn state(
        backing: Backing,
        config: Config,
        cache: Arc<PlanCache>,
        commits: tokio::sync::watch::Receiver<u64>,
        commits_tx: Arc<tokio::sync::watch::Sender<u64>>,
    ) -> State {
        let opened_at = match &backing {
            Backing::Live(db) => db.read().sequence(),
            Backing::Fixed(e) => e.sequence(),
        };
        commits_tx.send_replace(opened_at);
        State {
            backing,
            config,
            cache,
            metrics: Metrics::default(),
            commits,
            commits_tx,
            closing: tokio::sync::watch::channel(false).0,
            opened_at,
        }
    }

    /// The database, when serving a data dir.
    pub fn db(&self) -> Option<&Arc<Db>> {
        match &self.state.backing {
            Backing::Live(db) => Some(db),
            Backing::Fixed(_) => None,
        }
    }

    /// Ends open streams, stops taking writes and writes the final snapshot. Call after
    /// [`Server::serve`] returns.
    pub fn close(&self) -> Result<(), DbError> {
        self.state.closing.send_replace(true);
        match self.db() {
            Some(db) => db.close(),
            None => Ok(()),
        }
    }

    pub fn plan_cache(&self) -> &PlanCache {
        &self.state.cache
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The Prometheus exposition text.
    pub fn metrics_text(&self) -> String {
        let s = &self.state;
        let (m, customers, sequence, saved) = {
            let eng = s.read();
            (eng.data().memory(), eng.data().customers(), eng.sequence(), eng.segments().len())
        };
        let (hits, misses) = s.cache.stats();
        s.metrics.render(&[
            ("segd_customers", "gauge", "Customers held.", customers as f64),
            ("segd_memory_columns_bytes", "gauge", "Bytes held by attribute columns.", m.columns as f64),
            ("segd_memory_index_bytes", "gauge", "Bytes held by bitmap indexes.", m.indexes as f64),
            ("segd_memory_ids_bytes", "gauge", "Bytes held by the customer id map.", m.ids as f64),
            ("segd_plan_cache_entries", "gauge", "Compiled segment texts cached.", s.cache.len() as f64),
            ("segd_plan_cache_hits_total", "counter", "Plan cache hits.", hits as f64),
            ("segd_plan_cache_misses_total", "counter", "Plan cache misses.", misses as f64),
            ("segd_plan_cache_generation", "gauge", "Plan cache invalidations.", s.cache.generation() as f64),
            ("segd_commit_sequence", "gauge", "Sequence of the last committed write.", sequence as f64),
            ("segd_saved_segments", "gauge", "Saved segments.", saved as f64),
        ])
    }

    /// Serves `GET /metrics` on `listener` until `shutdown`.
    pub async fn serve_metrics(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let me = self.clone();
        crate::metrics::serve(listener, Arc::new(move || me.metrics_text()), shutdown).await
    }

    /// Serves gRPC on `listener` until `shutdown` resolves, then stops accepting, reports
    /// NOT_SERVING and drains in-flight calls.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (health, health_svc) = tonic_health::server::health_reporter();
        health.set_serving::<SegmentServiceServer<SegmentSvc>>().await;
        // grpcurl 1.8.6 speaks only v1alpha; newer clients v1. The health descriptors are
        // registered so `grpc.health.v1.Health/Check` can be called through reflection.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::grpc::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        health.set_serving::<CustomerServiceServer<CustomerSvc>>().await;
        let max = self.state.config.max_request_bytes;
        let svc = SegmentServiceServer::new(SegmentSvc(self.state.clone())).max_decoding_message_size(max);
        let customers =
            CustomerServiceServer::new(CustomerSvc(self.state.clone())).max_decoding_message_size(max);
        let addr = listener.local_addr()?;
        // Small unary replies must not wait for Nagle.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tracing::info!(%addr, "serving segd.v1.SegmentService and segd.v1.CustomerService");
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            health.set_not_serving::<SegmentServiceServer<SegmentSvc>>().await;
            health.set_not_serving::<CustomerServiceServer<CustomerSvc>>().await;
            // Open streams (watchers, upsert streams) never end by themselves: end them so
            // the drain finishes.
            state.closing.send_replace(true);
            tracing::info!("shutting down: draining in-flight calls");
        };
        tonic::transport::Server::builder()
            .add_service(health_svc)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(svc)
            .add_service(customers)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Serves a fixed `dataset` (reads only) on `listener` until `shutdown` (no metrics
/// endpoint).
pub async fn run(
    listener: TcpListener,
    dataset: Arc<Dataset>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Server::new(dataset, config).serve(listener, shutdown).await
}
