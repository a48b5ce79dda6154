//! Campaign blasts (`DecideForSegment`) and decisions fetched again (`GetDecision`).
//!
//! What a blast logs: a dry run nothing. Otherwise the blast counts as impressions (it is
//! a send: a blast that does not would reserve budgets and fill the log for decisions
//! nobody may ever see, so `counts_as_impression = false` is refused without `dry_run`),
//! and each member's decision that presents an offer is one logged "decision taken", the
//! record a `NextBestOffer` logs, applied in commit order so caps, budgets and the contact
//! policy hold exactly; RecordOutcome and GetDecision then know it. A member presented
//! nothing (control group, nothing qualifies) changes no state and is not logged: its
//! decision id is used up and GetDecision answers NOT_FOUND for it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::decide::{wall_ms, DecisionContext};
use super::reads::{SegmentRef, Target};
use super::{App, AppError};
use crate::db::{Committed, DbError};
use crate::decide::history::StoredDecision;
use crate::decide::{
    decide, Applied, Blast, BlastBatch, Blaster, Change, ChangeError, ChangeOutcome, Context, DatasetFacts,
    DecideError, Decision, DecisionRecord, Dropped, HistoryError, Ranked, Request,
};
use crate::engine::{Mutation, Outcome};
use crate::query::eval;

/// Most decisions one message of a blast carries.
pub const MAX_BATCH: usize = 10_000;
/// Decisions per message when the request leaves it unset.
pub const DEFAULT_BATCH: usize = 1_000;

#[derive(Clone, Debug, PartialEq)]
pub struct BlastRequest {
    pub segment: SegmentRef,
    pub context: DecisionContext,
    pub max_results: usize,
    pub counts_as_impression: bool,
    pub dry_run: bool,
    /// 1..=[`MAX_BATCH`].
    pub batch_size: usize,
    /// Every member's dropped offers too ([`decide`] per member).
    pub explain: bool,
}

/// One member's decision as answered.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberDecision {
    pub decision_id: u64,
    pub customer_id: u64,
    pub presented: Vec<Ranked>,
    pub fallback_used: bool,
    pub control_group: bool,
    /// With `explain`: every offer not presented; always: those dropped at apply.
    pub dropped: Vec<Dropped>,
    pub logged: bool,
}

/// One message of a blast.
#[derive(Clone, Debug, PartialEq)]
pub struct BlastMessage {
    pub decisions: Vec<MemberDecision>,
    /// Decisions of the whole blast.
    pub members: u64,
    pub now_ms: i64,
    /// The last logged decision's commit in this message.
    pub sequence: Option<u64>,
}

/// The messages of a blast, in order; an error ends it.
pub type BlastStream = mpsc::Receiver<Result<BlastMessage, AppError>>;

/// Messages decided ahead of the consumer.
const AHEAD: usize = 4;

impl App {
    /// Starts a blast: errors in the request (segment, context, offers) are returned here;
    /// the decisions follow on the stream.
    pub async fn decide_for_segment(&self, req: BlastRequest) -> Result<BlastStream, AppError> {
        let BlastRequest {
            segment,
            context,
            max_results,
            counts_as_impression,
            dry_run,
            batch_size,
            explain,
        } = req;
        if !dry_run && !counts_as_impression {
            return Err(AppError::Invalid {
                field: "counts_as_impression",
                msg: "false is only allowed with dry_run: a logged blast counts as impressions".into(),
            });
        }
        if !(1..=MAX_BATCH).contains(&batch_size) {
            return Err(AppError::Invalid {
                field: "batch_size",
                msg: format!("{batch_size} is not in 1..={MAX_BATCH}"),
            });
        }
        if !dry_run && self.db().is_none() {
            return Err(AppError::ReadOnly);
        }
        self.check_segment(&segment)?;
        let DecisionContext { channel, placement, intent, now_ms } = context;
        let now_ms = Self::stamp(now_ms, !dry_run, "context.now_ms")?;
        let context = Context { channel, placement, intent, now_ms };
        let (tx, rx) = mpsc::channel(AHEAD);
        let (ready_tx, ready_rx) = oneshot::channel();
        let app = self.clone();
        let job = Job { context, max_results, counts_as_impression, dry_run, batch_size, explain };
        tokio::task::spawn_blocking(move || app.blast(segment, job, ready_tx, tx));
        ready_rx.await.map_err(|_| AppError::Internal("the blast ended before it started".into()))??;
        Ok(rx)
    }

    /// Runs a blast on a blocking thread (its chunks on the rayon pool): compiles it, says
    /// whether that worked on `ready`, then sends its messages until done or `tx` closes.
    fn blast(
        &self,
        segment: SegmentRef,
        job: Job,
        ready: oneshot::Sender<Result<(), AppError>>,
        tx: mpsc::Sender<Result<BlastMessage, AppError>>,
    ) {
        let eng = self.read();
        let limits = self.config().limits;
        let segs = |id: &str| eng.segments().members_of(id);
        let st = eng.decide();
        let members = super::guarded(|| {
            Ok(match self.target(&eng, &segment)? {
                Target::Saved(s) => s.members.clone(),
                Target::Plan(c) => Arc::new(eval::materialize(eng.data(), &c.plan)),
            })
        });
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let blast = Blast {
            first_decision_id: 0,
            context: job.context.clone(),
            max_results: job.max_results,
            counts_as_impression: job.counts_as_impression,
        };
        let compiled = super::guarded(|| {
            let mut b = Blaster::new(
                st.catalogue(),
                st.contacts(),
                eng.data(),
                &segs,
                &limits,
                &self.0.draws,
                &members,
                blast,
            )?;
            b.start_at(self.reserve_decision_ids(&eng, b.len().max(1)));
            let facts = match job.explain {
                true => Some(
                    DatasetFacts::new(eng.data(), st.catalogue(), &segs, &limits)
                        .map_err(|e| AppError::from(DecideError::from(e)))?,
                ),
                false => None,
            };
            Ok((b, facts))
        });
        let (blaster, facts) = match compiled {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let run = super::guarded(|| {
            let mut msg = Pending::new(blaster.len(), job.context.now_ms);
            let window = rayon::current_num_threads().max(1) * 2;
            let mut c = 0;
            while c < blaster.chunks() {
                let end = (c + window).min(blaster.chunks());
                for batch in blaster.decide_par(c..end) {
                    for i in 0..batch.members.len() {
                        let (d, record) = match &facts {
                            Some(f) => explained(&blaster, &batch, i, st, f)?,
                            None => plain(&blaster, &batch, i),
                        };
                        let log = !job.dry_run && !d.presented.is_empty();
                        msg.msg.decisions.push(d);
                        msg.records.push(log.then_some(record));
                        if msg.msg.decisions.len() == job.batch_size {
                            let full =
                                std::mem::replace(&mut msg, Pending::new(blaster.len(), job.context.now_ms));
                            if !self.send(full, &tx)? {
                                return Ok(());
                            }
                        }
                    }
                }
                c = end;
            }
            if !msg.msg.decisions.is_empty() {
                self.send(msg, &tx)?;
            }
            Ok(())
        });
        if let Err(e) = run {
            let _ = tx.blocking_send(Err(e));
        }
    }

    /// Logs the message's decisions that have a record, settles them with what their
    /// apply kept (as [`Decision::settle`]), and sends it; false once the consumer is gone.
    fn send(&self, p: Pending, tx: &mpsc::Sender<Result<BlastMessage, AppError>>) -> Result<bool, AppError> {
        let Pending { mut msg, records } = p;
        let mut pending = vec![];
        for (i, rec) in records.into_iter().enumerate() {
            if let Some(rec) = rec {
                pending.push((i, self.submit(Mutation::Decide(Change::DecisionTaken(rec)))?));
            }
        }
        for (i, rx) in pending {
            let c: Committed = rx.blocking_recv().map_err(|_| DbError::Closed)??;
            let d = &mut msg.decisions[i];
            match c.outcome {
                Outcome::Decide(ChangeOutcome::Decided(applied)) => {
                    let Applied { offers, fallback_used, dropped } = applied;
                    d.dropped.retain(|x| !offers.iter().any(|r| r.offer_id == x.offer_id));
                    d.dropped.extend(dropped);
                    d.presented = offers;
                    d.fallback_used = fallback_used;
                    d.logged = true;
                    msg.sequence = Some(c.sequence);
                }
                other => return Err(super::unexpected(other)),
            }
        }
        Ok(tx.blocking_send(Ok(msg)).is_ok())
    }

    /// A retained decision and when it is forgotten (NOT_FOUND once it is, or for a dry
    /// run's id). From the logged records only: the same after a restart or on a replica.
    pub fn get_decision(&self, decision_id: u64) -> Result<(StoredDecision, i64), AppError> {
        let eng = self.read();
        let st = eng.decide().contacts();
        let d = st
            .decision_at(decision_id, wall_ms())
            .ok_or_else(|| ChangeError::from(HistoryError::UnknownDecision(decision_id)))?;
        Ok((d.clone(), st.expires_at(d.context.now_ms)))
    }
}

/// What every message of a blast shares.
struct Job {
    context: Context,
    max_results: usize,
    counts_as_impression: bool,
    dry_run: bool,
    batch_size: usize,
    explain: bool,
}

/// A message being filled, with the record each decision logs (None: not logged).
struct Pending {
    msg: BlastMessage,
    records: Vec<Option<DecisionRecord>>,
}

impl Pending {
    fn new(members: u64, now_ms: i64) -> Pending {
        Pending { msg: BlastMessage { decisions: vec![], members, now_ms, sequence: None }, records: vec![] }
    }
}

/// The `i`-th decision of a batch from the fast path, and its record.
fn plain(b: &Blaster<'_>, batch: &BlastBatch, i: usize) -> (MemberDecision, DecisionRecord) {
    let m = &batch.members[i];
    let d = MemberDecision {
        decision_id: m.decision_id,
        customer_id: m.customer_id,
        presented: batch.scored[m.presented()].iter().map(|s| b.ranked(s)).collect(),
        fallback_used: m.fallback_used(),
        control_group: m.control_group,
        dropped: vec![],
        logged: false,
    };
    (d, b.record(batch, m))
}

/// The `i`-th decision of a batch, explained: [`decide`] for the member.
fn explained(
    b: &Blaster<'_>,
    batch: &BlastBatch,
    i: usize,
    st: &crate::decide::State,
    facts: &DatasetFacts<'_>,
) -> Result<(MemberDecision, DecisionRecord), AppError> {
    let m = &batch.members[i];
    let blast = b.blast();
    let req = Request {
        decision_id: m.decision_id,
        customer_id: m.customer_id,
        context: blast.context.clone(),
        max_results: blast.max_results,
        counts_as_impression: blast.counts_as_impression,
    };
    let Decision { record, presented, fallback_used, dropped } =
        decide(st.catalogue(), st.contacts(), facts, &req)?;
    let d = MemberDecision {
        decision_id: record.decision_id,
        customer_id: record.customer_id,
        presented,
        fallback_used,
        control_group: record.control_group,
        dropped,
        logged: false,
    };
    Ok((d, record))
}
