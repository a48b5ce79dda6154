//! The seam to a replicated log (`segd serve --replicate`): where a commit group's
//! records also go, after the local write-ahead log and before the group is applied and
//! acknowledged. The committer stays the one writer; a sink only stores what it is
//! given, in order, under the sequences the local log assigned.
//!
//! Guarantees the committer relies on (the JetStream sink in `crate::replica` gives them):
//! - [`GroupSink::append`] returns Ok only once every record is stored there under its
//!   own sequence (a retry of a record already stored is not stored twice), so an
//!   acknowledged write is in the replicated log.
//! - A record it cannot store stops writes (the group's callers get
//!   [`super::DbError::ApplyFailed`], later writes `Poisoned`): the local log then holds
//!   records the replicated log may not, and only a restart ([`GroupSink::open`])
//!   reconciles the two. A write answered with that error may still take effect after
//!   the restart (like any write whose answer was lost).

use super::{DbError, Done};
use crate::engine::Mutation;
use crate::persist::{record, Replay};

/// A replicated log fed by the committer. `Debug` so [`super::DbOptions`] stays printable.
pub trait GroupSink: Send + Sync + std::fmt::Debug {
    /// At start-up, before anything is applied: `local` is what the local log holds and
    /// `last` its last sequence. Brings the sink up to `last` (republishing records it
    /// lacks), or refuses (the sink is ahead of this data dir, or lacks records the local
    /// log no longer holds).
    fn open(&self, last: u64, local: &Replay) -> Result<(), String>;
    /// Largest record it can store, in bytes: a bigger one is refused before it is logged.
    fn max_record_bytes(&self) -> usize;
    /// Stores the records `(sequence, record bytes)`, in order. Ok once all are durable there.
    fn append(&self, records: &[(u64, &[u8])]) -> Result<(), String>;
}

/// Encodes the group's records for the local log and the sink, answering (and removing)
/// the mutations whose record is too large for the sink: they are never logged.
pub(super) fn encode_checked(sink: &dyn GroupSink, valid: &mut Vec<(Mutation, Done)>) -> Vec<Vec<u8>> {
    let limit = sink.max_record_bytes();
    let mut encoded = Vec::with_capacity(valid.len());
    let mut kept = Vec::with_capacity(valid.len());
    for (m, done) in valid.drain(..) {
        let mut buf = vec![];
        record::encode_mutation(&m, &mut buf);
        if buf.len() > limit {
            done(Err(DbError::ReplicaRecordTooLarge { bytes: buf.len(), limit }));
        } else {
            encoded.push(buf);
            kept.push((m, done));
        }
    }
    *valid = kept;
    encoded
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
