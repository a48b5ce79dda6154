//! Shared fixtures: the project's own oracle table under `tests/fixtures/` (see
//! `tests/fixtures/README.md`), committed with the code so every clone runs the oracle tests.

use std::path::PathBuf;

/// Rows of the fixture table, and the key of its `expected_count`.
pub const FIXTURE_ROWS: usize = 50_000;

/// `tests/fixtures/customers_50000.parquet` and `queries_50000.json` (DuckDB's counts over
/// that table). Panics when either is missing: an oracle test that skips proves nothing.
pub fn fixture() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let data = dir.join(format!("customers_{FIXTURE_ROWS}.parquet"));
    let queries = dir.join(format!("queries_{FIXTURE_ROWS}.json"));
    for p in [&data, &queries] {
        assert!(
            p.is_file(),
            "missing test fixture {} (it is committed; regenerate it with scripts/make-fixture.py)",
            p.display()
        );
    }
    (data, queries)
}

/// The fixture's query file, parsed.
pub fn fixture_queries() -> Vec<serde_json::Value> {
    let (_, queries) = fixture();
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&queries).unwrap()).unwrap();
    doc["queries"].as_array().expect("a 'queries' array").clone()
}

/// A server on a fresh data dir over `rows` generated customers (`seed`), serving gRPC on
/// a free loopback port until `stop` is sent, and a channel to it.
pub struct Served {
    pub server: segd::server::Server,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub done: tokio::task::JoinHandle<()>,
    pub channel: tonic::transport::Channel,
    pub addr: std::net::SocketAddr,
}

pub async fn serve_generated(dir: &std::path::Path, rows: usize, seed: u64) -> Served {
    use segd::store::Dataset;
    let opts = segd::db::DbOptions { data_dir: dir.to_path_buf(), ..segd::db::DbOptions::default() };
    let server = tokio::task::block_in_place(|| {
        segd::server::Server::open(
            opts,
            || {
                let b = segd::gen::generate(rows, seed);
                Ok(Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
            },
            segd::server::Config::default(),
        )
    })
    .expect("data dir opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let s = server.clone();
    let done = tokio::spawn(async move {
        s.serve(listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    Served { server, stop, done, channel, addr }
}
