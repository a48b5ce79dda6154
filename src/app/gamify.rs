//! Gamification use cases: programs, events, points, tiers, reads, and the clock tick.
//! Every write stamps the wall clock into its [`Change`] before it is logged (apply
//! reads time only from the record), and is answered once durable and visible.

use std::collections::HashSet;
use std::sync::Arc;

use super::{App, AppError};
use crate::engine::{AchievementEvent, Mutation, Outcome};
use crate::gamify::achieve_state::AchieveView;
use crate::gamify::change::Transitions;
use crate::gamify::view::{CustomerState, LedgerPage, LevelView, TierView, WalletView};
use crate::gamify::{
    Change, ChangeOutcome, Event, EventOutcome, GamifyError, Grant, LedgerOutcome, Program, Spend,
};

/// The wall clock, in ms since the epoch: what the app stamps into a change.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_millis() as i64
}

/// A program in force.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramInfo {
    pub json: String,
    pub effective_ms: i64,
}

/// A committed gamification write: its sequence and what it did.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded<T> {
    pub sequence: u64,
    pub result: T,
}

impl App {
    /// Commits a change, answering the core's verdict at its turn.
    async fn commit_gamify(&self, c: Change) -> Result<(u64, ChangeOutcome), AppError> {
        let committed = self.commit(Mutation::Gamify(c)).await?;
        match committed.outcome {
            Outcome::Gamify(ChangeOutcome::Rejected(e)) => Err(e.into()),
            Outcome::Gamify(o) => Ok((committed.sequence, o)),
            other => Err(super::unexpected(other)),
        }
    }

    /// Validates and puts a program (its JSON text), in force from now; every customer is
    /// re-tiered in the same commit. Answers the customers whose attributes changed.
    pub async fn put_program(&self, json: &str) -> Result<Recorded<u64>, AppError> {
        let program = Arc::new(Program::from_json(json)?);
        let (sequence, o) =
            self.commit_gamify(Change::PutProgram { program, effective_ms: now_ms() }).await?;
        match o {
            ChangeOutcome::ProgramPut { customers_changed } => {
                Ok(Recorded { sequence, result: customers_changed })
            }
            other => Err(AppError::Internal(format!("put program answered {other:?}"))),
        }
    }

    /// Puts `json` unless a program is in force (start-up: `--program`, the demo's).
    pub async fn put_program_if_none(&self, json: &str) -> Result<Option<u64>, AppError> {
        if self.read().gamification().is_some() {
            return Ok(None);
        }
        Ok(Some(self.put_program(json).await?.sequence))
    }

    pub fn get_program(&self) -> Result<ProgramInfo, AppError> {
        let eng = self.read();
        let g = eng.gamification().ok_or(GamifyError::NoProgram)?;
        Ok(ProgramInfo { json: g.program.to_json(), effective_ms: g.effective_ms })
    }

    /// The gamification state's bytes by structure (None before the first program): a
    /// walk over every customer with state, for the metrics endpoint's scrape.
    pub fn gamify_memory(&self) -> Option<crate::gamify::memory::StateMemory> {
        self.read().gamification().map(|g| g.state.memory())
    }

    /// Exact tier → tier and level → level counts if `json` replaced the program now.
    pub async fn preview_program(&self, json: &str) -> Result<Transitions, AppError> {
        let new = Program::from_json(json)?;
        let eng = self.read();
        super::on_pool(move || {
            let g = eng.gamification().ok_or(GamifyError::NoProgram)?;
            Ok(g.state.preview(&g.program, &new)?)
        })
        .await
    }

    /// Records a batch of events (valid whole or refused whole): per event, what it did.
    pub async fn record_events(&self, events: Vec<Event>) -> Result<Recorded<Vec<EventOutcome>>, AppError> {
        self.submit_events(events)?.wait().await
    }

    /// Submits a batch of events without waiting for its commit: a stream submits the
    /// next batch while this one commits. Batches commit in submission order.
    pub fn submit_events(&self, events: Vec<Event>) -> Result<PendingEvents, AppError> {
        self.batch_limit("events in the batch", events.len())?;
        let m = Mutation::Gamify(Change::RecordEvents { events, logged_at_ms: now_ms() });
        Ok(PendingEvents(self.submit(m)?))
    }

    /// The wallet named, or the program's primary wallet when empty.
    fn wallet_or_primary(&self, wallet: String) -> Result<String, AppError> {
        if !wallet.is_empty() {
            return Ok(wallet);
        }
        let eng = self.read();
        let g = eng.gamification().ok_or(GamifyError::NoProgram)?;
        Ok(g.program.spec.wallets[0].id.clone())
    }

    /// Spends points (FAILED_PRECONDITION when the balance is short); idempotent by
    /// (customer, request id).
    pub async fn spend_points(&self, mut spend: Spend) -> Result<Recorded<LedgerOutcome>, AppError> {
        spend.wallet = self.wallet_or_primary(std::mem::take(&mut spend.wallet))?;
        match self.commit_gamify(Change::SpendPoints { spend, logged_at_ms: now_ms() }).await? {
            (sequence, ChangeOutcome::Spent(o)) => Ok(Recorded { sequence, result: o }),
            (_, other) => Err(AppError::Internal(format!("spend answered {other:?}"))),
        }
    }

    pub async fn grant_points(&self, mut grant: Grant) -> Result<Recorded<LedgerOutcome>, AppError> {
        grant.wallet = self.wallet_or_primary(std::mem::take(&mut grant.wallet))?;
        match self.commit_gamify(Change::GrantPoints { grant, logged_at_ms: now_ms() }).await? {
            (sequence, ChangeOutcome::Granted(o)) => Ok(Recorded { sequence, result: o }),
            (_, other) => Err(AppError::Internal(format!("grant answered {other:?}"))),
        }
    }

    /// Sets (or, with None, clears) a customer's manual tier floor.
    pub async fn set_manual_tier(&self, customer_id: u64, tier: Option<String>) -> Result<u64, AppError> {
        let c = Change::SetManualTier { customer_id, tier, logged_at_ms: now_ms() };
        Ok(self.commit_gamify(c).await?.0)
    }

    /// Opts a customer in to an opt-in challenge; answers whether they had joined before.
    pub async fn join_challenge(
        &self,
        customer_id: u64,
        challenge: String,
    ) -> Result<Recorded<bool>, AppError> {
        let c = Change::JoinChallenge { customer_id, challenge, logged_at_ms: now_ms() };
        match self.commit_gamify(c).await? {
            (sequence, ChangeOutcome::Joined { already }) => Ok(Recorded { sequence, result: already }),
            (_, other) => Err(AppError::Internal(format!("join challenge answered {other:?}"))),
        }
    }

    /// Logs a clock tick at `now_ms` when the agenda has something due by then (so an
    /// idle server does not grow its log). Answers the tick's sequence, if one was logged.
    pub async fn tick_gamification(&self, now_ms: i64) -> Result<Option<u64>, AppError> {
        let due = self.read().gamification().and_then(|g| g.state.next_due_ms());
        if due.is_none_or(|d| d > now_ms) {
            return Ok(None);
        }
        Ok(Some(self.commit_gamify(Change::Tick { now_ms }).await?.0))
    }

    /// A customer's balances, tier and level as of now. A customer of the table with no
    /// gamification state yet has the program's starting state.
    pub fn gamification_state(&self, customer_id: u64) -> Result<CustomerState, AppError> {
        let eng = self.read();
        let g = eng.gamification().ok_or(GamifyError::NoProgram)?;
        let now = now_ms().max(g.state.clock_ms());
        if let Some(s) = g.state.state_of(&g.program, customer_id, now) {
            return Ok(s);
        }
        if eng.data().row_of(customer_id).is_none() {
            return Err(AppError::UnknownCustomer(customer_id));
        }
        Ok(starting_state(&g.program, customer_id, g.state.achieve_view(&g.program, None, now)))
    }

    /// A page of a wallet's ledger (the primary wallet when `wallet` is empty).
    pub fn ledger(
        &self,
        customer_id: u64,
        wallet: String,
        after_seq: Option<u32>,
        limit: usize,
    ) -> Result<LedgerPage, AppError> {
        let wallet = self.wallet_or_primary(wallet)?;
        let eng = self.read();
        let g = eng.gamification().ok_or(GamifyError::NoProgram)?;
        if g.state.customer(customer_id).is_none() && eng.data().row_of(customer_id).is_none() {
            return Err(AppError::UnknownCustomer(customer_id));
        }
        Ok(g.state.ledger(&g.program, customer_id, &wallet, after_seq, limit)?)
    }

    /// Achievements with `sequence >= from` of the given customers (all when empty), up
    /// to `max`; `from` older than what is retained is [`AppError::Gone`].
    pub fn achievements_since(
        &self,
        from: u64,
        customers: &HashSet<u64>,
        max: usize,
    ) -> Result<Vec<AchievementEvent>, AppError> {
        let opened_at = self.0.opened_at;
        if from <= opened_at {
            return Err(crate::engine::Gone { asked: from, oldest: opened_at + 1 }.into());
        }
        Ok(self.read().achievements_since(from, customers, max)?)
    }

    /// The last committed sequence, and a receiver that changes after every commit.
    pub fn commit_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.commits.subscribe()
    }
}

/// A batch of events submitted ([`App::submit_events`]), its answer pending.
pub struct PendingEvents(tokio::sync::oneshot::Receiver<Result<crate::db::Committed, crate::db::DbError>>);

impl PendingEvents {
    /// Waits until the batch is durable and visible, or refused (also at its turn in
    /// the commit group: [`ChangeOutcome::Rejected`]).
    pub async fn wait(self) -> Result<Recorded<Vec<EventOutcome>>, AppError> {
        let committed = self.0.await.map_err(|_| crate::db::DbError::Closed)??;
        match committed.outcome {
            Outcome::Gamify(ChangeOutcome::Events(outcomes)) => {
                Ok(Recorded { sequence: committed.sequence, result: outcomes })
            }
            Outcome::Gamify(ChangeOutcome::Rejected(e)) => Err(e.into()),
            other => Err(super::unexpected(other)),
        }
    }
}

/// The state of a customer no event has touched yet.
fn starting_state(p: &Program, customer_id: u64, achieve: AchieveView) -> CustomerState {
    let tiers = &p.spec.tiers.tiers;
    let wallets = p
        .spec
        .wallets
        .iter()
        .map(|w| WalletView {
            wallet: w.id.clone(),
            balance: 0,
            pending: 0,
            lifetime: 0,
            expiring_30d: 0,
            next_expiry: None,
        })
        .collect();
    let tier = TierView {
        tier: tiers[0].name.clone(),
        manual: None,
        since_ms: 0,
        measure: 0.0,
        next: tiers.get(1).map(|t| (t.name.clone(), p.tier_mins[1] as f64 / 100.0)),
        qualifies_for: tiers[0].name.clone(),
        next_downgrade_check_ms: None,
    };
    let (level, missing) = crate::gamify::tiers::level_of(&p.spec.levels.thresholds, 0);
    let level = LevelView { level, lifetime_points: 0, to_next: missing.map(|m| (m, level + 1)) };
    CustomerState { customer_id, wallets, tier, level, achieve }
}

/// How often a server looks at the gamification agenda (a tick is logged only when
/// something is due: pending windows ending, expiry, downgrade checks).
pub const TICK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl App {
    /// Runs the gamification clock on the current tokio runtime until the app closes:
    /// every `every`, a logged tick at the wall clock when something is due by then.
    /// The handle ends once the app closes: awaiting it means the ticker no longer holds
    /// the database (and with it the data dir's lock).
    pub fn spawn_ticker(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            let mut closing = app.closing();
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = closing.wait() => return,
                }
                if let Err(e) = app.tick_gamification(now_ms()).await {
                    tracing::warn!(error = %e, "gamification tick failed");
                }
            }
        })
    }
}
