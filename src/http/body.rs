//! proto3 JSON in and out: request bodies decode into the generated `segd.v1` messages
//! (serde from pbjson-build, which accepts both `camelCase` and `snake_case` field names
//! and 64-bit integers as numbers or strings); answers encode the same way (64-bit
//! integers as strings, default values left out), as grpc-gateway does.

use crate::app::ErrorCode;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::HttpError;

/// A decoded request body. An empty body is the message with every field at its default
/// (like an empty protobuf message), so `POST /v1/segments:overlap` with no body is the
/// same as `{}`.
pub fn decode<T: DeserializeOwned + Default>(body: Result<Bytes, BytesRejection>) -> Result<T, HttpError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => HttpError::new(
            ErrorCode::OutOfRange,
            format!("request body too large: {} (raise --max-request-bytes)", r.body_text()),
        ),
        _ => HttpError::new(
            ErrorCode::InvalidArgument,
            format!("cannot read the request body: {}", r.body_text()),
        ),
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // serde_json stops at 128 levels of nesting, bounding a predicate tree's recursion
    // as prost's decoder does for gRPC.
    serde_json::from_slice(&body)
        .map_err(|e| HttpError::new(ErrorCode::InvalidArgument, format!("invalid JSON request body: {e}")))
}

/// A message answered as proto3 JSON.
pub struct Pb<T>(pub T);

impl<T: Serialize> IntoResponse for Pb<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(mut json) => {
                // One answer a line: curl output ends cleanly, streams of answers split.
                json.push(b'\n');
                ([(header::CONTENT_TYPE, "application/json")], json).into_response()
            }
            Err(e) => {
                HttpError::new(ErrorCode::Internal, format!("encoding the answer: {e}")).into_response()
            }
        }
    }
}
