//! One customer's wallet: credits and debits, in one sequence.
//!
//! - A credit (from a rule or a grant) is pending until `available_ms` when its rule has a
//!   returns window, and expires at `expires_ms`. `remaining` is what is left of it.
//! - A debit takes points from credits and records which ones and how many (`parts`):
//!   a spend (available credits only), an expiry (what is left of credits whose time
//!   came), or a refund's reversal.
//! - Spends and reversals take the credits that expire first; ties go to the oldest
//!   (then the lowest sequence). So expiry only ever finds points nobody spent.
//! - A refund reverses the points its purchase earned, in the share of the purchase
//!   amount refunded so far (`floor(points × refunded / purchase amount)`, cumulative, so
//!   two half refunds reverse what one whole refund would). The reversal takes first what
//!   is left of the purchase's own credits, then other credits; what no credit covers
//!   (the points were spent) is the shortfall, recorded on the debit: the balance never
//!   goes below zero.
//!
//! Invariant (tested after any sequence): for every credit, `amount − remaining` equals
//! the sum of the debit parts that name it, and `remaining ≥ 0`.
//!
//! Memory: a credit is 96 bytes plus its source id on the heap (an event id, ~24 bytes
//! with the allocator's rounding); a debit is 64 bytes plus 16 per credit it took from.

use super::DAY_MS;

/// The `rule` of a credit made by a grant.
pub const GRANT_RULE: u16 = u16::MAX;

#[derive(Clone, Debug, PartialEq)]
pub struct Credit {
    /// Position in the wallet's sequence (shared with debits); the ledger's cursor.
    pub seq: u32,
    /// The interned rule id ([`super::state::GamifyState::name`]), or [`GRANT_RULE`].
    pub rule: u16,
    pub pending: bool,
    /// The event id (rules) or request id (grants) that made it: shared with the dedup
    /// window and the event's other credits, and between versions of the customer (a
    /// copy of a customer on its first change in a commit group copies no ids).
    pub source: std::sync::Arc<str>,
    pub amount: i64,
    pub remaining: i64,
    /// Points of this credit that refunds reversed (taken from it or, when it was spent,
    /// from other credits or recorded as a shortfall).
    pub reversed: i64,
    /// The purchase amount, in hundredths, a refund's share is measured against (0: a
    /// refund reverses everything).
    pub basis: i64,
    /// Hundredths refunded so far against the purchase.
    pub refunded: i64,
    pub created_ms: i64,
    pub available_ms: i64,
    /// `i64::MAX`: never.
    pub expires_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebitKind {
    Spend,
    Expiry,
    Reversal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Debit {
    pub seq: u32,
    pub kind: DebitKind,
    /// The spend's request id, the refund's event id; empty for an expiry.
    pub source: Box<str>,
    pub at_ms: i64,
    /// Points taken (the sum of `parts`).
    pub amount: i64,
    /// A reversal's points that no credit could cover.
    pub shortfall: i64,
    /// (credit seq, points) in the order taken.
    pub parts: Vec<(u32, i64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wallet {
    /// In sequence order.
    pub credits: Vec<Credit>,
    /// In sequence order.
    pub debits: Vec<Debit>,
    pub next_seq: u32,
    /// Σ (amount − reversed) over `credits`, kept as they change: levels read it for
    /// every customer a change touches and for every customer a preview visits, and a
    /// year of history is hundreds of credits to add up.
    earned: i64,
}

/// A new credit's terms.
#[derive(Clone, Debug)]
pub struct NewCredit {
    pub rule: u16,
    pub source: std::sync::Arc<str>,
    pub amount: i64,
    pub basis: i64,
    pub created_ms: i64,
    pub available_ms: i64,
    pub expires_ms: i64,
}

/// What [`Wallet::lifetime`] answers, added up.
fn earned_of(credits: &[Credit]) -> i64 {
    credits.iter().map(|c| c.amount - c.reversed).sum()
}

impl Wallet {
    /// A wallet read back from a snapshot.
    pub fn from_parts(credits: Vec<Credit>, debits: Vec<Debit>, next_seq: u32) -> Wallet {
        let earned = earned_of(&credits);
        Wallet { credits, debits, next_seq, earned }
    }

    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub fn credit(&mut self, n: NewCredit) -> u32 {
        let seq = self.take_seq();
        self.earned += n.amount;
        self.credits.push(Credit {
            seq,
            rule: n.rule,
            // Pending until a tick at or after `available_ms` releases it.
            pending: n.available_ms > n.created_ms,
            source: n.source,
            amount: n.amount,
            remaining: n.amount,
            reversed: 0,
            basis: n.basis,
            refunded: 0,
            created_ms: n.created_ms,
            available_ms: n.available_ms,
            expires_ms: n.expires_ms,
        });
        seq
    }

    /// Points that can be spent.
    pub fn available(&self) -> i64 {
        self.credits.iter().filter(|c| !c.pending).map(|c| c.remaining).sum()
    }

    pub fn pending(&self) -> i64 {
        self.credits.iter().filter(|c| c.pending).map(|c| c.remaining).sum()
    }

    /// Points ever credited, less what refunds reversed (levels follow it).
    pub fn lifetime(&self) -> i64 {
        self.earned
    }

    /// Points (pending or not) that expire at or before `now + days`.
    pub fn expiring_within(&self, now: i64, days: i64) -> i64 {
        let horizon = now.saturating_add(days * DAY_MS);
        self.credits.iter().filter(|c| c.expires_ms <= horizon).map(|c| c.remaining).sum()
    }

    /// The next instant this wallet changes by itself or its 30-day figure moves.
    pub fn next_due(&self, now: i64) -> i64 {
        let mut due = i64::MAX;
        for c in self.credits.iter().filter(|c| c.remaining > 0) {
            if c.pending {
                due = due.min(c.available_ms);
            }
            due = due.min(c.expires_ms);
            let enters = c.expires_ms.saturating_sub(30 * DAY_MS);
            if enters > now {
                due = due.min(enters);
            }
        }
        due
    }

    fn index_of(&self, seq: u32) -> Option<usize> {
        self.credits.binary_search_by_key(&seq, |c| c.seq).ok()
    }

    /// Indexes of credits with points left, expiring first, then oldest, then by seq.
    fn consumption_order(&self, with_pending: bool) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.credits.len())
            .filter(|&i| self.credits[i].remaining > 0 && (with_pending || !self.credits[i].pending))
            .collect();
        idx.sort_by_key(|&i| {
            let c = &self.credits[i];
            (c.expires_ms, c.created_ms, c.seq)
        });
        idx
    }

    fn take(&mut self, want: i64, with_pending: bool, parts: &mut Vec<(u32, i64)>) -> i64 {
        let mut left = want;
        for i in self.consumption_order(with_pending) {
            if left == 0 {
                break;
            }
            let c = &mut self.credits[i];
            let t = c.remaining.min(left);
            c.remaining -= t;
            left -= t;
            parts.push((c.seq, t));
        }
        want - left
    }

    /// The spend with this request id, if any.
    pub fn find_spend(&self, request_id: &str) -> Option<&Debit> {
        self.debits.iter().find(|d| d.kind == DebitKind::Spend && &*d.source == request_id)
    }

    /// Spends `amount` available points, or says how many are available.
    pub fn spend(&mut self, request_id: &str, amount: i64, at_ms: i64) -> Result<u32, i64> {
        let available = self.available();
        if available < amount {
            return Err(available);
        }
        let mut parts = Vec::new();
        let taken = self.take(amount, false, &mut parts);
        let seq = self.take_seq();
        self.debits.push(Debit {
            seq,
            kind: DebitKind::Spend,
            source: request_id.into(),
            at_ms,
            amount: taken,
            shortfall: 0,
            parts,
        });
        Ok(seq)
    }

    /// Pending credits whose window is over become available; returns the points.
    pub fn release(&mut self, now: i64) -> i64 {
        let mut n = 0;
        for c in self.credits.iter_mut().filter(|c| c.pending && c.available_ms <= now) {
            c.pending = false;
            n += c.remaining;
        }
        n
    }

    /// Expires what is left of the credits due by `now` (one debit); returns the points.
    pub fn expire(&mut self, now: i64) -> i64 {
        let mut parts = Vec::new();
        for c in self.credits.iter_mut().filter(|c| c.expires_ms <= now && c.remaining > 0) {
            parts.push((c.seq, c.remaining));
            c.remaining = 0;
        }
        if parts.is_empty() {
            return 0;
        }
        let amount = parts.iter().map(|p| p.1).sum();
        let seq = self.take_seq();
        self.debits.push(Debit {
            seq,
            kind: DebitKind::Expiry,
            source: "".into(),
            at_ms: now,
            amount,
            shortfall: 0,
            parts,
        });
        amount
    }

    /// Reverses the credits `purchase` earned for a refund of `refund_cents` hundredths
    /// (None: all of it). Returns (points reversed, shortfall), or None when no credit of
    /// this wallet came from `purchase`.
    pub fn reverse(
        &mut self,
        purchase: &str,
        refund: &str,
        refund_cents: Option<i64>,
        at_ms: i64,
    ) -> Option<(i64, i64)> {
        let own: Vec<usize> = (0..self.credits.len())
            .filter(|&i| self.credits[i].rule != GRANT_RULE && &*self.credits[i].source == purchase)
            .collect();
        if own.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        let mut deficit = 0;
        let mut total = 0;
        for i in own {
            let c = &mut self.credits[i];
            let target = match refund_cents {
                Some(r) if c.basis > 0 => {
                    c.refunded = c.refunded.saturating_add(r).min(c.basis);
                    (c.amount as i128 * c.refunded as i128 / c.basis as i128) as i64
                }
                Some(_) | None => {
                    c.refunded = c.basis;
                    c.amount
                }
            };
            let delta = target - c.reversed;
            if delta <= 0 {
                continue;
            }
            c.reversed = target;
            self.earned -= delta;
            total += delta;
            let t = c.remaining.min(delta);
            if t > 0 {
                c.remaining -= t;
                parts.push((c.seq, t));
            }
            deficit += delta - t;
        }
        if total == 0 {
            return Some((0, 0));
        }
        let from_others = self.take(deficit, true, &mut parts);
        let shortfall = deficit - from_others;
        let amount = total - shortfall;
        let seq = self.take_seq();
        self.debits.push(Debit {
            seq,
            kind: DebitKind::Reversal,
            source: refund.into(),
            at_ms,
            amount,
            shortfall,
            parts,
        });
        Some((total, shortfall))
    }

    /// Checks the ledger invariant; the error says which credit breaks it.
    pub fn check_invariant(&self) -> Result<(), String> {
        if self.earned != earned_of(&self.credits) {
            return Err(format!(
                "lifetime {} is not what the credits add up to, {}",
                self.earned,
                earned_of(&self.credits)
            ));
        }
        let mut taken = vec![0i64; self.credits.len()];
        for d in &self.debits {
            if d.amount != d.parts.iter().map(|p| p.1).sum::<i64>() {
                return Err(format!("debit {} amount {} is not the sum of its parts", d.seq, d.amount));
            }
            for &(seq, n) in &d.parts {
                let i = self
                    .index_of(seq)
                    .ok_or_else(|| format!("debit {} names unknown credit {seq}", d.seq))?;
                if n <= 0 {
                    return Err(format!("debit {} takes {n} from credit {seq}", d.seq));
                }
                taken[i] += n;
            }
        }
        for (c, t) in self.credits.iter().zip(taken) {
            if c.remaining < 0 || c.amount - c.remaining != t {
                return Err(format!(
                    "credit {}: amount {} remaining {} but debits took {t}",
                    c.seq, c.amount, c.remaining
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nc(source: &str, amount: i64, created: i64, available: i64, expires: i64) -> NewCredit {
        NewCredit {
            rule: 0,
            source: source.into(),
            amount,
            basis: amount * 100,
            created_ms: created,
            available_ms: available,
            expires_ms: expires,
        }
    }

    #[test]
    fn spend_takes_what_expires_first_then_the_oldest() {
        let mut w = Wallet::default();
        let a = w.credit(nc("a", 10, 1, 1, 300));
        let b = w.credit(nc("b", 10, 2, 2, 200));
        let c = w.credit(nc("c", 10, 0, 0, 300));
        w.spend("s1", 15, 5).unwrap();
        // b expires first (200); then c and a both expire at 300 and c is older.
        assert_eq!(w.debits[0].parts, vec![(b, 10), (c, 5)]);
        assert_eq!(w.available(), 15);
        assert_eq!(w.spend("s2", 16, 6), Err(15));
        // Expiry at 300 takes only what is left: 5 of c, 10 of a.
        assert_eq!(w.expire(300), 15);
        assert_eq!(w.debits[1].parts, vec![(a, 10), (c, 5)]);
        assert_eq!(w.available(), 0);
        w.check_invariant().unwrap();
    }

    #[test]
    fn pending_points_cannot_be_spent_until_released() {
        let mut w = Wallet::default();
        w.credit(nc("p", 50, 0, 14 * DAY_MS, i64::MAX));
        assert_eq!((w.available(), w.pending()), (0, 50));
        assert_eq!(w.spend("s", 1, 1), Err(0));
        assert_eq!(w.release(14 * DAY_MS - 1), 0);
        assert_eq!(w.release(14 * DAY_MS), 50);
        assert_eq!((w.available(), w.pending()), (50, 0));
    }

    #[test]
    fn refunds_reverse_in_shares_and_record_the_shortfall() {
        let mut w = Wallet::default();
        // A purchase of 100.00 € earned 100 points; another credit holds 30.
        w.credit(nc("buy", 100, 0, 0, 1000));
        w.credit(nc("other", 30, 0, 0, 500));
        w.spend("s", 90, 1).unwrap(); // takes 30 of "other" (expires first), 60 of "buy"
                                      // Refund 25 €: a quarter of 100 points = 25, taken from "buy"'s 40 left.
        assert_eq!(w.reverse("buy", "r1", Some(2500), 2), Some((25, 0)));
        assert_eq!(w.available(), 15);
        // Refund the remaining 75 €: 75 more points; 15 left anywhere, shortfall 60.
        assert_eq!(w.reverse("buy", "r2", Some(7500), 3), Some((75, 60)));
        assert_eq!(w.available(), 0);
        assert_eq!(w.lifetime(), 30);
        // A refund beyond the purchase reverses nothing more.
        assert_eq!(w.reverse("buy", "r3", Some(100), 4), Some((0, 0)));
        assert_eq!(w.reverse("nope", "r4", None, 4), None);
        w.check_invariant().unwrap();
    }

    #[test]
    fn expiring_within_and_next_due() {
        let mut w = Wallet::default();
        w.credit(nc("a", 7, 0, 0, 40 * DAY_MS));
        w.credit(nc("b", 5, 0, 2 * DAY_MS, 100 * DAY_MS));
        assert_eq!(w.expiring_within(0, 30), 0);
        assert_eq!(w.expiring_within(10 * DAY_MS, 30), 7);
        // Next: b's release at day 2 (before a enters the 30-day window at day 10).
        assert_eq!(w.next_due(0), 2 * DAY_MS);
        w.release(2 * DAY_MS);
        assert_eq!(w.next_due(2 * DAY_MS), 10 * DAY_MS);
    }
}
