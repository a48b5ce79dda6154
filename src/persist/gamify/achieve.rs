//! The snapshot form of a customer's badges, challenges and streaks
//! ([`crate::gamify::achieve_state::CustomerAchieve`]): field 20 of
//! [`super::CustomerRecord`], absent for a customer without any. Keys are the
//! state's interned names (`badge:<id>`, `challenge:<id>`, `streak:<id>`), zones their IANA
//! names.

use crate::badge::{CustomerBadges, Held};
use crate::challenge::Progress;
use crate::gamify::achieve_state::{ChallengeEntry, CustomerAchieve, StreakEntry};
use crate::gamify::GamifyError;
use crate::streak::{StreakState, StreakUnit};

#[derive(Clone, PartialEq, prost::Message)]
pub struct AchieveRecord {
    #[prost(message, repeated, tag = "1")]
    pub badges: Vec<BadgeRecord>,
    #[prost(message, repeated, tag = "2")]
    pub streaks: Vec<StreakRecord>,
    #[prost(message, repeated, tag = "3")]
    pub challenges: Vec<ChallengeRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BadgeRecord {
    #[prost(uint32, tag = "1")]
    pub badge: u32,
    #[prost(uint32, tag = "2")]
    pub count: u32,
    #[prost(int64, tag = "3")]
    pub first_at_ms: i64,
    #[prost(int64, tag = "4")]
    pub last_at_ms: i64,
    #[prost(bool, tag = "5")]
    pub was_true: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreakRecord {
    #[prost(uint32, tag = "1")]
    pub streak: u32,
    /// Weeks rather than days.
    #[prost(bool, tag = "2")]
    pub week: bool,
    #[prost(string, tag = "3")]
    pub time_zone: String,
    #[prost(sint64, optional, tag = "4")]
    pub last_unit: Option<i64>,
    #[prost(uint32, tag = "5")]
    pub current: u32,
    #[prost(uint32, tag = "6")]
    pub longest: u32,
    #[prost(sint64, optional, tag = "7")]
    pub last_freeze: Option<i64>,
    #[prost(int64, tag = "8")]
    pub due_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChallengeRecord {
    #[prost(uint32, tag = "1")]
    pub challenge: u32,
    #[prost(sint64, optional, tag = "2")]
    pub window: Option<i64>,
    #[prost(sint64, tag = "3")]
    pub value: i64,
    #[prost(bool, tag = "4")]
    pub completed: bool,
    #[prost(int64, optional, tag = "5")]
    pub joined_ms: Option<i64>,
    #[prost(uint32, tag = "6")]
    pub completions: u32,
    #[prost(int64, tag = "7")]
    pub last_completed_ms: i64,
    #[prost(int64, tag = "8")]
    pub due_ms: i64,
}

pub fn encode(a: &CustomerAchieve) -> AchieveRecord {
    AchieveRecord {
        badges: a
            .badges
            .entries()
            .iter()
            .map(|h| BadgeRecord {
                badge: h.key as u32,
                count: h.count,
                first_at_ms: h.first_at_ms,
                last_at_ms: h.last_at_ms,
                was_true: h.was_true,
            })
            .collect(),
        streaks: a
            .streaks
            .iter()
            .map(|e| StreakRecord {
                streak: e.key as u32,
                week: e.unit == StreakUnit::Week,
                time_zone: e.tz.name().to_string(),
                last_unit: e.state.last_unit,
                current: e.state.current,
                longest: e.state.longest,
                last_freeze: e.state.last_freeze,
                due_ms: e.due_ms,
            })
            .collect(),
        challenges: a
            .challenges
            .iter()
            .map(|e| ChallengeRecord {
                challenge: e.key as u32,
                window: e.progress.window,
                value: e.progress.value,
                completed: e.progress.completed,
                joined_ms: e.joined_ms,
                completions: e.completions,
                last_completed_ms: e.last_completed_ms,
                due_ms: e.due_ms,
            })
            .collect(),
    }
}

fn corrupt(what: impl Into<String>) -> GamifyError {
    GamifyError::Corrupt(what.into())
}

fn key(k: u32, names: usize, what: &str) -> Result<u16, GamifyError> {
    if (k as usize) < names {
        Ok(k as u16)
    } else {
        Err(corrupt(format!("{what} key {k} is not one of the {names} names")))
    }
}

/// Reads [`encode`]'s message; `names` is the state's count of interned names.
pub fn decode(r: AchieveRecord, names: usize) -> Result<CustomerAchieve, GamifyError> {
    let AchieveRecord { badges, streaks, challenges } = r;
    let mut held = Vec::with_capacity(badges.len());
    for b in badges {
        let BadgeRecord { badge, count, first_at_ms, last_at_ms, was_true } = b;
        held.push(Held { key: key(badge, names, "badge")?, count, first_at_ms, last_at_ms, was_true });
    }
    let mut out = CustomerAchieve { badges: CustomerBadges::from_held(held), ..CustomerAchieve::default() };
    for s in streaks {
        let StreakRecord { streak, week, time_zone, last_unit, current, longest, last_freeze, due_ms } = s;
        let tz = time_zone.parse().map_err(|_| corrupt(format!("streak zone '{time_zone}'")))?;
        out.streaks.push(StreakEntry {
            key: key(streak, names, "streak")?,
            unit: if week { StreakUnit::Week } else { StreakUnit::Day },
            tz,
            state: StreakState { last_unit, current, longest, last_freeze },
            due_ms,
        });
    }
    for c in challenges {
        let ChallengeRecord {
            challenge,
            window,
            value,
            completed,
            joined_ms,
            completions,
            last_completed_ms,
            due_ms,
        } = c;
        out.challenges.push(ChallengeEntry {
            key: key(challenge, names, "challenge")?,
            progress: Progress { window, value, completed },
            joined_ms,
            completions,
            last_completed_ms,
            due_ms,
        });
    }
    if !out.streaks.windows(2).all(|w| w[0].key < w[1].key)
        || !out.challenges.windows(2).all(|w| w[0].key < w[1].key)
    {
        return Err(corrupt("streak or challenge entries out of key order"));
    }
    Ok(out)
}

/// A `JoinChallenge` change's log form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinRecord {
    #[prost(int64, tag = "1")]
    pub logged_at_ms: i64,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(string, tag = "3")]
    pub challenge: String,
}
