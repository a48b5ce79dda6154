//! Every way a call can fail, and the one place each becomes a gRPC status. The matches
//! have no `_` arm: a new error variant in the core breaks the build here until someone
//! decides its code.

use tonic::{Code, Status};

use crate::analytics::AnalyticsError;
use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    /// Saved segments do not exist yet: every id is unknown.
    #[error("unknown segment id '{0}'")]
    UnknownSegment(String),
    #[error("no segment given: set one of 'where', 'predicate' or 'segment_id'")]
    MissingSegment,
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

pub fn status_of(err: ServiceError) -> Status {
    let code = match &err {
        ServiceError::Query(q) => match q {
            QueryError::Syntax(_)
            | QueryError::UnknownColumn { .. }
            | QueryError::TypeMismatch { .. }
            | QueryError::Unsupported { .. }
            | QueryError::BadOperator { .. }
            | QueryError::Limit { .. }
            | QueryError::BadTree(_) => Code::InvalidArgument,
        },
        ServiceError::Analytics(a) => match a {
            AnalyticsError::UnknownColumn { .. } | AnalyticsError::NotGroupable { .. } => {
                Code::InvalidArgument
            }
        },
        ServiceError::UnknownSegment(_) => Code::NotFound,
        ServiceError::MissingSegment | ServiceError::Limit { .. } | ServiceError::Invalid { .. } => {
            Code::InvalidArgument
        }
        ServiceError::Internal(_) => Code::Internal,
    };
    Status::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(status_of(ServiceError::UnknownSegment("x".into())).code(), Code::NotFound);
        let s = status_of(QueryError::Syntax("at 'frob'".into()).into());
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("frob"));
    }
}
