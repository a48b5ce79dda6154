//! The program: wallets, event types, measures, counters, earning rules, tiers and levels,
//! in the program's time zone. Its JSON form ([`ProgramSpec`]) is validated whole into a
//! [`Program`]; an error names the item and field (`rules[3] "double-gold":
//! multipliers[0].factor must be > 0, got -1`), so nothing of a bad program is applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::time::QualPeriod;
use super::{Event, GamifyError, PropValue, DAY_MS};
use crate::query::ast::{Expr, Limits};
use crate::query::sql;

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

struct Errs(Vec<String>);

impl Errs {
    fn at(&mut self, item: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{item}: {msg}"));
    }
}

fn check_name(errs: &mut Errs, item: &str, field: &str, name: &str) {
    if name.is_empty() || name.len() > 64 {
        errs.at(item, format!("{field} must be 1 to 64 bytes, got {} bytes", name.len()));
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        errs.at(item, format!("{field} '{name}' may hold only ASCII letters, digits, '_' and '-'"));
    }
}

fn parse_cond(errs: &mut Errs, item: &str, field: &str, text: &Option<String>) -> Option<Expr> {
    let text = text.as_ref()?;
    match sql::parse(text, &Limits { max_text: 4096, max_depth: 16, max_in_list: 1000 }) {
        Ok(e) => Some(e),
        Err(e) => {
            errs.at(item, format!("{field}: {e}"));
            None
        }
    }
}

fn parse_time(errs: &mut Errs, item: &str, field: &str, text: &Option<String>, default: i64) -> i64 {
    let Some(t) = text else { return default };
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) if (0..=super::time::MAX_MS).contains(&d.timestamp_millis()) => d.timestamp_millis(),
        Ok(_) => {
            errs.at(item, format!("{field} '{t}' is outside 1970..9999"));
            default
        }
        Err(e) => {
            errs.at(item, format!("{field} '{t}' is not an RFC 3339 time: {e}"));
            default
        }
    }
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

    /// Validates a program whole: every error, each naming its item and field.
    pub fn new(spec: ProgramSpec) -> Result<Program, GamifyError> {
        let mut errs = Errs(Vec::new());
        let tz: Tz = spec.time_zone.parse().unwrap_or_else(|_| {
            errs.at("time_zone", format!("'{}' is not an IANA time zone", spec.time_zone));
            Tz::UTC
        });
        if spec.wallets.is_empty() {
            errs.at("wallets", "at least one wallet is needed (the first is the primary one)");
        }
        let mut wallet_ids = BTreeSet::new();
        for (i, w) in spec.wallets.iter().enumerate() {
            let item = format!("wallets[{i}] \"{}\"", w.id);
            check_name(&mut errs, &item, "id", &w.id);
            if !wallet_ids.insert(w.id.as_str()) {
                errs.at(&item, "id is a duplicate");
            }
            match w.expiry {
                ExpirySpec::Never => {}
                ExpirySpec::AfterDays { days } if !(1..=36_500).contains(&days) => {
                    errs.at(&item, format!("expiry.days must be 1 to 36500, got {days}"))
                }
                ExpirySpec::EndOfMonth { months } if months > 1200 => {
                    errs.at(&item, format!("expiry.months must be at most 1200, got {months}"))
                }
                ExpirySpec::EndOfYear { years } if years > 100 => {
                    errs.at(&item, format!("expiry.years must be at most 100, got {years}"))
                }
                ExpirySpec::AfterDays { .. }
                | ExpirySpec::EndOfMonth { .. }
                | ExpirySpec::EndOfYear { .. } => {}
            }
        }
        let mut event_types = HashMap::new();
        for (i, t) in spec.event_types.iter().enumerate() {
            let item = format!("event_types[{i}] \"{}\"", t.name);
            check_name(&mut errs, &item, "name", &t.name);
            if spec.event_types[..i].iter().any(|o| o.name == t.name) {
                errs.at(&item, "name is a duplicate");
            }
            if t.properties.len() > MAX_PROPERTIES {
                errs.at(&item, format!("at most {MAX_PROPERTIES} properties, got {}", t.properties.len()));
            }
            for (name, p) in &t.properties {
                check_name(&mut errs, &item, "property name", name);
                if let Some(min) = p.min {
                    if !matches!(p.ty, PropType::Number | PropType::Integer) || !min.is_finite() {
                        errs.at(
                            &item,
                            format!("properties.{name}.min needs a finite number on a numeric property"),
                        );
                    }
                }
            }
            if let Some(r) = &t.refund_of {
                match t.properties.get(r) {
                    Some(PropSpec { ty: PropType::String, required: true, .. }) => {}
                    _ => errs.at(&item, format!("refund_of '{r}' must name a required string property")),
                }
            }
            if let Some(a) = &t.refund_amount {
                if t.refund_of.is_none() {
                    errs.at(&item, "refund_amount needs refund_of");
                }
                if !matches!(
                    t.properties.get(a),
                    Some(PropSpec { ty: PropType::Number | PropType::Integer, .. })
                ) {
                    errs.at(&item, format!("refund_amount '{a}' must name a numeric property"));
                }
            }
            event_types.insert(t.name.clone(), EventType { spec: t.clone() });
        }
        let numeric = |event: &str, prop: &str| {
            event_types.get(event).and_then(|t: &EventType| t.spec.properties.get(prop)).map(|p| p.ty)
        };
        let check_term = |errs: &mut Errs, item: &str, field: &str, event: &str, prop: &str| {
            if !event_types.contains_key(event) {
                errs.at(item, format!("{field}.event '{event}' is not an event type"));
            } else if !matches!(numeric(event, prop), Some(PropType::Number | PropType::Integer)) {
                errs.at(item, format!("{field}.property '{prop}' is not a numeric property of '{event}'"));
            }
        };
        for (i, m) in spec.measures.iter().enumerate() {
            let item = format!("measures[{i}] \"{}\"", m.id);
            check_name(&mut errs, &item, "id", &m.id);
            if spec.measures[..i].iter().any(|o| o.id == m.id) {
                errs.at(&item, "id is a duplicate");
            }
            if !(1..=3660).contains(&m.window_days) {
                errs.at(&item, format!("window_days must be 1 to 3660, got {}", m.window_days));
            }
            for (j, t) in m.add.iter().enumerate() {
                check_term(&mut errs, &item, &format!("add[{j}]"), &t.event, &t.property);
            }
            for (j, t) in m.subtract.iter().enumerate() {
                check_term(&mut errs, &item, &format!("subtract[{j}]"), &t.event, &t.property);
            }
        }
        for (i, c) in spec.counters.iter().enumerate() {
            let item = format!("counters[{i}] \"{}\"", c.name);
            check_name(&mut errs, &item, "name", &c.name);
            if BUILTIN_ATTRIBUTES.contains(&c.name.as_str())
                || spec.counters[..i].iter().any(|o| o.name == c.name)
            {
                errs.at(&item, "name is taken (a built-in attribute or another counter)");
            }
            match &c.sum {
                Some(p) => check_term(&mut errs, &item, "sum", &c.event, p),
                None if !event_types.contains_key(&c.event) => {
                    errs.at(&item, format!("event '{}' is not an event type", c.event))
                }
                None => {}
            }
        }
        let mut rules = Vec::new();
        let mut rules_by_event: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in spec.rules.iter().enumerate() {
            let item = format!("rules[{i}] \"{}\"", r.id);
            check_name(&mut errs, &item, "id", &r.id);
            if spec.rules[..i].iter().any(|o| o.id == r.id) {
                errs.at(&item, "id is a duplicate");
            }
            let etype = event_types.get(&r.event);
            if etype.is_none() {
                errs.at(&item, format!("event '{}' is not an event type", r.event));
            }
            let wallet = match &r.wallet {
                None => 0,
                Some(w) => spec.wallets.iter().position(|x| &x.id == w).unwrap_or_else(|| {
                    errs.at(&item, format!("wallet '{w}' is not a wallet"));
                    0
                }),
            };
            let when = parse_cond(&mut errs, &item, "when", &r.when);
            if let (Some(e), Some(t)) = (&when, etype) {
                for n in super::eval::names(e) {
                    if !t.spec.properties.contains_key(n) {
                        errs.at(&item, format!("when: '{n}' is not a property of '{}'", r.event));
                    }
                }
                if !e.segment_refs().is_empty() {
                    errs.at(&item, "when: in_segment() belongs in the customer condition");
                }
            }
            let customer = parse_cond(&mut errs, &item, "customer", &r.customer);
            match &r.points {
                PointsSpec::Fixed(p) if !(1..=MAX_POINTS).contains(p) => {
                    errs.at(&item, format!("points.fixed must be 1 to {MAX_POINTS}, got {p}"))
                }
                PointsSpec::Fixed(_) => {}
                PointsSpec::PerUnit { property, unit } => {
                    if !(unit.is_finite() && *unit > 0.0) {
                        errs.at(&item, format!("points.per_unit.unit must be > 0, got {unit}"));
                    }
                    if etype.is_some()
                        && !matches!(numeric(&r.event, property), Some(PropType::Number | PropType::Integer))
                    {
                        errs.at(
                            &item,
                            format!(
                                "points.per_unit.property '{property}' is not a numeric property of '{}'",
                                r.event
                            ),
                        );
                    }
                }
            }
            let mut multipliers = Vec::new();
            for (j, m) in r.multipliers.iter().enumerate() {
                if !(m.factor.is_finite() && m.factor > 0.0 && m.factor <= 1000.0) {
                    errs.at(
                        &item,
                        format!("multipliers[{j}].factor must be > 0 and at most 1000, got {}", m.factor),
                    );
                }
                let c = parse_cond(&mut errs, &item, &format!("multipliers[{j}].customer"), &m.customer);
                multipliers.push((m.factor, c));
            }
            for (field, cap) in
                [("per_day", r.caps.per_day), ("per_week", r.caps.per_week), ("per_month", r.caps.per_month)]
            {
                if let Some(c) = cap {
                    if !(1..=MAX_POINTS).contains(&c) {
                        errs.at(&item, format!("caps.{field} must be 1 to {MAX_POINTS}, got {c}"));
                    }
                }
            }
            let active_from = parse_time(&mut errs, &item, "active_from", &r.active_from, 0);
            let active_until = parse_time(&mut errs, &item, "active_until", &r.active_until, i64::MAX);
            if active_from >= active_until {
                errs.at(&item, "active_from must be before active_until");
            }
            if r.pending_days > 365 {
                errs.at(&item, format!("pending_days must be at most 365, got {}", r.pending_days));
            }
            if let Some(ExpirySpec::AfterDays { days }) = spec.wallets.get(wallet).map(|w| w.expiry) {
                if r.pending_days >= days {
                    errs.at(
                        &item,
                        format!(
                            "pending_days ({}) must be shorter than the wallet's expiry ({days} days)",
                            r.pending_days
                        ),
                    );
                }
            }
            rules_by_event.entry(r.event.clone()).or_default().push(i);
            rules.push(Rule {
                spec: r.clone(),
                wallet,
                when,
                customer,
                multipliers,
                active_from,
                active_until,
            });
        }
        let tier_measure =
            spec.measures.iter().position(|m| m.id == spec.tiers.measure).unwrap_or_else(|| {
                errs.at("tiers", format!("measure '{}' is not a measure", spec.tiers.measure));
                0
            });
        let ts = &spec.tiers.tiers;
        if ts.is_empty() || ts[0].min != 0.0 {
            errs.at("tiers", "the first tier must have min 0 (every customer holds at least it)");
        }
        for (i, t) in ts.iter().enumerate() {
            let item = format!("tiers.tiers[{i}] \"{}\"", t.name);
            check_name(&mut errs, &item, "name", &t.name);
            if ts[..i].iter().any(|o| o.name == t.name) {
                errs.at(&item, "name is a duplicate");
            }
            if !(t.min.is_finite() && (0.0..=MAX_NUMBER).contains(&t.min)) {
                errs.at(&item, format!("min must be 0 to {MAX_NUMBER}, got {}", t.min));
            } else if i > 0 && cents(t.min) <= cents(ts[i - 1].min) {
                errs.at(
                    &item,
                    format!("min must be above the previous tier's ({}), got {}", ts[i - 1].min, t.min),
                );
            }
        }
        if let DowngradeSpec::PeriodEnd { grace_days, .. } = spec.tiers.downgrade {
            if grace_days > 365 {
                errs.at("tiers.downgrade", format!("grace_days must be at most 365, got {grace_days}"));
            }
        }
        let lv = &spec.levels.thresholds;
        if lv.first() != Some(&0) {
            errs.at("levels", "thresholds must start at 0 (level 1)");
        }
        if lv.len() > 1000 {
            errs.at("levels", format!("at most 1000 levels, got {}", lv.len()));
        }
        for (i, w) in lv.windows(2).enumerate() {
            if w[1] <= w[0] {
                errs.at(
                    "levels",
                    format!("thresholds[{}] ({}) must be above thresholds[{i}] ({})", i + 1, w[1], w[0]),
                );
            }
        }
        if !errs.0.is_empty() {
            return Err(GamifyError::Program(errs.0.join("; ")));
        }
        let tier_mins = ts.iter().map(|t| cents(t.min)).collect();
        Ok(Program { tz, event_types, rules, rules_by_event, tier_measure, tier_mins, spec })
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
