//! Prometheus text metrics: per-RPC calls by status code and latency histograms, plus
//! gauges the server supplies (rows held, index memory, plan cache). Lock-free counters on
//! the request path; served by a minimal HTTP/1.1 responder (a scrape is one GET).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The RPCs measured: the one list of their labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    CountSegment,
    IsMember,
    BatchIsMember,
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
}

impl Rpc {
    pub const ALL: [Rpc; 20] = [
        Rpc::CountSegment,
        Rpc::IsMember,
        Rpc::BatchIsMember,
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
    ];

    /// The method name, as the `rpc` label and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::CountSegment => "CountSegment",
            Rpc::IsMember => "IsMember",
            Rpc::BatchIsMember => "BatchIsMember",
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
        }
    }
}

/// gRPC status code names by number (0..=16).
pub const CODES: [&str; 17] = [
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

/// Histogram bucket upper bounds in seconds: 25 µs to 5 s, dense where IsMember and
/// CountSegment live.
const BUCKETS: [f64; 16] =
    [25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 3e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
struct RpcStats {
    by_code: [AtomicU64; 17],
    /// Cumulative counts per bucket are computed at render time; this holds per-bucket
    /// counts, the last slot being +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    rpcs: [RpcStats; Rpc::ALL.len()],
}

impl Metrics {
    /// Records one call of `rpc` that ended with gRPC `code`.
    pub fn observe(&self, rpc: Rpc, code: i32, elapsed: Duration) {
        let s = &self.rpcs[rpc as usize];
        s.by_code[(code as usize).min(CODES.len() - 1)].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS.iter().position(|&le| secs <= le).unwrap_or(BUCKETS.len());
        s.buckets[b].fetch_add(1, Ordering::Relaxed);
        s.sum_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Calls of `rpc` that ended with `code` (tests).
    pub fn calls(&self, rpc: Rpc, code: i32) -> u64 {
        self.rpcs[rpc as usize].by_code[(code as usize).min(CODES.len() - 1)].load(Ordering::Relaxed)
    }

    /// The exposition text; `extra` are (name, type, help, value) of the server's own
    /// gauges and counters.
    pub fn render(&self, extra: &[(&str, &str, &str, f64)]) -> String {
        let mut s = String::new();
        s.push_str("# HELP segd_rpc_calls_total Calls per RPC and gRPC status code.\n");
        s.push_str("# TYPE segd_rpc_calls_total counter\n");
        for (r, st) in Rpc::ALL.iter().map(|r| r.name()).zip(&self.rpcs) {
            for (code, n) in CODES.iter().zip(&st.by_code) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 || *code == "OK" {
                    let _ = writeln!(s, "segd_rpc_calls_total{{rpc=\"{r}\",code=\"{code}\"}} {n}");
                }
            }
        }
        s.push_str("# HELP segd_rpc_errors_total Calls per RPC that did not end OK.\n");
        s.push_str("# TYPE segd_rpc_errors_total counter\n");
        for (r, st) in Rpc::ALL.iter().map(|r| r.name()).zip(&self.rpcs) {
            let n: u64 = st.by_code[1..].iter().map(|n| n.load(Ordering::Relaxed)).sum();
            let _ = writeln!(s, "segd_rpc_errors_total{{rpc=\"{r}\"}} {n}");
        }
        s.push_str("# HELP segd_rpc_duration_seconds Server-side latency per RPC.\n");
        s.push_str("# TYPE segd_rpc_duration_seconds histogram\n");
        for (r, st) in Rpc::ALL.iter().map(|r| r.name()).zip(&self.rpcs) {
            let mut cum = 0;
            for (i, b) in st.buckets.iter().enumerate() {
                cum += b.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), |x| x.to_string());
                let _ = writeln!(s, "segd_rpc_duration_seconds_bucket{{rpc=\"{r}\",le=\"{le}\"}} {cum}");
            }
            let sum = st.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(s, "segd_rpc_duration_seconds_sum{{rpc=\"{r}\"}} {sum}");
            let _ = writeln!(s, "segd_rpc_duration_seconds_count{{rpc=\"{r}\"}} {cum}");
        }
        for (name, kind, help, v) in extra {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        s
    }
}

/// Serves `GET /metrics` (any other path: 404) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let render = render.clone();
        tokio::spawn(async move {
            // One request per connection; the request line is all that matters and a
            // scraper's GET fits in one read.
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if req.starts_with("GET ") && (path == "/metrics" || path == "/") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "not found: try GET /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
