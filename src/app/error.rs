//! Every way a use case can fail; [`AppError::code`] (in `code.rs`) says what kind of
//! failure each is, and transports only translate that code.

use crate::analytics::AnalyticsError;
use crate::db::DbError;
use crate::engine::Gone;
use crate::gamify::GamifyError;
use crate::query::QueryError;
use crate::segments::SegmentError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    /// A saved segment that does not exist (and the other saved-segment errors of reads).
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A write the database refused or could not make durable.
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no segment given: set one of 'where', 'predicate' or 'segment_id'")]
    MissingSegment,
    #[error("unknown customer id {0}")]
    UnknownCustomer(u64),
    /// A watcher asked for events no longer retained.
    #[error(transparent)]
    Gone(#[from] Gone),
    /// A watcher that did not read its events for too long.
    #[error("consumer too slow: {0}")]
    SlowConsumer(String),
    /// The server is stopping (streams are ended with this).
    #[error("the server is shutting down; reconnect and resume")]
    ShuttingDown,
    /// A server started without a data dir serves a fixed table.
    #[error("this server serves a read-only table (no --data-dir): writes are not available")]
    ReadOnly,
    /// A read replica (`--replica-of`) takes no writes: they go to the primary.
    #[error("this server is a read replica of {primary}: writes are refused here; send them to the primary")]
    NotPrimary { primary: String },
    /// A read's `min_sequence` not applied on this node within the wait
    /// (`--min-sequence-wait-ms`): it lags the replicated log.
    #[error(
        "this node has applied up to sequence {applied}, not {min_sequence}, after waiting {waited_ms} ms \
         (min_sequence): it lags the replicated log; try again, or read from the node that took the write"
    )]
    NotApplied { min_sequence: u64, applied: u64, waited_ms: u64 },
    /// A server limit, named by its flag so the caller knows what to ask for.
    #[error("limit exceeded: {what} is {got}, the limit is {limit} (--{flag})")]
    Limit { what: &'static str, got: usize, limit: usize, flag: &'static str },
    /// A request field with a value no use case can take.
    #[error("invalid {field}: {msg}")]
    Invalid { field: &'static str, msg: String },
    /// A next-best-offer change refused (offers, contact policy, outcomes).
    #[error(transparent)]
    Decide(#[from] crate::decide::ChangeError),
    /// A decision that cannot be taken (limits of the request, unknown customer).
    #[error(transparent)]
    Decision(#[from] crate::decide::DecideError),
    /// A gamification request refused (bad event, short balance, no program, ...).
    #[error(transparent)]
    Gamify(#[from] GamifyError),
    /// A leaderboard read refused (unknown board, a period not kept).
    #[error(transparent)]
    Board(#[from] crate::leaderboard::BoardError),
    /// A bug, caught (e.g. a panic in evaluation) so the server keeps serving.
    #[error("internal error: {0}")]
    Internal(String),
}
