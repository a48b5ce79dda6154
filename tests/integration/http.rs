//! The HTTP/JSON API end to end: `segd::http::serve` on 127.0.0.1:0, called with plain
//! HTTP/1.1 over a TCP socket. Laws: counts and memberships equal the row-by-row
//! oracle's, in either segment spelling; every error class keeps the gRPC adapter's code
//! and gets its HTTP status; writes through HTTP are seen by reads through HTTP.

use std::net::SocketAddr;
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use segd::app::{App, Config};
use segd::db::DbOptions;
use segd::query::{sql, Expr, Limits};
use segd::store::Dataset;

const ROWS: usize = 30_000;

fn table(rows: usize, seed: u64) -> (Vec<RecordBatch>, Dataset) {
    let batches = segd::gen::generate(rows, seed);
    let ds = Dataset::from_batches(segd::gen::schema(), batches.iter().cloned().map(Ok), "customer_id")
        .expect("generated table loads");
    (batches, ds)
}

/// Serves `app` over HTTP on a runtime thread of its own (each #[tokio::test] has a
/// runtime that ends with the test).
fn serve(app: App) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            segd::http::serve(app, listener, std::future::pending()).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// A read-only table (reads can run in parallel against one oracle).
fn fixed() -> &'static (SocketAddr, Vec<RecordBatch>) {
    static F: OnceLock<(SocketAddr, Vec<RecordBatch>)> = OnceLock::new();
    F.get_or_init(|| {
        let (batches, ds) = table(ROWS, 11);
        (serve(App::fixed(ds, Config::default())), batches)
    })
}

/// One request; the status and the body (JSON, or a JSON string for other content).
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let json = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (status, json)
}

async fn ok(addr: SocketAddr, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(addr, method, path, Some(&body.to_string())).await;
    assert_eq!(status, 200, "{method} {path} {body}: {answer}");
    answer
}

/// A proto3 JSON uint64 (a string; absent when zero).
fn u64_of(v: &Value) -> u64 {
    match v {
        Value::Null => 0,
        Value::String(s) => s.parse().expect("a uint64 string"),
        other => other.as_u64().expect("a uint64"),
    }
}

fn oracle(batches: &[RecordBatch], text: &str) -> u64 {
    segd::naive::count(batches, &parse(text)).expect("oracle evaluates")
}

fn parse(text: &str) -> Expr {
    sql::parse(text, &Limits::default()).expect("test segment parses")
}

const SEGMENTS: [&str; 6] = [
    "country = 'DE' AND age BETWEEN 25 AND 34",
    "(tier = 'GOLD' OR tier = 'PLATINUM') AND NOT email_opt_in",
    "list_contains(badges, 'vip') OR churn_risk >= 0.8",
    "last_purchase_days_ago IS NULL",
    "country NOT IN ('DE', 'FR', 'GB') AND total_spend_eur > 500.5",
    "TRUE",
];

#[tokio::test]
async fn http_counts_and_memberships_equal_the_oracle() {
    let (addr, batches) = fixed();
    for text in SEGMENTS {
        let a = ok(*addr, "POST", "/v1/segments:count", json!({ "where": text })).await;
        assert_eq!(u64_of(&a["count"]), oracle(batches, text), "{text}");
        assert_eq!(u64_of(&a["total"]), ROWS as u64);
    }
    // The same segment as a predicate tree, 64-bit integers as numbers or strings.
    let tree = json!({ "predicate": { "and": { "args": [
        { "eq": { "column": "country", "value": { "stringValue": "DE" } } },
        { "range": { "column": "age", "gte": { "intValue": 25 }, "lte": { "intValue": "34" } } },
    ] } } });
    let a = ok(*addr, "POST", "/v1/segments:count", tree).await;
    assert_eq!(u64_of(&a["count"]), oracle(batches, SEGMENTS[0]));

    // Memberships of the first rows, row by row.
    let e = parse(SEGMENTS[1]);
    let b = &batches[0];
    let ids = b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>();
    let rows = 0..200.min(b.num_rows());
    let want: Vec<bool> = rows.clone().map(|r| segd::naive::eval(b, r, &e).unwrap() == Some(true)).collect();
    let mut id_list: Vec<u64> = rows.map(|r| ids.value(r)).collect();
    id_list.push(u64::MAX); // not held
    let a = ok(
        *addr,
        "POST",
        "/v1/segments:batchIsMember",
        json!({ "customer_ids": id_list, "where": SEGMENTS[1] }),
    )
    .await;
    let got: Vec<bool> = a["isMember"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    assert_eq!(&got[..want.len()], &want[..]);
    assert!(!got[want.len()]);
    assert_eq!(a["customerFound"].as_array().unwrap().last(), Some(&json!(false)));
    assert_eq!(u64_of(&a["members"]), want.iter().filter(|&&m| m).count() as u64);
    let one = ok(
        *addr,
        "POST",
        "/v1/segments:isMember",
        json!({ "customerId": ids.value(0), "where": SEGMENTS[1] }),
    )
    .await;
    assert_eq!(one["isMember"].as_bool().unwrap_or(false), want[0]);

    // Breakdown groups sum to the segment's count; overlap's diagonal holds the counts.
    let a = ok(
        *addr,
        "POST",
        "/v1/segments:breakdown",
        json!({ "where": SEGMENTS[0], "attribute": "tier", "topN": 10 }),
    )
    .await;
    let sum: u64 = a["groups"].as_array().unwrap().iter().map(|g| u64_of(&g["count"])).sum();
    assert_eq!(sum, oracle(batches, SEGMENTS[0]));
    for g in a["groups"].as_array().unwrap() {
        let tier = g["value"]["stringValue"].as_str().unwrap();
        let text = format!("{} AND tier = '{tier}'", SEGMENTS[0]);
        assert_eq!(u64_of(&g["count"]), oracle(batches, &text), "{text}");
    }
    let a = ok(
        *addr,
        "POST",
        "/v1/segments:overlap",
        json!({ "segments": [{ "where": SEGMENTS[0] }, { "where": SEGMENTS[2] }] }),
    )
    .await;
    let both = format!("({}) AND ({})", SEGMENTS[0], SEGMENTS[2]);
    assert_eq!(u64_of(&a["rows"][0]["counts"][1]), oracle(batches, &both));
    assert_eq!(u64_of(&a["rows"][1]["counts"][1]), oracle(batches, SEGMENTS[2]));
    let a = ok(*addr, "POST", "/v1/segments:explain", json!({ "where": SEGMENTS[0] })).await;
    assert_eq!(u64_of(&a["root"]["actual"]), oracle(batches, SEGMENTS[0]));
    let (status, schema) = call(*addr, "GET", "/v1/schema?maxValues=5", None).await;
    assert_eq!(status, 200);
    let tier = schema["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "tier").unwrap();
    assert_eq!(tier["values"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn http_errors_keep_their_codes() {
    let (addr, _) = fixed();
    // method, path, body, HTTP status, code, what the message must name
    type Case = (&'static str, &'static str, Option<&'static str>, u16, &'static str, &'static str);
    let cases: [Case; 10] = [
        (
            "POST",
            "/v1/segments:count",
            Some(r#"{"where": "agee > 3"}"#),
            400,
            "INVALID_ARGUMENT",
            "unknown column 'agee'",
        ),
        ("POST", "/v1/segments:count", Some(r#"{"where": "age = 'x'"}"#), 400, "INVALID_ARGUMENT", "age"),
        ("POST", "/v1/segments:count", Some(r#"{"segmentId": "nope"}"#), 404, "NOT_FOUND", "nope"),
        ("POST", "/v1/segments:count", Some("{}"), 400, "INVALID_ARGUMENT", "no segment given"),
        ("POST", "/v1/segments:count", Some("{\"where\": "), 400, "INVALID_ARGUMENT", "invalid JSON"),
        ("POST", "/v1/segments:count", Some(r#"{"where": 5}"#), 400, "INVALID_ARGUMENT", "invalid JSON"),
        (
            "POST",
            "/v1/segments:breakdown",
            Some(r#"{"where": "TRUE", "attribute": "churn_risk"}"#),
            400,
            "INVALID_ARGUMENT",
            "churn_risk",
        ),
        ("GET", "/v1/customers/abc", None, 400, "INVALID_ARGUMENT", "abc"),
        ("GET", "/v1/nothing", None, 404, "NOT_FOUND", "/v1/nothing"),
        // A fixed table takes no writes.
        (
            "POST",
            "/v1/customers:delete",
            Some(r#"{"customerIds": [1]}"#),
            409,
            "FAILED_PRECONDITION",
            "read-only",
        ),
    ];
    for (method, path, body, status, code, needle) in cases {
        let (got, answer) = call(*addr, method, path, body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body:?}: {answer}"
        );
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(needle), "{method} {path}: '{message}' should name '{needle}'");
    }
    // Still answering.
    ok(*addr, "POST", "/v1/segments:count", json!({ "where": "TRUE" })).await;
}

#[tokio::test]
async fn http_writes_are_seen_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, ds) = table(5_000, 3);
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let app = App::open(opts, move || Ok(ds), Config::default()).expect("opens");
    let addr = serve(app);

    let de = oracle(&batches, "country = 'DE'");
    let a = ok(addr, "POST", "/v1/segments", json!({ "segmentId": "de", "where": "country = 'DE'" })).await;
    assert_eq!(u64_of(&a["count"]), de);
    let (status, answer) =
        call(addr, "POST", "/v1/segments", Some(r#"{"segmentId": "de", "where": "TRUE"}"#)).await;
    assert_eq!((status, answer["code"].as_str()), (409, Some("ALREADY_EXISTS")));

    // A new customer in Germany enters "de".
    let new = json!({ "customers": [{ "customerId": "9000001", "attributes": {
        "country": { "stringValue": "DE" }, "age": { "intValue": 41 } } }] });
    let a = ok(addr, "POST", "/v1/customers:upsert", new).await;
    assert_eq!(a["applied"], json!(1));
    assert_eq!(u64_of(&ok(addr, "GET", "/v1/segments/de", json!(null)).await["count"]), de + 1);
    let c = ok(addr, "GET", "/v1/customers/9000001", json!(null)).await;
    assert_eq!(c["attributes"]["country"], json!({ "stringValue": "DE" }));
    assert_eq!(c["attributes"]["age"], json!({ "intValue": "41" }));
    let s = ok(addr, "GET", "/v1/customers/9000001/segments", json!(null)).await;
    assert_eq!(s["segmentIds"], json!(["de"]));
    let (status, answer) = call(
        addr,
        "POST",
        "/v1/customers:upsert",
        Some(r#"{"customers": [{"customerId": 1, "attributes": {"age": {"stringValue": "old"}}}]}"#),
    )
    .await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{answer}");

    // Static segments: member edits by path; a dynamic one refuses them.
    ok(
        addr,
        "POST",
        "/v1/segments",
        json!({ "segmentId": "vip", "staticMembers": { "customerIds": [1, 2] } }),
    )
    .await;
    let a = ok(addr, "POST", "/v1/segments/vip:addMembers", json!({ "customerIds": [2, 3, 4] })).await;
    assert_eq!(u64_of(&a["changed"]), 2);
    let a = ok(addr, "POST", "/v1/segments/vip:removeMembers", json!({ "customerIds": [1] })).await;
    assert_eq!(u64_of(&a["changed"]), 1);
    assert_eq!(u64_of(&ok(addr, "GET", "/v1/segments/vip", json!(null)).await["count"]), 3);
    let (status, answer) =
        call(addr, "POST", "/v1/segments/de:addMembers", Some(r#"{"customerIds": [5]}"#)).await;
    assert_eq!((status, answer["code"].as_str()), (409, Some("FAILED_PRECONDITION")), "{answer}");
    let (status, _) = call(addr, "POST", "/v1/segments/vip:frob", Some("{}")).await;
    assert_eq!(status, 404);

    let list = ok(addr, "GET", "/v1/segments", json!(null)).await;
    let ids: Vec<&str> =
        list["segments"].as_array().unwrap().iter().map(|s| s["segmentId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["de", "vip"]);
    let a =
        ok(addr, "POST", "/v1/customers:delete", json!({ "customerIds": ["9000001", "123456789"] })).await;
    assert_eq!(a["deleted"], json!(1));
    assert_eq!(u64_of(&ok(addr, "GET", "/v1/segments/de", json!(null)).await["count"]), de);
    ok(addr, "DELETE", "/v1/segments/vip", json!(null)).await;
    let (status, answer) = call(addr, "GET", "/v1/segments/vip", None).await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("NOT_FOUND")));
    let a =
        ok(addr, "POST", "/v1/attributes", json!({ "name": "streak_days", "type": "ATTRIBUTE_TYPE_INT" }))
            .await;
    assert!(u64_of(&a["sequence"]) > 0);
}

#[tokio::test]
async fn the_page_is_served() {
    let (addr, _) = fixed();
    let (status, page) = call(*addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    let page = page.as_str().unwrap();
    assert!(page.contains("<title>segd") && page.contains("/app.js") && page.contains("/sql.js"));
    for path in ["/app.js", "/sql.js", "/app.css"] {
        let (status, body) = call(*addr, "GET", path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.as_str().unwrap().len() > 500, "{path}");
    }
}

/// [`call`] with the header `segd-min-sequence: {min}`.
async fn call_at(addr: SocketAddr, path: &str, min: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nsegd-min-sequence: {min}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_with_segd_min_sequence_wait_for_that_write() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ds) = table(1_000, 5);
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let wait = std::time::Duration::from_millis(3000);
    let app =
        App::open(opts, move || Ok(ds), Config { min_sequence_wait: wait, ..Config::default() }).unwrap();
    let addr = serve(app);
    let upsert = |id: u64| {
        json!({ "customers": [{ "customerId": id.to_string(), "attributes": {
        "age": { "intValue": 77 } } }] })
    };
    let first = u64_of(&ok(addr, "POST", "/v1/customers:upsert", upsert(9_000_001)).await["sequence"]);
    assert!(first > 0);
    // Applied already: answered at once.
    let (status, c) = call_at(addr, "/v1/customers/9000001", &first.to_string()).await;
    assert_eq!((status, &c["attributes"]["age"]), (200, &json!({ "intValue": "77" })), "{c}");
    // The next write's sequence: the read waits for it, then sees it.
    let read =
        tokio::spawn(async move { call_at(addr, "/v1/customers/9000002", &(first + 1).to_string()).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!read.is_finished(), "the read waits for sequence {}", first + 1);
    let second = u64_of(&ok(addr, "POST", "/v1/customers:upsert", upsert(9_000_002)).await["sequence"]);
    assert_eq!(second, first + 1);
    let (status, c) = read.await.unwrap();
    assert_eq!((status, &c["attributes"]["age"]), (200, &json!({ "intValue": "77" })), "{c}");
    // Never reached within the wait: 503, naming both sequences; not a number: 400.
    let far = second + 1000;
    let (status, e) = call_at(addr, "/v1/customers/9000002", &far.to_string()).await;
    assert_eq!((status, e["code"].as_str()), (503, Some("UNAVAILABLE")), "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains(&far.to_string()) && message.contains(&second.to_string()), "{message}");
    let (status, e) = call_at(addr, "/v1/customers/9000002", "soon").await;
    assert_eq!((status, e["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("segd-min-sequence"), "{e}");
}
