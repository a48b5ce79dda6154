//! Points outside events: spends (`SpendPoints`), grants (`GrantPoints`) and manual tiers.
//! Each is idempotent by (customer, request id) and checked whole before it changes
//! anything; a spend larger than the available balance is refused with
//! [`GamifyError::InsufficientPoints`].

use std::collections::BTreeSet;

use super::ledger::{NewCredit, Wallet, GRANT_RULE};
use super::program::{Program, UnknownCustomers, MAX_ID_BYTES, MAX_POINTS};
use super::state::{check_time, expires_at, relevel, schedule_check, set_tier, GamifyState};
use super::{Applied, CustomerFacts, GamifyError, TierReason};

/// A spend of points (`SpendPoints`): idempotent by (customer, request id).
#[derive(Clone, Debug, PartialEq)]
pub struct Spend {
    pub customer_id: u64,
    pub wallet: String,
    pub request_id: String,
    pub points: i64,
}

/// A grant of points (`GrantPoints`): idempotent by (customer, request id).
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub customer_id: u64,
    pub wallet: String,
    pub request_id: String,
    pub points: i64,
}

/// A spend's or grant's result: its ledger sequence, and whether it had been done before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerOutcome {
    pub seq: u32,
    pub duplicate: bool,
}

fn check_id(field: &'static str, id: &str) -> Result<(), GamifyError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(GamifyError::BadRequest {
            field,
            rule: "1 to 128 bytes",
            got: format!("{} bytes", id.len()),
        });
    }
    Ok(())
}

impl GamifyState {
    /// Checks a spend without changing anything.
    pub fn check_spend(&self, program: &Program, s: &Spend) -> Result<(), GamifyError> {
        check_id("request_id", &s.request_id)?;
        if !(1..=MAX_POINTS).contains(&s.points) {
            return Err(GamifyError::BadRequest {
                field: "points",
                rule: "1 to 10^12",
                got: s.points.to_string(),
            });
        }
        program.wallet_index(&s.wallet).ok_or_else(|| GamifyError::UnknownWallet(s.wallet.clone()))?;
        let w = self.key_of(&s.wallet).and_then(|k| self.customers.get(&s.customer_id)?.wallet(k));
        if let Some(d) = w.and_then(|w| w.find_spend(&s.request_id)) {
            return if d.amount == s.points {
                Ok(())
            } else {
                Err(GamifyError::RequestIdReused {
                    customer_id: s.customer_id,
                    request_id: s.request_id.clone(),
                })
            };
        }
        let available = w.map_or(0, Wallet::available);
        if available < s.points {
            return Err(GamifyError::InsufficientPoints {
                customer_id: s.customer_id,
                wallet: s.wallet.clone(),
                available,
                requested: s.points,
            });
        }
        Ok(())
    }

    /// Spends points: from the credits that expire first. A repeated request id answers
    /// what the first did and changes nothing.
    pub fn spend(
        &mut self,
        program: &Program,
        s: &Spend,
        logged_at_ms: i64,
    ) -> Result<(LedgerOutcome, Applied), GamifyError> {
        self.check_spend(program, s)?;
        check_time("logged_at_ms", logged_at_ms)?;
        let keys = self.keys(program)?;
        let wkey = self.intern(&s.wallet)?;
        if let Some(d) =
            self.customers.get(&s.customer_id).and_then(|c| c.wallet(wkey)?.find_spend(&s.request_id))
        {
            return Ok((LedgerOutcome { seq: d.seq, duplicate: true }, Applied::default()));
        }
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        self.touch(s.customer_id, &mut touched);
        let c = self.customers.get_mut(&s.customer_id).ok_or(GamifyError::UnknownCustomer(s.customer_id))?;
        let seq = c.wallet_mut(wkey).spend(&s.request_id, s.points, logged_at_ms).map_err(|available| {
            GamifyError::InsufficientPoints {
                customer_id: s.customer_id,
                wallet: s.wallet.clone(),
                available,
                requested: s.points,
            }
        })?;
        self.finish(program, &keys, touched, &mut out);
        Ok((LedgerOutcome { seq, duplicate: false }, out))
    }

    /// Checks a grant without changing anything.
    pub fn check_grant(
        &self,
        program: &Program,
        g: &Grant,
        facts: &dyn CustomerFacts,
    ) -> Result<(), GamifyError> {
        check_id("request_id", &g.request_id)?;
        if !(1..=MAX_POINTS).contains(&g.points) {
            return Err(GamifyError::BadRequest {
                field: "points",
                rule: "1 to 10^12",
                got: g.points.to_string(),
            });
        }
        program.wallet_index(&g.wallet).ok_or_else(|| GamifyError::UnknownWallet(g.wallet.clone()))?;
        if program.spec.unknown_customers == UnknownCustomers::Reject && !self.known(facts, g.customer_id) {
            return Err(GamifyError::UnknownCustomer(g.customer_id));
        }
        let w = self.key_of(&g.wallet).and_then(|k| self.customers.get(&g.customer_id)?.wallet(k));
        if let Some(c) =
            w.and_then(|w| w.credits.iter().find(|c| c.rule == GRANT_RULE && *c.source == *g.request_id))
        {
            if c.amount != g.points {
                return Err(GamifyError::RequestIdReused {
                    customer_id: g.customer_id,
                    request_id: g.request_id.clone(),
                });
            }
        }
        Ok(())
    }

    /// Grants points, available at once, expiring by the wallet's rule from the logged
    /// time. A repeated request id changes nothing.
    pub fn grant(
        &mut self,
        program: &Program,
        g: &Grant,
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<(LedgerOutcome, Applied), GamifyError> {
        self.check_grant(program, g, facts)?;
        check_time("logged_at_ms", logged_at_ms)?;
        let keys = self.keys(program)?;
        let wi =
            program.wallet_index(&g.wallet).ok_or_else(|| GamifyError::UnknownWallet(g.wallet.clone()))?;
        let wkey = keys.wallets[wi];
        let existing = self.customers.get(&g.customer_id).and_then(|c| c.wallet(wkey)).and_then(|w| {
            w.credits.iter().find(|c| c.rule == GRANT_RULE && *c.source == *g.request_id).map(|c| c.seq)
        });
        if let Some(seq) = existing {
            return Ok((LedgerOutcome { seq, duplicate: true }, Applied::default()));
        }
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let mut out = Applied::default();
        if !self.known(facts, g.customer_id) {
            out.created.push(g.customer_id);
        }
        let mut touched = BTreeSet::new();
        self.touch(g.customer_id, &mut touched);
        let c = self.customers.get_mut(&g.customer_id).ok_or(GamifyError::UnknownCustomer(g.customer_id))?;
        let seq = c.wallet_mut(wkey).credit(NewCredit {
            rule: GRANT_RULE,
            source: g.request_id.as_str().into(),
            amount: g.points,
            basis: 0,
            created_ms: logged_at_ms,
            available_ms: logged_at_ms,
            expires_ms: expires_at(program, wi, logged_at_ms),
        });
        relevel(program, &keys, g.customer_id, c, logged_at_ms, &mut out);
        self.finish(program, &keys, touched, &mut out);
        Ok((LedgerOutcome { seq, duplicate: false }, out))
    }

    /// Sets (or clears, with None) a customer's manual tier: a floor. Setting it above
    /// the current tier raises the tier at once; clearing it lowers nothing until the
    /// next downgrade check.
    pub fn set_manual_tier(
        &mut self,
        program: &Program,
        customer_id: u64,
        tier: Option<&str>,
        facts: &dyn CustomerFacts,
        logged_at_ms: i64,
    ) -> Result<Applied, GamifyError> {
        check_time("logged_at_ms", logged_at_ms)?;
        let manual = match tier {
            None => None,
            Some(name) => {
                Some(program.tier_index(name).ok_or_else(|| GamifyError::UnknownTier(name.into()))? as u16)
            }
        };
        if !self.known(facts, customer_id) {
            return Err(GamifyError::UnknownCustomer(customer_id));
        }
        let keys = self.keys(program)?;
        self.clock_ms = self.clock_ms.max(logged_at_ms);
        let now = self.clock_ms;
        let mut out = Applied::default();
        let mut touched = BTreeSet::new();
        self.touch(customer_id, &mut touched);
        if let Some(c) = self.customers.get_mut(&customer_id) {
            c.manual_tier = manual;
            if let Some(m) = manual.filter(|&m| m > c.tier) {
                set_tier(program, customer_id, c, m, TierReason::Manual, now, &mut out);
            }
            schedule_check(program, c, now);
        }
        self.finish(program, &keys, touched, &mut out);
        Ok(out)
    }
}
