//! The program: wallets, event types, measures, counters, earning rules, tiers and levels,
//! in the program's time zone. Its JSON form ([`ProgramSpec`]) is validated whole into a
//! [`Program`]; an error names the item and field (`rules[3] "double-gold":
//! multipliers[0].factor must be > 0, got -1`), so nothing of a bad program is applied.

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::time::QualPeriod;
use super::{Event, GamifyError, PropValue, DAY_MS};
use crate::query::ast::Expr;

/// The demo program (`segd serve` with no data): BRONZE / SILVER / GOLD on 365-day turnover.
pub const DEMO_PROGRAM: &str = include_str!("demo_program.json");

/// Events whose `event_id` was seen this long ago (by logged time) are duplicates; events
/// that occurred longer ago than this are rejected, so a retry can never apply twice.
pub const DEDUP_WINDOW_MS: i64 = 7 * DAY_MS;
/// How far in the future (of the logged time) an event may occur: clients' clock skew.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Events in one batch.
pub const MAX_BATCH: usize = 10_000;
pub const MAX_ID_BYTES: usize = 128;
pub const MAX_STRING_BYTES: usize = 256;
pub const MAX_PROPERTIES: usize = 32;
/// The largest magnitude of a numeric property: keeps sums in hundredths exact in i64.
pub const MAX_NUMBER: f64 = 1e12;
/// The largest point amount of one credit, grant or spend.
pub const MAX_POINTS: i64 = 1_000_000_000_000;

/// Attributes the gamification core derives; counters may not take these names.
pub const BUILTIN_ATTRIBUTES: [&str; 6] =
    ["points_balance", "points_pending", "lifetime_points", "points_expiring_30d", "tier", "level"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// An IANA zone (`Europe/Berlin`): days, weeks, months and expiry dates are local.
    pub time_zone: String,
    #[serde(default)]
    pub unknown_customers: UnknownCustomers,
    /// The first wallet is the primary one: the `points_*` attributes and levels use it.
    pub wallets: Vec<WalletSpec>,
    pub event_types: Vec<EventTypeSpec>,
    #[serde(default)]
    pub measures: Vec<MeasureSpec>,
    #[serde(default)]
    pub counters: Vec<CounterSpec>,
    pub rules: Vec<RuleSpec>,
    pub tiers: TiersSpec,
    pub levels: LevelsSpec,
    /// Badges, challenges and streaks ([`super::achieve`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub badges: Vec<super::achieve::BadgeDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<super::achieve::ChallengeDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streaks: Vec<super::achieve::StreakDef>,
    /// Leaderboards (`leaderboards.rs`); absent from the JSON when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaderboards: Vec<super::leaderboards::LeaderboardSpec>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCustomers {
    /// An event for a customer segd does not know is rejected (with its batch).
    #[default]
    Reject,
    /// The customer is created (the engine inserts the row in the same apply).
    Create,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletSpec {
    pub id: String,
    pub expiry: ExpirySpec,
}

/// When a credit expires, counted from the moment it was earned (the event's time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExpirySpec {
    Never,
    /// Exactly `days` × 24 h after the credit.
    AfterDays {
        days: u32,
    },
    /// At the end of the month that holds the date `months` months after the credit.
    EndOfMonth {
        months: u32,
    },
    /// At the end of the year that holds the date `years` years after the credit.
    EndOfYear {
        years: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypeSpec {
    pub name: String,
    #[serde(default)]
    pub properties: BTreeMap<String, PropSpec>,
    /// Makes this a refund type: the (string) property naming the purchase's `event_id`,
    /// whose credits a refund reverses.
    #[serde(default)]
    pub refund_of: Option<String>,
    /// With `refund_of`: the numeric property of both the purchase and the refund that
    /// makes a refund partial (its share of the purchase amount); absent, a refund
    /// reverses all of the purchase's points.
    #[serde(default)]
    pub refund_amount: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropSpec {
    #[serde(rename = "type")]
    pub ty: PropType,
    #[serde(default)]
    pub required: bool,
    /// The smallest value a number may take (`0` for amounts).
    #[serde(default)]
    pub min: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropType {
    Number,
    Integer,
    String,
    Bool,
}

/// A rolling-window sum of event amounts (turnover: purchases minus refunds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    pub id: String,
    /// Local days, today included.
    pub window_days: u32,
    pub add: Vec<MeasureTerm>,
    #[serde(default)]
    pub subtract: Vec<MeasureTerm>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureTerm {
    pub event: String,
    pub property: String,
}

/// A lifetime per-type counter attribute: a count of events, or the sum of a property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {
    pub name: String,
    pub event: String,
    #[serde(default)]
    pub sum: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub event: String,
    /// Default: the primary (first) wallet.
    #[serde(default)]
    pub wallet: Option<String>,
    /// Segment-language text over the event's properties.
    #[serde(default)]
    pub when: Option<String>,
    /// Segment-language text over the customer's attributes (as before the event).
    #[serde(default)]
    pub customer: Option<String>,
    pub points: PointsSpec,
    #[serde(default)]
    pub multipliers: Vec<MultiplierSpec>,
    #[serde(default)]
    pub caps: CapsSpec,
    /// RFC 3339; the rule applies to events that occurred at or after it.
    #[serde(default)]
    pub active_from: Option<String>,
    /// RFC 3339; the rule applies to events that occurred before it.
    #[serde(default)]
    pub active_until: Option<String>,
    /// Days the points stay pending (a returns window) before they can be spent.
    #[serde(default)]
    pub pending_days: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PointsSpec {
    Fixed(i64),
    /// `floor(property / unit × multipliers)`.
    PerUnit {
        property: String,
        #[serde(default = "one")]
        unit: f64,
    },
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiplierSpec {
    pub factor: f64,
    /// Applies only to customers this holds for (`tier = 'GOLD'`).
    #[serde(default)]
    pub customer: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsSpec {
    #[serde(default)]
    pub per_day: Option<i64>,
    #[serde(default)]
    pub per_week: Option<i64>,
    #[serde(default)]
    pub per_month: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersSpec {
    pub measure: String,
    /// Ascending; the first has `min` 0 (the tier of every customer).
    pub tiers: Vec<TierSpec>,
    pub downgrade: DowngradeSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub name: String,
    pub min: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum DowngradeSpec {
    Never,
    /// At each period end + `grace_days`, a customer whose measure no longer qualifies
    /// for their tier drops to the tier it qualifies for (never below a manual tier).
    PeriodEnd {
        period: QualPeriod,
        #[serde(default)]
        grace_days: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelsSpec {
    /// Lifetime points of level 1, 2, ...: ascending, the first 0.
    pub thresholds: Vec<i64>,
}

/// A validated program, conditions parsed.
#[derive(Clone, Debug)]
pub struct Program {
    pub spec: ProgramSpec,
    pub tz: Tz,
    pub event_types: HashMap<String, EventType>,
    pub rules: Vec<Rule>,
    /// Rule indexes per event type, in program order (the evaluation order).
    pub rules_by_event: HashMap<String, Vec<usize>>,
    /// Index of the tier measure in `spec.measures`.
    pub tier_measure: usize,
    /// Tier thresholds in hundredths of the measure's unit.
    pub tier_mins: Vec<i64>,
    /// The badges, challenges and streaks, validated.
    pub achieve: super::achieve::Achieve,
    /// The derived attributes' names, in the order [`super::CustomerAttrs::values`] holds
    /// them: [`BUILTIN_ATTRIBUTES`], the counters, then the badges', streaks' and
    /// challenges' ([`super::achieve::Achieve::columns`]). Named once per program, so a
    /// change reports values without a name per value.
    pub attr_names: Vec<String>,
}

/// Two programs are equal when their specs are: everything else is derived from it.
impl PartialEq for Program {
    fn eq(&self, other: &Program) -> bool {
        self.spec == other.spec
    }
}

#[derive(Clone, Debug)]
pub struct EventType {
    pub spec: EventTypeSpec,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    pub wallet: usize,
    pub when: Option<Expr>,
    pub customer: Option<Expr>,
    pub multipliers: Vec<(f64, Option<Expr>)>,
    pub active_from: i64,
    pub active_until: i64,
}

/// Hundredths of a unit, rounded half away from zero: sums of amounts stay exact.
pub fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

impl Program {
    /// Parses and validates JSON text.
    pub fn from_json(text: &str) -> Result<Program, GamifyError> {
        let spec: ProgramSpec =
            serde_json::from_str(text).map_err(|e| GamifyError::Program(format!("JSON: {e}")))?;
        Program::new(spec)
    }

    /// The committed demo program.
    pub fn demo() -> Program {
        // The demo program is a committed file checked by a test; failing here is a bug.
        Program::from_json(DEMO_PROGRAM).expect("the demo program is valid")
    }

    /// The position of a derived attribute in [`Program::attr_names`].
    pub fn attr_index(&self, name: &str) -> Option<usize> {
        self.attr_names.iter().position(|n| n == name)
    }

    /// The tier index of a name.
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.spec.tiers.tiers.iter().position(|t| t.name == name)
    }

    pub fn wallet_index(&self, id: &str) -> Option<usize> {
        self.spec.wallets.iter().position(|w| w.id == id)
    }

    /// Checks one event's type and properties (not its times: those need the logged time).
    pub fn check_event(&self, e: &Event) -> Result<(), String> {
        if e.event_id.is_empty() || e.event_id.len() > MAX_ID_BYTES {
            return Err(format!("event_id must be 1 to {MAX_ID_BYTES} bytes, got {}", e.event_id.len()));
        }
        let Some(t) = self.event_types.get(&e.kind) else {
            let mut known: Vec<&str> = self.event_types.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "type '{}' is not an event type of the program ({})",
                e.kind,
                known.join(", ")
            ));
        };
        for (name, v) in &e.properties {
            let Some(p) = t.spec.properties.get(name) else {
                return Err(format!("property '{name}' is not declared for '{}'", e.kind));
            };
            let ok = match (p.ty, v) {
                (PropType::Number, PropValue::Int(_) | PropValue::Float(_)) => true,
                (PropType::Integer, PropValue::Int(_)) => true,
                (PropType::String, PropValue::Str(s)) => {
                    if s.len() > MAX_STRING_BYTES {
                        return Err(format!(
                            "property '{name}' is {} bytes, the limit is {MAX_STRING_BYTES}",
                            s.len()
                        ));
                    }
                    true
                }
                (PropType::Bool, PropValue::Bool(_)) => true,
                (PropType::Number | PropType::Integer | PropType::String | PropType::Bool, _) => false,
            };
            if !ok {
                return Err(format!("property '{name}' must be {:?}, got {v:?}", p.ty).to_lowercase());
            }
            if let Some(x) = v.as_f64() {
                if !x.is_finite() || x.abs() > MAX_NUMBER {
                    return Err(format!("property '{name}' must be a finite number of magnitude at most {MAX_NUMBER}, got {x}"));
                }
                if let Some(min) = p.min {
                    if x < min {
                        return Err(format!("property '{name}' must be at least {min}, got {x}"));
                    }
                }
            }
        }
        for (name, p) in &t.spec.properties {
            if p.required && !e.properties.contains_key(name) {
                return Err(format!("required property '{name}' of '{}' is missing", e.kind));
            }
        }
        Ok(())
    }

    /// The program's JSON text (what `GetProgram` returns and the log carries).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.spec).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_spec() -> ProgramSpec {
        serde_json::from_str(DEMO_PROGRAM).unwrap()
    }

    #[test]
    fn demo_is_valid_and_says_what_the_issue_asks() {
        let p = Program::demo();
        let names: Vec<&str> = p.spec.tiers.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["NONE", "BRONZE", "SILVER", "GOLD"]);
        assert_eq!(p.tier_mins, [0, 50_000, 75_000, 100_000]);
        assert_eq!(p.spec.measures[p.tier_measure].window_days, 365);
        assert_eq!(p.spec.wallets[0].expiry, ExpirySpec::EndOfMonth { months: 12 });
    }

    #[test]
    fn errors_name_the_rule_and_field() {
        let mut s = demo_spec();
        s.rules[0].multipliers.push(MultiplierSpec { factor: -1.0, customer: None });
        let id = s.rules[0].id.clone();
        let err = Program::new(s).unwrap_err().to_string();
        assert!(err.contains(&format!("rules[0] \"{id}\": multipliers[0].factor must be > 0")), "{err}");

        let mut s = demo_spec();
        s.rules[1].when = Some("colour = 'red'".into());
        s.rules[1].caps.per_day = Some(0);
        s.time_zone = "Mars/Olympus".into();
        let err = Program::new(s).unwrap_err().to_string();
        assert!(err.contains("time_zone: 'Mars/Olympus' is not an IANA time zone"), "{err}");
        assert!(err.contains("when: 'colour' is not a property of"), "{err}");
        assert!(err.contains("caps.per_day must be 1 to"), "{err}");

        let mut s = demo_spec();
        s.tiers.tiers[2].min = 400.0;
        let err = Program::new(s).unwrap_err().to_string();
        assert!(
            err.contains("tiers.tiers[2] \"SILVER\": min must be above the previous tier's (500), got 400"),
            "{err}"
        );

        let mut s = demo_spec();
        s.rules[0].when = Some("amount_eur >".into());
        assert!(Program::new(s).unwrap_err().to_string().contains("when: syntax error"));

        let err = Program::from_json("{\"time_zone\": \"UTC\", \"bogus\": 1}").unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn event_checks() {
        let p = Program::demo();
        let mut e = Event {
            event_id: "e1".into(),
            customer_id: 1,
            kind: "purchase".into(),
            occurred_at_ms: 0,
            properties: BTreeMap::from([("amount_eur".into(), PropValue::Float(10.0))]),
        };
        assert_eq!(p.check_event(&e), Ok(()));
        e.properties.insert("amount_eur".into(), PropValue::Float(f64::NAN));
        assert!(p.check_event(&e).unwrap_err().contains("finite number"));
        e.properties.insert("amount_eur".into(), PropValue::Float(-1.0));
        assert!(p.check_event(&e).unwrap_err().contains("at least 0"));
        e.properties.remove("amount_eur");
        assert!(p.check_event(&e).unwrap_err().contains("required property 'amount_eur'"));
        e.properties.insert("amount_eur".into(), PropValue::Str("x".into()));
        assert!(p.check_event(&e).unwrap_err().contains("must be number"));
        e.properties.insert("amount_eur".into(), PropValue::Int(3));
        e.properties.insert("category".into(), PropValue::Str("x".repeat(300)));
        assert!(p.check_event(&e).unwrap_err().contains("the limit is 256"));
        e.kind = "teleport".into();
        assert!(p.check_event(&e).unwrap_err().contains("'teleport' is not an event type"));
    }
}
