//! The boards test's challenges worked out by hand, apart from `gamify::achieve_state`
//! and `crate::challenge`: which events each one's progress takes and how much, from the
//! event's type and properties, the customer's opt-in and segment, and the window of its
//! `occurred_at_ms` (a late event, in an earlier window than the customer's progress
//! holds, is not taken).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Datelike;

use super::local;
use crate::gamify::achieve::ChallengeDef;
use crate::gamify::{Event, PropValue};

/// spring's fixed window: 2026-01-20T00:00Z to 2026-02-04T00:00Z (days 10 to 25 of the
/// test's 45).
pub const SPRING: (i64, i64) = (1_768_867_200_000, 1_770_163_200_000);

/// The test program's challenges; `second`: after the program change, which widens
/// spring's `where` (its board must start over) and renames books_month (a label: its
/// board keeps its scores).
pub fn defs(second: bool) -> Vec<ChallengeDef> {
    let spring_where = if second { "channel IN ('app', 'web')" } else { "channel = 'app'" };
    let books_name = if second { "Books, this month" } else { "100 EUR of books this month" };
    let json = serde_json::json!([
        {"id": "weekly_reviews", "name": "Two good reviews this week", "event": "review",
         "where": "rating >= 4", "goal": {"mode": "count"}, "target": 2, "window": {"mode": "weekly"},
         "eligible": "in_segment('picked')", "reward": {"points": 40, "badge": "weekly_critic"}},
        {"id": "books_month", "name": books_name, "event": "purchase", "where": "category = 'books'",
         "goal": {"mode": "sum", "property": "amount_eur"}, "target": 100, "window": {"mode": "monthly"},
         "opt_in": true, "reward": {"points": 100}},
        {"id": "spring", "name": "Spring app logins", "event": "login", "where": spring_where,
         "goal": {"mode": "count"}, "target": 3,
         "window": {"mode": "fixed", "start": "2026-01-20T00:00:00Z", "end": "2026-02-04T00:00:00Z"}}
    ]);
    serde_json::from_value(json).unwrap()
}

/// What decides a challenge board's scores: the definition less its name, target and
/// reward (the program's zone never changes in the test).
pub fn counting(defs: &[ChallengeDef], id: &str) -> Option<ChallengeDef> {
    let mut d = defs.iter().find(|d| d.id == id)?.clone();
    d.name.clear();
    d.target = 0.0;
    d.reward = Default::default();
    Some(d)
}

#[derive(Clone, Default)]
pub struct Hand {
    /// Members of the saved segment `picked` (weekly_reviews' eligibility): its static
    /// members less the deleted customers (a customer created again has a new row).
    pub picked: BTreeSet<u64>,
    /// Customers who joined books_month (gamification state outlives a deleted row).
    pub joined: BTreeSet<u64>,
    /// spring's `where` after the program change.
    pub wide_spring: bool,
    /// (challenge, customer) → the window their progress is in.
    window: BTreeMap<(&'static str, u64), (i32, u32)>,
    /// Matching events not taken: late for the customer's window / outside spring's.
    pub late: usize,
    pub outside: usize,
    /// Events taken, per challenge.
    pub taken: BTreeMap<&'static str, usize>,
}

impl Hand {
    /// The progress event `e` makes: (challenge, amount: 1, or hundredths for books_month).
    pub fn steps(&mut self, e: &Event) -> Vec<(&'static str, i64)> {
        let c = e.customer_id;
        let d = local(super::Oracle::tz(), e.occurred_at_ms);
        let text = |k: &str| match e.properties.get(k) {
            Some(PropValue::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        let mut out = vec![];
        let rating = match e.properties.get("rating") {
            Some(PropValue::Int(r)) => *r,
            _ => 0,
        };
        if e.kind == "review" && rating >= 4 && self.picked.contains(&c) {
            let week = (d.iso_week().year(), d.iso_week().week());
            if self.advance("weekly_reviews", c, week) {
                out.push(("weekly_reviews", 1));
            }
        }
        if e.kind == "purchase" && text("category") == Some("books") && self.joined.contains(&c) {
            let cents = match e.properties.get("amount_eur") {
                Some(PropValue::Float(x)) => (x * 100.0).round() as i64,
                Some(PropValue::Int(x)) => x * 100,
                _ => 0,
            };
            if self.advance("books_month", c, (d.year(), d.month())) {
                out.push(("books_month", cents));
            }
        }
        let channel = text("channel");
        let counts = channel == Some("app") || (self.wide_spring && channel == Some("web"));
        if e.kind == "login" && counts {
            if !(SPRING.0..SPRING.1).contains(&e.occurred_at_ms) {
                self.outside += 1;
            } else if self.advance("spring", c, (0, 0)) {
                out.push(("spring", 1));
            }
        }
        for (c, _) in &out {
            *self.taken.entry(c).or_default() += 1;
        }
        out
    }

    /// Moves the customer's progress to window `w`, unless it is already in a later one.
    fn advance(&mut self, challenge: &'static str, c: u64, w: (i32, u32)) -> bool {
        match self.window.get(&(challenge, c)) {
            Some(&cur) if w < cur => {
                self.late += 1;
                false
            }
            _ => {
                self.window.insert((challenge, c), w);
                true
            }
        }
    }
}
