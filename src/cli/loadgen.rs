//! `segd loadgen`: a ghz-like load generator for `segd.v1.SegmentService` (tonic client).
//!
//! `--concurrency` worker tasks share `--connections` HTTP/2 channels round-robin; each
//! worker keeps one request in flight. Without `--rps` the loop is closed (a worker sends
//! its next request when the previous one answers); with `--rps R` request `i` is due at
//! `start + i/R` (open loop, at most `--concurrency` in flight): a request sent late
//! because every worker was busy is timed from when it was due, so a stalled server shows
//! in the percentiles instead of silently lowering the rate.
//!
//! It always stops by itself: after `--requests N` or `--duration` (default 10 s). It
//! connects only to `--addr` (loopback by default).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[path = "loadgen/direct.rs"]
mod direct;
#[path = "loadgen/stream.rs"]
mod stream;

use segd::grpc::pb::{
    self, customer_service_client::CustomerServiceClient, decision_service_client::DecisionServiceClient,
    event_service_client::EventServiceClient, gamification_service_client::GamificationServiceClient,
    leaderboard_service_client::LeaderboardServiceClient, segment_service_client::SegmentServiceClient,
};

/// The service whose health `--rpc health` and `--wait-ready` ask for.
const SERVICE: &str = "segd.v1.SegmentService";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// segd.v1.SegmentService/CountSegment
    Count,
    /// segd.v1.SegmentService/IsMember (random ids from --ids)
    IsMember,
    /// segd.v1.SegmentService/BatchIsMember (--batch-size random ids from --ids)
    BatchIsMember,
    /// segd.v1.SegmentService/StreamIsMember: one stream per worker (-c), --pipeline
    /// questions in flight on each (random ids from --ids; the segment named only when it
    /// changes); every question is a request in the figures
    StreamIsMember,
    /// segd.v1.SegmentService/Explain
    Explain,
    /// grpc.health.v1.Health/Check for segd.v1.SegmentService
    Health,
    /// segd.v1.CustomerService/UpsertCustomers: --batch-size customers (random ids from
    /// --ids), each setting total_spend_eur, last_purchase_days_ago and tier
    Upsert,
    /// segd.v1.EventService/RecordEvents: --batch-size purchase events (random customers
    /// from --ids, 1-500 €, unique event ids), needing a program in force (the demo's)
    RecordEvents,
    /// segd.v1.GamificationService/GetGamificationState (random ids from --ids)
    GameState,
    /// segd.v1.SegmentService/CreateSegment, once per segment and one at a time: the
    /// --where texts (or --queries) saved as s000, s001, ... (or the --segment-id names);
    /// without them the 100 segments of the issue-5 benchmark (benches/updates.rs)
    CreateSegments,
    /// segd.v1.LeaderboardService/Leaderboard: the top --limit of --board, among everyone
    /// or within the --where / --segment-id scopes (rotating)
    Leaderboard,
    /// segd.v1.LeaderboardService/RankOf: random ids from --ids on --board, scoped like
    /// leaderboard
    RankOf,
    /// segd.v1.LeaderboardService/AroundMe: random ids from --ids on --board, ±--limit
    /// entries (at most 100), scoped like leaderboard
    AroundMe,
    /// segd.v1.DecisionService/NextBestOffer for random customers (--ids) on
    /// --nbo-channel, placement "home", 5 results; logged unless --dry-run
    NextBestOffer,
}

impl Rpc {
    /// The gRPC method path (what ghz calls `--call` and h2load needs in the URL).
    fn path(self) -> &'static str {
        match self {
            Rpc::Count => "/segd.v1.SegmentService/CountSegment",
            Rpc::IsMember => "/segd.v1.SegmentService/IsMember",
            Rpc::BatchIsMember => "/segd.v1.SegmentService/BatchIsMember",
            Rpc::StreamIsMember => "/segd.v1.SegmentService/StreamIsMember",
            Rpc::Explain => "/segd.v1.SegmentService/Explain",
            Rpc::Health => "/grpc.health.v1.Health/Check",
            Rpc::Upsert => "/segd.v1.CustomerService/UpsertCustomers",
            Rpc::CreateSegments => "/segd.v1.SegmentService/CreateSegment",
            Rpc::RecordEvents => "/segd.v1.EventService/RecordEvents",
            Rpc::GameState => "/segd.v1.GamificationService/GetGamificationState",
            Rpc::Leaderboard => "/segd.v1.LeaderboardService/Leaderboard",
            Rpc::RankOf => "/segd.v1.LeaderboardService/RankOf",
            Rpc::AroundMe => "/segd.v1.LeaderboardService/AroundMe",
            Rpc::NextBestOffer => "/segd.v1.DecisionService/NextBestOffer",
        }
    }
}

/// `segd loadgen` options.
#[derive(clap::Args, Debug)]
pub struct LoadgenArgs {
    /// Server address (http://host:port; plaintext HTTP/2).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// The call to make.
    #[arg(long, value_enum, default_value_t = Rpc::Count)]
    pub rpc: Rpc,
    /// Requests in flight (worker tasks).
    #[arg(long, short = 'c', default_value_t = 1)]
    pub concurrency: usize,
    /// HTTP/2 connections (channels); workers are spread over them round-robin.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Measured requests to send (after --warmup); otherwise --duration.
    #[arg(long, short = 'n', conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// How long to send measured requests (e.g. 10s, 500ms, 2m); the default without
    /// --requests is 10s.
    #[arg(long, short = 'z', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Target request rate (open loop, paced); 0 sends as fast as answers come back.
    #[arg(long, default_value_t = 0.0)]
    pub rps: f64,
    /// A segment as SQL `WHERE` text; repeat to rotate segments across requests.
    #[arg(long = "where", conflicts_with = "queries")]
    pub where_: Vec<String>,
    /// A query file in the benchmark kit's queries.json format (uses each `sql.duckdb`).
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Query ids of --queries to use (exact, or a prefix such as q12; repeatable or
    /// comma-separated); all of them, rotating, when absent.
    #[arg(long, requires = "queries", value_delimiter = ',')]
    pub query_id: Vec<String>,
    /// A saved segment by id (repeatable or comma-separated, rotating): count, is-member,
    /// batch-is-member and explain send `segment_id` instead of `where`. With
    /// create-segments: the ids to save the --where texts as.
    #[arg(long, value_delimiter = ',')]
    pub segment_id: Vec<String>,
    /// Customer ids for is-member / batch-is-member / upsert: uniform random in LO..HI
    /// (inclusive).
    #[arg(long, value_parser = parse_ids, default_value = "1..1000000")]
    pub ids: (u64, u64),
    /// Ids per BatchIsMember request; customers per UpsertCustomers request.
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// stream-is-member: questions sent ahead of their answers on each stream (like
    /// redis-benchmark -P).
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// Requests sent first and left out of every figure (closed loop, same concurrency).
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Per-request deadline (client side).
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub timeout: Duration,
    /// Before starting, poll grpc.health.v1 until segd.v1.SegmentService is SERVING, for
    /// at most this long (e.g. 120s); fail if it never is.
    #[arg(long, value_parser = parse_duration)]
    pub wait_ready: Option<Duration>,
    /// Write the first request as a gRPC length-prefixed body (5-byte prefix + protobuf)
    /// to FILE, for h2load or curl, and exit without connecting.
    #[arg(long, value_name = "FILE")]
    pub dump_request: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seed of the random customer ids.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// next-best-offer: the decision context's channel.
    #[arg(long, default_value = "web")]
    pub nbo_channel: String,
    /// next-best-offer: decide without logging (no cap, budget or history changes).
    #[arg(long)]
    pub dry_run: bool,
    /// Client runtime threads (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// leaderboard / rank-of: the board's id in the program.
    #[arg(long, default_value = "points_week")]
    pub board: String,
    /// leaderboard: entries per page; around-me: entries either side.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `segd loadgen`. Err when nothing could be sent; exit status 2 (after the report) when
/// some requests failed.
pub fn run(args: LoadgenArgs) -> Result<()> {
    if args.rpc == Rpc::CreateSegments {
        return create_segments(&args);
    }
    let workload = Arc::new(Workload::from_args(&args)?);
    if let Some(file) = &args.dump_request {
        return dump_request(&workload, &args, file);
    }
    if args.concurrency == 0 || args.connections == 0 {
        bail!("--concurrency and --connections must be at least 1");
    }
    if !args.rps.is_finite() || args.rps < 0.0 {
        bail!("--rps must be 0 (unbounded) or a positive rate");
    }
    if args.rpc == Rpc::StreamIsMember && (args.rps > 0.0 || args.pipeline == 0) {
        bail!("stream-is-member runs closed loop (no --rps) with --pipeline at least 1");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.enable_all().build()?;
    let report = rt.block_on(run_async(&args, workload))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json(&args))?);
    } else {
        print!("{}", report.text(&args));
    }
    if report.tally.ok == 0 && report.tally.total() > 0 {
        bail!("every request failed");
    }
    if report.tally.total() > report.tally.ok {
        std::process::exit(2);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What to send

/// The requests of a run: the call, the rotating segments, the id range.
struct Workload {
    rpc: Rpc,
    /// (label, `where` text or saved segment id); request `i` uses `segments[i % len]`.
    segments: Vec<(String, String)>,
    /// `segments` are saved segment ids (`segment_id`), not `where` texts.
    saved: bool,
    ids: (u64, u64),
    batch_size: usize,
    /// Makes record-events' event ids unique to this run (a rerun must not send
    /// duplicates, which would change nothing and be measured as cheap).
    nonce: u64,
    /// Leaderboard reads: (board, page size).
    board: (String, u32),
    /// next-best-offer: (channel, dry run).
    nbo: (String, bool),
}

enum Req {
    Count(pb::CountSegmentRequest),
    IsMember(pb::IsMemberRequest),
    Batch(pb::BatchIsMemberRequest),
    Stream(pb::StreamIsMemberRequest),
    Explain(pb::ExplainRequest),
    Health(HealthCheckRequest),
    Upsert(pb::UpsertCustomersRequest),
    Events(pb::RecordEventsRequest),
    GameState(pb::GetGamificationStateRequest),
    Board(pb::LeaderboardRequest),
    RankOf(pb::RankOfRequest),
    AroundMe(pb::AroundMeRequest),
    Nbo(pb::NextBestOfferRequest),
}

impl Req {
    fn encode(&self) -> Vec<u8> {
        match self {
            Req::Count(r) => r.encode_to_vec(),
            Req::IsMember(r) => r.encode_to_vec(),
            Req::Batch(r) => r.encode_to_vec(),
            Req::Stream(r) => r.encode_to_vec(),
            Req::Explain(r) => r.encode_to_vec(),
            Req::Health(r) => r.encode_to_vec(),
            Req::Upsert(r) => r.encode_to_vec(),
            Req::Events(r) => r.encode_to_vec(),
            Req::GameState(r) => r.encode_to_vec(),
            Req::Board(r) => r.encode_to_vec(),
            Req::RankOf(r) => r.encode_to_vec(),
            Req::AroundMe(r) => r.encode_to_vec(),
            Req::Nbo(r) => r.encode_to_vec(),
        }
    }
}

impl Workload {
    fn from_args(args: &LoadgenArgs) -> Result<Workload> {
        let saved = !args.segment_id.is_empty();
        if saved && (args.queries.is_some() || !args.where_.is_empty()) {
            bail!("give --segment-id or --where / --queries, not both");
        }
        let segments = match &args.queries {
            Some(file) => read_queries(file, &args.query_id)?,
            None if saved => {
                args.segment_id.iter().map(|id| (format!("segment_id={id}"), id.clone())).collect()
            }
            None => args.where_.iter().map(|w| (w.clone(), w.clone())).collect(),
        };
        // Leaderboard reads without a segment rank everyone.
        let optional = matches!(
            args.rpc,
            Rpc::Health
                | Rpc::Upsert
                | Rpc::RecordEvents
                | Rpc::GameState
                | Rpc::Leaderboard
                | Rpc::RankOf
                | Rpc::AroundMe
                | Rpc::NextBestOffer
        );
        if segments.is_empty() && !optional {
            bail!("give a segment: --where TEXT (repeatable), --queries FILE or --segment-id ID");
        }
        if args.ids.0 > args.ids.1 {
            bail!("--ids LO..HI needs LO <= HI");
        }
        if matches!(args.rpc, Rpc::BatchIsMember | Rpc::Upsert | Rpc::RecordEvents) && args.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let nonce = rand::random::<u64>();
        Ok(Workload {
            rpc: args.rpc,
            segments,
            saved,
            ids: args.ids,
            batch_size: args.batch_size,
            nonce,
            board: (args.board.clone(), args.limit),
            nbo: (args.nbo_channel.clone(), args.dry_run),
        })
    }

    fn build(&self, i: u64, rng: &mut SmallRng) -> Req {
        let segment = || self.segments[(i % self.segments.len() as u64) as usize].1.clone();
        // The request's `segment` oneof: `where` text or a saved segment's id.
        macro_rules! seg {
            ($m:ident) => {{
                use pb::$m::Segment as S;
                Some(if self.saved { S::SegmentId(segment()) } else { S::Where(segment()) })
            }};
        }
        let (lo, hi) = self.ids;
        match self.rpc {
            Rpc::Count => Req::Count(pb::CountSegmentRequest { segment: seg!(count_segment_request) }),
            Rpc::IsMember => Req::IsMember(pb::IsMemberRequest {
                customer_id: rng.random_range(lo..=hi),
                segment: seg!(is_member_request),
            }),
            Rpc::BatchIsMember => Req::Batch(pb::BatchIsMemberRequest {
                customer_ids: (0..self.batch_size).map(|_| rng.random_range(lo..=hi)).collect(),
                segment: seg!(batch_is_member_request),
            }),
            Rpc::StreamIsMember => Req::Stream(pb::StreamIsMemberRequest {
                tag: i,
                customer_id: rng.random_range(lo..=hi),
                segment: seg!(stream_is_member_request),
            }),
            Rpc::Explain => Req::Explain(pb::ExplainRequest { segment: seg!(explain_request) }),
            Rpc::Health | Rpc::CreateSegments => Req::Health(HealthCheckRequest { service: SERVICE.into() }),
            Rpc::Upsert => Req::Upsert(upsert_batch(rng, self.ids, self.batch_size)),
            Rpc::RecordEvents => Req::Events(events_batch(rng, self.ids, self.batch_size, (self.nonce, i))),
            Rpc::GameState => {
                Req::GameState(pb::GetGamificationStateRequest { customer_id: rng.random_range(lo..=hi) })
            }
            Rpc::Leaderboard => Req::Board(pb::LeaderboardRequest {
                board: self.board.0.clone(),
                scope: self.scope(i),
                previous: 0,
                limit: self.board.1,
                offset: 0,
            }),
            Rpc::RankOf => Req::RankOf(pb::RankOfRequest {
                board: self.board.0.clone(),
                scope: self.scope(i),
                previous: 0,
                customer_id: rng.random_range(lo..=hi),
            }),
            Rpc::AroundMe => Req::AroundMe(pb::AroundMeRequest {
                board: self.board.0.clone(),
                scope: self.scope(i),
                previous: 0,
                customer_id: rng.random_range(lo..=hi),
                k: self.board.1,
            }),
            Rpc::NextBestOffer => Req::Nbo(pb::NextBestOfferRequest {
                customer_id: rng.random_range(lo..=hi),
                context: Some(pb::DecisionContext {
                    channel: self.nbo.0.clone(),
                    placement: "home".into(),
                    intent: String::new(),
                    now_ms: None,
                }),
                max_results: 5,
                counts_as_impression: None,
                dry_run: self.nbo.1,
                explain: false,
            }),
        }
    }

    /// A leaderboard read's scope: everyone without segments, else request `i`'s.
    fn scope(&self, i: u64) -> Option<pb::Segment> {
        use pb::segment::Segment as S;
        if self.segments.is_empty() {
            return None;
        }
        let s = self.segments[(i % self.segments.len() as u64) as usize].1.clone();
        Some(pb::Segment { segment: Some(if self.saved { S::SegmentId(s) } else { S::Where(s) }) })
    }
}

/// Reads `sql.duckdb` of each (selected) query of a queries.json file, in file order.
fn read_queries(file: &PathBuf, ids: &[String]) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).context("parsing the query file")?;
    let queries = doc["queries"].as_array().context("the query file has no 'queries' array")?;
    let mut out = Vec::new();
    for q in queries {
        let id = q["id"].as_str().unwrap_or("?");
        let wanted = ids.is_empty()
            || ids.iter().any(|w| id == w || id.strip_prefix(w.as_str()).is_some_and(|r| r.starts_with('_')));
        if wanted {
            let sql = q["sql"]["duckdb"].as_str().with_context(|| format!("{id}: no sql.duckdb"))?;
            out.push((id.to_string(), sql.to_string()));
        }
    }
    if out.is_empty() {
        bail!("no query in {} matches --query-id {}", file.display(), ids.join(","));
    }
    Ok(out)
}

/// The tiers of the benchmark kit's `tier` column.
const TIERS: [&str; 5] = ["NONE", "BRONZE", "SILVER", "GOLD", "PLATINUM"];

/// `n` customers with random ids in `lo..=hi`, each changing 3 attributes of the kit's
/// schema with the value ranges of benches/updates.rs.
fn upsert_batch(rng: &mut SmallRng, (lo, hi): (u64, u64), n: usize) -> pb::UpsertCustomersRequest {
    use pb::customer::value::Kind;
    let v = |k: Kind| pb::customer::Value { kind: Some(k) };
    let customers = (0..n)
        .map(|_| pb::Customer {
            customer_id: rng.random_range(lo..=hi),
            attributes: [
                (
                    "total_spend_eur".to_string(),
                    v(Kind::FloatValue(rng.random_range(0..3_000_000) as f64 / 100.0)),
                ),
                ("last_purchase_days_ago".to_string(), v(Kind::IntValue(rng.random_range(0..400)))),
                ("tier".to_string(), v(Kind::StringValue(TIERS[rng.random_range(0..5)].into()))),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    pb::UpsertCustomersRequest { customers }
}

/// `--rpc record-events`: `n` purchases of random customers, now, with ids unique to the
/// run (`nonce`) and the request (`i`).
fn events_batch(
    rng: &mut SmallRng,
    (lo, hi): (u64, u64),
    n: usize,
    (nonce, i): (u64, u64),
) -> pb::RecordEventsRequest {
    use pb::property_value::Value as V;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let occurred_at_ms = now.as_millis() as i64 - 1_000;
    let prop = |v: V| pb::PropertyValue { value: Some(v) };
    let events = (0..n)
        .map(|k| pb::GamifyEvent {
            event_id: format!("lg{nonce:x}-{i}-{k}"),
            customer_id: rng.random_range(lo..=hi),
            r#type: "purchase".into(),
            occurred_at_ms,
            properties: [
                (
                    "amount_eur".to_string(),
                    prop(V::DoubleValue(rng.random_range(100..50_000) as f64 / 100.0)),
                ),
                ("category".to_string(), prop(V::StringValue(["toys", "books", "fashion"][k % 3].into()))),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    pb::RecordEventsRequest { events }
}

/// `--rpc create-segments`: saves each segment one at a time and prints its count; an
/// existing id (ALREADY_EXISTS) is reported and skipped. Err when any other call fails.
fn create_segments(args: &LoadgenArgs) -> Result<()> {
    let texts: Vec<String> = match &args.queries {
        Some(file) => read_queries(file, &args.query_id)?.into_iter().map(|(_, w)| w).collect(),
        None => args.where_.clone(),
    };
    let segments: Vec<(String, String)> = if texts.is_empty() {
        if !args.segment_id.is_empty() {
            bail!("--segment-id with create-segments names the --where texts; give them too");
        }
        segd::gen::benchmark_segments()
    } else {
        if !args.segment_id.is_empty() && args.segment_id.len() != texts.len() {
            bail!("{} --segment-id for {} segments", args.segment_id.len(), texts.len());
        }
        texts
            .into_iter()
            .enumerate()
            .map(|(i, w)| (args.segment_id.get(i).cloned().unwrap_or_else(|| format!("s{i:03}")), w))
            .collect()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let ep = endpoint(&args.addr, args.timeout)?;
        if let Some(limit) = args.wait_ready {
            let d = wait_ready(&ep, limit).await?;
            eprintln!("{SERVICE} SERVING after {:.3}s", d.as_secs_f64());
        }
        let ch = ep.connect().await.with_context(|| format!("connecting to {}", args.addr))?;
        let mut seg = SegmentServiceClient::new(ch);
        let t = Instant::now();
        let (mut created, mut existed) = (0, 0);
        let mut rows = Vec::new();
        for (id, w) in &segments {
            let t0 = Instant::now();
            let req = pb::CreateSegmentRequest {
                segment_id: id.clone(),
                definition: Some(pb::create_segment_request::Definition::Where(w.clone())),
                description: String::new(),
            };
            match seg.create_segment(req).await {
                Ok(r) => {
                    created += 1;
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    rows.push(serde_json::json!({"segment_id": id, "where": w, "count": r.get_ref().count, "ms": ms}));
                    if !args.json {
                        println!("{id}\t{}\t{ms:.1} ms\t{w}", r.get_ref().count);
                    }
                }
                Err(e) if e.code() == tonic::Code::AlreadyExists => {
                    existed += 1;
                    if !args.json {
                        println!("{id}\texists\t\t{w}");
                    }
                }
                Err(e) => bail!("CreateSegment {id}: {}: {}", code_name(e.code()), e.message()),
            }
        }
        let secs = t.elapsed().as_secs_f64();
        if args.json {
            let doc = serde_json::json!({"created": created, "existed": existed, "elapsed_s": secs, "segments": rows});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            println!("created {created}, already there {existed}, in {secs:.2} s");
        }
        Ok(())
    })
}

/// `--dump-request`: the gRPC message framing (flag byte 0 = uncompressed, u32 big-endian
/// length) followed by the protobuf bytes of request 0.
fn dump_request(w: &Workload, args: &LoadgenArgs, file: &PathBuf) -> Result<()> {
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let msg = w.build(0, &mut rng).encode();
    let mut body = Vec::with_capacity(5 + msg.len());
    body.push(0u8);
    body.extend_from_slice(&u32::try_from(msg.len())?.to_be_bytes());
    body.extend_from_slice(&msg);
    std::fs::write(file, &body).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "wrote {} bytes to {} (5-byte gRPC prefix + {}-byte request) for POST {}",
        body.len(),
        file.display(),
        msg.len(),
        w.rpc.path()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Sending

#[derive(Clone)]
struct Clients {
    seg: SegmentServiceClient<Channel>,
    dec: DecisionServiceClient<Channel>,
    cust: CustomerServiceClient<Channel>,
    health: HealthClient<Channel>,
    events: EventServiceClient<Channel>,
    game: GamificationServiceClient<Channel>,
    boards: LeaderboardServiceClient<Channel>,
    /// The gamification benchmarks' reads (next-best-offer, game-state and the
    /// leaderboard calls) on a connection of their own without tonic's `Channel` (see
    /// `direct`).
    direct: Option<direct::Clients>,
}

/// What an OK answer said (tallied to catch, e.g., an id range that misses every customer).
enum Answer {
    Count(u64),
    Member {
        found: bool,
        member: bool,
    },
    Batch {
        ids: u64,
        found: u64,
        members: u64,
    },
    /// Customers an UpsertCustomers request carried (the answer's `applied`).
    Upsert {
        customers: u64,
        applied: u64,
    },
    Other,
}

/// An error: the gRPC code's name (or BAD_RESPONSE) and the message.
type Failure = (&'static str, String);

async fn send(c: &mut Clients, req: Req) -> Result<Answer, Failure> {
    let st = |s: tonic::Status| (code_name(s.code()), s.message().to_string());
    Ok(match req {
        Req::Count(r) => Answer::Count(c.seg.count_segment(r).await.map_err(st)?.into_inner().count),
        Req::IsMember(r) => {
            let a = c.seg.is_member(r).await.map_err(st)?.into_inner();
            Answer::Member { found: a.customer_found, member: a.is_member }
        }
        Req::Batch(r) => {
            let n = r.customer_ids.len();
            let a = c.seg.batch_is_member(r).await.map_err(st)?.into_inner();
            if a.is_member.len() != n || a.customer_found.len() != n {
                return Err((
                    "BAD_RESPONSE",
                    format!("{} answers for {n} ids", a.is_member.len().min(a.customer_found.len())),
                ));
            }
            let found = a.customer_found.iter().filter(|f| **f).count() as u64;
            Answer::Batch { ids: n as u64, found, members: a.members }
        }
        // One question on a stream of its own (the pipelined run is stream::worker).
        Req::Stream(r) => {
            let tag = r.tag;
            let mut answers = c.seg.stream_is_member(tokio_stream::iter([r])).await.map_err(st)?.into_inner();
            let a = answers.message().await.map_err(st)?.ok_or(("BAD_RESPONSE", "no answer".to_string()))?;
            stream::answer(tag, a)?
        }
        Req::Explain(r) => {
            c.seg.explain(r).await.map_err(st)?;
            Answer::Other
        }
        Req::Upsert(r) => {
            let customers = r.customers.len() as u64;
            let a = c.cust.upsert_customers(r).await.map_err(st)?.into_inner();
            Answer::Upsert { customers, applied: u64::from(a.applied) }
        }
        // Counted like upserts: events carried, and those not duplicates as applied.
        Req::Events(r) => {
            let customers = r.events.len() as u64;
            let a = c.events.record_events(r).await.map_err(st)?.into_inner();
            Answer::Upsert { customers, applied: a.outcomes.iter().filter(|o| !o.duplicate).count() as u64 }
        }
        Req::GameState(r) => {
            match &mut c.direct {
                Some(d) => in_time(d.timeout, d.game.get_gamification_state(r)).await?,
                None => c.game.get_gamification_state(r).await.map_err(st)?,
            };
            Answer::Other
        }
        Req::Board(r) => Answer::Count(
            match &mut c.direct {
                Some(d) => in_time(d.timeout, d.boards.leaderboard(r)).await?,
                None => c.boards.leaderboard(r).await.map_err(st)?,
            }
            .into_inner()
            .count,
        ),
        Req::RankOf(r) => {
            let a = match &mut c.direct {
                Some(d) => in_time(d.timeout, d.boards.rank_of(r)).await?,
                None => c.boards.rank_of(r).await.map_err(st)?,
            }
            .into_inner();
            Answer::Member { found: true, member: a.ranked }
        }
        Req::AroundMe(r) => {
            let a = match &mut c.direct {
                Some(d) => in_time(d.timeout, d.boards.around_me(r)).await?,
                None => c.boards.around_me(r).await.map_err(st)?,
            }
            .into_inner();
            Answer::Member { found: true, member: !a.entries.is_empty() }
        }
        Req::Nbo(r) => {
            match &mut c.direct {
                Some(d) => in_time(d.timeout, d.dec.next_best_offer(r)).await?,
                None => c.dec.next_best_offer(r).await.map_err(st)?,
            };
            Answer::Other
        }
        Req::Health(r) => {
            let a = c.health.check(r).await.map_err(st)?.into_inner();
            if a.status != ServingStatus::Serving as i32 {
                return Err(("NOT_SERVING", format!("health status {}", a.status)));
            }
            Answer::Other
        }
    })
}

/// A direct call's answer, with the timeout tonic's `Channel` would have applied.
async fn in_time<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, call).await {
        Ok(a) => a.map_err(|s| (code_name(s.code()), s.message().to_string())),
        Err(_) => Err(("DEADLINE_EXCEEDED", format!("no answer within {timeout:?}"))),
    }
}

fn endpoint(addr: &str, timeout: Duration) -> Result<Endpoint> {
    let addr = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    Ok(Endpoint::from_shared(addr.clone())
        .with_context(|| format!("bad --addr {addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout))
}

/// Polls Health/Check until SERVING; returns how long that took.
async fn wait_ready(ep: &Endpoint, limit: Duration) -> Result<Duration> {
    let t = Instant::now();
    let mut last: String;
    loop {
        if let Ok(ch) = ep.connect().await {
            let mut h = HealthClient::new(ch);
            match h.check(HealthCheckRequest { service: SERVICE.into() }).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(t.elapsed()),
                Ok(r) => last = format!("status {}", r.get_ref().status),
                Err(e) => last = format!("{}: {}", code_name(e.code()), e.message()),
            }
        } else {
            last = "cannot connect".into();
        }
        if t.elapsed() >= limit {
            bail!("{SERVICE} not SERVING after {:.1}s ({last})", t.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When the run stops, shared by its workers.
struct Plan {
    next: AtomicU64,
    limit: Option<u64>,
    start: Instant,
    deadline: Option<Instant>,
    /// Seconds between scheduled requests (open loop) or none (closed loop).
    interval: Option<f64>,
    /// Index offset: warmup requests come first in the rotation.
    offset: u64,
}

async fn worker(
    mut clients: Clients,
    workload: Arc<Workload>,
    plan: Arc<Plan>,
    mut rng: SmallRng,
) -> (Tally, Instant) {
    let mut tally = Tally::default();
    let mut last = Instant::now();
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if plan.limit.is_some_and(|l| i >= l) {
            break;
        }
        let due = plan.interval.map(|s| plan.start + Duration::from_secs_f64(s * i as f64));
        let now = Instant::now();
        if plan.deadline.is_some_and(|d| due.unwrap_or(now) >= d) {
            break;
        }
        let req = workload.build(plan.offset + i, &mut rng);
        let t0 = match due {
            // Behind schedule: time it from when it was due.
            Some(d) if d <= now => d,
            Some(d) => {
                tokio::time::sleep_until(d.into()).await;
                Instant::now()
            }
            None => Instant::now(),
        };
        let r = send(&mut clients, req).await;
        last = Instant::now();
        tally.record(last.duration_since(t0), r);
    }
    (tally, last)
}

struct Report {
    tally: Tally,
    elapsed: Duration,
    /// CPU seconds (user + system) loadgen itself used during the measured run.
    client_cpu: Option<f64>,
    ready_after: Option<Duration>,
    workload: Arc<Workload>,
    started_at: String,
}

async fn run_async(args: &LoadgenArgs, workload: Arc<Workload>) -> Result<Report> {
    let ep = endpoint(&args.addr, args.timeout)?;
    let ready_after = match args.wait_ready {
        Some(limit) => {
            let d = wait_ready(&ep, limit).await?;
            if !args.json {
                eprintln!("{SERVICE} SERVING after {:.3}s", d.as_secs_f64());
            }
            Some(d)
        }
        None => None,
    };
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let ch = ep.connect().await.with_context(|| format!("connecting to {}", args.addr))?;
        let direct = match workload.rpc {
            Rpc::NextBestOffer | Rpc::GameState | Rpc::Leaderboard | Rpc::RankOf | Rpc::AroundMe => {
                Some(direct::connect(&args.addr, args.timeout).await?)
            }
            _ => None,
        };
        channels.push((ch, direct));
    }
    let clients: Vec<Clients> = channels
        .into_iter()
        .map(|(ch, direct)| Clients {
            direct,
            seg: SegmentServiceClient::new(ch.clone()),
            dec: DecisionServiceClient::new(ch.clone()),
            cust: CustomerServiceClient::new(ch.clone()),
            events: EventServiceClient::new(ch.clone()),
            game: GamificationServiceClient::new(ch.clone()),
            boards: LeaderboardServiceClient::new(ch.clone()),
            health: HealthClient::new(ch),
        })
        .collect();

    let phase =
        |limit: Option<u64>, deadline: Option<Duration>, interval: Option<f64>, offset: u64, seed: u64| {
            let start = Instant::now();
            let plan = Arc::new(Plan {
                next: AtomicU64::new(0),
                limit,
                start,
                deadline: deadline.map(|d| start + d),
                interval,
                offset,
            });
            let handles: Vec<_> = (0..args.concurrency)
                .map(|w| {
                    let (clients, workload, plan) =
                        (clients[w % clients.len()].clone(), workload.clone(), plan.clone());
                    let rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
                    let pipeline = args.pipeline;
                    tokio::spawn(async move {
                        match workload.rpc {
                            Rpc::StreamIsMember => {
                                stream::worker(clients, workload, plan, rng, pipeline).await
                            }
                            _ => worker(clients, workload, plan, rng).await,
                        }
                    })
                })
                .collect();
            async move {
                let mut tally = Tally::default();
                let mut end = start;
                for h in handles {
                    let (t, last) = h.await.map_err(|e| anyhow!("worker failed: {e}"))?;
                    tally.merge(t);
                    end = end.max(last);
                }
                anyhow::Ok((tally, end.duration_since(start)))
            }
        };

    if args.warmup > 0 {
        phase(Some(args.warmup), None, None, 0, args.seed ^ 0x5eed).await?;
    }
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let duration = match args.requests {
        Some(_) => None,
        None => Some(args.duration.unwrap_or(Duration::from_secs(10))),
    };
    let interval = (args.rps > 0.0).then(|| 1.0 / args.rps);
    let cpu0 = cpu_seconds();
    let (tally, elapsed) = phase(args.requests, duration, interval, args.warmup, args.seed).await?;
    let client_cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    Ok(Report { tally, elapsed, client_cpu, ready_after, workload, started_at })
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat (Linux; the
/// kernel reports them in USER_HZ = 100 ticks per second).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

// ---------------------------------------------------------------------------------------
// Figures

/// A log-linear latency histogram in nanoseconds: exact below 256 ns, then 128
/// sub-buckets per power of two (under 0.8% relative error), like HdrHistogram with two
/// significant digits. Fixed size, so a long run costs no memory.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    n: u64,
    sum: u128,
    min: u64,
    max: u64,
}

const SUB_BITS: u32 = 8;
const HALF: u64 = 1 << (SUB_BITS - 1);

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; (64 * HALF + HALF) as usize], n: 0, sum: 0, min: u64::MAX, max: 0 }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < (1 << SUB_BITS) {
            return v as usize;
        }
        let shift = (63 - v.leading_zeros()) + 1 - SUB_BITS;
        (u64::from(shift) * HALF + (v >> shift)) as usize
    }

    /// The largest value that falls in bucket `idx`.
    fn upper(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < (1 << SUB_BITS) {
            return idx;
        }
        let shift = idx / HALF - 1;
        let m = idx - shift * HALF;
        ((m + 1) << shift) - 1
    }

    fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.n += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The value at quantile `q` (0..=1): the smallest recorded bucket holding at least
    /// `ceil(q * n)` values, reported as the bucket's upper edge (capped at the maximum).
    fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max).max(self.min);
            }
        }
        self.max
    }

    fn mean(&self) -> u64 {
        if self.n == 0 {
            0
        } else {
            (self.sum / u128::from(self.n)) as u64
        }
    }
}

#[derive(Default)]
struct Tally {
    /// Latency of every answered request, OK or not.
    hist: Histogram,
    ok: u64,
    /// Failures by gRPC code name, with the first message seen.
    errors: BTreeMap<&'static str, (u64, String)>,
    ids: u64,
    found: u64,
    members: u64,
    /// The distinct counts answered (CountSegment): one per segment on fixed data.
    counts: BTreeSet<u64>,
    /// Customers sent in OK UpsertCustomers requests, and the sum of their `applied`.
    customers: u64,
    applied: u64,
}

impl Tally {
    fn record(&mut self, d: Duration, r: Result<Answer, Failure>) {
        self.hist.record(d.as_nanos().min(u128::from(u64::MAX)) as u64);
        match r {
            Ok(a) => {
                self.ok += 1;
                match a {
                    Answer::Count(n) => {
                        self.counts.insert(n);
                    }
                    Answer::Member { found, member } => {
                        self.ids += 1;
                        self.found += u64::from(found);
                        self.members += u64::from(member);
                    }
                    Answer::Batch { ids, found, members } => {
                        self.ids += ids;
                        self.found += found;
                        self.members += members;
                    }
                    Answer::Upsert { customers, applied } => {
                        self.customers += customers;
                        self.applied += applied;
                    }
                    Answer::Other => {}
                }
            }
            Err((code, msg)) => {
                self.errors.entry(code).or_insert((0, msg)).0 += 1;
            }
        }
    }

    fn merge(&mut self, o: Tally) {
        self.hist.merge(&o.hist);
        self.ok += o.ok;
        for (code, (n, msg)) in o.errors {
            self.errors.entry(code).or_insert((0, msg)).0 += n;
        }
        self.ids += o.ids;
        self.found += o.found;
        self.members += o.members;
        self.counts.extend(o.counts);
        self.customers += o.customers;
        self.applied += o.applied;
    }

    fn total(&self) -> u64 {
        self.hist.n
    }
}

const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)];

fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 1e3 * 10.0).round() / 10.0
}

impl Report {
    fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.tally.total() as f64 / s
        } else {
            0.0
        }
    }

    /// Customers updated per second: OK UpsertCustomers requests x batch size / elapsed.
    fn updates_per_s(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.tally.customers as f64 / s
        } else {
            0.0
        }
    }

    fn mode(&self, args: &LoadgenArgs) -> String {
        let stop = match (args.requests, args.duration) {
            (Some(n), _) => format!("{n} requests"),
            (None, d) => format!("{:.3}s", d.unwrap_or(Duration::from_secs(10)).as_secs_f64()),
        };
        let pace =
            if args.rps > 0.0 { format!("open loop at {} req/s", args.rps) } else { "closed loop".into() };
        format!("{stop}, {pace}, warmup {} excluded", args.warmup)
    }

    fn segments(&self) -> Vec<&str> {
        self.workload.segments.iter().map(|(l, _)| l.as_str()).collect()
    }

    fn text(&self, args: &LoadgenArgs) -> String {
        use std::fmt::Write;
        let t = &self.tally;
        let mut s = String::new();
        let _ = writeln!(s, "segd loadgen: {} {}", args.addr, self.workload.rpc.path());
        let _ = writeln!(
            s,
            "  concurrency {} over {} connection(s); {}",
            args.concurrency,
            args.connections,
            self.mode(args)
        );
        let segs = self.segments();
        if !segs.is_empty() {
            let shown: Vec<&str> = segs.iter().take(4).copied().collect();
            let more = if segs.len() > 4 { format!(" (+{} more)", segs.len() - 4) } else { String::new() };
            let _ = writeln!(s, "  segments ({}, rotating): {}{more}", segs.len(), shown.join(" | "));
        }
        if matches!(self.workload.rpc, Rpc::IsMember | Rpc::BatchIsMember | Rpc::StreamIsMember) {
            let per = if self.workload.rpc == Rpc::BatchIsMember {
                format!(", {} per request", self.workload.batch_size)
            } else if self.workload.rpc == Rpc::StreamIsMember {
                format!(", {} questions in flight per stream, one stream per worker", args.pipeline)
            } else {
                String::new()
            };
            let _ = writeln!(s, "  ids: random in {}..={}{per}", self.workload.ids.0, self.workload.ids.1);
        }
        if self.workload.rpc == Rpc::Upsert {
            let _ = writeln!(
                s,
                "  customers: {} per request, ids random in {}..={}, 3 attributes each \
                 (total_spend_eur, last_purchase_days_ago, tier)",
                self.workload.batch_size, self.workload.ids.0, self.workload.ids.1
            );
        }
        let _ = writeln!(s, "\nSummary:");
        let _ = writeln!(s, "  requests:  {}", t.total());
        let _ = writeln!(s, "  ok:        {}", t.ok);
        let _ = writeln!(s, "  errors:    {}", t.total() - t.ok);
        let _ = writeln!(s, "  elapsed:   {:.3} s", self.elapsed.as_secs_f64());
        let _ = writeln!(s, "  rps:       {:.1}", self.rps());
        if self.workload.rpc == Rpc::RecordEvents {
            let _ = writeln!(
                s,
                "  events:    {:.1} events/s ({} events in OK requests, {} not duplicates)",
                self.updates_per_s(),
                t.customers,
                t.applied
            );
        }
        if self.workload.rpc == Rpc::Upsert {
            let _ = writeln!(
                s,
                "  updates:   {:.1} customers/s ({} customers in OK requests, {} applied)",
                self.updates_per_s(),
                t.customers,
                t.applied
            );
        }
        if let Some(cpu) = self.client_cpu {
            let cores = cpu / self.elapsed.as_secs_f64().max(1e-9);
            let _ = writeln!(s, "  client:    {cpu:.2} CPU s ({cores:.2} cores) in loadgen itself");
        }
        if let Some(d) = self.ready_after {
            let _ = writeln!(s, "  ready:     SERVING after {:.3} s", d.as_secs_f64());
        }
        if t.ids > 0 {
            let _ = writeln!(
                s,
                "  ids:       {} answered, {:.1}% found, {:.1}% members",
                t.ids,
                100.0 * t.found as f64 / t.ids as f64,
                100.0 * t.members as f64 / t.ids as f64
            );
        }
        if let Some(distinct) = distinct_counts(t) {
            let _ = writeln!(s, "  counts:    {distinct}");
        }
        let _ = writeln!(s, "\nLatency (send to answer):");
        let _ = writeln!(s, "  min    {}", fmt_ns(if t.hist.n > 0 { t.hist.min } else { 0 }));
        let _ = writeln!(s, "  mean   {}", fmt_ns(t.hist.mean()));
        for (name, q) in QUANTILES {
            let _ = writeln!(s, "  {name:<6} {}", fmt_ns(t.hist.quantile(q)));
        }
        let _ = writeln!(s, "\nStatus codes:");
        if t.ok > 0 || t.errors.is_empty() {
            let _ = writeln!(s, "  OK                  {}", t.ok);
        }
        for (code, (n, msg)) in &t.errors {
            let _ = writeln!(s, "  {code:<19} {n}   (first: {msg})");
        }
        s
    }

    fn json(&self, args: &LoadgenArgs) -> serde_json::Value {
        let t = &self.tally;
        let mut latency = serde_json::Map::new();
        latency.insert("min_us".into(), us(if t.hist.n > 0 { t.hist.min } else { 0 }).into());
        latency.insert("mean_us".into(), us(t.hist.mean()).into());
        for (name, q) in QUANTILES {
            latency.insert(format!("{}_us", name.replace('.', "_")), us(t.hist.quantile(q)).into());
        }
        let mut codes = serde_json::Map::new();
        if t.ok > 0 {
            codes.insert("OK".into(), t.ok.into());
        }
        for (code, (n, _)) in &t.errors {
            codes.insert((*code).into(), (*n).into());
        }
        let messages: serde_json::Map<String, serde_json::Value> =
            t.errors.iter().map(|(c, (_, m))| ((*c).to_string(), m.clone().into())).collect();
        serde_json::json!({
            "started_at": self.started_at,
            "addr": args.addr,
            "rpc": self.workload.rpc.path(),
            "concurrency": args.concurrency,
            "connections": args.connections,
            "mode": self.mode(args),
            "rps_target": args.rps,
            "warmup": args.warmup,
            "pipeline": (self.workload.rpc == Rpc::StreamIsMember).then_some(args.pipeline),
            "segments": self.segments(),
            "ids": if matches!(self.workload.rpc, Rpc::IsMember | Rpc::BatchIsMember | Rpc::StreamIsMember) {
                serde_json::json!({"lo": self.workload.ids.0, "hi": self.workload.ids.1,
                    "batch_size": (self.workload.rpc == Rpc::BatchIsMember).then_some(self.workload.batch_size),
                    "answered": t.ids, "found": t.found, "members": t.members})
            } else { serde_json::Value::Null },
            "counts": distinct_counts(t),
            "requests": t.total(),
            "ok": t.ok,
            "errors": t.total() - t.ok,
            "status_codes": codes,
            "error_messages": messages,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "rps": (self.rps() * 10.0).round() / 10.0,
            "events": (self.workload.rpc == Rpc::RecordEvents).then(|| serde_json::json!({
                "batch_size": self.workload.batch_size,
                "events": t.customers,
                "not_duplicates": t.applied,
                "events_per_s": (self.updates_per_s() * 10.0).round() / 10.0,
            })),
            "upsert": (self.workload.rpc == Rpc::Upsert).then(|| serde_json::json!({
                "batch_size": self.workload.batch_size,
                "ids": {"lo": self.workload.ids.0, "hi": self.workload.ids.1},
                "customers": t.customers,
                "applied": t.applied,
                "customer_updates_per_s": (self.updates_per_s() * 10.0).round() / 10.0,
            })),
            "saved_segments": self.workload.saved,
            "latency": latency,
            "ready_after_s": self.ready_after.map(|d| d.as_secs_f64()),
            "client_cpu_s": self.client_cpu,
        })
    }
}

/// The distinct counts CountSegment answered (one per segment when the data is fixed).
fn distinct_counts(t: &Tally) -> Option<String> {
    if t.counts.is_empty() {
        return None;
    }
    let v: Vec<u64> = t.counts.iter().copied().collect();
    let shown: Vec<String> = v.iter().take(16).map(u64::to_string).collect();
    Some(format!("{}{}", shown.join(", "), if v.len() > 16 { ", ..." } else { "" }))
}

/// The canonical name of a gRPC status code, as grpcurl and ghz print it.
fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

// ---------------------------------------------------------------------------------------
// Argument parsing

/// `10s`, `500ms`, `250us`, `2m`, `1h`, `1.5s`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("bad duration '{s}' (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("bad duration unit '{u}' (use us, ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration '{s}': {e}"))
}

/// `LO..HI` (both inclusive; `LO..=HI` is accepted too) or a single id.
fn parse_ids(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("bad id range '{s}' (expected LO..HI, e.g. 1..10000000)");
    let num = |t: &str| t.trim().replace('_', "").parse::<u64>().map_err(|_| bad());
    match s.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (num(lo)?, num(hi.strip_prefix('=').unwrap_or(hi))?);
            if lo > hi {
                return Err(bad());
            }
            Ok((lo, hi))
        }
        None => num(s).map(|v| (v, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn id_ranges() {
        assert_eq!(parse_ids("1..10000000").unwrap(), (1, 10_000_000));
        assert_eq!(parse_ids("1..=1_000").unwrap(), (1, 1000));
        assert_eq!(parse_ids("42").unwrap(), (42, 42));
        assert!(parse_ids("5..1").is_err());
        assert!(parse_ids("a..b").is_err());
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut prev = 0;
        for v in (0..2_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i >= prev, "index not monotonic at {v}");
            prev = i;
            let up = Histogram::upper(i);
            assert!(up >= v, "{v} above its bucket's upper edge {up}");
            assert!((up - v) as f64 <= v as f64 / 127.0 + 1.0, "bucket of {v} too wide: {up}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.01;
        assert!(near(h.quantile(0.5), 5_000_000), "{}", h.quantile(0.5));
        assert!(near(h.quantile(0.99), 9_900_000), "{}", h.quantile(0.99));
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.mean(), 5_000_500);
        let mut other = Histogram::default();
        other.record(20_000_000);
        h.merge(&other);
        assert_eq!(h.quantile(1.0), 20_000_000);
        assert_eq!(h.n, 10_001);
    }

    #[test]
    fn request_framing_and_rotation() {
        let w = Workload {
            rpc: Rpc::IsMember,
            segments: vec![("a".into(), "age < 30".into()), ("b".into(), "email_opt_in".into())],
            saved: false,
            ids: (42, 42),
            batch_size: 1,
            nonce: 0,
            board: (String::new(), 0),
            nbo: ("web".into(), false),
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let Req::IsMember(r0) = w.build(0, &mut rng) else { panic!() };
        let Req::IsMember(r1) = w.build(1, &mut rng) else { panic!() };
        assert_eq!(r0.customer_id, 42);
        assert_eq!(r0.segment, Some(pb::is_member_request::Segment::Where("age < 30".into())));
        assert_eq!(r1.segment, Some(pb::is_member_request::Segment::Where("email_opt_in".into())));
        // customer_id = 42 (field 1, varint), where = "age < 30" (field 2, bytes).
        assert_eq!(Req::IsMember(r0).encode(), b"\x08\x2a\x12\x08age < 30".to_vec());
    }

    #[test]
    fn saved_segments_and_upserts() {
        let mut w = Workload {
            rpc: Rpc::Count,
            segments: vec![("segment_id=s001".into(), "s001".into())],
            saved: true,
            ids: (1, 10),
            batch_size: 3,
            nonce: 7,
            board: ("points_week".into(), 100),
            nbo: ("web".into(), false),
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let Req::Count(r) = w.build(0, &mut rng) else { panic!() };
        assert_eq!(r.segment, Some(pb::count_segment_request::Segment::SegmentId("s001".into())));
        w.rpc = Rpc::Upsert;
        let Req::Upsert(r) = w.build(0, &mut rng) else { panic!() };
        assert_eq!(r.customers.len(), 3);
        w.rpc = Rpc::RecordEvents;
        let Req::Events(e) = w.build(5, &mut rng) else { panic!() };
        let ids: Vec<&str> = e.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["lg7-5-0", "lg7-5-1", "lg7-5-2"], "unique to the run and the request");
        assert!(e.events.iter().all(|e| (1..=10).contains(&e.customer_id) && e.r#type == "purchase"));
        w.rpc = Rpc::Leaderboard;
        let Req::Board(b) = w.build(0, &mut rng) else { panic!() };
        let scope = Some(pb::Segment { segment: Some(pb::segment::Segment::SegmentId("s001".into())) });
        assert_eq!((b.board.as_str(), b.limit, &b.scope), ("points_week", 100, &scope));
        w.rpc = Rpc::RankOf;
        let Req::RankOf(q) = w.build(0, &mut rng) else { panic!() };
        assert!((1..=10).contains(&q.customer_id));
        for c in &r.customers {
            assert!((1..=10).contains(&c.customer_id));
            let mut names: Vec<&str> = c.attributes.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(names, ["last_purchase_days_ago", "tier", "total_spend_eur"]);
        }
        let segs = segd::gen::benchmark_segments();
        assert_eq!(segs.len(), 100);
        assert_eq!(segs[0], ("s000".into(), "total_spend_eur >= 100 AND last_purchase_days_ago < 30".into()));
        assert_eq!(segs[99].0, "s099");
    }
}
