//! `latest` under racing uploaders, against a real `nats-server -js` (skipped with a note
//! when it is not installed, except in CI, like the integration tests). The oracle is the
//! pointer stream's own history in JetStream: it must name strictly increasing sequences,
//! each moved there by the one upload that said so, from the sequence named before it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use super::{parse_latest, Moved, Pointer};

fn nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::var_os("SEGD_NATS_SERVER").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "nats-server is not installed, and CI=true");
        eprintln!("SKIPPED: needs nats-server (apt-get install nats-server)");
    }
    found
}

/// Killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn racing_uploaders_only_ever_move_latest_forward() {
    let Some(bin) = nats_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("nats.log");
    let _server = Server(
        Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("js"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("Server is ready") {
        assert!(t.elapsed() < Duration::from_secs(20), "nats-server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(format!("127.0.0.1:{port}")).await.unwrap());
        let pointer = Arc::new(Pointer::open(&js, "race", Some(1)).await.unwrap().unwrap());
        // Rounds of 8 uploaders let go at once, their sequences in an order unrelated to
        // when they start.
        let mut results: Vec<(u64, Moved)> = vec![];
        for round in 0..3u64 {
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..8u64 {
                let seq = round * 100 + (i * 5 % 8 + 1) * 10;
                let (pointer, barrier) = (pointer.clone(), barrier.clone());
                tasks.spawn(async move {
                    barrier.wait().await;
                    (seq, pointer.advance(seq, &[format!("{seq}.arrow"), "manifest".into()]).await.unwrap())
                });
            }
            results.extend(tasks.join_all().await);
        }
        // Every message the pointer stream holds, in order (its first is the empty start).
        let mut named = vec![];
        for at in 1..=pointer.last_sequence().await.unwrap() {
            let m = pointer.stream.get_raw_message(at).await.unwrap();
            if !m.payload.is_empty() {
                named.push(parse_latest(std::str::from_utf8(&m.payload).unwrap()).unwrap().0);
            }
        }
        assert!(named.windows(2).all(|w| w[0] < w[1]), "latest went back: {named:?}");
        assert_eq!(named.last(), Some(&280), "the newest of all: {named:?}");
        let moved: BTreeMap<u64, Option<u64>> = results
            .iter()
            .filter_map(|(s, m)| match m {
                Moved::From(before) => Some((*s, *before)),
                Moved::Newer(_) => None,
            })
            .collect();
        assert_eq!(moved.keys().copied().collect::<Vec<_>>(), named, "{results:?}");
        for (k, seq) in named.iter().enumerate() {
            assert_eq!(moved[seq], k.checked_sub(1).map(|j| named[j]), "{seq} moved it from the one before");
        }
        for (seq, m) in &results {
            if let Moved::Newer(c) = m {
                assert!(c >= seq, "{seq} was left out for {c}");
            }
        }
        let (latest, _) = pointer.read().await.unwrap();
        assert_eq!(latest.map(|(s, names)| (s, names.len())), Some((280, 2)));
        // A second opening (another member) finds it and sends no second start message.
        let again = Pointer::open(&js, "race", Some(1)).await.unwrap().unwrap();
        assert_eq!(again.read().await.unwrap().0.map(|(s, _)| s), Some(280));
        assert_eq!(again.last_sequence().await.unwrap(), 1 + named.len() as u64);
    });
}
