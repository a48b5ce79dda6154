//! Prometheus metrics with `prometheus-client`: per-RPC calls by status code, errors and
//! latency histograms, the HTTP API's requests by route and status with their latency, plus the application's gauges and counters read at scrape time
//! ([`crate::app::App::stats`]); served over HTTP by axum (`GET /metrics`).
//!
//! The request path costs a few atomic adds: each RPC's OK counter, error counter and
//! histogram are handles created once, at start, per [`Rpc`] variant. Only a failed call
//! looks up its (rpc, code) series in the family (a read lock and a hash of two small
//! integers, no allocation once the series exists).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::app::App;

/// The RPCs measured: the one list of their labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    CountSegment,
    IsMember,
    BatchIsMember,
    /// Counted per question, not per stream.
    StreamIsMember,
    Explain,
    Schema,
    Breakdown,
    Overlap,
    CreateSegment,
    GetSegment,
    ListSegments,
    DeleteSegment,
    AddMembers,
    RemoveMembers,
    SegmentsOf,
    WatchSegments,
    UpsertCustomers,
    StreamUpserts,
    DeleteCustomers,
    GetCustomer,
    AddAttribute,
    PutOffer,
    GetOffer,
    ListOffers,
    DeleteOffer,
    GetContactPolicy,
    SetContactPolicy,
    NextBestOffer,
    RecordOutcome,
    ReachEstimate,
    /// Counted per blast, not per message.
    DecideForSegment,
    GetDecision,
    RecordEvents,
    /// Counted per request message, not per stream.
    RecordEventStream,
    PutProgram,
    GetProgram,
    PreviewProgram,
    GetGamificationState,
    GetLedger,
    SpendPoints,
    GrantPoints,
    SetManualTier,
    WatchAchievements,
    JoinChallenge,
    Leaderboard,
    AroundMe,
    RankOf,
    GetReplicaStatus,
}

impl Rpc {
    /// Every variant, in declaration order (`rpc as usize` indexes it).
    pub const ALL: [Rpc; 48] = [
        Rpc::CountSegment,
        Rpc::IsMember,
        Rpc::BatchIsMember,
        Rpc::StreamIsMember,
        Rpc::Explain,
        Rpc::Schema,
        Rpc::Breakdown,
        Rpc::Overlap,
        Rpc::CreateSegment,
        Rpc::GetSegment,
        Rpc::ListSegments,
        Rpc::DeleteSegment,
        Rpc::AddMembers,
        Rpc::RemoveMembers,
        Rpc::SegmentsOf,
        Rpc::WatchSegments,
        Rpc::UpsertCustomers,
        Rpc::StreamUpserts,
        Rpc::DeleteCustomers,
        Rpc::GetCustomer,
        Rpc::AddAttribute,
        Rpc::PutOffer,
        Rpc::GetOffer,
        Rpc::ListOffers,
        Rpc::DeleteOffer,
        Rpc::GetContactPolicy,
        Rpc::SetContactPolicy,
        Rpc::NextBestOffer,
        Rpc::RecordOutcome,
        Rpc::ReachEstimate,
        Rpc::DecideForSegment,
        Rpc::GetDecision,
        Rpc::RecordEvents,
        Rpc::RecordEventStream,
        Rpc::PutProgram,
        Rpc::GetProgram,
        Rpc::PreviewProgram,
        Rpc::GetGamificationState,
        Rpc::GetLedger,
        Rpc::SpendPoints,
        Rpc::GrantPoints,
        Rpc::SetManualTier,
        Rpc::WatchAchievements,
        Rpc::JoinChallenge,
        Rpc::Leaderboard,
        Rpc::AroundMe,
        Rpc::RankOf,
        Rpc::GetReplicaStatus,
    ];

    /// The method name, as the `rpc` label and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::CountSegment => "CountSegment",
            Rpc::IsMember => "IsMember",
            Rpc::BatchIsMember => "BatchIsMember",
            Rpc::StreamIsMember => "StreamIsMember",
            Rpc::Explain => "Explain",
            Rpc::Schema => "Schema",
            Rpc::Breakdown => "Breakdown",
            Rpc::Overlap => "Overlap",
            Rpc::CreateSegment => "CreateSegment",
            Rpc::GetSegment => "GetSegment",
            Rpc::ListSegments => "ListSegments",
            Rpc::DeleteSegment => "DeleteSegment",
            Rpc::AddMembers => "AddMembers",
            Rpc::RemoveMembers => "RemoveMembers",
            Rpc::SegmentsOf => "SegmentsOf",
            Rpc::WatchSegments => "WatchSegments",
            Rpc::UpsertCustomers => "UpsertCustomers",
            Rpc::StreamUpserts => "StreamUpserts",
            Rpc::DeleteCustomers => "DeleteCustomers",
            Rpc::GetCustomer => "GetCustomer",
            Rpc::AddAttribute => "AddAttribute",
            Rpc::PutOffer => "PutOffer",
            Rpc::GetOffer => "GetOffer",
            Rpc::ListOffers => "ListOffers",
            Rpc::DeleteOffer => "DeleteOffer",
            Rpc::GetContactPolicy => "GetContactPolicy",
            Rpc::SetContactPolicy => "SetContactPolicy",
            Rpc::NextBestOffer => "NextBestOffer",
            Rpc::RecordOutcome => "RecordOutcome",
            Rpc::ReachEstimate => "ReachEstimate",
            Rpc::DecideForSegment => "DecideForSegment",
            Rpc::GetDecision => "GetDecision",
            Rpc::RecordEvents => "RecordEvents",
            Rpc::RecordEventStream => "RecordEventStream",
            Rpc::PutProgram => "PutProgram",
            Rpc::GetProgram => "GetProgram",
            Rpc::PreviewProgram => "PreviewProgram",
            Rpc::GetGamificationState => "GetGamificationState",
            Rpc::GetLedger => "GetLedger",
            Rpc::SpendPoints => "SpendPoints",
            Rpc::GrantPoints => "GrantPoints",
            Rpc::SetManualTier => "SetManualTier",
            Rpc::WatchAchievements => "WatchAchievements",
            Rpc::JoinChallenge => "JoinChallenge",
            Rpc::Leaderboard => "Leaderboard",
            Rpc::AroundMe => "AroundMe",
            Rpc::RankOf => "RankOf",
            Rpc::GetReplicaStatus => "GetReplicaStatus",
        }
    }
}

impl EncodeLabelValue for Rpc {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, self.name())
    }
}

/// gRPC status code names by number (0..=16).
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status code as a label (out-of-range numbers as UNKNOWN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CodeLabel(u8);

impl CodeLabel {
    fn of(code: i32) -> CodeLabel {
        CodeLabel(if (0..CODES.len() as i32).contains(&code) { code as u8 } else { 2 })
    }
}

impl EncodeLabelValue for CodeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, CODES[self.0 as usize])
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    rpc: Rpc,
    code: CodeLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabels {
    rpc: Rpc,
}

/// Histogram bucket upper bounds in seconds: 25 µs to 5 s, dense where IsMember and
/// CountSegment live.
const BUCKETS: [f64; 16] =
    [25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 3e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.5, 1.0, 5.0];

/// One HTTP request's series: the method (known methods only, so a client cannot grow
/// the label set), the route as declared (`/v1/segments/{id}`, `unmatched` for no route)
/// and the HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpRouteLabels {
    method: &'static str,
    route: String,
}

/// The `method` label of an HTTP method: itself when it is one of HTTP's own, else `OTHER`.
pub fn http_method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|&m| m == method).unwrap_or("OTHER")
}

/// One RPC's series, created at start.
struct RpcHandles {
    ok: Counter,
    errors: Counter,
    duration: Histogram,
}

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    per_rpc: Vec<RpcHandles>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpRouteLabels, Histogram>,
}

impl Metrics {
    /// The registry, with the application's own figures read from `app` at each scrape.
    pub fn new(app: App) -> Metrics {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        let errors = Family::<RpcLabels, Counter>::default();
        let duration =
            Family::<RpcLabels, Histogram, _>::new_with_constructor(|| Histogram::new(BUCKETS) as Histogram);
        registry.register("segd_rpc_calls", "Calls per RPC and gRPC status code.", calls.clone());
        registry.register("segd_rpc_errors", "Calls per RPC that did not end OK.", errors.clone());
        registry.register("segd_rpc_duration_seconds", "Server-side latency per RPC.", duration.clone());
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpRouteLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "segd_http_requests",
            "HTTP API requests per method, route and status.",
            http_requests.clone(),
        );
        registry.register(
            "segd_http_request_duration_seconds",
            "Server-side latency of HTTP API requests per method and route.",
            http_duration.clone(),
        );
        registry.register_collector(Box::new(AppFigures(app)));
        let per_rpc = Rpc::ALL
            .iter()
            .map(|&rpc| RpcHandles {
                ok: calls.get_or_create_owned(&CallLabels { rpc, code: CodeLabel(0) }),
                errors: errors.get_or_create_owned(&RpcLabels { rpc }),
                duration: duration.get_or_create_owned(&RpcLabels { rpc }),
            })
            .collect();
        Metrics { registry, calls, per_rpc, http_requests, http_duration }
    }

    /// Records one HTTP request (`method` from [`http_method_label`]).
    pub fn observe_http(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let route = route.to_owned();
        self.http_duration
            .get_or_create(&HttpRouteLabels { method, route: route.clone() })
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&HttpLabels { method, route, status }).inc();
    }

    /// HTTP requests of `method` on `route` answered with `status` (tests).
    pub fn http_requests(&self, method: &'static str, route: &str, status: u16) -> u64 {
        self.http_requests.get(&HttpLabels { method, route: route.into(), status }).map_or(0, |c| c.get())
    }

    /// Records one call of `rpc` that ended with gRPC `code`.
    pub fn observe(&self, rpc: Rpc, code: i32, elapsed: Duration) {
        let h = &self.per_rpc[rpc as usize];
        h.duration.observe(elapsed.as_secs_f64());
        if code == 0 {
            h.ok.inc();
        } else {
            h.errors.inc();
            self.calls.get_or_create(&CallLabels { rpc, code: CodeLabel::of(code) }).inc();
        }
    }

    /// Calls of `rpc` that ended with `code` (tests).
    pub fn calls(&self, rpc: Rpc, code: i32) -> u64 {
        match code {
            0 => self.per_rpc[rpc as usize].ok.get(),
            _ => self.calls.get(&CallLabels { rpc, code: CodeLabel::of(code) }).map_or(0, |c| c.get()),
        }
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).expect("writing to a String");
        s
    }
}

/// The application's figures, read at scrape time.
struct AppFigures(App);

impl fmt::Debug for AppFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppFigures")
    }
}

impl Collector for AppFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = self.0.stats();
        let m = &s.memory;
        let gauges: [(&str, &str, u64); 8] = [
            ("segd_customers", "Customers held.", s.customers),
            ("segd_memory_columns_bytes", "Bytes held by attribute columns.", m.columns as u64),
            ("segd_memory_index_bytes", "Bytes held by bitmap indexes.", m.indexes as u64),
            ("segd_memory_ids_bytes", "Bytes held by the customer id map.", m.ids as u64),
            ("segd_plan_cache_entries", "Compiled segment texts cached.", s.plan_cache_entries as u64),
            ("segd_plan_cache_generation", "Plan cache invalidations.", s.plan_cache_generation),
            ("segd_commit_sequence", "Sequence of the last committed write.", s.sequence),
            ("segd_saved_segments", "Saved segments.", s.saved_segments as u64),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        // Per column: which attributes cost what (values and index), e.g. a program's
        // derived columns, at scrape time.
        {
            let mut family = encoder.encode_descriptor(
                "segd_memory_column_bytes",
                "Bytes held by one attribute column: its values, or its index and NULL bitmap.",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for c in &m.per_column {
                for (part, v) in [("values", c.values), ("index", c.index)] {
                    let labels = [("column", c.name.as_str()), ("part", part)];
                    ConstGauge::new(v as i64).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        // The gamification state by structure (issue 10's memory figure per customer),
        // from a walk over the customers with state: the scrape runs off the runtime.
        if let Some(g) = self.0.gamify_memory() {
            let g_customers = ConstGauge::new(g.customers as i64);
            g_customers.encode(encoder.encode_descriptor(
                "segd_gamify_customers",
                "Customers with gamification state.",
                None,
                g_customers.metric_type(),
            )?)?;
            let mut family = encoder.encode_descriptor(
                "segd_memory_gamify_bytes",
                "Bytes held by the gamification state, by structure (buffers by capacity; \
                 persistent-map node slack and allocator overhead not counted).",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (part, v) in g.parts() {
                ConstGauge::new(v as i64).encode(family.encode_family(&[("part", part)])?)?;
            }
        }
        if let Some(r) = &self.0.config().replica {
            let gauges: [(&str, &str, u64); 6] = [
                (
                    "segd_replica_applied_sequence",
                    "Replica: last replicated-log sequence applied.",
                    r.applied(),
                ),
                (
                    "segd_replica_stream_last_sequence",
                    "Replica: last sequence the replicated log held.",
                    r.stream_last(),
                ),
                ("segd_replica_lag", "Replica: records of the replicated log not applied yet.", r.lag()),
                (
                    "segd_replica_stopped",
                    "Replica: 1 once the follower stopped for good (see the log).",
                    r.stopped().is_some() as u64,
                ),
                (
                    "segd_replica_catching_up",
                    "Replica: 1 while further behind the log than --max-serving-lag (health NOT_SERVING).",
                    r.catching_up() as u64,
                ),
                ("segd_replica_max_serving_lag", "Replica: --max-serving-lag.", r.max_lag()),
            ];
            for (name, help, v) in gauges {
                let g = ConstGauge::new(v as i64);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        let counters = [
            ("segd_plan_cache_hits", "Plan cache hits.", s.plan_cache_hits),
            ("segd_plan_cache_misses", "Plan cache misses.", s.plan_cache_misses),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// Serves `GET /metrics` (and `/`) until `shutdown` resolves; other paths are 404.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let scrape = move || {
        let metrics = metrics.clone();
        async move {
            // A scrape walks the gamification state (see `AppFigures`): off the runtime.
            let text = tokio::task::spawn_blocking(move || metrics.render()).await.unwrap_or_default();
            ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(scrape.clone()))
        .route("/", get(scrape))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found: try GET /metrics\n") });
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::warn!(error = %e, "metrics endpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_rpc_and_code() {
        let ds = crate::store::Dataset::from_batches(
            crate::gen::schema(),
            crate::gen::generate(10, 1).into_iter().map(Ok),
            "customer_id",
        )
        .unwrap();
        let m = Metrics::new(App::fixed(ds, crate::app::Config::default()));
        let us = Duration::from_micros(30);
        m.observe(Rpc::IsMember, 0, us);
        m.observe(Rpc::IsMember, 0, us);
        m.observe(Rpc::IsMember, 3, us);
        m.observe(Rpc::Explain, 99, us);
        assert_eq!(
            (m.calls(Rpc::IsMember, 0), m.calls(Rpc::IsMember, 3), m.calls(Rpc::IsMember, 5)),
            (2, 1, 0)
        );
        assert_eq!(m.calls(Rpc::Explain, 2), 1, "an unknown code counts as UNKNOWN");
        let text = m.render();
        for line in [
            "segd_rpc_calls_total{rpc=\"IsMember\",code=\"OK\"} 2",
            "segd_rpc_calls_total{rpc=\"IsMember\",code=\"INVALID_ARGUMENT\"} 1",
            "segd_rpc_calls_total{rpc=\"Explain\",code=\"UNKNOWN\"} 1",
            "segd_rpc_calls_total{rpc=\"Schema\",code=\"OK\"} 0",
            "segd_rpc_errors_total{rpc=\"IsMember\"} 1",
            "segd_rpc_duration_seconds_count{rpc=\"IsMember\"} 3",
            "segd_customers 10",
            "segd_saved_segments 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        assert!(!text.contains("code=\"NOT_FOUND\""), "codes never seen are not listed");
    }

    #[test]
    fn http_requests_are_counted_per_method_route_and_status() {
        let ds = crate::store::Dataset::from_batches(
            crate::gen::schema(),
            crate::gen::generate(10, 1).into_iter().map(Ok),
            "customer_id",
        )
        .unwrap();
        let m = Metrics::new(App::fixed(ds, crate::app::Config::default()));
        let ms = Duration::from_micros(1500);
        m.observe_http("POST", "/v1/segments:count", 200, ms);
        m.observe_http("POST", "/v1/segments:count", 200, ms);
        m.observe_http("POST", "/v1/segments:count", 400, ms);
        m.observe_http(http_method_label("BREW"), "unmatched", 404, ms);
        assert_eq!(m.http_requests("POST", "/v1/segments:count", 200), 2);
        assert_eq!(m.http_requests("POST", "/v1/segments:count", 404), 0);
        assert_eq!((http_method_label("GET"), http_method_label("get")), ("GET", "OTHER"));
        let text = m.render();
        for line in [
            "segd_http_requests_total{method=\"POST\",route=\"/v1/segments:count\",status=\"200\"} 2",
            "segd_http_requests_total{method=\"POST\",route=\"/v1/segments:count\",status=\"400\"} 1",
            "segd_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"} 1",
            "segd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/segments:count\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        // 1.5 ms: above the 1 ms bucket, within the 2 ms one.
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("segd_http_request_duration_seconds_bucket{")
                        && l.contains("route=\"/v1/segments:count\"")
                        && l.contains(&format!("le=\"{le}\""))
                })
                .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!((bucket("0.001"), bucket("0.002")), ("0".to_owned(), "3".to_owned()));
    }
}
