//! The gRPC listener's TLS configuration, and the bearer-token check of every gRPC call as
//! a tower layer over the whole router, so a service added to the server is covered without
//! being named here. The token, the PEM files and their checks live in [`crate::security`],
//! shared with the HTTP listener.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http;

use crate::security::{BearerToken, Tls};

/// gRPC paths that answer without a token: health checks, which probes make without
/// credentials and which tell nothing about customers.
fn grpc_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// The gRPC token check as a layer over the whole router, or nothing without a token.
pub fn grpc_layer(
    token: Option<BearerToken>,
) -> tower::util::Either<GrpcAuthLayer, tower::layer::util::Identity> {
    tower::util::option_layer(token.map(GrpcAuthLayer))
}

/// Refuses every gRPC call that does not present the token with UNAUTHENTICATED.
#[derive(Clone, Debug)]
pub struct GrpcAuthLayer(BearerToken);

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth { inner, token: self.0.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcAuth<S> {
    inner: S,
    token: BearerToken,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let header = req.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        if grpc_public(req.uri().path()) || self.token.accepts(header) {
            return Box::pin(self.inner.call(req));
        }
        let status = tonic::Status::unauthenticated(BearerToken::refusal(header));
        tracing::debug!(path = req.uri().path(), "unauthenticated gRPC call refused");
        Box::pin(std::future::ready(Ok(status.into_http())))
    }
}

/// The gRPC listener's TLS configuration (tonic negotiates h2 itself).
pub fn tls_config(tls: &Tls) -> tonic::transport::ServerTlsConfig {
    let (cert, key) = tls.pem();
    tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key))
}
