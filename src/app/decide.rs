//! The next-best-offer use cases (`segd.v1.DecisionService`): the offer catalogue, the
//! contact policy, decisions, outcomes, reach funnels and campaign blasts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{guarded, on_pool, unexpected, App, AppError, ErrorCode};
use crate::decide::{
    decide_with, reach_estimate, settle, Change, ChangeError, ChangeOutcome, Channel, ContactPolicy, Context,
    DatasetFacts, DecideError, Decision, Dropped, FactsError, Funnel, HistoryError, Offer, OfferError,
    OutcomeApplied, OutcomeKind, Ranked, Request, SegmentRef,
};
use crate::engine::{Engine, Mutation, Outcome};
use crate::query;

/// The code of a refused decision change.
pub(super) fn change_code(e: &ChangeError) -> ErrorCode {
    match e {
        ChangeError::Offer(o) => offer_code(o),
        ChangeError::Facts(f) => facts_code(f),
        ChangeError::History(h) => history_code(h),
        ChangeError::SegmentInUse { .. } => ErrorCode::FailedPrecondition,
    }
}

pub(super) fn offer_code(e: &OfferError) -> ErrorCode {
    match e {
        OfferError::BadId(_) | OfferError::Invalid { .. } | OfferError::Policy { .. } => {
            ErrorCode::InvalidArgument
        }
        OfferError::NotFound(_) => ErrorCode::NotFound,
        OfferError::TooMany(_) => ErrorCode::ResourceExhausted,
    }
}

pub(super) fn facts_code(e: &FactsError) -> ErrorCode {
    match e {
        FactsError::UnknownCustomer(_) => ErrorCode::NotFound,
        FactsError::NotNumeric { .. }
        | FactsError::NotNumericAttribute { .. }
        | FactsError::Segment { .. } => ErrorCode::InvalidArgument,
        // Facts are built for the catalogue they are asked about: a miss is a bug.
        FactsError::Unresolved(_) => ErrorCode::Internal,
    }
}

pub(super) fn history_code(e: &HistoryError) -> ErrorCode {
    match e {
        HistoryError::UnknownDecision(_) => ErrorCode::NotFound,
        HistoryError::NotPresented { .. } | HistoryError::BeforeDecision { .. } => ErrorCode::InvalidArgument,
        HistoryError::DuplicateDecision(_) | HistoryError::AfterExpiry { .. } => {
            ErrorCode::FailedPrecondition
        }
    }
}

pub(super) fn decide_code(e: &DecideError) -> ErrorCode {
    match e {
        DecideError::MaxResults(_) | DecideError::ContextTooLong { .. } => ErrorCode::InvalidArgument,
        DecideError::Facts(f) => facts_code(f),
    }
}

/// Largest gap allowed between a logged time a client gives (a decision's `now`, an
/// outcome's `at`) and the server's clock: the contact state's clock follows logged
/// times and never goes back, so a time far ahead would expire every open decision.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// Most offers one decision presents when the request leaves it unset.
pub const DEFAULT_MAX_RESULTS: usize = 5;

/// Where and when a decision (or a reach) is asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionContext {
    pub channel: Channel,
    pub placement: String,
    pub intent: String,
    /// None: the server's clock.
    pub now_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NboRequest {
    pub customer_id: u64,
    pub context: DecisionContext,
    pub max_results: usize,
    pub counts_as_impression: bool,
    /// Decide on the current version without logging anything.
    pub dry_run: bool,
    /// List every offer not presented with its reason; otherwise only those dropped at
    /// apply (the explanation is most of an answer's bytes and of its encoding cost).
    pub explain: bool,
}

/// A decision as answered: the core's explanation, settled with what its apply kept.
#[derive(Clone, Debug, PartialEq)]
pub struct NboAnswer {
    pub decision_id: u64,
    pub customer_id: u64,
    /// The decision's time.
    pub now_ms: i64,
    pub control_group: bool,
    /// What the customer is shown, in rank order (the fallback alone when it is used).
    pub presented: Vec<Ranked>,
    pub fallback_used: bool,
    /// With `explain`, every offer not presented; always, those dropped at apply.
    pub dropped: Vec<Dropped>,
    /// The logged decision's commit (None for a dry run).
    pub sequence: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeRecorded {
    pub sequence: u64,
    pub duplicate: bool,
}

/// The wall clock in ms: the only place the decision use cases read it, before logging.
pub(super) fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl App {
    /// Commits a decision change and returns its sequence and outcome.
    pub(super) async fn change(&self, c: Change) -> Result<(u64, ChangeOutcome), AppError> {
        let c = self.commit(Mutation::Decide(c)).await?;
        match c.outcome {
            Outcome::Decide(o) => Ok((c.sequence, o)),
            other => Err(unexpected(other)),
        }
    }

    /// Checks the sizes a request can carry before anything else (texts of offer rules).
    fn check_offer_texts(&self, o: &Offer) -> Result<(), AppError> {
        for (_, seg) in o.rules() {
            match seg {
                SegmentRef::Where(t) => self.check_text(t)?,
                SegmentRef::Predicate(e) => query::check_limits(e, &self.config().limits)?,
                SegmentRef::All | SegmentRef::Saved(_) => {}
            }
        }
        Ok(())
    }

    /// Adds or replaces an offer; returns (sequence, replaced).
    pub async fn put_offer(&self, o: Offer) -> Result<(u64, bool), AppError> {
        self.check_offer_texts(&o)?;
        match self.change(Change::PutOffer(Box::new(o))).await? {
            (seq, ChangeOutcome::OfferPut { replaced }) => Ok((seq, replaced)),
            (_, other) => Err(unexpected(Outcome::Decide(other))),
        }
    }

    pub fn get_offer(&self, id: &str) -> Result<Arc<Offer>, AppError> {
        let eng = self.read();
        let o = eng.decide().catalogue().get(id).cloned();
        o.ok_or_else(|| ChangeError::from(OfferError::NotFound(id.into())).into())
    }

    /// Every offer, by id.
    pub fn list_offers(&self) -> Vec<Arc<Offer>> {
        self.read().decide().catalogue().offers().cloned().collect()
    }

    pub async fn delete_offer(&self, id: String) -> Result<u64, AppError> {
        Ok(self.change(Change::DeleteOffer(id)).await?.0)
    }

    pub fn contact_policy(&self) -> ContactPolicy {
        self.read().decide().catalogue().policy().clone()
    }

    pub async fn set_contact_policy(&self, p: ContactPolicy) -> Result<u64, AppError> {
        Ok(self.change(Change::SetContactPolicy(p)).await?.0)
    }

    /// A new decision id: above every id the state has seen, never reused (also across
    /// restarts: the state keeps the highest id applied).
    fn next_decision_id(&self, eng: &Engine) -> u64 {
        self.reserve_decision_ids(eng, 1)
    }

    /// `n` consecutive new decision ids; returns the first.
    pub(super) fn reserve_decision_ids(&self, eng: &Engine, n: u64) -> u64 {
        let floor = eng.decide().contacts().last_decision_id;
        let ids = &self.0.decision_ids;
        ids.fetch_max(floor, Ordering::AcqRel);
        ids.fetch_add(n, Ordering::AcqRel) + 1
    }

    /// The decision's time: the client's (within [`MAX_CLOCK_SKEW_MS`] of the clock when
    /// it will be logged) or the clock's.
    pub(super) fn stamp(now_ms: Option<i64>, logged: bool, field: &'static str) -> Result<i64, AppError> {
        let wall = wall_ms();
        match now_ms {
            None => Ok(wall),
            Some(t) if !logged => Ok(t),
            Some(t) if (t - wall).abs() <= MAX_CLOCK_SKEW_MS => Ok(t),
            Some(t) => Err(AppError::Invalid {
                field,
                msg: format!(
                    "{t} is more than {MAX_CLOCK_SKEW_MS} ms from the server's clock ({wall}); a \
                     logged time must be close to now (use dry_run to ask about another time)"
                ),
            }),
        }
    }

    /// The next best offers for one customer on one channel, explained; logged (so caps,
    /// budgets and the contact policy count it) unless `dry_run`.
    pub async fn next_best_offer(&self, req: NboRequest) -> Result<NboAnswer, AppError> {
        let NboRequest { customer_id, context, max_results, counts_as_impression, dry_run, explain } = req;
        let DecisionContext { channel, placement, intent, now_ms } = context;
        let now_ms = Self::stamp(now_ms, !dry_run, "context.now_ms")?;
        // A fixed table has no history to log to: only dry runs there.
        if !dry_run && self.db().is_none() {
            return Err(AppError::ReadOnly);
        }
        let eng = self.read();
        let decision_id = self.next_decision_id(&eng);
        let limits = self.config().limits;
        let req = Request {
            decision_id,
            customer_id,
            context: Context { channel, placement, intent, now_ms },
            max_results,
            counts_as_impression,
        };
        // Inline on the caller's worker, not on the rayon pool: with the rules cached a
        // decision is tens of µs, less than the two thread wake-ups of a pool hop cost.
        // Only a catalogue or segment change recompiles (once, under the cache's lock).
        let decision = guarded(|| {
            let segs = |id: &str| eng.segments().members_of(id);
            let members = |id: &str| eng.segments().get(id).ok().map(|s| &*s.members);
            let st = eng.decide();
            let rules = self
                .0
                .rules
                .get(eng.data(), st.catalogue(), &segs, &limits)
                .map_err(|e| AppError::from(DecideError::from(e)))?;
            let facts = DatasetFacts::with_rules(eng.data(), rules, &members);
            Ok(decide_with(st.catalogue(), st.contacts(), &facts, &req, explain)?)
        })?;
        drop(eng);
        let Decision { record, presented, fallback_used, mut dropped } = decision;
        let control_group = record.control_group;
        let head = |presented, fallback_used, dropped, sequence| NboAnswer {
            decision_id,
            customer_id,
            now_ms,
            control_group,
            presented,
            fallback_used,
            dropped,
            sequence,
        };
        if dry_run {
            return Ok(head(presented, fallback_used, dropped, None));
        }
        // The record moves into the log: the answer is what its apply kept.
        match self.change(Change::DecisionTaken(record)).await? {
            (seq, ChangeOutcome::Decided(applied)) => {
                let (presented, fallback_used) = settle(&mut dropped, applied);
                Ok(head(presented, fallback_used, dropped, Some(seq)))
            }
            (_, other) => Err(unexpected(Outcome::Decide(other))),
        }
    }

    /// Records an outcome of a presented offer (idempotent).
    pub async fn record_outcome(
        &self,
        decision_id: u64,
        offer_id: String,
        kind: OutcomeKind,
        at_ms: Option<i64>,
    ) -> Result<OutcomeRecorded, AppError> {
        let at_ms = Self::stamp(at_ms, true, "at_ms")?;
        match self.change(Change::RecordOutcome { decision_id, offer_id, kind, at_ms }).await? {
            (sequence, ChangeOutcome::Outcome(o)) => {
                Ok(OutcomeRecorded { sequence, duplicate: o == OutcomeApplied::Duplicate })
            }
            // Logged, but its decision lapsed before it applied: nothing was recorded.
            (_, ChangeOutcome::OutcomeLapsed(e)) => Err(ChangeError::from(e).into()),
            (_, other) => Err(unexpected(Outcome::Decide(other))),
        }
    }

    /// The exact funnel of an offer over every customer, on the current version; returns
    /// it with the time it was counted at.
    pub async fn reach_estimate(
        &self,
        offer_id: &str,
        ctx: DecisionContext,
    ) -> Result<(Funnel, i64), AppError> {
        let DecisionContext { channel, placement, intent, now_ms } = ctx;
        let now_ms = Self::stamp(now_ms, false, "context.now_ms")?;
        let offer = self.get_offer(offer_id)?;
        let eng = self.read();
        let limits = self.config().limits;
        let ctx = Context { channel, placement, intent, now_ms };
        let app = self.clone();
        let f = on_pool(move || {
            let segs = |id: &str| eng.segments().members_of(id);
            let st = eng.decide();
            let policy = st.catalogue().policy();
            let draws = &app.0.draws;
            reach_estimate(eng.data(), &segs, &limits, &offer, policy, &ctx, st.contacts(), draws)
                .map_err(|e| AppError::from(DecideError::from(e)))
        })
        .await?;
        Ok((f, now_ms))
    }
}
