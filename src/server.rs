//! Runs the gRPC server: `segd.v1.SegmentService`, `grpc.health.v1`, reflection v1 and
//! v1alpha, on one listener; optionally the Prometheus endpoint on another. Used by
//! `segd serve` and by the integration tests (which bind `127.0.0.1:0`).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::grpc::pb::segment_service_server::SegmentServiceServer;
use crate::grpc::service::{SegmentSvc, State};
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
    /// Memoise the count of a cached `where` text (the data does not change yet).
    pub cache_counts: bool,
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
        }
    }
}

/// The service state plus the wiring around it.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl Server {
    pub fn new(ds: Arc<Dataset>, config: Config) -> Server {
        let cache = PlanCache::new(config.plan_cache_entries);
        Server { state: Arc::new(State { ds, config, cache, metrics: Metrics::default() }) }
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
        let m = s.ds.memory();
        let (hits, misses) = s.cache.stats();
        s.metrics.render(&[
            ("segd_customers", "gauge", "Customers held.", s.ds.customers() as f64),
            ("segd_memory_columns_bytes", "gauge", "Bytes held by attribute columns.", m.columns as f64),
            ("segd_memory_index_bytes", "gauge", "Bytes held by bitmap indexes.", m.indexes as f64),
            ("segd_memory_ids_bytes", "gauge", "Bytes held by the customer id map.", m.ids as f64),
            ("segd_plan_cache_entries", "gauge", "Compiled segment texts cached.", s.cache.len() as f64),
            ("segd_plan_cache_hits_total", "counter", "Plan cache hits.", hits as f64),
            ("segd_plan_cache_misses_total", "counter", "Plan cache misses.", misses as f64),
            ("segd_plan_cache_generation", "gauge", "Plan cache invalidations.", s.cache.generation() as f64),
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
        let svc = SegmentServiceServer::new(SegmentSvc(self.state.clone()))
            .max_decoding_message_size(self.state.config.max_request_bytes);
        let addr = listener.local_addr()?;
        // Small unary replies must not wait for Nagle.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tracing::info!(%addr, "serving segd.v1.SegmentService");
        let shutdown = async move {
            shutdown.await;
            health.set_not_serving::<SegmentServiceServer<SegmentSvc>>().await;
            tracing::info!("shutting down: draining in-flight calls");
        };
        tonic::transport::Server::builder()
            .add_service(health_svc)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Serves `dataset` on `listener` until `shutdown` (no metrics endpoint).
pub async fn run(
    listener: TcpListener,
    dataset: Arc<Dataset>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Server::new(dataset, config).serve(listener, shutdown).await
}
