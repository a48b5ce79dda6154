//! `segd.v1.ReplicaService` and the `segd-min-sequence` request header of reads: where
//! this node stands in replication, and reads that wait until it has applied a sequence.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::app::replica::Role;
use crate::app::{App, AppError};
use crate::metrics::Rpc;

use super::pb::{self, replica_service_server::ReplicaService};
use super::service::Ctx;

/// The request header asking a read to wait until this node has applied a sequence.
pub const MIN_SEQUENCE_HEADER: &str = "segd-min-sequence";

#[derive(Clone)]
pub struct ReplicaSvc(pub Arc<Ctx>);

#[tonic::async_trait]
impl ReplicaService for ReplicaSvc {
    async fn get_replica_status(
        &self,
        req: Request<pb::GetReplicaStatusRequest>,
    ) -> Result<Response<pb::GetReplicaStatusResponse>, Status> {
        let pb::GetReplicaStatusRequest {} = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::GetReplicaStatus, async {
            let s = ctx.app.replica_status();
            Ok(pb::GetReplicaStatusResponse {
                role: match s.role {
                    Role::Standalone => "standalone",
                    Role::Replica => "replica",
                    Role::Member => "member",
                }
                .into(),
                applied_sequence: s.applied,
                stream_last_sequence: s.stream_last,
                lag: s.stream_last - s.applied,
                takes_writes: s.takes_writes,
                stopped: s.stopped.unwrap_or_default(),
            })
        })
        .await
    }
}

/// The read's `segd-min-sequence` header: None when absent.
pub fn min_sequence<T>(req: &Request<T>) -> Result<Option<u64>, AppError> {
    let Some(v) = req.metadata().get(MIN_SEQUENCE_HEADER) else { return Ok(None) };
    let text = v.to_str().unwrap_or("");
    text.trim().parse().map(Some).map_err(|_| AppError::Invalid {
        field: MIN_SEQUENCE_HEADER,
        msg: format!("{:?} is not a sequence number (a write's answered sequence)", v),
    })
}

/// Waits (bounded) until `app` has applied the read's `min_sequence`, if it asked for one.
pub async fn at_least(app: &App, min_sequence: Result<Option<u64>, AppError>) -> Result<(), AppError> {
    match min_sequence? {
        Some(n) => app.wait_applied(n).await,
        None => Ok(()),
    }
}
