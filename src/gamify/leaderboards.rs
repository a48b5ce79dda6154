//! The program's `leaderboards` section: which boards exist, what each ranks (points
//! earned, a count of events of a type, the sum of an event property, or the progress
//! made toward a challenge) and over which period in the program's time zone. The boards themselves are kept by
//! [`crate::leaderboard::live`]; this file is only their definition and its validation.
//!
//! ```json
//! "leaderboards": [
//!   { "id": "points_week", "name": "Points this week", "metric": { "kind": "points" },
//!     "period": "week", "keep_closed": 4 },
//!   { "id": "purchases", "metric": { "kind": "event_count", "event": "purchase" },
//!     "period": "all_time" },
//!   { "id": "books_race", "metric": { "kind": "challenge_progress", "challenge": "books_month" },
//!     "period": "week" }
//! ]
//! ```

use serde::{Deserialize, Serialize};

use super::achieve::{GoalDef, WindowDef};
use super::program::{ProgramSpec, PropType};
use crate::leaderboard::period::MAX_KEEP;
use crate::leaderboard::Period;

/// Boards one program may define: each event updates every board.
pub const MAX_BOARDS: usize = 16;
pub const MAX_BOARD_NAME_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardSpec {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub metric: MetricSpec,
    pub period: PeriodSpec,
    /// Closed periods kept for `Leaderboard(period = previous(n))`, 0 to 400; default 1
    /// (0 for an all-time board, which never closes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_closed: Option<u32>,
}

impl LeaderboardSpec {
    pub fn keep(&self) -> u32 {
        match (self.keep_closed, self.period) {
            (Some(k), _) => k,
            (None, PeriodSpec::AllTime) => 0,
            (None, PeriodSpec::Day | PeriodSpec::Week | PeriodSpec::Month) => 1,
        }
    }

    pub fn period(&self) -> Period {
        match self.period {
            PeriodSpec::Day => Period::Day,
            PeriodSpec::Week => Period::Week,
            PeriodSpec::Month => Period::Month,
            PeriodSpec::AllTime => Period::AllTime,
        }
    }

    /// Whether two definitions rank the same thing over the same periods (a renamed board
    /// keeps its scores; anything else starts over, see [`crate::leaderboard::live`]).
    pub fn same_ranking(&self, other: &LeaderboardSpec) -> bool {
        self.metric == other.metric && self.period == other.period && self.keep() == other.keep()
    }

    /// For a challenge-progress board, the counting rules of its challenge in `program`
    /// (None for the other metrics, or a challenge the program lacks, which validation
    /// refuses).
    pub fn counts(&self, program: &ProgramSpec) -> Option<ChallengeCounts> {
        let MetricSpec::ChallengeProgress { challenge } = &self.metric else { return None };
        let c = program.challenges.iter().find(|c| c.id == *challenge)?;
        Some(ChallengeCounts {
            event: c.event.clone(),
            filter: c.filter.clone(),
            goal: c.goal.clone(),
            window: c.window.clone(),
            opt_in: c.opt_in,
            eligible: c.eligible.clone(),
            time_zone: program.time_zone.clone(),
        })
    }
}

/// What decides which events a challenge-progress board counts and how much each adds:
/// the challenge's definition less its name, target and reward (progress is not capped,
/// so the target changes no score), plus the program's time zone (recurring windows).
///
/// A board keeps its scores across a program change only while these stay the same: the
/// metric alone names the challenge, and a redefined challenge would rank scores counted
/// under two rules. Kept with the board in snapshots, as the program before the change
/// is gone by then.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeCounts {
    pub event: String,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    pub goal: GoalDef,
    pub window: WindowDef,
    #[serde(default)]
    pub opt_in: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible: Option<String>,
    pub time_zone: String,
}

impl ChallengeCounts {
    /// Whether scores are hundredths of the property (a sum goal).
    pub fn hundredths(&self) -> bool {
        matches!(self.goal, GoalDef::Sum { .. })
    }
}

/// What a board's score counts, per customer, from the events applied in its period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricSpec {
    /// Points the customer's events credited (every wallet, after caps), minus the points
    /// their refunds reversed.
    Points,
    /// Events of one type.
    EventCount { event: String },
    /// The sum of a numeric property over events of one type, in hundredths (as counters
    /// keep sums); reads show it divided by 100.
    EventSum { event: String, property: String },
    /// The progress made toward a challenge of the program within the board's period:
    /// each event adds exactly what the challenge's progress took from it (1 for a count
    /// goal, the property in hundredths for a sum goal), so its event type, `where`,
    /// opt-in, eligibility and window all apply, and an event outside a fixed window or
    /// late for a recurring one (see [`crate::challenge::record`]) adds nothing. Not
    /// capped at the target: progress past it still counts, as the challenge's progress
    /// attribute shows it; with the board's period equal to a recurring challenge's
    /// window, the score is that attribute's value (periods follow the logged instant,
    /// windows the event's `occurred_at_ms`, so an event logged late lands on the board's
    /// period of its logging).
    ChallengeProgress { challenge: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodSpec {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
    AllTime,
}

/// Every error of the section, each `leaderboards[i] "id": field ...`.
pub fn check(spec: &ProgramSpec) -> Vec<String> {
    let mut errs = Vec::new();
    let boards = &spec.leaderboards;
    if boards.len() > MAX_BOARDS {
        errs.push(format!("leaderboards: at most {MAX_BOARDS} boards, got {}", boards.len()));
    }
    for (i, b) in boards.iter().enumerate() {
        let item = format!("leaderboards[{i}] \"{}\"", b.id);
        let mut at = |msg: String| errs.push(format!("{item}: {msg}"));
        if b.id.is_empty() || b.id.len() > 64 {
            at(format!("id must be 1 to 64 bytes, got {} bytes", b.id.len()));
        } else if !b.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            at(format!("id '{}' may hold only ASCII letters, digits, '_' and '-'", b.id));
        }
        if boards[..i].iter().any(|o| o.id == b.id) {
            at("id is a duplicate".into());
        }
        if b.name.len() > MAX_BOARD_NAME_BYTES {
            at(format!("name must be at most {MAX_BOARD_NAME_BYTES} bytes, got {}", b.name.len()));
        }
        let event_type = |event: &str| spec.event_types.iter().find(|t| t.name == event);
        match &b.metric {
            MetricSpec::Points => {}
            MetricSpec::EventCount { event } => {
                if event_type(event).is_none() {
                    at(format!("metric.event '{event}' is not an event type of the program"));
                }
            }
            MetricSpec::EventSum { event, property } => match event_type(event) {
                None => at(format!("metric.event '{event}' is not an event type of the program")),
                Some(t) => match t.properties.get(property).map(|p| p.ty) {
                    Some(PropType::Number | PropType::Integer) => {}
                    Some(PropType::String | PropType::Bool) => {
                        at(format!("metric.property '{property}' of '{event}' is not a number"))
                    }
                    None => at(format!("metric.property '{property}' is not a property of '{event}'")),
                },
            },
            MetricSpec::ChallengeProgress { challenge } => {
                if !spec.challenges.iter().any(|c| c.id == *challenge) {
                    let known: Vec<&str> = spec.challenges.iter().map(|c| c.id.as_str()).collect();
                    at(format!(
                        "metric.challenge '{challenge}' is not a challenge of the program (its challenges: [{}])",
                        known.join(", ")
                    ));
                }
            }
        }
        match (b.period, b.keep_closed) {
            (PeriodSpec::AllTime, Some(k)) if k > 0 => {
                at(format!("keep_closed must be 0 for an all_time board (it never closes), got {k}"))
            }
            (_, Some(k)) if k > MAX_KEEP => at(format!("keep_closed must be at most {MAX_KEEP}, got {k}")),
            _ => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::{LeaderboardSpec, MetricSpec};
    use crate::gamify::program::DEMO_PROGRAM;
    use crate::gamify::Program;

    fn with(boards: &str) -> Result<Program, String> {
        let mut v: serde_json::Value = serde_json::from_str(DEMO_PROGRAM).unwrap();
        v["leaderboards"] = serde_json::from_str(boards).unwrap();
        Program::from_json(&v.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn errors_name_the_board_and_field() {
        let err = with(
            r#"[{"id": "a", "metric": {"kind": "event_count", "event": "teleport"}, "period": "day"},
                {"id": "a", "metric": {"kind": "event_sum", "event": "purchase", "property": "category"},
                 "period": "week"},
                {"id": "c d", "metric": {"kind": "event_sum", "event": "purchase", "property": "x"},
                 "period": "all_time", "keep_closed": 2},
                {"id": "e", "metric": {"kind": "points"}, "period": "month", "keep_closed": 401}]"#,
        )
        .unwrap_err();
        for want in [
            "leaderboards[0] \"a\": metric.event 'teleport' is not an event type",
            "leaderboards[1] \"a\": id is a duplicate",
            "leaderboards[1] \"a\": metric.property 'category' of 'purchase' is not a number",
            "leaderboards[2] \"c d\": id 'c d' may hold only",
            "leaderboards[2] \"c d\": metric.property 'x' is not a property of 'purchase'",
            "leaderboards[2] \"c d\": keep_closed must be 0 for an all_time board",
            "leaderboards[3] \"e\": keep_closed must be at most 400, got 401",
        ] {
            assert!(err.contains(want), "{want} not in {err}");
        }
        let err = with(
            r#"[{"id": "a", "metric": {"kind": "event_count", "event": "login", "x": 1}, "period": "day"}]"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn a_challenge_board_names_a_challenge_of_the_program() {
        let err = with(
            r#"[{"id": "ok", "metric": {"kind": "challenge_progress", "challenge": "books_month"}, "period": "week"},
                {"id": "race", "metric": {"kind": "challenge_progress", "challenge": "books_year"}, "period": "day"}]"#,
        )
        .unwrap_err();
        assert!(
            err.contains(
                "leaderboards[1] \"race\": metric.challenge 'books_year' is not a challenge of the program \
                 (its challenges: [weekly_reviews, books_month])"
            ),
            "{err}"
        );
        assert!(!err.contains("leaderboards[0]"), "{err}");
        // The challenge must be in the same program: one dropped with its board still
        // naming it is refused whole.
        let mut v: serde_json::Value = serde_json::from_str(DEMO_PROGRAM).unwrap();
        v["challenges"] = serde_json::json!([]);
        v["badges"] = serde_json::json!([]);
        v["leaderboards"] = serde_json::json!([{"id": "b", "metric": {"kind": "challenge_progress",
            "challenge": "weekly_reviews"}, "period": "all_time"}]);
        let err = Program::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(
            err.contains("leaderboards[0] \"b\": metric.challenge 'weekly_reviews' is not a challenge"),
            "{err}"
        );
        for bad in [
            r#"{"kind": "challenge_progress"}"#,
            r#"{"kind": "challenge_progress", "challenge": "books_month", "event": "purchase"}"#,
            r#"{"kind": "challenge_progress", "challenge": 7}"#,
        ] {
            let err = with(&format!(r#"[{{"id": "x", "metric": {bad}, "period": "day"}}]"#)).unwrap_err();
            assert!(err.contains("invalid program"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_challenge_board_round_trips_and_counts_what_its_challenge_counts() {
        let p = with(
            r#"[{"id": "books", "metric": {"kind": "challenge_progress", "challenge": "books_month"},
                 "period": "week", "keep_closed": 2}]"#,
        )
        .unwrap();
        let b = &p.spec.leaderboards[0];
        assert_eq!(b.metric, MetricSpec::ChallengeProgress { challenge: "books_month".into() });
        // Spelled like the other kinds in the program's JSON.
        let json = serde_json::to_value(b).unwrap();
        assert_eq!(
            json["metric"],
            serde_json::json!({"kind": "challenge_progress", "challenge": "books_month"})
        );
        assert_eq!(Program::from_json(&p.to_json()).unwrap().spec, p.spec);
        // The program is logged as its JSON text: the board survives the log record.
        let m = crate::engine::Mutation::Gamify(crate::gamify::Change::PutProgram {
            program: std::sync::Arc::new(p.clone()),
            effective_ms: 1_768_046_400_000,
        });
        let mut buf = vec![];
        crate::persist::record::encode_mutation(&m, &mut buf);
        match crate::persist::record::decode_mutation(crate::persist::record::FORMAT, &buf).unwrap() {
            crate::engine::Mutation::Gamify(crate::gamify::Change::PutProgram { program, .. }) => {
                assert_eq!(program.spec, p.spec)
            }
            other => panic!("{}", other.summary()),
        }
        // The counting rules: the challenge less its name, target and reward, with the zone.
        let c = b.counts(&p.spec).unwrap();
        let def = p.spec.challenges.iter().find(|c| c.id == "books_month").unwrap();
        assert_eq!((c.event.as_str(), c.filter.as_deref()), ("purchase", Some("category = 'books'")));
        assert_eq!((&c.goal, &c.window, c.opt_in, &c.eligible), (&def.goal, &def.window, true, &None));
        assert_eq!(c.time_zone, p.spec.time_zone);
        assert!(c.hundredths());
        let mut other = p.spec.clone();
        other.challenges[1].target = 500.0;
        other.challenges[1].name = "Books!".into();
        other.challenges[1].reward = Default::default();
        assert_eq!(b.counts(&other), Some(c.clone()));
        other.challenges[1].filter = Some("category = 'toys'".into());
        assert_ne!(b.counts(&other), Some(c));
        let points = LeaderboardSpec { metric: MetricSpec::Points, ..b.clone() };
        assert_eq!(points.counts(&p.spec), None);
    }

    #[test]
    fn defaults_and_round_trip() {
        let p = with(
            r#"[{"id": "w", "metric": {"kind": "points"}, "period": "week"},
                {"id": "t", "metric": {"kind": "event_count", "event": "purchase"}, "period": "all_time"}]"#,
        )
        .unwrap();
        assert_eq!(p.spec.leaderboards[0].keep(), 1);
        assert_eq!(p.spec.leaderboards[1].keep(), 0);
        // The program travels as its JSON text: the section survives it unchanged.
        assert_eq!(Program::from_json(&p.to_json()).unwrap().spec, p.spec);
        // A program without boards writes no section (older logs' bytes stay as they were).
        let mut s = p.spec.clone();
        s.leaderboards.clear();
        assert!(!serde_json::to_string(&s).unwrap().contains("leaderboards"));
    }
}
