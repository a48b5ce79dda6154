//! Replication over NATS JetStream (issue 15, first slice): a primary stores every commit
//! group in a JetStream stream before acknowledging it ([`publish::JetStreamLog`], the
//! `crate::db::GroupSink` of `--replicate`), and read replicas apply that stream in order
//! ([`follow::Follower`], `--replica-of`). The records are the local log's own
//! (`persist::record`), one message per record, and the stream's sequence is segd's.
//!
//! Each side runs its NATS client on a small runtime of its own, so the committer (a plain
//! thread) can wait for a publish acknowledgement, and neither depends on the server's
//! runtime.

pub mod follow;
pub mod publish;
mod snapshots;

use std::future::Future;

pub use follow::{Follower, Following};
pub use publish::JetStreamLog;

/// What the primary writes at the start of the stream's description, before its address.
const PRIMARY_PREFIX: &str = "segd replicated log; primary ";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("{0}")]
    Config(String),
    #[error("starting the NATS client's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The subject a segd stream takes (stream names hold no '.', so it is unique to it).
fn subject_of(stream: &str) -> String {
    format!("segd.{stream}.log")
}

async fn connect(url: &str) -> Result<async_nats::Client, ReplicaError> {
    async_nats::ConnectOptions::new()
        .name("segd")
        .connect(url)
        .await
        .map_err(|e| ReplicaError::Nats(format!("connecting to {url}: {e}")))
}

/// A one-thread runtime for the NATS client, shut down without blocking when dropped
/// (it may be dropped on another runtime's thread).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new() -> std::io::Result<Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("segd-nats")
            .enable_all()
            .build()?;
        Ok(Runtime(Some(rt)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime present until dropped").handle()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on `rt` from synchronous code, also when called on a thread of another
/// runtime (where blocking that thread's runtime directly is not allowed).
fn block_on<F>(rt: &Runtime, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let handle = rt.handle();
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| handle.block_on(f)).join().expect("the NATS call panicked"))
    } else {
        handle.block_on(f)
    }
}
