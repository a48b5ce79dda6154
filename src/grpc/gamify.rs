//! `segd.v1.EventService` and `segd.v1.GamificationService`: translation between the
//! proto messages and the gamification core and application types (every message
//! destructured), and the two service adapters. Errors go through `AppError::code`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::app::gamify::{PendingEvents, ProgramInfo, Recorded};
use crate::app::{App, AppError};
use crate::engine::AchievementEvent;
use crate::gamify::achieve_state::{AchieveView, BadgeView, ChallengeView, StreakView};
use crate::gamify::change::Transitions;
use crate::gamify::view::{CustomerState, Entry, EntryKind, LedgerPage, LevelView, TierView, WalletView};
use crate::gamify::{Achievement, Event, EventOutcome, Grant, LedgerOutcome, PropValue, Spend, TierReason};
use crate::metrics::Rpc;

use super::pb::{self, event_service_server::EventService, gamification_service_server::GamificationService};
use super::service::Ctx;
use super::status::status_of;

#[derive(Clone)]
pub struct EventSvc(pub Arc<Ctx>);

#[derive(Clone)]
pub struct GamificationSvc(pub Arc<Ctx>);

/// A ledger page's size when the request leaves it at 0, and its largest.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Achievements read per look at the engine by a watcher.
const WATCH_BATCH: usize = 4096;
/// Answers buffered per stream before the sender waits for the client.
const STREAM_BUFFER: usize = 64;

/// A ledger page's size: 0 is the default page, above the largest is refused.
pub(crate) fn page_limit(limit: u32) -> Result<usize, AppError> {
    match limit {
        0 => Ok(DEFAULT_PAGE as usize),
        1..=MAX_PAGE => Ok(limit as usize),
        _ => Err(invalid("limit", format!("{limit} is above the largest page, {MAX_PAGE}"))),
    }
}

fn invalid(field: &'static str, msg: impl Into<String>) -> AppError {
    AppError::Invalid { field, msg: msg.into() }
}

/// Event `i` of a batch. Values the core cannot hold (a non-finite double, a property
/// with no value) are refused here, before anything is logged.
fn event(i: usize, e: pb::GamifyEvent) -> Result<Event, AppError> {
    let pb::GamifyEvent { event_id, customer_id, r#type, occurred_at_ms, properties } = e;
    let mut props = BTreeMap::new();
    for (name, v) in properties {
        use pb::property_value::Value as V;
        let pb::PropertyValue { value } = v;
        let bad = |what: &str| {
            invalid(
                "events.properties",
                format!("event {i} (event_id {event_id:?}): property {name:?} {what}"),
            )
        };
        let v = match value {
            None => {
                return Err(bad("has no value (set bool_value, int_value, double_value or string_value)"))
            }
            Some(V::BoolValue(b)) => PropValue::Bool(b),
            Some(V::IntValue(n)) => PropValue::Int(n),
            Some(V::DoubleValue(x)) if !x.is_finite() => {
                return Err(bad(&format!("is {x}, not a finite number")))
            }
            Some(V::DoubleValue(x)) => PropValue::Float(x),
            Some(V::StringValue(s)) => PropValue::Str(s),
        };
        props.insert(name, v);
    }
    Ok(Event { event_id, customer_id, kind: r#type, occurred_at_ms, properties: props })
}

pub(crate) fn events(r: pb::RecordEventsRequest) -> Result<Vec<Event>, AppError> {
    let pb::RecordEventsRequest { events } = r;
    events.into_iter().enumerate().map(|(i, e)| event(i, e)).collect()
}

fn outcome_pb(o: EventOutcome) -> pb::EventOutcome {
    match o {
        EventOutcome::Applied { credited, reversed, shortfall, challenges: _ } => {
            pb::EventOutcome { duplicate: false, credited, reversed, shortfall }
        }
        EventOutcome::Duplicate => {
            pb::EventOutcome { duplicate: true, credited: 0, reversed: 0, shortfall: 0 }
        }
    }
}

pub(crate) fn recorded_pb(r: Recorded<Vec<EventOutcome>>) -> pb::RecordEventsResponse {
    let Recorded { sequence, result } = r;
    pb::RecordEventsResponse { outcomes: result.into_iter().map(outcome_pb).collect(), sequence }
}

pub(crate) fn transitions_pb(t: Transitions) -> pb::PreviewProgramResponse {
    let Transitions { tiers, levels } = t;
    pb::PreviewProgramResponse {
        tiers: tiers
            .into_iter()
            .map(|((from, to), customers)| pb::TierTransition { from, to, customers })
            .collect(),
        levels: levels
            .into_iter()
            .map(|((from, to), customers)| pb::LevelTransition { from, to, customers })
            .collect(),
    }
}

pub(crate) fn state_pb(s: CustomerState) -> pb::GamificationState {
    let CustomerState { customer_id, wallets, tier, level, achieve } = s;
    let AchieveView { badges, challenges, streaks } = achieve;
    let wallets = wallets
        .into_iter()
        .map(|w| {
            let WalletView { wallet, balance, pending, lifetime, expiring_30d, next_expiry } = w;
            pb::WalletState {
                wallet,
                balance,
                pending,
                lifetime,
                expiring_30d,
                next_expiry_ms: next_expiry.map(|(t, _)| t),
                next_expiry_points: next_expiry.map_or(0, |(_, p)| p),
            }
        })
        .collect();
    let TierView { tier, manual, since_ms, measure, next, qualifies_for, next_downgrade_check_ms } = tier;
    let (next_tier, next_tier_missing) = match next {
        Some((name, missing)) => (Some(name), missing),
        None => (None, 0.0),
    };
    let LevelView { level, lifetime_points, to_next } = level;
    pb::GamificationState {
        customer_id,
        wallets,
        tier: Some(pb::TierState {
            tier,
            manual,
            since_ms,
            measure,
            next_tier,
            next_tier_missing,
            qualifies_for,
            next_downgrade_check_ms,
        }),
        level: Some(pb::LevelState {
            level,
            lifetime_points,
            next_level: to_next.map(|(_, l)| l),
            points_to_next: to_next.map_or(0, |(p, _)| p),
        }),
        badges: badges.into_iter().map(badge_pb).collect(),
        challenges: challenges.into_iter().map(challenge_pb).collect(),
        streaks: streaks.into_iter().map(streak_pb).collect(),
        // Filled by the adapter from the leaderboards (`grpc/leaderboard.rs`).
        leaderboards: vec![],
    }
}

fn badge_pb(b: BadgeView) -> pb::BadgeHeld {
    let BadgeView { id, name, count, first_awarded_ms, last_awarded_ms } = b;
    pb::BadgeHeld { badge: id, name, count, first_awarded_ms, last_awarded_ms }
}

fn challenge_pb(c: ChallengeView) -> pb::ChallengeProgress {
    let ChallengeView { id, name, progress, target, completed, window, opt_in, joined, completions } = c;
    pb::ChallengeProgress {
        challenge: id,
        name,
        progress,
        target,
        completed,
        window_start_ms: window.map(|w| w.0),
        window_end_ms: window.map(|w| w.1),
        opt_in,
        joined,
        completions,
    }
}

fn streak_pb(s: StreakView) -> pb::StreakProgress {
    let StreakView { id, name, unit, current, longest } = s;
    pb::StreakProgress { streak: id, name, unit: unit.to_string(), current, longest }
}

fn entry_pb(e: Entry) -> pb::LedgerEntry {
    use pb::LedgerEntryKind as K;
    let Entry { seq, kind, source, at_ms, points } = e;
    let mut out = pb::LedgerEntry {
        seq,
        kind: K::Unspecified as i32,
        source,
        at_ms,
        points,
        rule: None,
        pending: false,
        available_ms: 0,
        expires_ms: None,
        remaining: 0,
        shortfall: 0,
    };
    match kind {
        EntryKind::Credit { rule, pending, available_ms, expires_ms, remaining } => {
            out.kind = K::Credit as i32;
            (out.rule, out.pending, out.available_ms, out.expires_ms, out.remaining) =
                (rule, pending, available_ms, expires_ms, remaining);
        }
        EntryKind::Spend => out.kind = K::Spend as i32,
        EntryKind::Expiry => out.kind = K::Expiry as i32,
        EntryKind::Reversal { shortfall } => {
            out.kind = K::Reversal as i32;
            out.shortfall = shortfall;
        }
    }
    out
}

pub(crate) fn ledger_pb(p: LedgerPage) -> pb::GetLedgerResponse {
    let LedgerPage { entries, next_after } = p;
    pb::GetLedgerResponse { entries: entries.into_iter().map(entry_pb).collect(), next_after_seq: next_after }
}

pub(crate) fn points_pb(r: Recorded<LedgerOutcome>) -> pb::PointsResponse {
    let Recorded { sequence, result: LedgerOutcome { seq, duplicate } } = r;
    pb::PointsResponse { sequence, ledger_seq: seq, duplicate }
}

fn reason_name(r: TierReason) -> &'static str {
    match r {
        TierReason::Qualified => "qualified",
        TierReason::PeriodEnd => "period_end",
        TierReason::Manual => "manual",
        TierReason::Program => "program",
    }
}

fn achievement_pb(a: AchievementEvent) -> pb::AchievementEvent {
    use pb::achievement_event::Kind;
    let AchievementEvent { sequence, achievement } = a;
    let (customer_id, at_ms, kind) = match achievement {
        Achievement::TierChanged { customer_id, from, to, reason, at_ms } => (
            customer_id,
            at_ms,
            Kind::TierChanged(pb::TierChange { from, to, reason: reason_name(reason).into() }),
        ),
        Achievement::LevelUp { customer_id, from, to, at_ms } => {
            (customer_id, at_ms, Kind::LevelUp(pb::LevelUp { from, to }))
        }
        Achievement::BadgeAwarded { customer_id, badge, count, at_ms } => {
            (customer_id, at_ms, Kind::BadgeAwarded(pb::BadgeAwarded { badge, count }))
        }
        Achievement::ChallengeCompleted { customer_id, challenge, window_start_ms, at_ms } => (
            customer_id,
            at_ms,
            Kind::ChallengeCompleted(pb::ChallengeCompleted { challenge, window_start_ms }),
        ),
        Achievement::StreakMilestone { customer_id, streak, milestone, at_ms } => {
            (customer_id, at_ms, Kind::StreakMilestone(pb::StreakMilestone { streak, milestone }))
        }
    };
    pb::AchievementEvent { sequence, customer_id, at_ms, kind: Some(kind) }
}

fn closing_status() -> Status {
    Status::unavailable("the server is stopping")
}

pub type AnswerStream = ReceiverStream<Result<pb::RecordEventsResponse, Status>>;
pub type AchievementStream = ReceiverStream<Result<pb::AchievementEvent, Status>>;

/// One RecordEventStream message on its way: submitted (answer pending) or failed.
enum Pending {
    Submitted(Instant, PendingEvents),
    Failed(Instant, Status),
}

/// Pipelined: each message is submitted as it arrives, without waiting for the commits
/// of the ones before it (up to [`STREAM_BUFFER`] in flight), and answered in order as
/// it commits (the commit queue keeps submission order, so commit order is message
/// order). The first refused message ends the stream with its status; messages read
/// after it may have been committed unanswered (a client resends them: their event ids
/// make them duplicates).
fn answer_stream(ctx: Arc<Ctx>, mut requests: Streaming<pb::RecordEventsRequest>) -> AnswerStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let (pend_tx, mut pend_rx) = mpsc::channel::<Pending>(STREAM_BUFFER);
    let reader = ctx.clone();
    tokio::spawn(async move {
        let mut closing = reader.app.closing();
        loop {
            let next = tokio::select! {
                n = requests.next() => n,
                _ = closing.wait() => Some(Err(closing_status())),
                _ = pend_tx.closed() => return,
            };
            let t = Instant::now();
            let p = match next {
                None => return,
                Some(Err(s)) => Pending::Failed(t, s),
                Some(Ok(r)) => match events(r).and_then(|e| reader.app.submit_events(e)) {
                    Ok(pending) => Pending::Submitted(t, pending),
                    Err(e) => Pending::Failed(t, status_of(e)),
                },
            };
            let last = matches!(p, Pending::Failed(..));
            if pend_tx.send(p).await.is_err() || last {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let span = tracing::info_span!("rpc", rpc = Rpc::RecordEventStream.name());
        while let Some(p) = pend_rx.recv().await {
            let (t, answer) = match p {
                Pending::Submitted(t, pending) => {
                    (t, pending.wait().await.map(recorded_pb).map_err(status_of))
                }
                Pending::Failed(t, s) => (t, Err(s)),
            };
            ctx.record(Rpc::RecordEventStream, &span, t, answer.as_ref().err());
            let failed = answer.is_err();
            if tx.send(answer).await.is_err() || failed {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Achievements from `from` (0: the next commit) in commit order, then each commit's as
/// it lands, until the client goes or the server stops.
fn achievement_stream(app: App, customers: HashSet<u64>, from: u64) -> AchievementStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut commits = app.commit_watch();
        let mut closing = app.closing();
        let mut from = if from == 0 { *commits.borrow_and_update() + 1 } else { from };
        loop {
            // Marked seen before the read, so a commit landing after it wakes the wait.
            commits.borrow_and_update();
            let batch = match app.achievements_since(from, &customers, WATCH_BATCH) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(status_of(e))).await;
                    return;
                }
            };
            let Some(last) = batch.last().map(|a| a.sequence) else {
                tokio::select! {
                    r = commits.changed() => if r.is_err() { return },
                    _ = closing.wait() => {
                        let _ = tx.send(Err(closing_status())).await;
                        return;
                    }
                    _ = tx.closed() => return,
                }
                continue;
            };
            // A full batch may end inside a commit: its last commit is read again whole
            // next time, unless the batch holds nothing else.
            let cut = if batch.len() == WATCH_BATCH && batch[0].sequence != last {
                batch.partition_point(|a| a.sequence < last)
            } else {
                batch.len()
            };
            from = if cut < batch.len() { last } else { last + 1 };
            for a in batch.into_iter().take(cut) {
                if tx.send(Ok(achievement_pb(a))).await.is_err() {
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl EventService for EventSvc {
    async fn record_events(
        &self,
        req: Request<pb::RecordEventsRequest>,
    ) -> Result<Response<pb::RecordEventsResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::RecordEvents, async {
            Ok(recorded_pb(ctx.app.record_events(events(req.into_inner())?).await?))
        })
        .await
    }

    type RecordEventStreamStream = AnswerStream;

    async fn record_event_stream(
        &self,
        req: Request<Streaming<pb::RecordEventsRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        Ok(Response::new(answer_stream(self.0.clone(), req.into_inner())))
    }
}

#[tonic::async_trait]
impl GamificationService for GamificationSvc {
    async fn put_program(
        &self,
        req: Request<pb::PutProgramRequest>,
    ) -> Result<Response<pb::PutProgramResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::PutProgram, async {
            let pb::PutProgramRequest { program_json } = req.into_inner();
            let Recorded { sequence, result } = ctx.app.put_program(&program_json).await?;
            Ok(pb::PutProgramResponse { sequence, customers_changed: result })
        })
        .await
    }

    async fn get_program(
        &self,
        req: Request<pb::GetProgramRequest>,
    ) -> Result<Response<pb::GetProgramResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GetProgram, async {
            let pb::GetProgramRequest {} = req.into_inner();
            let ProgramInfo { json, effective_ms } = ctx.app.get_program()?;
            Ok(pb::GetProgramResponse { program_json: json, effective_ms })
        })
        .await
    }

    async fn preview_program(
        &self,
        req: Request<pb::PreviewProgramRequest>,
    ) -> Result<Response<pb::PreviewProgramResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::PreviewProgram, async {
            let pb::PreviewProgramRequest { program_json } = req.into_inner();
            Ok(transitions_pb(ctx.app.preview_program(&program_json).await?))
        })
        .await
    }

    async fn get_gamification_state(
        &self,
        req: Request<pb::GetGamificationStateRequest>,
    ) -> Result<Response<pb::GamificationState>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GetGamificationState, async {
            let pb::GetGamificationStateRequest { customer_id } = req.into_inner();
            let mut state = state_pb(ctx.app.gamification_state(customer_id)?);
            state.leaderboards = super::leaderboard::ranks_pb(ctx.app.board_ranks(customer_id)?);
            Ok(state)
        })
        .await
    }

    async fn get_ledger(
        &self,
        req: Request<pb::GetLedgerRequest>,
    ) -> Result<Response<pb::GetLedgerResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GetLedger, async {
            let pb::GetLedgerRequest { customer_id, wallet, after_seq, limit } = req.into_inner();
            Ok(ledger_pb(ctx.app.ledger(customer_id, wallet, after_seq, page_limit(limit)?)?))
        })
        .await
    }

    async fn spend_points(
        &self,
        req: Request<pb::PointsRequest>,
    ) -> Result<Response<pb::PointsResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::SpendPoints, async {
            let pb::PointsRequest { customer_id, wallet, request_id, points } = req.into_inner();
            Ok(points_pb(ctx.app.spend_points(Spend { customer_id, wallet, request_id, points }).await?))
        })
        .await
    }

    async fn grant_points(
        &self,
        req: Request<pb::PointsRequest>,
    ) -> Result<Response<pb::PointsResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GrantPoints, async {
            let pb::PointsRequest { customer_id, wallet, request_id, points } = req.into_inner();
            Ok(points_pb(ctx.app.grant_points(Grant { customer_id, wallet, request_id, points }).await?))
        })
        .await
    }

    async fn set_manual_tier(
        &self,
        req: Request<pb::SetManualTierRequest>,
    ) -> Result<Response<pb::SetManualTierResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::SetManualTier, async {
            let pb::SetManualTierRequest { customer_id, tier } = req.into_inner();
            let tier = (!tier.is_empty()).then_some(tier);
            Ok(pb::SetManualTierResponse { sequence: ctx.app.set_manual_tier(customer_id, tier).await? })
        })
        .await
    }

    async fn join_challenge(
        &self,
        req: Request<pb::JoinChallengeRequest>,
    ) -> Result<Response<pb::JoinChallengeResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::JoinChallenge, async {
            let pb::JoinChallengeRequest { customer_id, challenge } = req.into_inner();
            let Recorded { sequence, result } = ctx.app.join_challenge(customer_id, challenge).await?;
            Ok(pb::JoinChallengeResponse { sequence, already_joined: result })
        })
        .await
    }

    type WatchAchievementsStream = AchievementStream;

    async fn watch_achievements(
        &self,
        req: Request<pb::WatchAchievementsRequest>,
    ) -> Result<Response<AchievementStream>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::WatchAchievements, async {
            let pb::WatchAchievementsRequest { customer_ids, from_sequence } = req.into_inner();
            let customers: HashSet<u64> = customer_ids.into_iter().collect();
            // A resumed watch older than what is retained is refused at once, not mid-stream.
            if from_sequence != 0 {
                ctx.app.achievements_since(from_sequence, &customers, 1)?;
            }
            Ok(achievement_stream(ctx.app.clone(), customers, from_sequence))
        })
        .await
    }
}
