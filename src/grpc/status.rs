//! The one place an [`AppError`] becomes a gRPC status: its [`ErrorCode`] (decided once,
//! in the core, for every transport) as the gRPC code, and its message.

use tonic::{Code, Status};

use crate::app::{AppError, ErrorCode};

pub fn status_of(err: AppError) -> Status {
    Status::new(grpc_code(err.code()), err.to_string())
}

fn grpc_code(c: ErrorCode) -> Code {
    match c {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Internal => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbError;
    use crate::engine::Gone;
    use crate::query::QueryError;
    use crate::segments::SegmentError;
    use crate::store::mutate::MutationError;

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
