//! The `segd count`, `segd gen` and `segd serve` commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::TcpListener;

use segd::db::{DbError, DbOptions};
use segd::persist::SyncMode;
use segd::query::{self, Limits};
use segd::security::{BearerToken, Security, Tls};
use segd::server::{Config, Server};
use segd::store::{load::load_file, Dataset, StoreError};

/// Loads `--data`, or generates a demo table of `demo_rows` when no file is given.
pub fn load_or_demo(data: Option<&Path>, demo_rows: usize, id_column: &str) -> Result<Dataset> {
    let t = Instant::now();
    let ds = match data {
        Some(p) => load_file(p, id_column).with_context(|| format!("loading {}", p.display()))?,
        None => {
            tracing::info!(rows = demo_rows, "no --data given: generating a demo customer base");
            let batches = segd::gen::generate(demo_rows, segd::gen::DEFAULT_SEED);
            Dataset::from_batches(segd::gen::schema(), batches.into_iter().map(Ok), "customer_id")?
        }
    };
    let m = ds.memory();
    tracing::info!(
        rows = ds.rows(),
        secs = format!("{:.2}", t.elapsed().as_secs_f64()),
        columns_mib = m.columns >> 20,
        indexes_mib = m.indexes >> 20,
        ids_mib = m.ids >> 20,
        "customer base ready"
    );
    Ok(ds)
}

/// `segd count --where` / `--json`: prints the count alone on stdout.
pub fn count_one(ds: &Dataset, where_: Option<&str>, json: Option<&str>, explain: bool) -> Result<()> {
    let limits = Limits::default();
    let plan = match (where_, json) {
        (Some(w), _) => query::compile_sql(ds, w, &limits)?,
        (None, Some(j)) => query::compile_expr(ds, &query::json::parse_str(j, &limits)?, &limits)?,
        (None, None) => bail!("give --where, --json or --queries"),
    };
    let t = Instant::now();
    let n = query::eval::count(ds, &plan);
    let us = t.elapsed().as_micros();
    println!("{n}");
    eprintln!("counted in {us} µs over {} customers", ds.customers());
    if explain {
        eprint!("{}", query::explain::explain(ds, &plan).render());
    }
    Ok(())
}

/// `segd count --queries FILE`: runs each entry's `sql.duckdb` and compares with
/// `expected_count` for the loaded row count. Err on any mismatch.
pub fn count_file(ds: &Dataset, file: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).context("parsing the query file")?;
    let queries = doc["queries"].as_array().context("the query file has no 'queries' array")?;
    let key = ds.rows().to_string();
    let (mut bad, mut checked) = (0, 0);
    for q in queries {
        let id = q["id"].as_str().unwrap_or("?");
        let sql = q["sql"]["duckdb"].as_str().with_context(|| format!("{id}: no sql.duckdb"))?;
        let plan = query::compile_sql(ds, sql, &Limits::default()).with_context(|| format!("{id}: {sql}"))?;
        let t = Instant::now();
        let n = query::eval::count(ds, &plan);
        let us = t.elapsed().as_micros();
        let expected = q["expected_count"][&key].as_u64();
        let verdict = match expected {
            Some(e) if e == n => {
                checked += 1;
                "ok".to_string()
            }
            Some(e) => {
                bad += 1;
                format!("MISMATCH expected {e}")
            }
            None => "no expected count for this row count".into(),
        };
        println!("{id}\t{n}\t{verdict}");
        eprintln!("{id}: {us} µs");
    }
    eprintln!("{checked} matched, {bad} mismatched, {} queries", queries.len());
    if bad > 0 {
        bail!(
            "{bad} of {} queries did not match expected_count in {}. {WHOSE_COUNTS}",
            queries.len(),
            file.display()
        );
    }
    if checked == 0 {
        let mut rows: Vec<&String> =
            queries.iter().filter_map(|q| q["expected_count"].as_object()).flat_map(|m| m.keys()).collect();
        rows.sort();
        rows.dedup();
        let rows: Vec<&str> = rows.iter().map(|k| k.as_str()).collect();
        bail!(
            "no query in {} has an expected count for a table of {key} rows, so nothing was checked \
             (it has counts for tables of {} rows). {WHOSE_COUNTS}",
            file.display(),
            rows.join(", ")
        );
    }
    Ok(())
}

/// Why a user's table does not give a query file's counts (issue 14: it looked like a bug).
const WHOSE_COUNTS: &str = "A query file's expected counts belong to the one table they were \
    computed on: ../shared/bench/queries.json to the benchmark kit's gen.py table of that row \
    count, tests/fixtures/queries_50000.json to tests/fixtures/customers_50000.parquet. `segd \
    gen` and the demo table have the kit's schema but not its values, so their counts differ \
    without anything being wrong; to check segd on your own table, compare with DuckDB's \
    count(*) over the same file.";

/// Rows of the demo table `segd serve` imports when given neither --data nor --demo.
const DEMO_ROWS: usize = 1_000_000;

/// `segd serve` options. Every flag is also an environment variable (`SEGD_*`).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The data dir: write-ahead log and snapshots. Created when missing.
    #[arg(long, default_value = "./segd-data", env = "SEGD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// When an acknowledged write is fsync'd: `always` (before the ack; nothing
    /// acknowledged is ever lost) or `interval:<ms>` (in the background; a power loss may
    /// lose up to that interval of acknowledged writes, a process crash loses nothing).
    #[arg(long, default_value = "always", value_parser = parse_sync, env = "SEGD_SYNC")]
    pub sync: SyncMode,
    /// Snapshot (and cut the log) after this many logged customer changes (customers
    /// upserted or deleted; other writes count one each). Bounds the log replayed at
    /// start-up; the snapshot is written in the background while writes go on.
    #[arg(long, default_value_t = 2_000_000, env = "SEGD_SNAPSHOT_EVERY")]
    pub snapshot_every: u64,
    /// Most saved segments.
    #[arg(long, default_value_t = 1_000, env = "SEGD_MAX_SEGMENTS")]
    pub max_segments: usize,
    /// A logged record not to apply at start-up (repeatable): the escape hatch when start-up
    /// stops at a record that fails to replay, naming its sequence. Each skipped record is
    /// logged; a snapshot is written at once, so the flag is needed only once.
    #[arg(long = "skip-sequence", value_name = "SEQ", env = "SEGD_SKIP_SEQUENCE", value_delimiter = ',')]
    pub skip_sequence: Vec<u64>,
    /// Segment events (enter / leave) kept for WatchSegments resumes.
    #[arg(long, default_value_t = 1_000_000, env = "SEGD_EVENT_RETENTION")]
    pub event_retention: usize,
    /// Most customers (or ids) in one write request.
    #[arg(long, default_value_t = 100_000, env = "SEGD_MAX_UPSERT_BATCH")]
    pub max_upsert_batch: usize,
    /// Bulk load path: a Parquet or Arrow IPC file imported only when the data dir holds
    /// no snapshot yet (ignored afterwards); a generated demo table when absent.
    #[arg(long, env = "SEGD_DATA")]
    pub data: Option<PathBuf>,
    /// The customer id column.
    #[arg(long, default_value = "customer_id", env = "SEGD_ID_COLUMN")]
    pub id_column: String,
    /// Rows of the generated demo table imported into an empty data dir when --data is
    /// absent [default: 1000000]. Ignored (with a warning) once the data dir holds a snapshot.
    #[arg(long, env = "SEGD_DEMO")]
    pub demo: Option<usize>,
    /// A gamification program (JSON; README "Gamification") put at start, logged like a
    /// PutProgram, when no program is in force yet. Once one is (from this flag, the demo
    /// or PutProgram), the file is ignored with a warning if it differs: a restart never
    /// reverts a PutProgram nor re-tiers every customer. A fresh --demo data dir without
    /// this flag gets src/gamify/demo_program.json. Not applied on a replica.
    #[arg(long, value_name = "FILE", env = "SEGD_PROGRAM")]
    pub program: Option<PathBuf>,
    /// gRPC address. Loopback unless asked: beyond it, use --tls-cert / --tls-key and
    /// --auth-token-file.
    #[arg(long, default_value = "127.0.0.1:50051", env = "SEGD_LISTEN")]
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first): serve gRPC and HTTP over TLS (with --tls-key).
    #[arg(long, env = "SEGD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SEGD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file holding the bearer token every gRPC call and HTTP request must send as
    /// `authorization: Bearer <token>` (health checks and /metrics excepted). The token
    /// can also be given in the environment variable SEGD_AUTH_TOKEN.
    #[arg(long, env = "SEGD_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Address of the HTTP/JSON API and the segment builder page (`/`), or `off`.
    /// Default: 127.0.0.1:8080 when serving the demo table, off when --data is given.
    #[arg(long, value_parser = parse_http_listen, env = "SEGD_HTTP_LISTEN")]
    pub http_listen: Option<HttpListen>,
    /// Address of the Prometheus endpoint (`GET /metrics`); none when absent.
    #[arg(long, env = "SEGD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How often the gamification agenda is looked at: `60s`, `500ms`, `2m` (a bare
    /// number is seconds). A clock tick is logged only when something is due then
    /// (pending points, expiry, downgrade checks), so an idle server's log does not grow.
    #[arg(long, default_value = "60s", value_parser = parse_interval, env = "SEGD_TICK_INTERVAL")]
    pub tick_interval: std::time::Duration,
    /// Largest request message in bytes (larger: OUT_OF_RANGE before decoding).
    #[arg(long, default_value_t = 4 << 20, env = "SEGD_MAX_REQUEST_BYTES")]
    pub max_request_bytes: usize,
    /// Largest `where` text in bytes.
    #[arg(long, default_value_t = 64 * 1024, env = "SEGD_MAX_WHERE_BYTES")]
    pub max_where_bytes: usize,
    /// Deepest nesting of AND / OR / NOT.
    #[arg(long, default_value_t = 64, env = "SEGD_MAX_PREDICATE_DEPTH")]
    pub max_predicate_depth: usize,
    /// Most values in one IN list.
    #[arg(long, default_value_t = 10_000, env = "SEGD_MAX_IN_LIST")]
    pub max_in_list: usize,
    /// Most customer ids in one BatchIsMember.
    #[arg(long, default_value_t = 100_000, env = "SEGD_MAX_BATCH_IDS")]
    pub max_batch_ids: usize,
    /// Most segments in one Overlap.
    #[arg(long, default_value_t = 16, env = "SEGD_MAX_OVERLAP_SEGMENTS")]
    pub max_overlap_segments: usize,
    /// Largest Breakdown top_n (and Schema max_values).
    #[arg(long, default_value_t = 1000, env = "SEGD_MAX_BREAKDOWN_TOP_N")]
    pub max_breakdown_top_n: usize,
    /// Compiled `where` texts kept in the plan cache (0: no cache).
    #[arg(long, default_value_t = 4096, env = "SEGD_PLAN_CACHE_ENTRIES")]
    pub plan_cache_entries: usize,
    /// Count a cached `where` text on every call instead of once (for benchmarking the
    /// evaluator over gRPC).
    #[arg(long, env = "SEGD_NO_COUNT_CACHE")]
    pub no_count_cache: bool,
    /// Primary: also store every commit group in the JetStream stream --stream on this
    /// NATS server (e.g. nats://127.0.0.1:4222), acknowledged there before the write is
    /// acknowledged. The stream is created when missing. See README "Replication".
    #[arg(long, value_name = "NATS_URL", env = "SEGD_REPLICATE", conflicts_with = "replica_of")]
    pub replicate: Option<String>,
    /// Read replica: apply the stream --stream of this NATS server (written by a primary
    /// started with --replicate) and serve reads; writes are refused, naming the primary.
    /// An empty data dir first imports --data / --demo: give the primary's.
    #[arg(long, value_name = "NATS_URL", env = "SEGD_REPLICA_OF")]
    pub replica_of: Option<String>,
    /// Cluster member: follow the stream --stream of this NATS server and store this
    /// node's writes in it first, so every member takes writes and serves reads (README
    /// "Cluster"). The stream is created when missing. Give each member its own
    /// --replica-name.
    #[arg(
        long,
        value_name = "NATS_URL",
        env = "SEGD_CLUSTER",
        conflicts_with_all = ["replicate", "replica_of"]
    )]
    pub cluster: Option<String>,
    /// Longest a read with `segd-min-sequence` waits for this node to apply it before it
    /// fails UNAVAILABLE.
    #[arg(long, default_value_t = 2_000, env = "SEGD_MIN_SEQUENCE_WAIT_MS")]
    pub min_sequence_wait_ms: u64,
    /// Read replica or cluster member: report NOT_SERVING on grpc.health.v1 while more
    /// than this many records of the stream are not applied here (catching up after a
    /// start or an outage); SERVING again once within it.
    #[arg(long, default_value_t = segd::app::replica::DEFAULT_MAX_SERVING_LAG, env = "SEGD_MAX_SERVING_LAG")]
    pub max_serving_lag: u64,
    /// Cluster member or primary: also publish saved segments' ENTERED / LEFT events to
    /// `segd.events.<segment_id>` and achievements to `segd.achievements.<kind>`, in the
    /// JetStream stream `<--stream>-events`, for durable consumers (README "Cluster").
    #[arg(long, env = "SEGD_PUBLISH_EVENTS")]
    pub publish_events: bool,
    /// The JetStream stream of the replicated log.
    #[arg(long, default_value = "segd", env = "SEGD_STREAM")]
    pub stream: String,
    /// Primary: how long a commit group is retried when JetStream does not acknowledge it
    /// (a NATS restart, an election) before its writes fail and the primary refuses writes
    /// until it is restarted. Cluster member: how long a write is retried (NATS trouble,
    /// or other members' writes taking its place) before it fails UNAVAILABLE.
    #[arg(long, default_value_t = 15_000, env = "SEGD_REPLICATE_TIMEOUT_MS")]
    pub replicate_timeout_ms: u64,
    /// Copies of the stream kept by the NATS cluster when the primary creates it.
    #[arg(long, default_value_t = 1, env = "SEGD_STREAM_REPLICAS")]
    pub stream_replicas: usize,
    /// A replica's durable consumer name on the stream [default: segd-replica-<--listen>];
    /// a cluster member's name (its consumer, and in its message ids) [default:
    /// segd-member-<--listen>].
    #[arg(long, env = "SEGD_REPLICA_NAME")]
    pub replica_name: Option<String>,
}

impl ServeArgs {
    fn config(&self) -> Config {
        Config {
            limits: Limits {
                max_text: self.max_where_bytes,
                max_depth: self.max_predicate_depth,
                max_in_list: self.max_in_list,
            },
            max_request_bytes: self.max_request_bytes,
            max_batch_ids: self.max_batch_ids,
            max_overlap_segments: self.max_overlap_segments,
            max_top_n: self.max_breakdown_top_n,
            plan_cache_entries: self.plan_cache_entries,
            cache_counts: !self.no_count_cache,
            max_upsert_batch: self.max_upsert_batch,
            tick_every: self.tick_interval,
            min_sequence_wait: std::time::Duration::from_millis(self.min_sequence_wait_ms),
            ..Config::default()
        }
    }

    fn db_options(&self) -> DbOptions {
        DbOptions {
            data_dir: self.data_dir.clone(),
            sync: self.sync,
            snapshot_every: self.snapshot_every,
            max_segments: self.max_segments,
            event_capacity: self.event_retention,
            skip_sequences: self.skip_sequence.clone(),
            ..DbOptions::default()
        }
    }
}

impl ServeArgs {
    /// TLS and the token, read and checked before any data is loaded.
    fn security(&self) -> Result<Security> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
            _ => None,
        };
        let token = match (&self.auth_token_file, std::env::var("SEGD_AUTH_TOKEN")) {
            (Some(_), Ok(_)) => {
                bail!("give the bearer token once: --auth-token-file or SEGD_AUTH_TOKEN, not both")
            }
            (Some(path), Err(_)) => Some(BearerToken::from_file(path)?),
            (None, Ok(token)) => Some(BearerToken::new(&token, "in SEGD_AUTH_TOKEN")?),
            (None, Err(_)) => None,
        };
        let exposed =
            [Some(self.listen), self.http_addr()].into_iter().flatten().find(|a| !a.ip().is_loopback());
        if let (Some(addr), None) = (exposed, &token) {
            tracing::warn!(%addr, "listening beyond loopback without a bearer token: anyone who reaches it can read and write");
        }
        tracing::info!(tls = tls.is_some(), bearer_token = token.is_some(), "transport security");
        Ok(Security { tls, token })
    }
}

/// `--http-listen`: an address, or `off` (None).
#[derive(Clone, Copy, Debug)]
pub struct HttpListen(Option<SocketAddr>);

fn parse_http_listen(s: &str) -> Result<HttpListen, String> {
    match s {
        "off" => Ok(HttpListen(None)),
        _ => {
            s.parse().map(|a| HttpListen(Some(a))).map_err(|e| format!("'{s}': {e}; give host:port or 'off'"))
        }
    }
}

impl ServeArgs {
    /// Where the HTTP API listens, if anywhere: the demo is for trying segd, so it gets
    /// the page unless told otherwise; a real table (--data) gets only what is asked for.
    fn http_addr(&self) -> Option<SocketAddr> {
        match (self.http_listen, &self.data) {
            (Some(HttpListen(addr)), _) => addr,
            (None, None) => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            (None, Some(_)) => None,
        }
    }
}

/// `always` or `interval:<ms>`.
fn parse_sync(s: &str) -> Result<SyncMode, String> {
    match s.split_once(':') {
        None if s == "always" => Ok(SyncMode::Always),
        Some(("interval", ms)) => ms
            .parse::<u64>()
            .ok()
            .filter(|&ms| ms > 0)
            .map(|ms| SyncMode::Interval(std::time::Duration::from_millis(ms)))
            .ok_or_else(|| format!("'{ms}' is not a positive number of milliseconds")),
        _ => Err(format!("'{s}': use 'always' or 'interval:<ms>'")),
    }
}

/// `--tick-interval`: a positive duration, `<n>ms`, `<n>s` (or a bare `<n>`), `<n>m`, of at
/// most a day.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1_000)
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("'{s}': use e.g. 60s, 500ms or 2m"))?;
    let ms = n.saturating_mul(unit_ms);
    if !(1..=86_400_000).contains(&ms) {
        return Err(format!("'{s}': the interval must be between 1ms and 24h"));
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// `segd serve`: opens the data dir (importing --data / the demo into an empty one),
/// serves until SIGINT / SIGTERM, drains, then writes the final snapshot.
pub fn serve(args: ServeArgs) -> Result<()> {
    let security = args.security()?;
    let mut config = args.config();
    let mut opts = args.db_options();
    if let Some(url) = &args.replicate {
        let log = segd::replica::JetStreamLog::connect(
            url,
            &args.stream,
            args.stream_replicas,
            &args.listen.to_string(),
            std::time::Duration::from_millis(args.replicate_timeout_ms),
            Some(args.data_dir.join("snapshots")),
        )
        .with_context(|| format!("--replicate {url} --stream {}", args.stream))?;
        opts.replicate = Some(std::sync::Arc::new(log));
    }
    let node_name = |role: &str| {
        args.replica_name.clone().unwrap_or_else(|| {
            let listen: String = args
                .listen
                .to_string()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            format!("segd-{role}-{listen}")
        })
    };
    // A member of a cluster: Some(whether the stream was empty when it started).
    let mut fresh_cluster = None;
    let follower = match (&args.replica_of, &args.cluster) {
        (_, Some(url)) => {
            let name = node_name("member");
            let log = segd::replica::JetStreamLog::member(
                url,
                &args.stream,
                args.stream_replicas,
                &name,
                std::time::Duration::from_millis(args.replicate_timeout_ms),
                Some(args.data_dir.join("snapshots")),
            )
            .with_context(|| format!("--cluster {url} --stream {}", args.stream))?;
            fresh_cluster = Some(log.stream_last().with_context(|| format!("--cluster {url}"))? == 0);
            opts.shared = Some(std::sync::Arc::new(log));
            let f = segd::replica::Follower::member(url, &args.stream, &name)
                .with_context(|| format!("--cluster {url} --stream {}", args.stream))?;
            if let Some(seq) = f.seed(&args.data_dir)? {
                tracing::info!(sequence = seq, "data dir seeded from the stream's object store snapshot");
            }
            config.replica = Some(f.status(args.max_serving_lag));
            Some(f)
        }
        (Some(url), None) => {
            let name = node_name("replica");
            let f = segd::replica::Follower::connect(url, &args.stream, &name)
                .with_context(|| format!("--replica-of {url} --stream {}", args.stream))?;
            if let Some(seq) = f.seed(&args.data_dir)? {
                tracing::info!(sequence = seq, "data dir seeded from the stream's object store snapshot");
            }
            config.replica = Some(f.status(args.max_serving_lag));
            Some(f)
        }
        (None, None) => None,
    };
    tracing::info!(?config, data_dir = %args.data_dir.display(), sync = ?args.sync, "configuration");
    let imported = std::cell::Cell::new(false);
    let import = || {
        imported.set(true);
        load_or_demo(args.data.as_deref(), args.demo.unwrap_or(DEMO_ROWS), &args.id_column).map_err(|e| {
            let path = args.data.as_ref().map_or("the demo table".into(), |p| p.display().to_string());
            DbError::Store(StoreError::Io { path, msg: format!("{e:#}") })
        })
    };
    let server = Server::open(opts, import, config)
        .with_context(|| format!("opening --data-dir {}", args.data_dir.display()))?
        .with_security(security);
    // The import runs only into an empty data dir: say so when one was asked for in vain.
    let asked = match (&args.data, args.demo) {
        (Some(p), _) => Some(format!("--data {}", p.display())),
        (None, Some(n)) => Some(format!("--demo {n}")),
        (None, None) => None,
    };
    if let (false, Some(asked)) = (imported.get(), asked) {
        tracing::warn!(
            data_dir = %args.data_dir.display(),
            "{asked} is ignored: the data dir already holds a snapshot, and segd starts from it and \
             its log (use an empty --data-dir to import again)"
        );
    }
    // From what this node applies next: every member derives the same messages.
    let _publishing = match (args.publish_events, args.cluster.as_ref().or(args.replicate.as_ref())) {
        (true, Some(url)) => Some(
            segd::replica::events::start(url, &args.stream, args.stream_replicas, server.app().clone())
                .with_context(|| format!("--publish-events on {url}"))?,
        ),
        (true, None) => {
            bail!("--publish-events needs --cluster or --replicate (the NATS servers to publish to)")
        }
        (false, _) => None,
    };
    // Applies the primary's stream until the process ends.
    let _following = follower.map(|f| f.start(server.db().expect("serve opens a data dir").clone()));
    // A fresh demo data dir gets the demo offer catalogue too (logged, like any PutOffer);
    // a replica gets it from its primary's stream instead, and a cluster member from the
    // stream unless it is the first member of a new one.
    let writes_setup = args.replica_of.is_none() && fresh_cluster.unwrap_or(true);
    let demo_offers = imported.get() && args.data.is_none() && writes_setup;
    // The program to put when none is in force: --program's, else (a fresh demo) the demo's.
    let program = match (&args.program, writes_setup) {
        (Some(p), true) => Some((
            std::fs::read_to_string(p).with_context(|| format!("reading --program {}", p.display()))?,
            p.display().to_string(),
        )),
        (None, true) if demo_offers => {
            Some((segd::gamify::program::DEMO_PROGRAM.to_string(), "src/gamify/demo_program.json".into()))
        }
        (Some(_), false) => {
            tracing::warn!(
                "--program is ignored on a replica, and on a cluster member joining a stream that holds \
                 records: it follows the stream's program (change it with PutProgram)"
            );
            None
        }
        (None, _) => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        if demo_offers {
            let offers = segd::grpc::decide::demo_offers()?;
            let n = offers.len();
            for o in offers {
                server.app().put_offer(o).await.context("loading the demo offer catalogue")?;
            }
            tracing::info!(offers = n, "demo offer catalogue loaded (src/decide/demo_offers.json)");
        }
        if let Some((json, from)) = program {
            load_program(server.app(), &json, &from).await?;
        }
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        // One signal stops both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        if let Some(addr) = args.metrics_listen {
            let l =
                TcpListener::bind(addr).await.with_context(|| format!("binding --metrics-listen {addr}"))?;
            tracing::info!("metrics on http://{addr}/metrics");
            let (server, mut stop) = (server.clone(), stop_rx.clone());
            tokio::spawn(async move {
                server
                    .serve_metrics(l, async move {
                        let _ = stop.changed().await;
                    })
                    .await
            });
        }
        if let Some(addr) = args.http_addr() {
            let l = TcpListener::bind(addr).await.with_context(|| format!("binding --http-listen {addr}"))?;
            let (server, mut stop) = (server.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = server.serve_http(l, stopped).await {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            });
        }
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(());
        };
        server.clone().serve(listener, shutdown).await.map_err(|e| anyhow!(e))?;
        server.close().context("writing the final snapshot")?;
        tracing::info!("final snapshot written");
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (docker stop, kubernetes).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = term => tracing::info!("SIGTERM"),
    }
}

/// Puts the program `json` (read from `from`) unless one is in force; warns when the one
/// in force differs from it.
async fn load_program(app: &segd::app::App, json: &str, from: &str) -> Result<()> {
    match app.put_program_if_none(json).await.with_context(|| format!("loading the program {from}"))? {
        Some(sequence) => tracing::info!(sequence, "gamification program loaded ({from})"),
        None => {
            let given =
                segd::gamify::Program::from_json(json).with_context(|| format!("the program {from}"))?;
            if app.get_program()?.json != given.to_json() {
                tracing::warn!(
                    "the program {from} is ignored: a different program is in force (change it with PutProgram)"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn tick_intervals_parse_with_their_units_and_bounds() {
        assert_eq!(parse_interval("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("1440m"), Ok(Duration::from_secs(86_400)));
        for bad in ["0", "0ms", "1441m", "-1s", "1h", "", "s", "1.5s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
