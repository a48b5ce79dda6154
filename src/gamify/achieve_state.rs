//! A customer's badges, challenge progress and streaks ([`CustomerAchieve`], held in
//! [`Customer::achieve`] so versions share it like the rest of the customer), applied at
//! each event of the customer inside the event's apply, at the event's `occurred_at_ms`.
//!
//! # Order within one event
//! After the event's points, measures, counters, tier and level: (1) streaks whose event
//! types and filter it matches, in the customer's zone (the streak's zone attribute, else
//! the program's); (2) challenges whose event type and filter it matches and whose opt-in
//! and eligibility hold (eligibility sees the customer after the event's points), with
//! their rewards on completion (points, then the reward badge); (3) every badge's
//! criterion over the customer as it stands then (see [`crate::badge`]: awarded on the
//! criterion's rising edge); (4) the level again, when a reward credited points.
//! Achievements are reported in that order. Rewards credit the primary wallet, available
//! at once, with the badge's or challenge's interned id as the ledger rule.
//!
//! # Time
//! Streak days and challenge windows are those of the event's `occurred_at_ms`; what the
//! derived attributes show moves with the clock (a streak not extended by the end of the
//! next unit reads 0, a weekly challenge's progress reads 0 in a new week), so each entry
//! keeps the instant its attribute next changes by itself, and the customer's agenda
//! entry includes it: the logged tick at that instant rewrites the column.
//!
//! # Memory
//! A customer with none of these costs nothing beyond [`Customer::achieve`]'s pointer;
//! one with any: 72 bytes (the box) + 24 per badge held or tracked + 56 per streak + 72 per
//! challenge touched (sizes pinned by a test). At the 20 badges, 5 challenges and
//! 3 streaks, a fully engaged customer holds at most ~1.1 KiB; the generator's customers
//! hold a few entries.

use chrono_tz::Tz;

use super::achieve::GoalDef;
use super::eval::{eval, Lookup};
use super::ledger::{NewCredit, GRANT_RULE};
use super::program::{cents, Program};
use super::rules::EventProps;
use super::state::{attrs_at, expires_at, relevel, Customer, GamifyState, Keys};
use super::{
    Achievement, Applied, AttrValue, ChallengeStep, CustomerFacts, Event, GamifyError, PropValue, Value,
};
use crate::badge::{BadgeSpec, CustomerBadges};
use crate::challenge::{self, Goal, Progress};
use crate::query::ast::Expr;
use crate::streak::{self, StreakState, StreakUnit};

/// A customer's badges, challenges and streaks; entries ordered by interned key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomerAchieve {
    pub badges: CustomerBadges,
    pub streaks: Vec<StreakEntry>,
    pub challenges: Vec<ChallengeEntry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreakEntry {
    pub key: u16,
    /// The unit the state counts (a program that changes it restarts the streak).
    pub unit: StreakUnit,
    /// The zone of the last counted unit.
    pub tz: Tz,
    pub state: StreakState,
    /// When the streak reads 0 unless extended (`i64::MAX`: never).
    pub due_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChallengeEntry {
    pub key: u16,
    pub progress: Progress,
    /// When the customer joined (opt-in challenges).
    pub joined_ms: Option<i64>,
    /// Windows completed, ever.
    pub completions: u32,
    pub last_completed_ms: i64,
    /// When the progress reads 0 (a recurring window's end; `i64::MAX`: never).
    pub due_ms: i64,
}

impl CustomerAchieve {
    pub fn streak(&self, key: u16) -> Option<&StreakEntry> {
        self.streaks.binary_search_by_key(&key, |e| e.key).ok().map(|i| &self.streaks[i])
    }

    pub fn challenge(&self, key: u16) -> Option<&ChallengeEntry> {
        self.challenges.binary_search_by_key(&key, |e| e.key).ok().map(|i| &self.challenges[i])
    }

    fn streak_mut(&mut self, key: u16, unit: StreakUnit, tz: Tz) -> &mut StreakEntry {
        let fresh = StreakEntry { key, unit, tz, state: StreakState::default(), due_ms: i64::MAX };
        let i = match self.streaks.binary_search_by_key(&key, |e| e.key) {
            Ok(i) => {
                if self.streaks[i].unit != unit {
                    self.streaks[i] = fresh;
                }
                i
            }
            Err(i) => {
                self.streaks.insert(i, fresh);
                i
            }
        };
        &mut self.streaks[i]
    }

    pub(super) fn challenge_mut(&mut self, key: u16) -> &mut ChallengeEntry {
        let i = match self.challenges.binary_search_by_key(&key, |e| e.key) {
            Ok(i) => i,
            Err(i) => {
                let fresh = ChallengeEntry {
                    key,
                    progress: Progress::default(),
                    joined_ms: None,
                    completions: 0,
                    last_completed_ms: 0,
                    due_ms: i64::MAX,
                };
                self.challenges.insert(i, fresh);
                i
            }
        };
        &mut self.challenges[i]
    }

    /// The next instant after `clock_ms` at which an attribute changes by itself.
    pub fn next_due(&self, clock_ms: i64) -> i64 {
        let s = self.streaks.iter().map(|e| e.due_ms);
        s.chain(self.challenges.iter().map(|e| e.due_ms)).filter(|&d| d > clock_ms).min().unwrap_or(i64::MAX)
    }
}

/// The interned keys of a program's badges, challenges and streaks (names prefixed by
/// their kind, so the ledger shows `badge:first_purchase` as a reward's rule).
#[derive(Clone, Debug, Default)]
pub struct AchieveKeys {
    pub badges: Vec<u16>,
    pub challenges: Vec<u16>,
    pub streaks: Vec<u16>,
}

/// The names [`AchieveKeys`] interns.
pub(super) fn names(program: &Program) -> impl Iterator<Item = String> + '_ {
    let a = &program.achieve;
    let b = a.badges.iter().map(|b| format!("badge:{}", b.def.id));
    let c = a.challenges.iter().map(|c| format!("challenge:{}", c.def.id));
    b.chain(c).chain(a.streaks.iter().map(|s| format!("streak:{}", s.def.id)))
}

impl AchieveKeys {
    pub(super) fn intern(state: &mut GamifyState, program: &Program) -> Result<AchieveKeys, GamifyError> {
        let a = &program.achieve;
        let mut k = |kind: &str, id: &str| state.intern(&format!("{kind}:{id}"));
        Ok(AchieveKeys {
            badges: a.badges.iter().map(|b| k("badge", &b.def.id)).collect::<Result<_, _>>()?,
            challenges: a.challenges.iter().map(|c| k("challenge", &c.def.id)).collect::<Result<_, _>>()?,
            streaks: a.streaks.iter().map(|s| k("streak", &s.def.id)).collect::<Result<_, _>>()?,
        })
    }

    /// Without interning: an id never interned gets a key no customer holds.
    pub(super) fn lookup(state: &GamifyState, program: &Program) -> AchieveKeys {
        let a = &program.achieve;
        let k = |kind: &str, id: &str| state.key_of(&format!("{kind}:{id}")).unwrap_or(GRANT_RULE);
        AchieveKeys {
            badges: a.badges.iter().map(|b| k("badge", &b.def.id)).collect(),
            challenges: a.challenges.iter().map(|c| k("challenge", &c.def.id)).collect(),
            streaks: a.streaks.iter().map(|s| k("streak", &s.def.id)).collect(),
        }
    }
}

pub(super) fn value_of(v: &AttrValue) -> Value {
    match v {
        AttrValue::Int(i) => Value::Int(*i),
        AttrValue::Float(x) => Value::Float(*x),
        AttrValue::Str(s) => Value::Str(s.clone()),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::List(l) => Value::List(l.clone()),
    }
}

/// A customer as criteria see it: derived values from the state, the rest from the table.
struct Attrs<'a> {
    /// In the order of [`Program::attr_names`].
    attrs: &'a [AttrValue],
    program: &'a Program,
    facts: &'a dyn CustomerFacts,
    id: u64,
}

impl Lookup for Attrs<'_> {
    fn value(&self, name: &str) -> Value {
        match self.program.attr_index(name).and_then(|k| self.attrs.get(k)) {
            Some(v) => value_of(v),
            None => self.facts.attribute(self.id, name),
        }
    }
    fn in_segment(&self, segment_id: &str) -> bool {
        self.facts.in_segment(self.id, segment_id)
    }
}

fn passes(filter: &Option<Expr>, e: &Event) -> bool {
    filter.as_ref().is_none_or(|f| eval(f, &EventProps(e)).is_true())
}

/// The customer's zone from the attribute, when it holds an IANA name.
fn zone_of(facts: &dyn CustomerFacts, id: u64, attribute: &str) -> Option<Tz> {
    match facts.attribute(id, attribute) {
        Value::Str(s) => super::achieve::parse_zone(&s),
        _ => None,
    }
}

/// Credits a reward to the primary wallet, available at once.
fn reward(program: &Program, keys: &Keys, c: &mut Customer, rule: u16, source: String, points: i64, at: i64) {
    c.wallet_mut(keys.wallets[0]).credit(NewCredit {
        rule,
        source: source.into(),
        amount: points,
        basis: 0,
        created_ms: at,
        available_ms: at,
        expires_ms: expires_at(program, 0, at),
    });
}

/// A badge award's achievement and reward points (answers whether points were credited).
#[allow(clippy::too_many_arguments)]
fn awarded(
    program: &Program,
    keys: &Keys,
    id: u64,
    c: &mut Customer,
    bi: usize,
    count: u32,
    at: i64,
    out: &mut Applied,
) -> bool {
    let b = &program.achieve.badges[bi];
    out.achievements.push(Achievement::BadgeAwarded {
        customer_id: id,
        badge: b.def.id.clone(),
        count,
        at_ms: at,
    });
    match b.def.reward_points {
        Some(p) => {
            reward(program, keys, c, keys.achieve.badges[bi], format!("badge:{}#{count}", b.def.id), p, at);
            true
        }
        None => false,
    }
}

/// Applies event `e` of customer `id` to their badges, challenges and streaks (see the
/// module doc for the order). `clock_ms` is the state's clock (the batch's logged time).
/// Answers the challenge progress the event made, for challenge-progress leaderboards:
/// they rank what this function counts, so they never judge a match themselves.
#[allow(clippy::too_many_arguments)]
pub(super) fn on_event(
    program: &Program,
    keys: &Keys,
    facts: &dyn CustomerFacts,
    id: u64,
    c: &mut Customer,
    e: &Event,
    clock_ms: i64,
    out: &mut Applied,
) -> Vec<ChallengeStep> {
    let ach = &program.achieve;
    let mut steps = Vec::new();
    if ach.is_empty() {
        return steps;
    }
    let t = e.occurred_at_ms;
    let mut credited = false;
    for (si, s) in ach.streaks.iter().enumerate() {
        if !s.def.events.contains(&e.kind) || !passes(&s.filter, e) {
            continue;
        }
        let tz = zone_of(facts, id, &s.zone_attribute).unwrap_or(program.tz);
        let entry = c.achieve.get_or_insert_with(Default::default).streak_mut(
            keys.achieve.streaks[si],
            s.rule.unit,
            tz,
        );
        let step = streak::apply(&s.rule, &entry.state, t, tz);
        if step.state != entry.state {
            entry.state = step.state;
            entry.tz = tz;
            entry.due_ms = streak::breaks_at(&s.rule, &entry.state, tz).unwrap_or(i64::MAX);
        }
        if let Some(m) = step.milestone {
            out.achievements.push(Achievement::StreakMilestone {
                customer_id: id,
                streak: s.def.id.clone(),
                milestone: m,
                at_ms: t,
            });
        }
    }
    let matching: Vec<usize> = (0..ach.challenges.len())
        .filter(|&ci| ach.challenges[ci].def.event == e.kind && passes(&ach.challenges[ci].filter, e))
        .collect();
    if !matching.is_empty() {
        let attrs = attrs_at(program, keys, c, clock_ms);
        let view = Attrs { attrs: &attrs, program, facts, id };
        let joined = |ci: usize| {
            c.achieve
                .as_ref()
                .and_then(|a| a.challenge(keys.achieve.challenges[ci]))
                .is_some_and(|x| x.joined_ms.is_some())
        };
        let counting: Vec<usize> = matching
            .into_iter()
            .filter(|&ci| {
                let ch = &ach.challenges[ci];
                (!ch.def.opt_in || joined(ci))
                    && ch.eligible.as_ref().is_none_or(|x| eval(x, &view).is_true())
            })
            .collect();
        for ci in counting {
            let ch = &ach.challenges[ci];
            let key = keys.achieve.challenges[ci];
            let amount = match &ch.def.goal {
                GoalDef::Count => 1,
                GoalDef::Sum { property } => {
                    e.properties.get(property).and_then(PropValue::as_f64).map_or(0, cents)
                }
            };
            let entry = c.achieve.get_or_insert_with(Default::default).challenge_mut(key);
            // An overflowing sum (beyond any real target) leaves the progress as it was.
            let Ok(step) = challenge::record(&ch.spec, &entry.progress, t, amount, program.tz) else {
                continue;
            };
            if step.effect == challenge::Effect::Counted {
                // `amount` is what `record` added (1 for a count goal, which ignores it).
                steps.push(ChallengeStep { challenge: ci as u16, amount });
            }
            entry.progress = step.progress;
            let bounds =
                step.progress.window.and_then(|w| challenge::window_bounds(ch.spec.window, program.tz, w));
            entry.due_ms = match ch.spec.window {
                challenge::WindowKind::Fixed { .. } => i64::MAX,
                challenge::WindowKind::Weekly | challenge::WindowKind::Monthly => {
                    bounds.map_or(i64::MAX, |b| b.1)
                }
            };
            if !step.completed_now {
                continue;
            }
            entry.completions = entry.completions.saturating_add(1);
            entry.last_completed_ms = t;
            let window_start_ms = bounds.map_or(t, |b| b.0);
            out.achievements.push(Achievement::ChallengeCompleted {
                customer_id: id,
                challenge: ch.def.id.clone(),
                window_start_ms,
                at_ms: t,
            });
            if let Some(p) = ch.def.reward.points {
                let source = format!("challenge:{}@{window_start_ms}", ch.def.id);
                reward(program, keys, c, key, source, p, t);
                credited = true;
            }
            if let Some(bi) = ch.reward_badge {
                let (bkey, repeat) = (keys.achieve.badges[bi], ach.badges[bi].spec.repeat);
                let award = c.achieve.get_or_insert_with(Default::default).badges.award(bkey, repeat, t);
                if let Some(a) = award {
                    credited |= awarded(program, keys, id, c, bi, a.count, t, out);
                }
            }
        }
    }
    if !ach.badges.is_empty() {
        let attrs = attrs_at(program, keys, c, clock_ms);
        let view = Attrs { attrs: &attrs, program, facts, id };
        let specs: Vec<(u16, &BadgeSpec)> =
            ach.badges.iter().zip(&keys.achieve.badges).map(|(b, &k)| (k, &b.spec)).collect();
        let mut badges = c.achieve.as_mut().map(|a| std::mem::take(&mut a.badges)).unwrap_or_default();
        let awards = badges.evaluate(&specs, &view, t);
        if c.achieve.is_some() || !badges.entries().is_empty() {
            c.achieve.get_or_insert_with(Default::default).badges = badges;
        }
        for a in awards {
            if let Some(bi) = keys.achieve.badges.iter().position(|&k| k == a.key) {
                credited |= awarded(program, keys, id, c, bi, a.count, t, out);
            }
        }
    }
    if credited {
        relevel(program, keys, id, c, t, out);
    }
    steps
}

/// Appends the derived attributes of [`super::achieve::Achieve::columns`] as of `clock_ms`.
pub(super) fn attrs(program: &Program, keys: &Keys, c: &Customer, clock_ms: i64, v: &mut Vec<AttrValue>) {
    let ach = &program.achieve;
    let a = c.achieve.as_deref();
    if !ach.badges.is_empty() {
        let held: Vec<String> = ach
            .badges
            .iter()
            .zip(&keys.achieve.badges)
            .filter(|(_, k)| a.and_then(|a| a.badges.get(**k)).is_some_and(|h| h.count > 0))
            .map(|(b, _)| b.def.id.clone())
            .collect();
        let n = held.len() as i64;
        v.push(AttrValue::List(held));
        v.push(AttrValue::Int(n));
    }
    for (s, &k) in ach.streaks.iter().zip(&keys.achieve.streaks) {
        let e = a.and_then(|a| a.streak(k)).filter(|e| e.unit == s.rule.unit);
        let (current, longest) =
            e.map_or((0, 0), |e| (streak::current_at(&s.rule, &e.state, clock_ms, e.tz), e.state.longest));
        v.push(AttrValue::Int(current as i64));
        v.push(AttrValue::Int(longest as i64));
    }
    for (ch, &k) in ach.challenges.iter().zip(&keys.achieve.challenges) {
        let p = a.and_then(|a| a.challenge(k)).map_or_else(Progress::default, |e| {
            challenge::progress_at(&ch.spec, &e.progress, clock_ms, program.tz)
        });
        v.push(match ch.spec.goal {
            Goal::Count => AttrValue::Int(p.value),
            Goal::Sum => AttrValue::Float(p.value as f64 / 100.0),
        });
        v.push(AttrValue::Bool(p.completed));
    }
}

/// A held badge, for `GetGamificationState`.
#[derive(Clone, Debug, PartialEq)]
pub struct BadgeView {
    pub id: String,
    pub name: String,
    pub count: u32,
    pub first_awarded_ms: i64,
    pub last_awarded_ms: i64,
}

/// A challenge as it stands now.
#[derive(Clone, Debug, PartialEq)]
pub struct ChallengeView {
    pub id: String,
    pub name: String,
    /// In events for a count, in the property's unit for a sum.
    pub progress: f64,
    pub target: f64,
    pub completed: bool,
    /// The window holding now (a fixed window's own, before and after it too).
    pub window: Option<(i64, i64)>,
    pub opt_in: bool,
    pub joined: bool,
    pub completions: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreakView {
    pub id: String,
    pub name: String,
    /// `day` or `week`.
    pub unit: &'static str,
    pub current: u32,
    pub longest: u32,
}

/// The badges, challenges and streaks part of a customer's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AchieveView {
    pub badges: Vec<BadgeView>,
    pub challenges: Vec<ChallengeView>,
    pub streaks: Vec<StreakView>,
}

impl GamifyState {
    /// A customer's badges (held ones), challenges and streaks as of `now_ms`; `None`
    /// customer: one with no state yet.
    pub fn achieve_view(&self, program: &Program, customer_id: Option<u64>, now_ms: i64) -> AchieveView {
        let keys = AchieveKeys::lookup(self, program);
        let a = customer_id.and_then(|id| self.customer(id)).and_then(|c| c.achieve.as_deref());
        let ach = &program.achieve;
        let badges = ach
            .badges
            .iter()
            .zip(&keys.badges)
            .filter_map(|(b, &k)| {
                let h = a?.badges.get(k).filter(|h| h.count > 0)?;
                Some(BadgeView {
                    id: b.def.id.clone(),
                    name: b.def.name.clone(),
                    count: h.count,
                    first_awarded_ms: h.first_at_ms,
                    last_awarded_ms: h.last_at_ms,
                })
            })
            .collect();
        let challenges = ach
            .challenges
            .iter()
            .zip(&keys.challenges)
            .map(|(ch, &k)| {
                let e = a.and_then(|a| a.challenge(k));
                let p = e.map_or_else(Progress::default, |e| {
                    challenge::progress_at(&ch.spec, &e.progress, now_ms, program.tz)
                });
                let window = match ch.spec.window {
                    challenge::WindowKind::Fixed { start_ms, end_ms } => Some((start_ms, end_ms)),
                    kind => challenge::window_at(kind, program.tz, now_ms).map(|w| (w.start_ms, w.end_ms)),
                };
                let unit = |x: i64| match ch.spec.goal {
                    Goal::Count => x as f64,
                    Goal::Sum => x as f64 / 100.0,
                };
                ChallengeView {
                    id: ch.def.id.clone(),
                    name: ch.def.name.clone(),
                    progress: unit(p.value),
                    target: unit(ch.spec.target),
                    completed: p.completed,
                    window,
                    opt_in: ch.def.opt_in,
                    joined: e.is_some_and(|e| e.joined_ms.is_some()),
                    completions: e.map_or(0, |e| e.completions),
                }
            })
            .collect();
        let streaks = ach
            .streaks
            .iter()
            .zip(&keys.streaks)
            .map(|(s, &k)| {
                let e = a.and_then(|a| a.streak(k)).filter(|e| e.unit == s.rule.unit);
                StreakView {
                    id: s.def.id.clone(),
                    name: s.def.name.clone(),
                    unit: match s.rule.unit {
                        StreakUnit::Day => "day",
                        StreakUnit::Week => "week",
                    },
                    current: e.map_or(0, |e| streak::current_at(&s.rule, &e.state, now_ms, e.tz)),
                    longest: e.map_or(0, |e| e.state.longest),
                }
            })
            .collect();
        AchieveView { badges, challenges, streaks }
    }
}
