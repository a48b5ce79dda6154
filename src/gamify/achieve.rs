//! The program's `badges`, `challenges` and `streaks` sections: their JSON form and their
//! validation into [`Achieve`] (the one field [`Program`] holds for them). Errors name the
//! item and field (`challenges[1] "spring": target must be at least 1, got 0`), and are
//! reported with the rest of the program's, so a bad program is refused whole.
//!
//! The pure arithmetic lives in [`crate::badge`], [`crate::challenge`] and
//! [`crate::streak`]; [`super::achieve_state`] applies it to a customer at each event.
//!
//! Each section derives indexed attributes (see [`Achieve::columns`]): `badges` (a list of
//! badge ids) and `badge_count`; `streak_<id>_current` and `streak_<id>_longest`;
//! `challenge_<id>_progress` (an int for a count goal, a float in the property's unit for a
//! sum) and `challenge_<id>_completed` (a bool).

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::program::{cents, EventType, ProgramSpec, PropType, BUILTIN_ATTRIBUTES, MAX_POINTS};
use super::AttrValue;
use crate::badge::{BadgeSpec, Repeat, MAX_BADGES};
use crate::challenge::{ChallengeSpec, Goal, WindowKind};
use crate::query::ast::{Expr, Limits, Literal};
use crate::query::sql;
use crate::streak::{StreakRule, StreakUnit};

/// The most challenges and streaks one program may define.
pub const MAX_CHALLENGES: usize = 64;
pub const MAX_STREAKS: usize = 16;
/// The longest badge, challenge or streak id, in bytes.
pub const MAX_ID_BYTES: usize = crate::badge::MAX_ID_BYTES;
/// The customer attribute a streak reads the customer's time zone from, by default.
pub const DEFAULT_ZONE_ATTRIBUTE: &str = "time_zone";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadgeDef {
    /// Lowercase letters, digits and `_`, starting with a letter.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Segment-language text over the customer's attributes and gamification values,
    /// evaluated after each of the customer's events. Absent: the badge is awarded only as
    /// a challenge's reward.
    #[serde(default)]
    pub criterion: Option<String>,
    #[serde(default)]
    pub repeat: RepeatDef,
    /// Points credited (to the primary wallet, available at once) with each award.
    #[serde(default)]
    pub reward_points: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum RepeatDef {
    #[default]
    Once,
    /// Awarded again each time the criterion turns true, up to `max` awards when given.
    Repeatable {
        #[serde(default)]
        max: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeDef {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The event type that counts.
    pub event: String,
    /// Segment-language text over the event's properties.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    pub goal: GoalDef,
    /// Events for a count; the property's unit (e.g. EUR) for a sum.
    pub target: f64,
    pub window: WindowDef,
    /// Only customers who joined (`JoinChallenge`) make progress.
    #[serde(default)]
    pub opt_in: bool,
    /// Segment-language text over the customer's attributes (`in_segment('vip')`, ...):
    /// only events of customers it holds for count.
    #[serde(default)]
    pub eligible: Option<String>,
    #[serde(default)]
    pub reward: RewardDef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum GoalDef {
    Count,
    Sum { property: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowDef {
    /// RFC 3339 instants, `[start, end)`.
    Fixed { start: String, end: String },
    /// ISO weeks from Monday 00:00 in the program's time zone.
    Weekly,
    /// From the 1st 00:00 in the program's time zone.
    Monthly,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardDef {
    #[serde(default)]
    pub points: Option<i64>,
    /// A badge of the program, awarded on completion (within its once / repeat bound).
    #[serde(default)]
    pub badge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreakDef {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Event types that qualify.
    pub events: Vec<String>,
    /// Segment-language text over the event's properties (each name a property of every
    /// listed type).
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    pub unit: UnitDef,
    /// One missed unit forgiven per this many units.
    #[serde(default)]
    pub freeze_every: Option<u32>,
    /// Streak lengths reported as achievements, ascending.
    #[serde(default)]
    pub milestones: Vec<u32>,
    /// The customer attribute holding their IANA zone; a customer without a valid one is
    /// counted in the program's zone. Default `time_zone`.
    #[serde(default)]
    pub zone_attribute: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitDef {
    Day,
    Week,
}

/// A validated badge.
#[derive(Clone, Debug)]
pub struct Badge {
    pub def: BadgeDef,
    /// The criterion `FALSE` when the badge is a challenge reward only.
    pub spec: BadgeSpec,
}

/// A validated challenge.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub def: ChallengeDef,
    /// Target and amounts in hundredths for a sum.
    pub spec: ChallengeSpec,
    pub filter: Option<Expr>,
    pub eligible: Option<Expr>,
    /// Index into [`Achieve::badges`].
    pub reward_badge: Option<usize>,
    pub col_progress: String,
    pub col_completed: String,
}

/// A validated streak.
#[derive(Clone, Debug)]
pub struct Streak {
    pub def: StreakDef,
    pub rule: StreakRule,
    pub filter: Option<Expr>,
    pub zone_attribute: String,
    pub col_current: String,
    pub col_longest: String,
}

/// The program's badges, challenges and streaks, validated.
#[derive(Clone, Debug, Default)]
pub struct Achieve {
    pub badges: Vec<Badge>,
    pub challenges: Vec<Challenge>,
    pub streaks: Vec<Streak>,
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn parse(errs: &mut Vec<String>, item: &str, field: &str, text: &Option<String>) -> Option<Expr> {
    let text = text.as_ref()?;
    match sql::parse(text, &Limits { max_text: 4096, max_depth: 16, max_in_list: 1000 }) {
        Ok(e) => Some(e),
        Err(e) => {
            errs.push(format!("{item}: {field}: {e}"));
            None
        }
    }
}

/// An event filter's names must be properties of each of `types`, with no in_segment().
fn check_event_filter(errs: &mut Vec<String>, item: &str, e: &Expr, types: &[Option<&EventType>]) {
    for n in super::eval::names(e) {
        for t in types.iter().flatten() {
            if !t.spec.properties.contains_key(n) {
                errs.push(format!("{item}: where: '{n}' is not a property of '{}'", t.spec.name));
            }
        }
    }
    if !e.segment_refs().is_empty() {
        errs.push(format!("{item}: where: in_segment() belongs in the eligible condition"));
    }
}

fn check_points(errs: &mut Vec<String>, item: &str, field: &str, p: Option<i64>) {
    if let Some(p) = p {
        if !(1..=MAX_POINTS).contains(&p) {
            errs.push(format!("{item}: {field} must be 1 to {MAX_POINTS}, got {p}"));
        }
    }
}

fn rfc3339(errs: &mut Vec<String>, item: &str, field: &str, t: &str) -> i64 {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) if (0..=super::time::MAX_MS).contains(&d.timestamp_millis()) => d.timestamp_millis(),
        Ok(_) => {
            errs.push(format!("{item}: {field} '{t}' is outside 1970..9999"));
            0
        }
        Err(e) => {
            errs.push(format!("{item}: {field} '{t}' is not an RFC 3339 time: {e}"));
            0
        }
    }
}

impl Achieve {
    /// Validates the three sections of `spec` (every error pushed to `errs`).
    pub fn new(
        spec: &ProgramSpec,
        event_types: &std::collections::HashMap<String, EventType>,
        errs: &mut Vec<String>,
    ) -> Achieve {
        let mut out = Achieve::default();
        if spec.badges.len() > MAX_BADGES {
            errs.push(format!("badges: at most {MAX_BADGES}, got {}", spec.badges.len()));
        }
        if spec.challenges.len() > MAX_CHALLENGES {
            errs.push(format!("challenges: at most {MAX_CHALLENGES}, got {}", spec.challenges.len()));
        }
        if spec.streaks.len() > MAX_STREAKS {
            errs.push(format!("streaks: at most {MAX_STREAKS}, got {}", spec.streaks.len()));
        }
        let bad_id = |kind: &str, i: usize, id: &str| {
            format!(
                "{kind}[{i}] \"{id}\": id must be 1 to {MAX_ID_BYTES} lowercase letters, digits or '_', starting with a letter"
            )
        };
        for (i, b) in spec.badges.iter().enumerate() {
            let item = format!("badges[{i}] \"{}\"", b.id);
            if !id_ok(&b.id) {
                errs.push(bad_id("badges", i, &b.id));
            }
            if spec.badges[..i].iter().any(|o| o.id == b.id) {
                errs.push(format!("{item}: id is a duplicate"));
            }
            let criterion = match &b.criterion {
                None => Some(Expr::Const(Literal::Bool(false))),
                Some(_) => parse(errs, &item, "criterion", &b.criterion),
            };
            let repeat = match b.repeat {
                RepeatDef::Once => Repeat::Once,
                RepeatDef::Repeatable { max: Some(0) } => {
                    errs.push(format!("{item}: repeat.max must be at least 1, got 0"));
                    Repeat::Repeatable { max: None }
                }
                RepeatDef::Repeatable { max } => Repeat::Repeatable { max },
            };
            check_points(errs, &item, "reward_points", b.reward_points);
            if let Some(criterion) = criterion {
                out.badges
                    .push(Badge { def: b.clone(), spec: BadgeSpec { id: b.id.clone(), criterion, repeat } });
            }
        }
        for (i, c) in spec.challenges.iter().enumerate() {
            let item = format!("challenges[{i}] \"{}\"", c.id);
            if !id_ok(&c.id) {
                errs.push(bad_id("challenges", i, &c.id));
            }
            if spec.challenges[..i].iter().any(|o| o.id == c.id) {
                errs.push(format!("{item}: id is a duplicate"));
            }
            let etype = event_types.get(&c.event);
            if etype.is_none() {
                errs.push(format!("{item}: event '{}' is not an event type", c.event));
            }
            let filter = parse(errs, &item, "where", &c.filter);
            if let Some(f) = &filter {
                check_event_filter(errs, &item, f, &[etype]);
            }
            let eligible = parse(errs, &item, "eligible", &c.eligible);
            let goal = match &c.goal {
                GoalDef::Count => Goal::Count,
                GoalDef::Sum { property } => {
                    let ty = etype.and_then(|t| t.spec.properties.get(property)).map(|p| p.ty);
                    if etype.is_some() && !matches!(ty, Some(PropType::Number | PropType::Integer)) {
                        errs.push(format!(
                            "{item}: goal.property '{property}' is not a numeric property of '{}'",
                            c.event
                        ));
                    }
                    Goal::Sum
                }
            };
            let target = match goal {
                Goal::Count if c.target.fract() != 0.0 => {
                    errs.push(format!("{item}: target of a count must be a whole number, got {}", c.target));
                    1
                }
                Goal::Count => c.target as i64,
                Goal::Sum => cents(c.target),
            };
            if !(c.target.is_finite() && c.target > 0.0 && c.target <= super::program::MAX_NUMBER)
                || target < 1
            {
                errs.push(format!(
                    "{item}: target must be positive and at most {}, got {}",
                    super::program::MAX_NUMBER,
                    c.target
                ));
            }
            let window = match &c.window {
                WindowDef::Weekly => WindowKind::Weekly,
                WindowDef::Monthly => WindowKind::Monthly,
                WindowDef::Fixed { start, end } => {
                    let start_ms = rfc3339(errs, &item, "window.start", start);
                    let end_ms = rfc3339(errs, &item, "window.end", end);
                    if start_ms >= end_ms {
                        errs.push(format!("{item}: window.start must be before window.end"));
                    }
                    WindowKind::Fixed { start_ms, end_ms }
                }
            };
            check_points(errs, &item, "reward.points", c.reward.points);
            let reward_badge = c.reward.badge.as_ref().and_then(|b| {
                let found = spec.badges.iter().position(|x| &x.id == b);
                if found.is_none() {
                    errs.push(format!("{item}: reward.badge '{b}' is not a badge of the program"));
                }
                found
            });
            out.challenges.push(Challenge {
                def: c.clone(),
                spec: ChallengeSpec { window, goal, target: target.max(1) },
                filter,
                eligible,
                reward_badge,
                col_progress: format!("challenge_{}_progress", c.id),
                col_completed: format!("challenge_{}_completed", c.id),
            });
        }
        for (i, s) in spec.streaks.iter().enumerate() {
            let item = format!("streaks[{i}] \"{}\"", s.id);
            if !id_ok(&s.id) {
                errs.push(bad_id("streaks", i, &s.id));
            }
            if spec.streaks[..i].iter().any(|o| o.id == s.id) {
                errs.push(format!("{item}: id is a duplicate"));
            }
            if s.events.is_empty() {
                errs.push(format!("{item}: events must name at least one event type"));
            }
            let types: Vec<Option<&EventType>> = s.events.iter().map(|e| event_types.get(e)).collect();
            for (j, e) in s.events.iter().enumerate() {
                if types[j].is_none() {
                    errs.push(format!("{item}: events[{j}] '{e}' is not an event type"));
                }
            }
            let filter = parse(errs, &item, "where", &s.filter);
            if let Some(f) = &filter {
                check_event_filter(errs, &item, f, &types);
            }
            let rule = StreakRule {
                unit: match s.unit {
                    UnitDef::Day => StreakUnit::Day,
                    UnitDef::Week => StreakUnit::Week,
                },
                freeze_every: s.freeze_every,
                milestones: s.milestones.clone(),
            };
            if let Err(e) = rule.validate() {
                errs.push(format!("{item}: {e}"));
            }
            let zone_attribute =
                s.zone_attribute.clone().unwrap_or_else(|| DEFAULT_ZONE_ATTRIBUTE.to_string());
            out.streaks.push(Streak {
                def: s.clone(),
                rule,
                filter,
                zone_attribute,
                col_current: format!("streak_{}_current", s.id),
                col_longest: format!("streak_{}_longest", s.id),
            });
        }
        // Derived names must not shadow one another or a counter / built-in attribute.
        let mut taken: Vec<&str> = BUILTIN_ATTRIBUTES.to_vec();
        taken.extend(spec.counters.iter().map(|c| c.name.as_str()));
        for (name, _) in out.columns_iter() {
            if taken.contains(&name) {
                errs.push(format!(
                    "attribute '{name}' is derived twice (a counter, a built-in or another section)"
                ));
            }
            taken.push(name);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.badges.is_empty() && self.challenges.is_empty() && self.streaks.is_empty()
    }

    fn columns_iter(&self) -> impl Iterator<Item = (&str, AttrValue)> + '_ {
        let badge_cols = (!self.badges.is_empty()).then(|| {
            let longest =
                self.badges.iter().map(|b| b.def.id.clone()).max_by_key(|s| s.len()).unwrap_or_default();
            [("badges", AttrValue::List(vec![longest])), ("badge_count", AttrValue::Int(MAX_BADGES as i64))]
        });
        let streaks = self.streaks.iter().flat_map(|s| {
            [
                (s.col_current.as_str(), AttrValue::Int(u32::MAX as i64)),
                (s.col_longest.as_str(), AttrValue::Int(u32::MAX as i64)),
            ]
        });
        let challenges = self.challenges.iter().flat_map(|c| {
            let progress = match c.spec.goal {
                Goal::Count => AttrValue::Int(i64::MAX),
                // Sums are hundredths shown as a float, like counters' sums.
                Goal::Sum => AttrValue::Float(1e12 + 0.25),
            };
            [(c.col_progress.as_str(), progress), (c.col_completed.as_str(), AttrValue::Bool(true))]
        });
        badge_cols.into_iter().flatten().chain(streaks).chain(challenges)
    }

    /// The attributes these sections derive: (name, a value as large as any they hold;
    /// its kind is the column's).
    pub fn columns(&self) -> Vec<(String, AttrValue)> {
        self.columns_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }

    /// Whether `name` is an attribute these sections derive.
    pub fn derives(&self, name: &str) -> bool {
        self.columns_iter().any(|(n, _)| n == name)
    }

    /// Checks that every name a badge criterion or a challenge's eligibility reads is an
    /// attribute: one the program derives or one `known` (the table) has. A typo would
    /// otherwise be a badge nobody can earn.
    pub fn check_names(&self, spec: &ProgramSpec, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
        let derived = |n: &str| {
            BUILTIN_ATTRIBUTES.contains(&n) || spec.counters.iter().any(|c| c.name == n) || self.derives(n)
        };
        let exprs = self
            .badges
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("badges[{i}] \"{}\": criterion", b.def.id), Some(&b.spec.criterion)));
        let exprs = exprs.chain(
            self.challenges
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("challenges[{i}] \"{}\": eligible", c.def.id), c.eligible.as_ref())),
        );
        for (item, e) in exprs {
            let Some(e) = e else { continue };
            if let Some(n) = super::eval::names(e).into_iter().find(|n| !derived(n) && !known(n)) {
                return Err(format!("{item}: '{n}' is no customer attribute or gamification value"));
            }
        }
        Ok(())
    }
}

/// A customer's zone from an attribute's text, if it names one.
pub fn parse_zone(text: &str) -> Option<Tz> {
    text.parse().ok()
}

#[cfg(test)]
#[path = "achieve_tests.rs"]
mod tests;
