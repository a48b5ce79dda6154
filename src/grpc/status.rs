//! The one place an [`AppError`] becomes a gRPC status. The matches have no `_` arm: a
//! new error variant in the core breaks the build here until someone decides its code.

use tonic::{Code, Status};

use crate::analytics::AnalyticsError;
use crate::app::AppError;
use crate::db::DbError;
use crate::engine::EngineError;
use crate::persist::PersistError;
use crate::query::QueryError;
use crate::segments::SegmentError;
use crate::store::mutate::MutationError;
use crate::store::StoreError;

fn query_code(q: &QueryError) -> Code {
    match q {
        QueryError::Syntax(_)
        | QueryError::UnknownColumn { .. }
        | QueryError::TypeMismatch { .. }
        | QueryError::Unsupported { .. }
        | QueryError::BadOperator { .. }
        | QueryError::Limit { .. }
        | QueryError::BadTree(_) => Code::InvalidArgument,
        QueryError::UnknownSegment(_) => Code::NotFound,
    }
}

fn segment_code(s: &SegmentError) -> Code {
    match s {
        SegmentError::NotFound(_) => Code::NotFound,
        SegmentError::Exists(_) => Code::AlreadyExists,
        SegmentError::BadId(_) => Code::InvalidArgument,
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
        | MutationError::BadAttributeName(_) => Code::InvalidArgument,
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
    }
}

pub fn status_of(err: AppError) -> Status {
    let code = match &err {
        AppError::Query(q) => query_code(q),
        AppError::Analytics(a) => match a {
            AnalyticsError::UnknownColumn { .. } | AnalyticsError::NotGroupable { .. } => {
                Code::InvalidArgument
            }
        },
        AppError::Segment(s) => segment_code(s),
        AppError::Db(d) => db_code(d),
        AppError::UnknownCustomer(_) => Code::NotFound,
        AppError::Gone(_) => Code::OutOfRange,
        AppError::SlowConsumer(_) => Code::ResourceExhausted,
        AppError::ShuttingDown => Code::Unavailable,
        AppError::ReadOnly => Code::FailedPrecondition,
        AppError::MissingSegment | AppError::Limit { .. } | AppError::Invalid { .. } => Code::InvalidArgument,
        AppError::Internal(_) => Code::Internal,
    };
    if matches!(code, Code::Internal | Code::DataLoss | Code::Unavailable) {
        if let AppError::Db(d) = &err {
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
    use crate::engine::Gone;

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
    }
}
