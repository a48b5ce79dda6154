//! TLS and the bearer token over real connections: the server on 127.0.0.1:0 with the
//! committed test identity (tests/fixtures/tls), called by tonic and by a rustls client.
//! Laws: with a token, every gRPC call but health is UNAUTHENTICATED without it (services
//! and reflection alike) and answers as usual with it; every HTTP request but the page's
//! static files is 401 without it; a plaintext client cannot talk to a TLS listener; the
//! HTTP API's requests, refused ones included, are counted in the metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use segd::grpc::pb::{self, segment_service_client::SegmentServiceClient};
use segd::security::{BearerToken, Security, Tls};
use segd::server::{Config, Server};
use segd::store::Dataset;

const TOKEN: &str = "t0ken-for-tests_8d2f";
const ROWS: usize = 5_000;

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

fn cert_pem() -> Vec<u8> {
    std::fs::read(tls_dir().join("cert.pem")).expect("the committed test certificate")
}

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    server: Server,
    /// Customers under 30, counted row by row from the generated columns.
    under_30: u64,
}

/// A read-only server with `security` on both listeners, on a runtime thread of its own.
fn start(security: Security) -> Running {
    let batches = segd::gen::generate(ROWS, 3);
    let under_30 = batches
        .iter()
        .map(|b| {
            let age = b.column_by_name("age").expect("an age column");
            let age = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::UInt8Type>(age);
            age.iter().filter(|a| matches!(a, Some(a) if *a < 30)).count() as u64
        })
        .sum();
    let ds = Dataset::from_batches(segd::gen::schema(), batches.into_iter().map(Ok), "customer_id").unwrap();
    let server = Server::new(Arc::new(ds), Config::default()).with_security(security);
    let (tx, rx) = std::sync::mpsc::channel();
    let s = server.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((grpc.local_addr().unwrap(), http.local_addr().unwrap())).unwrap();
            let h = s.clone();
            tokio::spawn(async move { h.serve_http(http, std::future::pending()).await.unwrap() });
            s.serve(grpc, std::future::pending()).await.unwrap();
        });
    });
    let (grpc, http) = rx.recv().unwrap();
    Running { grpc, http, server, under_30 }
}

fn secured(tls: bool, token: bool) -> Security {
    Security {
        tls: tls
            .then(|| Tls::from_pem_files(&tls_dir().join("cert.pem"), &tls_dir().join("key.pem")).unwrap()),
        token: token.then(|| BearerToken::new(TOKEN, "test").unwrap()),
    }
}

async fn channel(addr: SocketAddr, tls: bool) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls { "https" } else { "http" };
    let mut e = Endpoint::from_shared(format!("{scheme}://{addr}")).unwrap();
    if tls {
        e = e.tls_config(
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(cert_pem())).domain_name("localhost"),
        )?;
    }
    e.connect().await
}

fn count_request(where_: &str, token: Option<&str>) -> tonic::Request<pb::CountSegmentRequest> {
    let mut r = tonic::Request::new(pb::CountSegmentRequest {
        segment: Some(pb::count_segment_request::Segment::Where(where_.into())),
    });
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", t.parse().unwrap());
    }
    r
}

async fn health(ch: Channel) -> Result<i32, tonic::Status> {
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let r =
        h.check(tonic_health::pb::HealthCheckRequest { service: "segd.v1.SegmentService".into() }).await?;
    Ok(r.into_inner().status)
}

/// Checks the token rules over gRPC on `ch`.
async fn grpc_token_rules(ch: Channel, under_30: u64) {
    let mut c = SegmentServiceClient::new(ch.clone());
    let bearer = format!("Bearer {TOKEN}");
    for wrong in [None, Some("Bearer nope"), Some("Basic dDB rZW4="), Some(&bearer[..bearer.len() - 1])] {
        let e = c.count_segment(count_request("age < 30", wrong)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{wrong:?}: {e}");
        assert!(e.message().contains("bearer token"), "{}", e.message());
    }
    let ok = c.count_segment(count_request("age < 30", Some(&bearer))).await.unwrap().into_inner();
    assert_eq!((ok.count, ok.total), (under_30, ROWS as u64));
    let lower = format!("bearer {TOKEN}");
    assert_eq!(
        c.count_segment(count_request("age < 30", Some(&lower))).await.unwrap().into_inner().count,
        under_30
    );
    // Health answers without a token; reflection is a service like the others.
    assert_eq!(health(ch.clone()).await.unwrap(), 1, "SERVING");
    let mut refl = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(ch);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let e = refl.server_reflection_info(tokio_stream::iter([req])).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn grpc_over_tls_requires_the_token_except_for_health() {
    let r = start(secured(true, true));
    let ch = channel(r.grpc, true).await.expect("a TLS client trusting the test certificate connects");
    grpc_token_rules(ch, r.under_30).await;
    // A plaintext client gets no answer from the TLS listener.
    let plain = match channel(r.grpc, false).await {
        Ok(ch) => health(ch).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(plain.is_err(), "plaintext against TLS answered: {plain:?}");
}

#[tokio::test]
async fn grpc_without_tls_still_requires_the_token() {
    let r = start(secured(false, true));
    grpc_token_rules(channel(r.grpc, false).await.unwrap(), r.under_30).await;
}

#[tokio::test]
async fn no_token_configured_means_no_check() {
    let r = start(Security::default());
    let mut c = SegmentServiceClient::new(channel(r.grpc, false).await.unwrap());
    assert_eq!(
        c.count_segment(count_request("age < 30", None)).await.unwrap().into_inner().count,
        r.under_30
    );
    let (status, body) =
        request(&mut tcp(r.http).await, "POST", "/v1/segments:count", None, r#"{"where": "age < 30"}"#).await;
    assert_eq!((status, body["count"].as_str()), (200, Some(&*r.under_30.to_string())));
}

async fn tcp(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

async fn https(addr: SocketAddr) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&cert_pem()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp(addr).await).await.expect("TLS handshake with the test certificate")
}

/// One HTTP/1.1 request; the status and the body (JSON, or a JSON string otherwise).
async fn request(
    s: &mut (impl AsyncRead + AsyncWrite + Unpin),
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after `Connection: close`: keep what came.
    let _ = s.read_to_end(&mut raw).await;
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header block in {raw:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    if status == 401 {
        assert!(head.lines().any(|l| l.eq_ignore_ascii_case("www-authenticate: Bearer")), "{head}");
    }
    (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.into())))
}

#[tokio::test]
async fn http_over_tls_requires_the_token_except_for_the_page() {
    let r = start(secured(true, true));
    let bearer = format!("Bearer {TOKEN}");
    let count = r#"{"where": "age < 30"}"#;
    for wrong in [None, Some("Bearer nope"), Some(TOKEN)] {
        let (status, body) =
            request(&mut https(r.http).await, "POST", "/v1/segments:count", wrong, count).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{wrong:?}: {body}");
    }
    // Unknown routes too: nothing answers before the token is checked.
    let (status, _) = request(&mut https(r.http).await, "GET", "/v1/nothing-here", None, "").await;
    assert_eq!(status, 401);
    let (status, body) =
        request(&mut https(r.http).await, "POST", "/v1/segments:count", Some(&bearer), count).await;
    assert_eq!((status, body["count"].as_str()), (200, Some(&*r.under_30.to_string())), "{body}");
    let (status, body) = request(&mut https(r.http).await, "GET", "/v1/customers/1", Some(&bearer), "").await;
    assert_eq!((status, body["customerId"].as_str()), (200, Some("1")), "{body}");
    for page in segd::http::PUBLIC {
        let (status, _) = request(&mut https(r.http).await, "GET", page, None, "").await;
        assert_eq!(status, 200, "{page}");
    }
    // Plain HTTP against the TLS listener gets no HTTP answer.
    let mut plain = tcp(r.http).await;
    plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw).await;
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "plain HTTP was answered over the TLS port");

    // Every request above is in the metrics, by route and status (refused ones too).
    let m = r.server.metrics();
    assert_eq!(m.http_requests("POST", "/v1/segments:count", 401), 3);
    assert_eq!(m.http_requests("POST", "/v1/segments:count", 200), 1);
    assert_eq!(m.http_requests("GET", "/v1/customers/{id}", 200), 1);
    assert_eq!(m.http_requests("GET", "unmatched", 401), 1);
    assert_eq!(m.http_requests("GET", "/", 200), 1);
    assert!(r.server.metrics_text().contains(
        "segd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/segments:count\"} 4"
    ));
}

#[tokio::test]
async fn http_requests_are_counted_by_route_and_status() {
    let r = start(Security::default());
    let calls = [
        ("POST", "/v1/segments:count", r#"{"where": "age < 30"}"#, 200),
        ("POST", "/v1/segments:count", r#"{"where": "age < 30"}"#, 200),
        ("POST", "/v1/segments:count", r#"{"where": "agee < 30"}"#, 400),
        ("GET", "/v1/segments/nope", "", 404),
        ("GET", "/v1/customers/2", "", 200),
        ("DELETE", "/v1/no-such-route", "", 404),
    ];
    for (method, path, body, want) in calls {
        let (status, answer) = request(&mut tcp(r.http).await, method, path, None, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
    }
    let m = r.server.metrics();
    let counted = [
        (m.http_requests("POST", "/v1/segments:count", 200), 2),
        (m.http_requests("POST", "/v1/segments:count", 400), 1),
        (m.http_requests("GET", "/v1/segments/{id}", 404), 1),
        (m.http_requests("GET", "/v1/customers/{id}", 200), 1),
        (m.http_requests("DELETE", "unmatched", 404), 1),
        (m.http_requests("GET", "/v1/segments:count", 200), 0),
    ];
    assert_eq!(counted.map(|c| c.0), counted.map(|c| c.1));
    let text = r.server.metrics_text();
    assert!(text.contains(
        "segd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/segments:count\"} 3"
    ));
    // gRPC series are unaffected by HTTP requests.
    assert!(text.contains("segd_rpc_calls_total{rpc=\"CountSegment\",code=\"OK\"} 0"), "{text}");
}

/// `segd serve` with `args` and `env`, a fresh data dir, no SEGD_* from the shell.
fn serve_cmd(args: &[&str], env: &[(&str, &str)]) -> (std::process::Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_segd"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SEGD_")) {
        c.env_remove(k);
    }
    c.args(["serve", "--demo", "100", "--http-listen", "off", "--data-dir"]).arg(dir.path()).args(args);
    c.envs(env.iter().copied()).stdin(std::process::Stdio::null());
    (c, dir)
}

#[test]
fn serve_refuses_bad_security_settings_before_loading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let good = dir.path().join("token");
    std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
    let (empty, good) = (empty.to_str().unwrap(), good.to_str().unwrap());
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
            &[],
            "reading --tls-cert /nonexistent/cert.pem",
        ),
        (&["--auth-token-file", empty], &[], "is empty"),
        (
            &["--auth-token-file", good],
            &[("SEGD_AUTH_TOKEN", "x")],
            "--auth-token-file or SEGD_AUTH_TOKEN, not both",
        ),
        (&[], &[("SEGD_AUTH_TOKEN", "two words")], "(in SEGD_AUTH_TOKEN) has a character at byte 3"),
    ];
    for (args, env, says) in cases {
        let (mut c, _dir) = serve_cmd(args, env);
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: no {says:?} in {stderr}");
        assert!(!stderr.contains("customer base ready"), "{args:?} loaded the table first: {stderr}");
    }
    // A certificate without its key is a usage error.
    let (mut c, _dir) = serve_cmd(&["--tls-cert", "cert.pem"], &[]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_warns_when_it_listens_beyond_loopback_without_a_token() {
    use std::io::BufRead;
    let said = |args: &[&str], env: &[(&str, &str)]| {
        let (mut c, _dir) = serve_cmd(args, env);
        let mut child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut seen = vec![];
        // The warning comes before the line naming the transport security, logged before
        // the table is loaded.
        for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
            let last = line.contains("transport security");
            seen.push(line);
            if last {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        seen.iter().any(|l| l.contains("WARN") && l.contains("beyond loopback without a bearer token"))
    };
    assert!(said(&["--listen", "0.0.0.0:0"], &[]));
    assert!(!said(&["--listen", "0.0.0.0:0"], &[("SEGD_AUTH_TOKEN", TOKEN)]));
    assert!(!said(&["--listen", "127.0.0.1:0"], &[]));
}
