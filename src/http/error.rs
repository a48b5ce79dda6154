//! The one place an error becomes an HTTP answer: the gRPC code the gRPC adapter gives
//! the same error (so both transports agree), its HTTP status, and a JSON body
//! `{"code": "INVALID_ARGUMENT", "message": "..."}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tonic::Code;

use crate::app::AppError;
use crate::grpc::status::status_of;

/// An error on its way to the client.
#[derive(Debug)]
pub struct HttpError {
    pub code: Code,
    pub message: String,
}

impl HttpError {
    pub fn new(code: Code, message: impl Into<String>) -> HttpError {
        HttpError { code, message: message.into() }
    }
}

impl From<AppError> for HttpError {
    fn from(e: AppError) -> HttpError {
        let s = status_of(e);
        HttpError { code: s.code(), message: s.message().to_string() }
    }
}

/// The gRPC code's name (as in the proto3 JSON of `google.rpc.Code`) and its HTTP status
/// (grpc-gateway's table, except FAILED_PRECONDITION: 409, as the request conflicts with
/// the state, e.g. a write to a read-only table or member edits of a dynamic segment).
/// No `_` arm: a code is placed deliberately.
pub fn http_status(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "OK"),
        Code::Cancelled => (StatusCode::from_u16(499).expect("499 is a valid status"), "CANCELLED"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
        Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
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
            (Code::InvalidArgument, (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"))
        );
        assert!(e.message.contains("frob"));
        let e = HttpError::from(AppError::from(SegmentError::NotFound("gold".into())));
        assert_eq!(http_status(e.code), (StatusCode::NOT_FOUND, "NOT_FOUND"));
        assert_eq!(http_status(HttpError::from(AppError::ReadOnly).code).0, StatusCode::CONFLICT);
        assert_eq!(http_status(Code::ResourceExhausted).0.as_u16(), 429);
        assert_eq!(http_status(Code::Unavailable).0.as_u16(), 503);
        assert_eq!(http_status(Code::Internal).0.as_u16(), 500);
    }
}
