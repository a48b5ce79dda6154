//! Reads: a customer's gamification state (`GetGamificationState`) and a page of a
//! wallet's ledger (`GetLedger`). Reads never change the state; figures that depend on
//! the time (expiring soon, tier progress) are computed for the `now` the reader passes.

use super::ledger::{DebitKind, GRANT_RULE};
use super::program::Program;
use super::state::GamifyState;
use super::tiers::{level_of, next_check, qualified, today};
use super::GamifyError;

#[derive(Clone, Debug, PartialEq)]
pub struct WalletView {
    pub wallet: String,
    pub balance: i64,
    pub pending: i64,
    pub lifetime: i64,
    pub expiring_30d: i64,
    /// The next expiry: (instant, points).
    pub next_expiry: Option<(i64, i64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TierView {
    pub tier: String,
    pub manual: Option<String>,
    pub since_ms: i64,
    /// The measure now, in its unit (e.g. € of 365-day turnover).
    pub measure: f64,
    /// The next tier and how much of the measure it still needs.
    pub next: Option<(String, f64)>,
    /// The tier the measure qualifies for now (what a downgrade check would keep, above
    /// the manual floor).
    pub qualifies_for: String,
    /// When the next downgrade check runs, if the tier can drop.
    pub next_downgrade_check_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LevelView {
    pub level: u32,
    pub lifetime_points: i64,
    /// "240 points to level 12": (points missing, next level).
    pub to_next: Option<(i64, u32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CustomerState {
    pub customer_id: u64,
    pub wallets: Vec<WalletView>,
    pub tier: TierView,
    pub level: LevelView,
    pub achieve: super::achieve_state::AchieveView,
}

/// A ledger entry with its reason.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryKind {
    /// From a rule (its id) or a grant.
    Credit {
        rule: Option<String>,
        pending: bool,
        available_ms: i64,
        expires_ms: Option<i64>,
        remaining: i64,
    },
    Spend,
    Expiry,
    /// A refund's reversal, with the points no credit could cover.
    Reversal {
        shortfall: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub seq: u32,
    pub kind: EntryKind,
    /// The event id, the spend's or grant's request id, or the refund's event id.
    pub source: String,
    pub at_ms: i64,
    /// Positive for credits, negative for debits.
    pub points: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LedgerPage {
    pub entries: Vec<Entry>,
    /// The cursor for the next page (`after_seq`), if there is more.
    pub next_after: Option<u32>,
}

impl GamifyState {
    /// A customer's state for `GetGamificationState`, or None if they have none.
    pub fn state_of(&self, program: &Program, customer_id: u64, now_ms: i64) -> Option<CustomerState> {
        let c = self.customer(customer_id)?;
        let keys = self.lookup_keys(program);
        let wallets = program
            .spec
            .wallets
            .iter()
            .zip(&keys.wallets)
            .map(|(spec, &k)| {
                let w = c.wallet(k);
                let next_expiry = w.and_then(|w| {
                    let t = w
                        .credits
                        .iter()
                        .filter(|c| c.remaining > 0 && c.expires_ms != i64::MAX)
                        .map(|c| c.expires_ms)
                        .min()?;
                    Some((t, w.credits.iter().filter(|c| c.expires_ms == t).map(|c| c.remaining).sum()))
                });
                WalletView {
                    wallet: spec.id.clone(),
                    balance: w.map_or(0, |w| w.available()),
                    pending: w.map_or(0, |w| w.pending()),
                    lifetime: w.map_or(0, |w| w.lifetime()),
                    expiring_30d: w.map_or(0, |w| w.expiring_within(now_ms, 30)),
                    next_expiry,
                }
            })
            .collect();
        let tiers = &program.spec.tiers.tiers;
        let m = &program.spec.measures[program.tier_measure];
        let value = c
            .measure(keys.measures[program.tier_measure])
            .map_or(0, |b| b.sum(today(program.tz, now_ms), m.window_days));
        let t = c.tier as usize;
        let next = tiers
            .get(t + 1)
            .map(|n| (n.name.clone(), ((program.tier_mins[t + 1] - value).max(0)) as f64 / 100.0));
        let floor = c.manual_tier.unwrap_or(0);
        let tier = TierView {
            tier: tiers[t].name.clone(),
            manual: c.manual_tier.map(|m| tiers[m as usize].name.clone()),
            since_ms: c.tier_since_ms,
            measure: value as f64 / 100.0,
            next,
            qualifies_for: tiers[qualified(program, value)].name.clone(),
            next_downgrade_check_ms: match (c.tier > floor, c.next_check_ms) {
                (false, _) => None,
                (true, i64::MAX) => next_check(program, now_ms),
                (true, t) => Some(t),
            },
        };
        let lifetime = c.wallet(keys.wallets[0]).map_or(0, |w| w.lifetime());
        let (lv, missing) = level_of(&program.spec.levels.thresholds, lifetime);
        let level = LevelView { level: lv, lifetime_points: lifetime, to_next: missing.map(|m| (m, lv + 1)) };
        let achieve = self.achieve_view(program, Some(customer_id), now_ms);
        Some(CustomerState { customer_id, wallets, tier, level, achieve })
    }

    /// Up to `limit` entries of a wallet after sequence `after_seq` (None: from the start),
    /// oldest first.
    pub fn ledger(
        &self,
        program: &Program,
        customer_id: u64,
        wallet: &str,
        after_seq: Option<u32>,
        limit: usize,
    ) -> Result<LedgerPage, GamifyError> {
        program.wallet_index(wallet).ok_or_else(|| GamifyError::UnknownWallet(wallet.into()))?;
        if !(1..=1000).contains(&limit) {
            return Err(GamifyError::BadRequest {
                field: "limit",
                rule: "1 to 1000",
                got: limit.to_string(),
            });
        }
        let Some(w) = self.key_of(wallet).and_then(|k| self.customer(customer_id)?.wallet(k)) else {
            return Ok(LedgerPage { entries: Vec::new(), next_after: None });
        };
        let from = after_seq.map_or(0, |s| s as u64 + 1);
        let ci = w.credits.partition_point(|c| (c.seq as u64) < from);
        let di = w.debits.partition_point(|d| (d.seq as u64) < from);
        let mut credits = w.credits[ci..].iter().peekable();
        let mut debits = w.debits[di..].iter().peekable();
        let mut entries = Vec::new();
        while entries.len() < limit {
            let take_credit = match (credits.peek(), debits.peek()) {
                (Some(c), Some(d)) => c.seq < d.seq,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_credit {
                let Some(c) = credits.next() else { break };
                entries.push(Entry {
                    seq: c.seq,
                    kind: EntryKind::Credit {
                        rule: (c.rule != GRANT_RULE).then(|| self.name(c.rule).to_string()),
                        pending: c.pending,
                        available_ms: c.available_ms,
                        expires_ms: (c.expires_ms != i64::MAX).then_some(c.expires_ms),
                        remaining: c.remaining,
                    },
                    source: c.source.to_string(),
                    at_ms: c.created_ms,
                    points: c.amount,
                });
            } else {
                let Some(d) = debits.next() else { break };
                let kind = match d.kind {
                    DebitKind::Spend => EntryKind::Spend,
                    DebitKind::Expiry => EntryKind::Expiry,
                    DebitKind::Reversal => EntryKind::Reversal { shortfall: d.shortfall },
                };
                entries.push(Entry {
                    seq: d.seq,
                    kind,
                    source: d.source.to_string(),
                    at_ms: d.at_ms,
                    points: -d.amount,
                });
            }
        }
        let more = credits.peek().is_some() || debits.peek().is_some();
        let next_after = if more { entries.last().map(|e| e.seq) } else { None };
        Ok(LedgerPage { entries, next_after })
    }
}
