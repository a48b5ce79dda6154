//! The `segd` binary: `count`, `gen`, `gen-events` (and `serve`, `loadgen`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;
// A gRPC client, so it lives with the command-line side, not the core.
#[path = "cli/loadgen.rs"]
mod loadgen;

// No mimalloc: with it the 10M-row table sat at 1,642 MiB resident after load (freed load
// buffers stayed mapped, 1,547 MiB even after mi_collect), with glibc's malloc at 1,245 MiB.
// See BENCHMARKS.md.

#[derive(Parser)]
#[command(name = "segd", version, about = "Customer segments over Arrow columns and bitmap indexes")]
struct Args {
    /// Log lines on stderr as plain text (coloured only on a terminal) or as one JSON
    /// object per line. The filter is SEGD_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SEGD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Count a segment (or a query file) over a customer table.
    Count {
        /// Parquet or Arrow IPC file; a generated demo table when absent.
        #[arg(long, env = "SEGD_DATA")]
        data: Option<PathBuf>,
        /// The customer id column.
        #[arg(long, default_value = "customer_id", env = "SEGD_ID_COLUMN")]
        id_column: String,
        /// Rows of the generated demo table when --data is absent.
        #[arg(long, default_value_t = 1_000_000)]
        demo: usize,
        /// A SQL boolean expression (the text after WHERE).
        #[arg(long = "where", conflicts_with_all = ["json", "queries"])]
        where_: Option<String>,
        /// A JSON predicate tree.
        #[arg(long, conflicts_with = "queries")]
        json: Option<String>,
        /// A query file in the format of the benchmark kit's queries.json.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Print the plan with estimated and actual counts to stderr.
        #[arg(long)]
        explain: bool,
    },
    /// Serve segd.v1.SegmentService and CustomerService over gRPC from a data dir (with
    /// health, reflection, metrics).
    Serve(Box<cli::ServeArgs>),
    /// Load-test a running server (a ghz-like gRPC client); stops by itself.
    Loadgen(Box<loadgen::LoadgenArgs>),
    /// Write a synthetic customer table as Parquet: the benchmark kit's schema and
    /// distributions, but not its values, so the kit's expected counts do not apply to it.
    Gen {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = segd::gen::DEFAULT_SEED)]
        seed: u64,
    },
    /// Write a seeded event stream for the demo gamification program as JSON lines
    /// (purchases, logins, reviews, refunds), in time order.
    GenEvents {
        /// Customer ids are 1..=N.
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// The first event's time (RFC 3339).
        #[arg(long, default_value = "2026-01-01T00:00:00Z")]
        start: String,
        /// Days the events are spread over.
        #[arg(long, default_value_t = 365)]
        span_days: u32,
    },
}

fn main() {
    let args = Args::parse();
    init_logging(args.log_format);
    if let Err(e) = run(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_env("SEGD_LOG").unwrap_or_else(|_| "info".into()),
    );
    match format {
        // Colour codes only for a person at a terminal: a file or a pipe gets plain text.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Count { data, id_column, demo, where_, json, queries, explain } => {
            let ds = cli::load_or_demo(data.as_deref(), demo, &id_column)?;
            match queries {
                Some(q) => cli::count_file(&ds, &q),
                None => cli::count_one(&ds, where_.as_deref(), json.as_deref(), explain),
            }
        }
        Cmd::Serve(args) => cli::serve(*args),
        Cmd::Loadgen(args) => loadgen::run(*args),
        Cmd::Gen { rows, out, seed } => {
            let t = std::time::Instant::now();
            segd::gen::write_parquet(&out, rows, seed)?;
            eprintln!("wrote {} rows to {} in {:.1}s", rows, out.display(), t.elapsed().as_secs_f64());
            eprintln!(
                "note: segd's own generator: the benchmark kit's schema, not its values, so the \
                 expected counts of ../shared/bench/queries.json do not apply to this table \
                 (the kit's table comes from ../shared/bench/gen.py)"
            );
            Ok(())
        }
        Cmd::GenEvents { customers, events, seed, out, start, span_days } => {
            let start_ms = chrono::DateTime::parse_from_rfc3339(&start)
                .map_err(|e| anyhow::anyhow!("--start '{start}' is not an RFC 3339 time: {e}"))?
                .timestamp_millis();
            let cfg = segd::gamify::gen::GenConfig { customers, events, seed, start_ms, span_days };
            let t = std::time::Instant::now();
            let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
            let n = segd::gamify::gen::write_json_lines(cfg, &mut w)?;
            std::io::Write::flush(&mut w)?;
            eprintln!("wrote {n} events to {} in {:.1}s", out.display(), t.elapsed().as_secs_f64());
            Ok(())
        }
    }
}
