//! Start-up replay of the write-ahead log: the logged records after the snapshot, applied
//! in groups as the committer applied them, stopping at a record that fails to apply or
//! decode (named, with the escape hatch) and skipping the ones the operator named.

use super::guard::apply_guarded;
use super::{DbError, DbOptions, REPLAY_GROUP};
use crate::engine::{Engine, Mutation};
use crate::persist::{record, Replay};

/// Why replay stopped.
pub(super) enum ReplayError {
    Db(DbError),
    /// Applying the group of records `first..=last` failed (`mutation` describes `first`;
    /// with `singles_from`, a failed group is that one record).
    Failed {
        first: u64,
        last: u64,
        mutation: String,
        reason: String,
    },
}

/// Applies the logged records of `replay` after the engine's sequence, as the committer applied
/// them: in groups, ended after a schema change or at [`REPLAY_GROUP`] customer changes
/// (the same final state, with each chunk copied once per group), records of
/// `opts.skip_sequences` left out (logged). Records from `singles_from` on are applied
/// one per group, to find which one fails. Events are published as each group is
/// applied. Returns the records replayed and the sequences skipped.
pub(super) fn replay_log(
    engine: &mut Engine,
    replay: &Replay,
    opts: &DbOptions,
    singles_from: Option<u64>,
) -> Result<(u64, Vec<u64>), ReplayError> {
    let mut replayed = 0;
    let mut skipped = vec![];
    let mut pending: Vec<(u64, Mutation)> = vec![];
    let mut pending_updates = 0u64;
    let flush = |engine: &mut Engine, pending: &mut Vec<(u64, Mutation)>| -> Result<(), ReplayError> {
        let items: Vec<(u64, &Mutation)> = pending.iter().map(|(s, m)| (*s, m)).collect();
        if let Err(reason) = apply_guarded(engine, &items, opts.fail_apply_at) {
            let (first, m) = items[0];
            let last = items[items.len() - 1].0;
            return Err(ReplayError::Failed { first, last, mutation: m.summary(), reason });
        }
        let events = engine.take_events();
        engine.publish_events(events);
        pending.clear();
        Ok(())
    };
    for (seq, payload) in &replay.records {
        let seq = *seq;
        if seq <= engine.sequence() {
            continue;
        }
        let format = replay.format_of(seq);
        let decoded = record::decode_mutation(format, payload);
        if opts.skip_sequences.contains(&seq) {
            flush(engine, &mut pending)?;
            pending_updates = 0;
            match &decoded {
                Ok(m) => {
                    tracing::warn!(sequence = seq, mutation = %m.summary(), "--skip-sequence: logged record skipped, not applied")
                }
                Err(e) => {
                    tracing::warn!(sequence = seq, bytes = payload.len(), error = %e, "--skip-sequence: undecodable logged record skipped")
                }
            }
            // Counted as applied (as nothing): the next snapshot is taken after it.
            engine.skipped(seq);
            skipped.push(seq);
            continue;
        }
        let m = decoded.map_err(|e| {
            ReplayError::Db(DbError::Replay {
                sequence: seq,
                mutation: format!("{} bytes that do not decode as record format {format}", payload.len()),
                reason: e.to_string(),
            })
        })?;
        pending_updates += m.changes();
        let ends_group = m.changes_schema() || singles_from.is_some_and(|s| seq >= s);
        if singles_from.is_some_and(|s| seq >= s) {
            flush(engine, &mut pending)?;
        }
        pending.push((seq, m));
        if ends_group || pending_updates >= REPLAY_GROUP {
            flush(engine, &mut pending)?;
            pending_updates = 0;
        }
        replayed += 1;
    }
    flush(engine, &mut pending)?;
    Ok((replayed, skipped))
}
