//! Replication over NATS JetStream (issue 15): a primary stores every commit group in a
//! JetStream stream before acknowledging it ([`publish::JetStreamLog`], the
//! `crate::db::GroupSink` of `--replicate`), and read replicas apply that stream in order
//! ([`follow::Follower`], `--replica-of`; its bounded, expiring pulls in `pull`). Or,
//! with `--cluster`, every node is a member: it follows the stream like a replica and
//! stores its own writes in it first
//! ([`JetStreamLog::member`], the `crate::db::SharedLog` of `crate::db`'s cluster
//! committer), so any node takes writes and no node's death stops them. The records are
//! the local log's own (`persist::record`), one message per record, and the stream's
//! sequence is segd's. Snapshots go to the object store (`snapshots`).
//!
//! Each side runs its NATS client on a small runtime of its own, so the committer (a plain
//! thread) can wait for a publish acknowledgement, and neither depends on the server's
//! runtime.

pub mod events;
pub mod follow;
pub mod publish;
mod pull;
mod snapshots;

use std::future::Future;

pub use follow::{Follower, Following};
pub use publish::JetStreamLog;

/// What the primary writes at the start of the stream's description, before its address.
const PRIMARY_PREFIX: &str = "segd replicated log; primary ";

/// The description of a cluster's shared log (`--cluster`: every member writes).
const CLUSTER_DESCRIPTION: &str = "segd shared log of a cluster: every member writes";

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

/// Connects to `url`: one server, or several separated by commas (the servers of a NATS
/// cluster; the client also learns the others from the one it reaches, and moves to
/// another when its server goes away).
async fn connect(url: &str) -> Result<async_nats::Client, ReplicaError> {
    let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    async_nats::ConnectOptions::new()
        .name("segd")
        .connect(servers)
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
