//! Badges: awarded when a criterion over a customer's state holds, in the segment
//! language over the customer's attributes and gamification values
//! (`purchase_count >= 10`, `streak_days >= 30`, `level >= 20`,
//! `challenge_spring_completed = true`).
//!
//! # When a badge is awarded
//! Edge-triggered: the caller evaluates a customer's badges after each change to that
//! customer, at the change's logged instant, and a badge is awarded when its criterion is
//! TRUE there and was not TRUE at the previous evaluation (FALSE or UNKNOWN: SQL's NULL
//! never awards). So a criterion that stays TRUE awards nothing more, and replay, which
//! evaluates at the same changes, awards the same badges at the same instants.
//! - `Once`: at most one award ever; the badge is held from then on.
//! - `Repeatable { max }`: awarded again each time the criterion turns TRUE after having
//!   been not TRUE, counting awards, up to `max` when given.
//!
//! A held badge is never taken back when its criterion stops holding: the award date says
//! when it was earned. Criteria see the customer as the caller's lookup shows it, i.e.
//! before this evaluation's awards: a badge about other badges (`badge_count >= 5`) is
//! awarded at the customer's next change after the fifth, which keeps one evaluation a
//! single pass in program order.
//!
//! Pure: no clock and no I/O. Badges are keyed by the caller's interned `u16` key of
//! their id, so renaming nothing and re-ordering a program's badges keeps every award.

use std::collections::HashSet;

use crate::gamify::eval::{eval, names, Lookup, Tri};
use crate::query::ast::Expr;

/// The most badges one program may define.
pub const MAX_BADGES: usize = 256;
/// The longest badge id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    Once,
    /// Awarded at each rising edge of the criterion, up to `max` awards when given.
    Repeatable {
        max: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct BadgeSpec {
    /// Lowercase letters, digits and `_`, starting with a letter (it names the badge in
    /// the `badges` list attribute and in achievements).
    pub id: String,
    pub criterion: Expr,
    pub repeat: Repeat,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadgeError {
    #[error("badges[{index}].id '{id}' must be 1 to {MAX_ID_BYTES} lowercase letters, digits or '_', starting with a letter")]
    BadId { index: usize, id: String },
    #[error("badges[{index}].id '{id}' is defined twice")]
    DuplicateId { index: usize, id: String },
    #[error("the program defines {got} badges, at most {MAX_BADGES}")]
    TooMany { got: usize },
    #[error("badges[{index}] ('{id}').criterion names '{name}', which is no customer attribute or gamification value")]
    UnknownName { index: usize, id: String, name: String },
    #[error("badges[{index}] ('{id}').repeat.max must be at least 1")]
    ZeroMax { index: usize, id: String },
}

/// Checks a program's badges whole: ids, their count, repeat bounds, and that every name
/// a criterion reads is one `known` accepts (a typo would otherwise be a badge that can
/// never be awarded).
pub fn validate(specs: &[BadgeSpec], known: &dyn Fn(&str) -> bool) -> Result<(), BadgeError> {
    if specs.len() > MAX_BADGES {
        return Err(BadgeError::TooMany { got: specs.len() });
    }
    let mut seen = HashSet::new();
    for (index, s) in specs.iter().enumerate() {
        let ok_id = !s.id.is_empty()
            && s.id.len() <= MAX_ID_BYTES
            && s.id.starts_with(|c: char| c.is_ascii_lowercase())
            && s.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_id {
            return Err(BadgeError::BadId { index, id: s.id.clone() });
        }
        if !seen.insert(s.id.as_str()) {
            return Err(BadgeError::DuplicateId { index, id: s.id.clone() });
        }
        if s.repeat == (Repeat::Repeatable { max: Some(0) }) {
            return Err(BadgeError::ZeroMax { index, id: s.id.clone() });
        }
        if let Some(name) = names(&s.criterion).into_iter().find(|n| !known(n)) {
            return Err(BadgeError::UnknownName { index, id: s.id.clone(), name: name.to_string() });
        }
    }
    Ok(())
}

/// One badge of one customer: held (awarded at least once), or only tracked for its edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub key: u16,
    /// Awards so far (0: never awarded, tracked because its criterion is TRUE now).
    pub count: u32,
    pub first_at_ms: i64,
    pub last_at_ms: i64,
    /// The criterion was TRUE at the last evaluation.
    pub was_true: bool,
}

/// A customer's badges, ordered by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerBadges {
    held: Vec<Held>,
}

/// A badge awarded by an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Award {
    pub key: u16,
    /// Awards of this badge including this one.
    pub count: u32,
    pub at_ms: i64,
}

impl CustomerBadges {
    /// Bytes of the held list's buffer (its capacity).
    pub fn heap_bytes(&self) -> usize {
        self.held.capacity() * std::mem::size_of::<Held>()
    }

    /// Rebuilds from a snapshot's entries (any order; a repeated key keeps the last).
    pub fn from_held(mut held: Vec<Held>) -> Self {
        held.sort_by_key(|h| h.key);
        held.dedup_by(|later, earlier| {
            let same = later.key == earlier.key;
            if same {
                *earlier = later.clone();
            }
            same
        });
        CustomerBadges { held }
    }

    /// Every entry, by key (snapshots, reads).
    pub fn entries(&self) -> &[Held] {
        &self.held
    }

    /// Badges awarded at least once.
    pub fn awarded(&self) -> impl Iterator<Item = &Held> + '_ {
        self.held.iter().filter(|h| h.count > 0)
    }

    pub fn get(&self, key: u16) -> Option<&Held> {
        self.held.binary_search_by_key(&key, |h| h.key).ok().map(|i| &self.held[i])
    }

    /// Awards a badge directly (a challenge's reward), within its once / repeat bound; the
    /// criterion's edge is left as it was.
    pub fn award(&mut self, key: u16, repeat: Repeat, at_ms: i64) -> Option<Award> {
        let i = match self.held.binary_search_by_key(&key, |h| h.key) {
            Ok(i) => i,
            Err(i) => {
                self.held.insert(i, Held { key, count: 0, first_at_ms: 0, last_at_ms: 0, was_true: false });
                i
            }
        };
        let entry = &mut self.held[i];
        let may = match repeat {
            Repeat::Once => entry.count == 0,
            Repeat::Repeatable { max } => max.is_none_or(|m| entry.count < m),
        };
        if !may {
            return None;
        }
        entry.count += 1;
        if entry.count == 1 {
            entry.first_at_ms = at_ms;
        }
        entry.last_at_ms = at_ms;
        Some(Award { key, count: entry.count, at_ms })
    }

    /// Evaluates every badge of `specs` (in program order, with their keys) for a customer
    /// whose state `lookup` shows, at logged instant `at_ms`, and returns the awards in
    /// program order.
    pub fn evaluate(&mut self, specs: &[(u16, &BadgeSpec)], lookup: &dyn Lookup, at_ms: i64) -> Vec<Award> {
        let mut awards = Vec::new();
        for &(key, spec) in specs {
            let now_true = eval(&spec.criterion, lookup) == Tri::True;
            let pos = self.held.binary_search_by_key(&key, |h| h.key);
            let entry = match (pos, now_true) {
                (Ok(i), _) => &mut self.held[i],
                // Never awarded and not TRUE: nothing to track.
                (Err(_), false) => continue,
                (Err(i), true) => {
                    self.held
                        .insert(i, Held { key, count: 0, first_at_ms: 0, last_at_ms: 0, was_true: false });
                    &mut self.held[i]
                }
            };
            let rising = now_true && !entry.was_true;
            entry.was_true = now_true;
            let may = match spec.repeat {
                Repeat::Once => entry.count == 0,
                Repeat::Repeatable { max } => max.is_none_or(|m| entry.count < m),
            };
            if rising && may {
                entry.count += 1;
                if entry.count == 1 {
                    entry.first_at_ms = at_ms;
                }
                entry.last_at_ms = at_ms;
                awards.push(Award { key, count: entry.count, at_ms });
            }
        }
        // A once-badge's edge no longer matters after its award, but the entry is the
        // award; entries tracked only for an edge that fell are dropped.
        self.held.retain(|h| h.count > 0 || h.was_true);
        awards
    }
}

#[cfg(test)]
#[path = "badge_tests.rs"]
mod tests;
