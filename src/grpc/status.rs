//! Every way a call can fail, and the one place each becomes a gRPC status. The matches
//! have no `_` arm: a new error variant in the core breaks the build here until someone
//! decides its code.

use tonic::{Code, Status};

use crate::analytics::AnalyticsError;
use crate::db::DbError;
use crate::engine::{EngineError, Gone};
use crate::persist::PersistError;
use crate::query::QueryError;
use crate::segments::SegmentError;
use crate::store::mutate::MutationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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
    /// A server limit, named by its flag so the caller knows what to ask for.
    #[error("limit exceeded: {what} is {got}, the limit is {limit} (--{flag})")]
    Limit { what: &'static str, got: usize, limit: usize, flag: &'static str },
    /// A request field with a value no segment can use.
    #[error("invalid {field}: {msg}")]
    Invalid { field: &'static str, msg: String },
    /// A bug, caught (e.g. a panic in evaluation) so the server keeps serving.
    #[error("internal error: {0}")]
    Internal(String),
}

fn query_code(q: &QueryError) -> Code {
    match q {
        QueryError::Syntax(_)
        | QueryError::UnknownColumn { .. }
        | QueryError::TypeMismatch { .. }
        | QueryError::Unsupported { .. }
        | QueryError::BadOperator { .. }
        | QueryError::Limit { .. }
        | QueryError::BadTree(_)
        | QueryError::NonFinite(_) => Code::InvalidArgument,
        QueryError::UnknownSegment(_) => Code::NotFound,
    }
}

fn segment_code(s: &SegmentError) -> Code {
    match s {
        SegmentError::NotFound(_) => Code::NotFound,
        SegmentError::Exists(_) => Code::AlreadyExists,
        SegmentError::BadId(_) | SegmentError::DescriptionTooLong { .. } => Code::InvalidArgument,
        SegmentError::NotStatic(_) | SegmentError::InUse(..) => Code::FailedPrecondition,
        SegmentError::TooMany(_) => Code::ResourceExhausted,
        SegmentError::Query(q) => query_code(q),
    }
}

fn mutation_code(m: &MutationError) -> Code {
    match m {
        MutationError::UnknownAttribute { .. }
        | MutationError::TypeMismatch { .. }
        | MutationError::IdAttribute { .. }
        | MutationError::BadAttributeName(_)
        | MutationError::BadValue { .. }
        | MutationError::BadCustomerId { .. } => Code::InvalidArgument,
        MutationError::AttributeExists(_) => Code::AlreadyExists,
        MutationError::TooManyRows(_) => Code::ResourceExhausted,
    }
}

fn db_code(d: &DbError) -> Code {
    match d {
        DbError::Rejected(EngineError::Mutation(m)) => mutation_code(m),
        DbError::Rejected(EngineError::Segment(s)) => segment_code(s),
        DbError::Locked(_) => Code::FailedPrecondition,
        // The log refuses writes after a failed write or fsync: this server cannot take
        // writes any more (reads still work).
        DbError::Persist(p) => match p {
            PersistError::Io { .. } | PersistError::Poisoned(_) => Code::Unavailable,
            PersistError::Corrupt { .. } | PersistError::CorruptSnapshot { .. } => Code::DataLoss,
            PersistError::RecordTooLarge(_) => Code::ResourceExhausted,
            PersistError::Arrow(_) => Code::Internal,
        },
        DbError::Store(s) => match s {
            StoreError::Io { .. }
            | StoreError::Arrow(_)
            | StoreError::NoIdColumn(..)
            | StoreError::BadIdType { .. }
            | StoreError::NullId { .. }
            | StoreError::DuplicateId { .. }
            | StoreError::TooManyRows(_)
            | StoreError::Unsupported(_) => Code::Internal,
        },
        DbError::Corrupt(_) => Code::DataLoss,
        DbError::Closed => Code::Unavailable,
        // A bug in apply: the caller's write is logged but its outcome is unknown.
        DbError::ApplyFailed(_) | DbError::Replay { .. } => Code::Internal,
        // Writes stopped after such a bug; health says NOT_SERVING, reads go on.
        DbError::Poisoned(_) => Code::Unavailable,
    }
}

pub fn status_of(err: ServiceError) -> Status {
    let code = match &err {
        ServiceError::Query(q) => query_code(q),
        ServiceError::Analytics(a) => match a {
            AnalyticsError::UnknownColumn { .. } | AnalyticsError::NotGroupable { .. } => {
                Code::InvalidArgument
            }
        },
        ServiceError::Segment(s) => segment_code(s),
        ServiceError::Db(d) => db_code(d),
        ServiceError::UnknownCustomer(_) => Code::NotFound,
        ServiceError::Gone(_) => Code::OutOfRange,
        ServiceError::SlowConsumer(_) => Code::ResourceExhausted,
        ServiceError::ShuttingDown => Code::Unavailable,
        ServiceError::ReadOnly => Code::FailedPrecondition,
        ServiceError::MissingSegment | ServiceError::Limit { .. } | ServiceError::Invalid { .. } => {
            Code::InvalidArgument
        }
        ServiceError::Internal(_) => Code::Internal,
    };
    if matches!(code, Code::Internal | Code::DataLoss | Code::Unavailable) {
        if let ServiceError::Db(d) = &err {
            if !matches!(d, DbError::Closed) {
                tracing::error!(error = %d, "write failed");
            }
        }
    }
    Status::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let s = status_of(SegmentError::NotFound("x".into()).into());
        assert_eq!(s.code(), Code::NotFound);
        let s = status_of(QueryError::Syntax("at 'frob'".into()).into());
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("frob"));
        let m = MutationError::TypeMismatch {
            customer_id: 7,
            attribute: "age".into(),
            kind: "int".into(),
            value: "Str(\"x\")".into(),
        };
        let s = status_of(DbError::Rejected(m.into()).into());
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("customer 7") && s.message().contains("age"));
        assert_eq!(status_of(DbError::Closed.into()).code(), Code::Unavailable);
        let s = status_of(DbError::Rejected(SegmentError::Exists("s".into()).into()).into());
        assert_eq!(s.code(), Code::AlreadyExists);
        assert_eq!(status_of(Gone { asked: 1, oldest: 5 }.into()).code(), Code::OutOfRange);
        let f = std::sync::Arc::new(crate::db::Fault {
            sequence: 9,
            mutation: "delete of 1 customers [4]".into(),
            reason: "panic: boom".into(),
            published: 8,
        });
        let s = status_of(DbError::ApplyFailed(f.clone()).into());
        assert_eq!(s.code(), Code::Internal);
        assert!(s.message().contains("log record 9 (delete of 1 customers [4])"), "{}", s.message());
        let s = status_of(DbError::Poisoned(f).into());
        assert_eq!(s.code(), Code::Unavailable);
        assert!(
            s.message().contains("writes are refused") && s.message().contains("sequence 8"),
            "{}",
            s.message()
        );
    }
}
