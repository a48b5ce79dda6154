//! The one place an error becomes an HTTP answer: the core's [`ErrorCode`] (the one the
//! gRPC adapter answers with, so both transports agree), its HTTP status, and a JSON body
//! `{"code": "INVALID_ARGUMENT", "message": "..."}`.

use crate::app::{AppError, ErrorCode};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error on its way to the client.
#[derive(Debug)]
pub struct HttpError {
    pub code: ErrorCode,
    pub message: String,
}

impl HttpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> HttpError {
        HttpError { code, message: message.into() }
    }
}

impl From<AppError> for HttpError {
    fn from(e: AppError) -> HttpError {
        HttpError { code: e.code(), message: e.to_string() }
    }
}

/// The gRPC code's name (as in the proto3 JSON of `google.rpc.Code`) and its HTTP status
/// (grpc-gateway's table, except FAILED_PRECONDITION: 409, as the request conflicts with
/// the state, e.g. a write to a read-only table or member edits of a dynamic segment).
/// No `_` arm: a code is placed deliberately.
pub fn http_status(code: ErrorCode) -> (StatusCode, &'static str) {
    match code {
        ErrorCode::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        ErrorCode::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        ErrorCode::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        ErrorCode::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
        ErrorCode::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
        ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        ErrorCode::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, name) = http_status(self.code);
        if status.is_server_error() {
            tracing::error!(code = name, message = %self.message, "http request failed");
        }
        let body = serde_json::json!({ "code": name, "message": self.message });
        (status, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::QueryError;
    use crate::segments::SegmentError;

    #[test]
    fn errors_keep_their_grpc_code_and_get_the_matching_status() {
        let e = HttpError::from(AppError::from(QueryError::Syntax("near 'frob'".into())));
        assert_eq!(
            (e.code, http_status(e.code)),
            (ErrorCode::InvalidArgument, (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"))
        );
        assert!(e.message.contains("frob"));
        let e = HttpError::from(AppError::from(SegmentError::NotFound("gold".into())));
        assert_eq!(http_status(e.code), (StatusCode::NOT_FOUND, "NOT_FOUND"));
        assert_eq!(http_status(HttpError::from(AppError::ReadOnly).code).0, StatusCode::CONFLICT);
        assert_eq!(http_status(ErrorCode::ResourceExhausted).0.as_u16(), 429);
        assert_eq!(http_status(ErrorCode::Unavailable).0.as_u16(), 503);
        assert_eq!(http_status(ErrorCode::Internal).0.as_u16(), 500);
    }
}
