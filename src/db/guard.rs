//! Applying logged mutations so that a bug in apply cannot leave the process half alive.
//!
//! A group is logged before it is applied, so a failure in apply (a panic, or a checked
//! mutation that does not apply: check and apply disagree) is a bug that the log now
//! carries. The committer applies to a copy-on-write clone, so a failed group is simply
//! dropped: the published version stays whole, readers go on, and the `Db` refuses writes
//! (see [`super::Db::health`]). Replay stops at such a record and names it, with the
//! operator's escape hatch (`--skip-sequence`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::engine::{Engine, Mutation, Outcome};

/// Why applying a logged record failed: the database refuses writes after one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The record that failed (the first of its group when applying each record of the
    /// group alone did not fail again).
    pub sequence: u64,
    /// [`Mutation::summary`] of that record.
    pub mutation: String,
    /// The panic message or the error.
    pub reason: String,
    /// Sequence of the version still published (what reads answer from).
    pub published: u64,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "applying log record {} ({}) failed: {}", self.sequence, self.mutation, self.reason)
    }
}

/// Applies `items` (sequence, mutation) to `engine` as one group. Err(reason) when the
/// apply panicked or any mutation returned an error; `engine` is then in an unknown state
/// and must be dropped. `fail_at` injects a panic when the group holds that sequence
/// (after the records before it were applied, as a real bug would leave the state).
pub(super) fn apply_guarded(
    engine: &mut Engine,
    items: &[(u64, &Mutation)],
    fail_at: Option<u64>,
) -> Result<Vec<Outcome>, String> {
    // AssertUnwindSafe: after a panic the engine is never used again (see above).
    let results = catch_unwind(AssertUnwindSafe(|| {
        match fail_at.and_then(|n| items.iter().position(|&(s, _)| s == n)) {
            Some(k) => {
                let _ = engine.apply_group(&items[..k]);
                panic!("injected fault applying sequence {} (DbOptions::fail_apply_at)", items[k].0)
            }
            None => engine.apply_group(items),
        }
    }))
    .map_err(|payload| format!("panic: {}", panic_message(payload.as_ref())))?;
    results
        .into_iter()
        .zip(items)
        .map(|(r, &(seq, m))| {
            r.map_err(|e| format!("sequence {seq} ({}) was checked but does not apply: {e}", m.summary()))
        })
        .collect()
}

/// Names the record of a failed group: applies the group's records one at a time to
/// clones of `base` (the state before the group) until one fails.
pub(super) fn locate(
    base: &Engine,
    items: &[(u64, &Mutation)],
    reason: String,
    fail_at: Option<u64>,
) -> Fault {
    let mut engine = base.clone();
    for &(seq, m) in items {
        if let Err(reason) = apply_guarded(&mut engine, &[(seq, m)], fail_at) {
            return Fault { sequence: seq, mutation: m.summary(), reason, published: base.sequence() };
        }
    }
    let &(seq, m) = items.first().expect("a failed group is not empty");
    let last = items.last().map_or(seq, |&(s, _)| s);
    Fault {
        sequence: seq,
        mutation: m.summary(),
        reason: format!("{reason} (group {seq}..={last}; no record of it failed alone)"),
        published: base.sequence(),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}
