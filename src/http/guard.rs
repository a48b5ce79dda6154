//! What wraps every HTTP route: the bearer-token check and the request metrics. Both are
//! layered over the finished router in [`super::serve_with`], so a route added to
//! [`super::router`] is covered without being named here.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
