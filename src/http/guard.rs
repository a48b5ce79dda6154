//! What wraps every HTTP route: the bearer-token check and the request metrics (layered
//! over the finished router in [`super::serve_with`]), and the `segd-min-sequence` wait
//! (in [`super::router`]), so a route added to [`super::router`] is covered without being
//! named here.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::{App, AppError};
use crate::grpc::replica::MIN_SEQUENCE_HEADER;
use crate::metrics::{http_method_label, Metrics};
use crate::security::BearerToken;

/// Refuses a request without the token with 401 and the error body of the other errors
/// (`{"code": "UNAUTHENTICATED", ...}`), except the page's static files ([`super::PUBLIC`]):
/// they hold no data, and a browser cannot add a header to a page it navigates to (the
/// page asks for the token when the API answers 401).
pub async fn authorized(State(token): State<BearerToken>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if super::PUBLIC.contains(&req.uri().path()) || token.accepts(presented) {
        return next.run(req).await;
    }
    let body = serde_json::json!({ "code": "UNAUTHENTICATED", "message": BearerToken::refusal(presented) });
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer"), (header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Counts and times every request by method, declared route and status.
pub async fn metered(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let method = http_method_label(req.method().as_str());
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(req).await;
    metrics.observe_http(method, &route, response.status().as_u16(), t.elapsed());
    response
}

/// A request with the header `segd-min-sequence` (as on gRPC reads: a write's answered
/// sequence) waits until this node has applied it, then runs; after
/// `--min-sequence-wait-ms` it is answered 503 UNAVAILABLE naming both sequences instead.
/// A value that is not a sequence is 400.
pub async fn min_sequence(State(app): State<App>, req: Request, next: Next) -> Response {
    let Some(v) = req.headers().get(MIN_SEQUENCE_HEADER) else { return next.run(req).await };
    let parsed =
        v.to_str().ok().and_then(|t| t.trim().parse::<u64>().ok()).ok_or_else(|| AppError::Invalid {
            field: MIN_SEQUENCE_HEADER,
            msg: format!("{v:?} is not a sequence number (a write's answered sequence)"),
        });
    match parsed {
        Ok(n) => match app.wait_applied(n).await {
            Ok(()) => next.run(req).await,
            Err(e) => super::HttpError::from(e).into_response(),
        },
        Err(e) => super::HttpError::from(e).into_response(),
    }
}
