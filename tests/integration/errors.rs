//! Each class of bad segment gets its documented error, never a panic; values that do not
//! occur count 0.

use segd::query::{compile_expr, compile_sql, eval, json, Limits, QueryError};
use segd::store::Dataset;

fn demo() -> &'static Dataset {
    static DS: std::sync::OnceLock<Dataset> = std::sync::OnceLock::new();
    DS.get_or_init(|| {
        let batches = segd::gen::generate(20_000, 5);
        Dataset::from_batches(segd::gen::schema(), batches.into_iter().map(Ok), "customer_id").unwrap()
    })
}

fn err(text: &str) -> QueryError {
    compile_sql(demo(), text, &Limits::default()).expect_err(text)
}

#[test]
fn unknown_column_lists_the_columns() {
    let QueryError::UnknownColumn { column, known } = err("agee > 3") else { panic!() };
    assert_eq!(column, "agee");
    assert!(known.contains("age") && known.contains("total_spend_eur"));
    assert!(matches!(err("list_contains(nope, 'x')"), QueryError::UnknownColumn { .. }));
}

#[test]
fn type_mismatches_name_column_and_literal() {
    for (text, col) in [
        ("age = 'abc'", "age"),
        ("country = 3", "country"),
        ("email_opt_in = 'yes'", "email_opt_in"),
        ("total_spend_eur > 'x'", "total_spend_eur"),
        ("list_contains(badges, 3)", "badges"),
        ("age", "age"),
    ] {
        match err(text) {
            QueryError::TypeMismatch { column, .. } => assert_eq!(column, col, "{text}"),
            e => panic!("{text}: {e}"),
        }
    }
}

#[test]
fn operators_that_do_not_apply_are_refused() {
    assert!(matches!(err("badges = 'vip'"), QueryError::BadOperator { column, .. } if column == "badges"));
    assert!(matches!(err("email_opt_in < TRUE"), QueryError::BadOperator { .. }));
    assert!(matches!(err("list_contains(country, 'DE')"), QueryError::BadOperator { .. }));
}

#[test]
fn syntax_and_unsupported_constructs() {
    assert!(matches!(err("age >"), QueryError::Syntax(_)));
    assert!(matches!(err("(age > 3"), QueryError::Syntax(_)));
    assert!(matches!(err("age > 3 )"), QueryError::Syntax(_)));
    assert!(matches!(err(""), QueryError::Syntax(_)));
    for text in
        ["age + 1 > 3", "upper(city) = 'X'", "age IN (SELECT 1)", "city LIKE 'DE%'", "age > other_col"]
    {
        assert!(matches!(err(text), QueryError::Unsupported { .. }), "{text}: {}", err(text));
    }
    let msg = err("city LIKE 'DE%'").to_string();
    assert!(msg.contains("allowed:") && msg.contains("BETWEEN"), "{msg}");
}

#[test]
fn limits_are_enforced_before_work() {
    let limits = Limits { max_text: 1000, max_depth: 8, max_in_list: 5 };
    let deep = format!("{}age > 1{}", "(NOT ".repeat(20), ")".repeat(20));
    assert!(matches!(
        compile_sql(demo(), &deep, &limits),
        Err(QueryError::Limit { .. }) | Err(QueryError::Syntax(_))
    ));
    let long_in = format!("age IN ({})", (0..6).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    assert!(matches!(
        compile_sql(demo(), &long_in, &limits),
        Err(QueryError::Limit { what: "IN list length", .. })
    ));
    let huge = "a".repeat(1001);
    assert!(matches!(compile_sql(demo(), &huge, &limits), Err(QueryError::Limit { .. })));
    // A pathological depth is an error, not a stack overflow, with the default limits too.
    let very_deep = format!("{}age > 1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(compile_sql(demo(), &very_deep, &Limits::default()).is_err());
    let nots = format!("{}email_opt_in", "NOT ".repeat(100_000));
    assert!(compile_sql(demo(), &nots, &Limits::default()).is_err());
}

#[test]
fn json_tree_errors() {
    let l = Limits::default();
    for bad in [
        r#"{"col":"age"}"#,
        r#"{"op":"eq","col":"age"}"#,
        r#"{"op":"and","args":[]}"#,
        r#"{"op":"range","col":"age"}"#,
        "[1,2",
        r#"{"op":"xor"}"#,
    ] {
        let r = json::parse_str(bad, &l).and_then(|e| compile_expr(demo(), &e, &l));
        assert!(r.is_err(), "{bad}");
    }
}

#[test]
fn absent_values_count_zero_not_error() {
    let ds = demo();
    let c = |t: &str| eval::count(ds, &compile_sql(ds, t, &Limits::default()).unwrap());
    assert_eq!(c("city = 'ZZ-999'"), 0);
    assert_eq!(c("list_contains(badges, 'no-such-badge')"), 0);
    assert_eq!(c("age > 1000"), 0);
    assert_eq!(c("city <> 'ZZ-999'"), ds.customers());
    // NULL semantics: NOT (x >= 180) and x <> v both exclude NULL rows.
    let nulls = c("last_purchase_days_ago IS NULL");
    assert!(nulls > 0);
    assert_eq!(
        c("last_purchase_days_ago >= 180") + c("NOT (last_purchase_days_ago >= 180)") + nulls,
        ds.customers()
    );
    assert_eq!(c("last_purchase_days_ago = NULL"), 0);
    assert_eq!(c("NOT (last_purchase_days_ago = NULL)"), 0);
    assert_eq!(c("age NOT IN (30, NULL)"), 0);
}
