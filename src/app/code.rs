//! What kind of failure each [`AppError`] is, in the canonical status-code vocabulary
//! every transport shares (gRPC codes, HTTP statuses through grpc-gateway's table). The
//! matches have no `_` arm: a new error variant in the core breaks the build here until
//! someone decides its code, once for every transport.

use super::AppError;
use crate::analytics::AnalyticsError;
use crate::db::DbError;
use crate::engine::EngineError;
use crate::gamify::GamifyError;
use crate::persist::PersistError;
use crate::query::QueryError;
use crate::segments::SegmentError;
use crate::store::mutate::MutationError;
use crate::store::StoreError;

/// The canonical codes segd answers with (the subset of `google.rpc.Code` it uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    OutOfRange,
    Unavailable,
    DataLoss,
    Internal,
}

impl AppError {
    /// This error's code. A server-side failure of a write (the log, a fault in apply) is
    /// logged here, once, whichever transport answers it.
    pub fn code(&self) -> ErrorCode {
        let code = match self {
            AppError::Query(q) => query_code(q),
            AppError::Analytics(a) => match a {
                AnalyticsError::UnknownColumn { .. } | AnalyticsError::NotGroupable { .. } => {
                    ErrorCode::InvalidArgument
                }
            },
            AppError::Segment(s) => segment_code(s),
            AppError::Db(d) => db_code(d),
            AppError::UnknownCustomer(_) => ErrorCode::NotFound,
            AppError::Gone(_) => ErrorCode::OutOfRange,
            AppError::SlowConsumer(_) => ErrorCode::ResourceExhausted,
            AppError::ShuttingDown | AppError::NotApplied { .. } => ErrorCode::Unavailable,
            AppError::ReadOnly | AppError::NotPrimary { .. } => ErrorCode::FailedPrecondition,
            AppError::MissingSegment | AppError::Limit { .. } | AppError::Invalid { .. } => {
                ErrorCode::InvalidArgument
            }
            AppError::Decide(d) => super::decide::change_code(d),
            AppError::Decision(d) => super::decide::decide_code(d),
            AppError::Gamify(g) => gamify_code(g),
            AppError::Board(b) => board_code(b),
            AppError::Internal(_) => ErrorCode::Internal,
        };
        if matches!(code, ErrorCode::Internal | ErrorCode::DataLoss | ErrorCode::Unavailable) {
            if let AppError::Db(d) = self {
                if !matches!(d, DbError::Closed) {
                    tracing::error!(error = %d, "write failed");
                }
            }
        }
        code
    }
}

fn query_code(q: &QueryError) -> ErrorCode {
    match q {
        QueryError::Syntax(_)
        | QueryError::UnknownColumn { .. }
        | QueryError::TypeMismatch { .. }
        | QueryError::Unsupported { .. }
        | QueryError::BadOperator { .. }
        | QueryError::Limit { .. }
        | QueryError::BadTree(_)
        | QueryError::NonFinite(_) => ErrorCode::InvalidArgument,
        QueryError::UnknownSegment(_) => ErrorCode::NotFound,
    }
}

fn segment_code(s: &SegmentError) -> ErrorCode {
    match s {
        SegmentError::NotFound(_) => ErrorCode::NotFound,
        SegmentError::Exists(_) => ErrorCode::AlreadyExists,
        SegmentError::BadId(_) | SegmentError::DescriptionTooLong { .. } => ErrorCode::InvalidArgument,
        SegmentError::NotStatic(_) | SegmentError::InUse(..) => ErrorCode::FailedPrecondition,
        SegmentError::TooMany(_) => ErrorCode::ResourceExhausted,
        SegmentError::Query(q) => query_code(q),
    }
}

fn gamify_code(g: &GamifyError) -> ErrorCode {
    match g {
        GamifyError::Program(_)
        | GamifyError::Event { .. }
        | GamifyError::BatchTooLarge { .. }
        | GamifyError::UnknownWallet(_)
        | GamifyError::UnknownTier(_)
        | GamifyError::UnknownChallenge(_)
        | GamifyError::BadRequest { .. } => ErrorCode::InvalidArgument,
        GamifyError::UnknownCustomer(_) => ErrorCode::NotFound,
        // The request is fine; the state does not allow it (yet).
        GamifyError::InsufficientPoints { .. } | GamifyError::ProgramChange(_) | GamifyError::NoProgram => {
            ErrorCode::FailedPrecondition
        }
        GamifyError::RequestIdReused { .. } => ErrorCode::AlreadyExists,
        GamifyError::Corrupt(_) => ErrorCode::DataLoss,
    }
}

fn board_code(b: &crate::leaderboard::BoardError) -> ErrorCode {
    use crate::leaderboard::BoardError;
    match b {
        BoardError::UnknownBoard { .. } => ErrorCode::NotFound,
        BoardError::NoSuchPeriod { .. } | BoardError::Keep { .. } => ErrorCode::InvalidArgument,
        // Only start-up and apply meet these; a read never does.
        BoardError::Overflow { .. } => ErrorCode::Internal,
        BoardError::TimeZone(_) | BoardError::Record { .. } => ErrorCode::DataLoss,
    }
}

fn mutation_code(m: &MutationError) -> ErrorCode {
    match m {
        MutationError::UnknownAttribute { .. }
        | MutationError::TypeMismatch { .. }
        | MutationError::IdAttribute { .. }
        | MutationError::BadAttributeName(_)
        | MutationError::BadValue { .. }
        | MutationError::BadCustomerId { .. } => ErrorCode::InvalidArgument,
        MutationError::AttributeExists(_) => ErrorCode::AlreadyExists,
        MutationError::TooManyRows(_) => ErrorCode::ResourceExhausted,
    }
}

fn db_code(d: &DbError) -> ErrorCode {
    match d {
        DbError::Rejected(EngineError::Mutation(m)) => mutation_code(m),
        DbError::Rejected(EngineError::Segment(s)) => segment_code(s),
        DbError::Rejected(EngineError::Decide(d)) => super::decide::change_code(d),
        DbError::Rejected(EngineError::Gamify(g)) => gamify_code(g),
        DbError::Locked(_) => ErrorCode::FailedPrecondition,
        // The log refuses writes after a failed write or fsync: this server cannot take
        // writes any more (reads still work).
        DbError::Persist(p) => match p {
            PersistError::Io { .. } | PersistError::Poisoned(_) => ErrorCode::Unavailable,
            PersistError::Corrupt { .. } | PersistError::CorruptSnapshot { .. } => ErrorCode::DataLoss,
            PersistError::RecordTooLarge(_) => ErrorCode::ResourceExhausted,
            PersistError::Arrow(_) => ErrorCode::Internal,
        },
        DbError::Store(s) => match s {
            StoreError::Io { .. }
            | StoreError::Arrow(_)
            | StoreError::NoIdColumn(..)
            | StoreError::BadIdType { .. }
            | StoreError::NullId { .. }
            | StoreError::DuplicateId { .. }
            | StoreError::TooManyRows(_)
            | StoreError::Unsupported(_) => ErrorCode::Internal,
        },
        DbError::Corrupt(_) => ErrorCode::DataLoss,
        DbError::Closed => ErrorCode::Unavailable,
        // A bug in apply: the caller's write is logged but its outcome is unknown.
        DbError::ApplyFailed(_) | DbError::Replay { .. } => ErrorCode::Internal,
        // Writes stopped after such a bug; health says NOT_SERVING, reads go on.
        DbError::Poisoned(_) => ErrorCode::Unavailable,
        DbError::Replication(_) => ErrorCode::Unavailable,
        // The request itself is too large for the replicated log: it names the limit.
        DbError::ReplicaRecordTooLarge { .. } => ErrorCode::InvalidArgument,
        // Not stored (NATS unreachable, or other members kept taking the log's next
        // sequence): a retry may succeed, and the write may still take effect.
        DbError::NotShared(_) => ErrorCode::Unavailable,
    }
}
