//! The `segd` binary as a user runs it: exit codes, what goes to stdout and stderr, log
//! formats, and the warnings of `serve`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{fixture, fixture_queries};

/// The built binary with a known environment: no SEGD_* setting leaks in from the shell.
fn segd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SEGD_") {
            c.env_remove(k);
        }
    }
    c.env("SEGD_LOG", "info");
    c
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.output().expect("segd runs");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    (out, stdout, stderr)
}

#[test]
fn count_checks_every_fixture_query_against_duckdb() {
    let (data, queries) = fixture();
    let (out, stdout, stderr) =
        run(segd().args(["count", "--data"]).arg(&data).arg("--queries").arg(&queries));
    assert!(out.status.success(), "{stderr}");
    let n = fixture_queries().len();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), n, "{stdout}");
    assert!(lines.iter().all(|l| l.ends_with("\tok")), "{stdout}");
    assert!(stderr.contains(&format!("{n} matched, 0 mismatched")), "{stderr}");
}

#[test]
fn a_count_mismatch_says_whose_counts_they_are() {
    let (data, _) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.json");
    // Every row matches TRUE, so 49,999 is wrong by one.
    std::fs::write(
        &wrong,
        r#"{"queries": [{"id": "all", "sql": {"duckdb": "TRUE"}, "expected_count": {"50000": 49999}}]}"#,
    )
    .unwrap();
    let (out, stdout, stderr) = run(segd().args(["count", "--data"]).arg(&data).arg("--queries").arg(&wrong));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "all\t50000\tMISMATCH expected 49999\n");
    assert!(stderr.contains("1 of 1 queries did not match expected_count"), "{stderr}");
    assert!(stderr.contains("belong to the one table they were computed on"), "{stderr}");
    assert!(
        stderr.contains("`segd gen` and the demo table have the kit's schema but not its values"),
        "{stderr}"
    );
}

#[test]
fn a_query_file_without_counts_for_the_table_fails() {
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("q.json");
    std::fs::write(
        &queries,
        r#"{"queries": [{"id": "all", "sql": {"duckdb": "TRUE"}, "expected_count": {"50000": 50000}}]}"#,
    )
    .unwrap();
    let (out, _, stderr) = run(segd().args(["count", "--demo", "1000", "--queries"]).arg(&queries));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has an expected count for a table of 1000 rows, so nothing was checked"),
        "{stderr}"
    );
    assert!(stderr.contains("(it has counts for tables of 50000 rows)"), "{stderr}");
}

#[test]
fn gen_says_its_table_is_not_the_kits() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("c.parquet");
    let (out, _, stderr) = run(segd().args(["gen", "--rows", "1000", "--out"]).arg(&out_file));
    assert!(out.status.success(), "{stderr}");
    assert!(out_file.is_file());
    assert!(stderr.contains("the benchmark kit's schema, not its values"), "{stderr}");
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let (data, _) = fixture();
    let q12 = fixture_queries().into_iter().find(|q| q["id"] == "q12_campaign").unwrap();
    let (out, stdout, stderr) = run(segd()
        .args(["count", "--data"])
        .arg(&data)
        .args(["--where", q12["sql"]["duckdb"].as_str().unwrap()]));
    assert!(out.status.success(), "{stderr}");
    // The count alone on stdout: DuckDB's.
    assert_eq!(stdout.trim(), q12["expected_count"]["50000"].to_string());
    assert!(stderr.contains(" INFO ") && stderr.contains("customer base ready"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI escape codes in a piped log: {stderr:?}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let (data, _) = fixture();
    let (out, stdout, stderr) = run(segd()
        .args(["--log-format", "json", "count", "--data"])
        .arg(&data)
        .args(["--where", "age < 30"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.trim().parse::<u64>().is_ok(), "{stdout}");
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ready =
        logs.iter().find(|l| l["fields"]["message"] == "customer base ready").expect("a JSON log line");
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["fields"]["rows"], 50_000);
    assert!(!stderr.contains('\u{1b}'));
    // The environment variable sets it too, and a subcommand takes the flag after its name.
    let (_, _, stderr) =
        run(segd().env("SEGD_LOG_FORMAT", "json").args(["count", "--demo", "100", "--where", "TRUE"]));
    assert!(stderr.lines().any(|l| l.starts_with('{') && l.contains("customer base ready")), "{stderr}");
    let (out, _, _) = run(segd().args(["count", "--log-format", "json", "--demo", "100", "--where", "TRUE"]));
    assert!(out.status.success());
}

/// A server started with `args` on a free port; its stderr lines arrive on the channel.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Serving {
    fn start(data_dir: &std::path::Path, args: &[&str]) -> Serving {
        let mut child = segd()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("segd serve starts");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serving { child, lines }
    }

    /// Every stderr line up to the one saying it serves; then the server is killed.
    fn until_serving_then_stop(mut self) -> Vec<String> {
        let mut seen = vec![];
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => {
                    let done = l.contains("serving segd.v1.SegmentService");
                    seen.push(l);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("segd serve never said it serves ({e}): {seen:#?}");
                }
            }
        }
        // Killed, not stopped: SIGTERM may arrive before the handler is installed, and the
        // import was snapshotted when the data dir was opened, so nothing is lost.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        seen
    }
}

#[test]
fn serve_warns_when_demo_or_data_is_ignored_for_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = fixture();
    let ignored =
        |lines: &[String]| lines.iter().filter(|l| l.contains("is ignored")).cloned().collect::<Vec<_>>();
    // An empty data dir imports the demo: nothing to warn about.
    let first = Serving::start(dir.path(), &["--demo", "1000"]).until_serving_then_stop();
    assert_eq!(ignored(&first), Vec::<String>::new());
    let again = Serving::start(dir.path(), &["--demo", "2000"]).until_serving_then_stop();
    let warned = ignored(&again);
    assert_eq!(warned.len(), 1, "{again:#?}");
    assert!(warned[0].contains("WARN") && warned[0].contains("--demo 2000 is ignored"), "{}", warned[0]);
    assert!(warned[0].contains("already holds a snapshot"), "{}", warned[0]);
    let data_arg = data.to_str().unwrap();
    let with_data = Serving::start(dir.path(), &["--data", data_arg]).until_serving_then_stop();
    assert!(
        ignored(&with_data).iter().any(|l| l.contains(&format!("--data {data_arg} is ignored"))),
        "{with_data:#?}"
    );
    // Neither flag: starting from the snapshot is what was asked.
    let plain = Serving::start(dir.path(), &[]).until_serving_then_stop();
    assert_eq!(ignored(&plain), Vec::<String>::new());
}
