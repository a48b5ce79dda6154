//! Read-only questions about the contact state: counts within windows, suppression, and
//! whether a limit rules an offer out. [`super::arbitrate::decide`] asks them on a
//! published version, [`ContactState::apply_decision`] asks them again in commit order, and
//! [`super::reach`] asks them for every customer with a history, so the three agree.

use super::arbitrate::{DropReason, ModelKey};
use super::catalogue::ContactPolicy;
use super::history::{BetaCounts, Contact, ContactKind, ContactState, OfferStats, StoredDecision};
use super::offer::{Channel, Offer, Suppression};

impl ContactState {
    /// A retained decision.
    pub fn decision(&self, decision_id: u64) -> Option<&StoredDecision> {
        self.decisions.get(decision_id)
    }

    /// A decision as `GetDecision` at `now` sees it: None once its retention has ended,
    /// even before a later record moves the clock past it.
    pub fn decision_at(&self, decision_id: u64, now_ms: i64) -> Option<&StoredDecision> {
        let d = self.decisions.get(decision_id)?;
        (now_ms < d.context.now_ms.saturating_add(self.config.decision_retention_ms)).then_some(d)
    }

    /// When a decision taken at `decided_ms` is forgotten.
    pub fn expires_at(&self, decided_ms: i64) -> i64 {
        decided_ms.saturating_add(self.config.decision_retention_ms)
    }

    pub fn contacts(&self, customer_id: u64) -> &[Contact] {
        self.customers.get(customer_id).map_or(&[], |v| v.as_slice())
    }

    pub fn stats(&self, offer_id: &str) -> Option<&OfferStats> {
        self.offers.get(offer_id).map(|s| &**s)
    }

    /// Acceptances plus open reservations.
    /// Acceptances plus reservations still open at `now`: a decision that has expired by
    /// `now` holds nothing, even before a later record moves the clock past it (so a
    /// decision taken at `now` sees what its apply will see).
    pub fn budget_used(&self, offer_id: &str, now_ms: i64) -> u64 {
        let Some(s) = self.offers.get(offer_id) else { return 0 };
        let lapsed = self
            .expiry
            .range(..=(now_ms, u64::MAX))
            .filter_map(|(_, id)| self.decisions.get(*id))
            .flat_map(|d| &d.offers)
            .filter(|t| t.reserved && t.ranked.offer_id == offer_id)
            .count() as u64;
        s.accepted + s.reserved - lapsed
    }

    pub fn model(&self, offer_id: &str, key: &ModelKey) -> BetaCounts {
        self.offers.get(offer_id).and_then(|s| s.models.get(key)).copied().unwrap_or_default()
    }

    /// Impressions of the offer to the customer since `now - window` (later ones count too:
    /// a record committed earlier may carry a slightly later time).
    pub fn impressions(&self, customer_id: u64, offer_id: &str, now_ms: i64, window_ms: i64) -> u32 {
        let from = now_ms.saturating_sub(window_ms);
        self.contacts(customer_id)
            .iter()
            .filter(|c| {
                matches!(c.kind, ContactKind::Impression { .. }) && &*c.offer_id == offer_id && c.at_ms > from
            })
            .count() as u32
    }

    /// Contacts (distinct decisions with an impression) on a channel since `now - window`.
    pub fn channel_contacts(&self, customer_id: u64, channel: Channel, now_ms: i64, window_ms: i64) -> u32 {
        let from = now_ms.saturating_sub(window_ms);
        let mut ids: Vec<u64> = self
            .contacts(customer_id)
            .iter()
            .filter(|c| {
                matches!(c.kind, ContactKind::Impression { .. }) && c.channel == channel && c.at_ms > from
            })
            .map(|c| c.decision_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len() as u32
    }

    /// Until when the offer is paused for the customer at `now`, if it is.
    ///
    /// Negative responses are rejects (at their time) and, with `ignore_after_ms`,
    /// impressions never responded to (at their time plus `ignore_after_ms`, once that is
    /// not after `now`). Any `after` consecutive negatives spanning at most `within_ms`
    /// pause the offer until `pause_ms` after the last of them.
    pub fn suppressed_until(
        &self,
        customer_id: u64,
        offer_id: &str,
        s: &Suppression,
        now_ms: i64,
    ) -> Option<i64> {
        let mut times: Vec<i64> = self
            .contacts(customer_id)
            .iter()
            .filter(|c| &*c.offer_id == offer_id)
            .filter_map(|c| match (c.kind, s.ignore_after_ms) {
                (ContactKind::Reject, _) => Some(c.at_ms),
                (ContactKind::Impression { responded: false }, Some(i)) => {
                    Some(c.at_ms.saturating_add(i)).filter(|&t| t <= now_ms)
                }
                (ContactKind::Impression { .. }, _) => None,
            })
            .collect();
        times.sort_unstable();
        let n = s.after as usize;
        times
            .windows(n)
            .filter(|w| w[n - 1] - w[0] <= s.within_ms)
            .map(|w| w[n - 1].saturating_add(s.pause_ms))
            .filter(|&until| now_ms < until)
            .max()
    }

    /// Whether the offer's budget, cap or suppression rules it out for the customer now.
    pub fn offer_limit(&self, offer: &Offer, customer_id: u64, now_ms: i64) -> Option<DropReason> {
        if let Some(budget) = offer.budget {
            let used = self.budget_used(&offer.id, now_ms);
            if used >= budget {
                return Some(DropReason::BudgetSpent { used, budget });
            }
        }
        if let Some(cap) = offer.cap {
            let shown = self.impressions(customer_id, &offer.id, now_ms, cap.window_ms);
            if shown >= cap.max {
                return Some(DropReason::Capped { shown, max: cap.max });
            }
        }
        None
    }

    /// Whether the contact policy rules out the channel for the customer now.
    pub fn channel_limit(
        &self,
        policy: &ContactPolicy,
        customer_id: u64,
        channel: Channel,
        now_ms: i64,
    ) -> Option<DropReason> {
        let l = policy.channel_limits.get(&channel)?;
        let contacts = self.channel_contacts(customer_id, channel, now_ms, l.window_ms);
        (contacts >= l.max).then_some(DropReason::ContactLimit { channel, contacts, max: l.max })
    }

    pub fn suppression(&self, offer: &Offer, customer_id: u64, now_ms: i64) -> Option<DropReason> {
        let s = offer.suppression.as_ref()?;
        self.suppressed_until(customer_id, &offer.id, s, now_ms)
            .map(|until_ms| DropReason::Suppressed { until_ms })
    }
}
