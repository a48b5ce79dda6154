//! The read calls of the gamification benchmarks (`--rpc next-best-offer`, `game-state`,
//! `leaderboard`, `rank-of`, `around-me`) on bare HTTP/2 connections (hyper's
//! `SendRequest`) instead of tonic's `Channel`.
//!
//! Why: a `Channel` hands every call to a `tower::Buffer` worker task and the answer's
//! future back through a oneshot, so each call costs the client one more task wake-up and
//! two channel hand-offs. In the decision benchmark the client shares the two cores with
//! the server, so the client's CPU per call caps the served rate as much as the server's.
//! A `SendRequest` is cloned per worker and drives the connection's HTTP/2 state directly.
//! Bytes on the wire are the same: the gRPC client code (tonic's `Grpc`) still builds,
//! encodes and decodes every call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use hyper::client::conn::http2::SendRequest;
use tonic::body::Body;
use tonic::codegen::http::{self, Uri};

use segd::grpc::pb::decision_service_client::DecisionServiceClient;
use segd::grpc::pb::gamification_service_client::GamificationServiceClient;
use segd::grpc::pb::leaderboard_service_client::LeaderboardServiceClient;

/// One HTTP/2 connection, shared by the workers holding a clone.
#[derive(Clone)]
pub(super) struct Direct(SendRequest<Body>);

impl tower::Service<http::Request<Body>> for Direct {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// The clients of one direct connection, and the call timeout a `Channel` would apply.
#[derive(Clone)]
pub(super) struct Clients {
    pub dec: DecisionServiceClient<Direct>,
    pub game: GamificationServiceClient<Direct>,
    pub boards: LeaderboardServiceClient<Direct>,
    pub timeout: Duration,
}

/// Clients on a new connection to `addr` (`http://host:port`).
pub(super) async fn connect(addr: &str, timeout: Duration) -> Result<Clients> {
    let addr = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let origin: Uri = addr.parse().with_context(|| format!("bad --addr {addr}"))?;
    let authority = origin.authority().with_context(|| format!("--addr {addr} has no host:port"))?;
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((authority.host(), port)))
        .await
        .with_context(|| format!("connecting to {addr}: timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    // Small unary calls must not wait for Nagle.
    tcp.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
        .await
        .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
    tokio::spawn(async move {
        // Ends when the last `SendRequest` is dropped or the server goes away; a call in
        // flight then fails and is counted.
        let _ = conn.await;
    });
    let d = Direct(send);
    Ok(Clients {
        dec: DecisionServiceClient::with_origin(d.clone(), origin.clone()),
        game: GamificationServiceClient::with_origin(d.clone(), origin.clone()),
        boards: LeaderboardServiceClient::with_origin(d, origin),
        timeout,
    })
}
