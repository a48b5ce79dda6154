//! Runs the gRPC server: `segd.v1.SegmentService`, `segd.v1.CustomerService`,
//! `grpc.health.v1`, reflection v1 and v1alpha, on one listener; optionally the Prometheus
//! endpoint on another. Used by `segd serve` and by the integration tests (which bind
//! `127.0.0.1:0`).
//!
//! The application ([`App`]) serves a data dir ([`Server::open`]) or, for
//! [`Server::new`], a fixed table that only answers reads; the server owns only what is
//! the transport's: listeners, health, reflection, the per-RPC metrics and the transport
//! security ([`Security`]: TLS and the bearer token, applied around every service).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::app::App;
use crate::db::{Db, DbError, DbOptions};
use crate::grpc::customers::CustomerSvc;
use crate::grpc::pb::customer_service_server::CustomerServiceServer;
use crate::grpc::pb::segment_service_server::SegmentServiceServer;
use crate::grpc::service::{Ctx, SegmentSvc};
use crate::metrics::Metrics;
use crate::plan_cache::PlanCache;
use crate::security::Security;
use crate::store::Dataset;

/// The application's limits and tuning (every field a `segd serve` flag), re-exported
/// for callers that start a server.
pub use crate::app::Config;

/// The application plus the transports around it.
#[derive(Clone)]
pub struct Server {
    ctx: Arc<Ctx>,
    security: Security,
}

impl Server {
    /// Serves a fixed table: reads only, every write FAILED_PRECONDITION (no data dir).
    /// The table moves into the server (rebuilt from its columns if the Arc is shared).
    pub fn new(ds: Arc<Dataset>, config: Config) -> Server {
        let ds = Arc::try_unwrap(ds).unwrap_or_else(|ds| {
            Dataset::from_batches(ds.export_schema(), ds.export().into_iter().map(Ok), &ds.id_column().name)
                .expect("a loaded table rebuilds from its own columns")
        });
        Server::with(App::fixed(ds, config))
    }

    /// Opens (or creates) the data dir and serves it. `import` (the bulk-load path) runs
    /// only when the data dir holds no snapshot.
    pub fn open(
        opts: DbOptions,
        import: impl FnOnce() -> Result<Dataset, DbError>,
        config: Config,
    ) -> Result<Server, DbError> {
        Ok(Server::with(App::open(opts, import, config)?))
    }

    fn with(app: App) -> Server {
        let ctx = Arc::new(Ctx { metrics: Arc::new(Metrics::new(app.clone())), app });
        Server { ctx, security: Security::default() }
    }

    /// TLS and the bearer token for both listeners ([`Server::serve`],
    /// [`Server::serve_http`]); none by default.
    pub fn with_security(mut self, security: Security) -> Server {
        self.security = security;
        self
    }

    pub fn app(&self) -> &App {
        &self.ctx.app
    }

    /// The database, when serving a data dir.
    pub fn db(&self) -> Option<&Arc<Db>> {
        self.ctx.app.db()
    }

    /// Ends open streams, stops taking writes and writes the final snapshot. Call after
    /// [`Server::serve`] returns.
    pub fn close(&self) -> Result<(), DbError> {
        self.ctx.app.close()
    }

    pub fn plan_cache(&self) -> &PlanCache {
        self.ctx.app.plan_cache()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// The Prometheus exposition text.
    pub fn metrics_text(&self) -> String {
        self.ctx.metrics.render()
    }

    /// Serves `GET /metrics` on `listener` until `shutdown`.
    pub async fn serve_metrics(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        crate::metrics::serve(listener, self.ctx.metrics.clone(), shutdown).await
    }

    /// Serves the HTTP API and the builder page on `listener` until `shutdown`, with this
    /// server's security and its requests in the metrics.
    pub async fn serve_http(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let options =
            crate::http::Options { metrics: Some(self.ctx.metrics.clone()), security: self.security.clone() };
        crate::http::serve_with(self.ctx.app.clone(), options, listener, shutdown).await
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
        let mut ticker = None;
        if let Some(db) = self.db() {
            // Expiry, pending windows and downgrades happen through logged ticks.
            ticker = Some(self.ctx.app.spawn_ticker(self.ctx.app.config().tick_every));
            // A failed apply stops writes for good (until a restart): stop advertising.
            let (mut fault, health) = (db.health(), health.clone());
            tokio::spawn(async move {
                if fault.wait_for(|f| f.is_some()).await.is_ok() {
                    tracing::error!("writes are refused after an apply failure: health is NOT_SERVING");
                    health.set_not_serving::<SegmentServiceServer<SegmentSvc>>().await;
                    health.set_not_serving::<CustomerServiceServer<CustomerSvc>>().await;
                    // The whole server too (what probes ask): a restart is what it needs.
                    health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                }
            });
        }
        if let Some(replica) = &self.ctx.app.config().replica {
            // A follower that stopped for good leaves this replica's state behind for ever;
            // one further behind the log than --max-serving-lag is stale until it catches
            // up: NOT_SERVING meanwhile (a failed apply keeps it so, see above).
            let (mut stopped, mut behind) = (replica.subscribe_stopped(), replica.subscribe_catching_up());
            let fault = self.db().map(|db| db.health());
            let (health, replica) = (health.clone(), replica.clone());
            let names = [
                "",
                <SegmentServiceServer<SegmentSvc> as tonic::server::NamedService>::NAME,
                <CustomerServiceServer<CustomerSvc> as tonic::server::NamedService>::NAME,
            ];
            tokio::spawn(async move {
                let mut serving = true;
                loop {
                    let gone = stopped.borrow_and_update().is_some();
                    let late = *behind.borrow_and_update();
                    let down = gone || late || fault.as_ref().is_some_and(|f| f.borrow().is_some());
                    if down == serving {
                        serving = !down;
                        let status = if serving {
                            tracing::info!(
                                "the replica is within --max-serving-lag of the log: health is SERVING"
                            );
                            tonic_health::ServingStatus::Serving
                        } else if gone {
                            tracing::error!("the replica's follower stopped: health is NOT_SERVING");
                            tonic_health::ServingStatus::NotServing
                        } else {
                            tracing::warn!(
                                lag = replica.lag(),
                                max = replica.max_lag(),
                                "the replica is catching up beyond --max-serving-lag: health is NOT_SERVING"
                            );
                            tonic_health::ServingStatus::NotServing
                        };
                        for name in names {
                            health.set_service_status(name, status).await;
                        }
                    }
                    tokio::select! {
                        r = stopped.changed() => if r.is_err() { return },
                        r = behind.changed() => if r.is_err() { return },
                    }
                }
            });
        }
        let max = self.ctx.app.config().max_request_bytes;
        let svc = SegmentServiceServer::new(SegmentSvc(self.ctx.clone())).max_decoding_message_size(max);
        let customers =
            CustomerServiceServer::new(CustomerSvc(self.ctx.clone())).max_decoding_message_size(max);
        let addr = listener.local_addr()?;
        // Small unary replies must not wait for Nagle.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        // Answers finished in the same turn of the runtime leave in one write.
        let incoming =
            tokio_stream::StreamExt::map(incoming, |c| c.map(crate::grpc::coalesce::Coalesced::new));
        tracing::info!(%addr, "serving segd.v1.SegmentService, CustomerService, DecisionService, EventService, GamificationService, LeaderboardService and ReplicaService");
        let app = self.ctx.app.clone();
        let shutdown = async move {
            shutdown.await;
            health.set_not_serving::<SegmentServiceServer<SegmentSvc>>().await;
            health.set_not_serving::<CustomerServiceServer<CustomerSvc>>().await;
            // Open streams (watchers, upsert streams) never end by themselves: end them so
            // the drain finishes.
            app.close_streams();
            tracing::info!("shutting down: draining in-flight calls");
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &self.security.tls {
            builder = builder.tls_config(crate::grpc::auth::tls_config(tls))?;
        }
        // One layer around every service (health calls pass without the token).
        let served = builder
            .layer(crate::grpc::auth::grpc_layer(self.security.token.clone()))
            .add_service(health_svc)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(svc)
            .add_service(customers)
            .add_service(
                crate::grpc::pb::decision_service_server::DecisionServiceServer::new(
                    crate::grpc::decide::DecisionSvc(self.ctx.clone()),
                )
                .max_decoding_message_size(max),
            )
            .add_service(
                crate::grpc::pb::event_service_server::EventServiceServer::new(
                    crate::grpc::gamify::EventSvc(self.ctx.clone()),
                )
                .max_decoding_message_size(max),
            )
            .add_service(
                crate::grpc::pb::gamification_service_server::GamificationServiceServer::new(
                    crate::grpc::gamify::GamificationSvc(self.ctx.clone()),
                )
                .max_decoding_message_size(max),
            )
            .add_service(crate::grpc::pb::leaderboard_service_server::LeaderboardServiceServer::new(
                crate::grpc::leaderboard::LeaderboardSvc(self.ctx.clone()),
            ))
            .add_service(crate::grpc::pb::replica_service_server::ReplicaServiceServer::new(
                crate::grpc::replica::ReplicaSvc(self.ctx.clone()),
            ))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        // The ticker holds the database: once serve returns, a caller may drop its handle
        // and reopen the data dir, so the ticker must be gone by then (after a transport
        // error the app is not closing, so it is stopped instead).
        if let Some(t) = ticker {
            if served.is_err() {
                t.abort();
            }
            let _ = t.await;
        }
        served?;
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
