//! The catalogue: the offers and the contact policy they share (frequency limits per
//! channel, the global control group).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::offer::{check_limit, percentage, Channel, Limit, Offer, OfferError};

/// Limits shared by every offer: contact frequency per channel and the control group.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactPolicy {
    /// Contacts (impressions of any offer) per customer on a channel.
    pub channel_limits: BTreeMap<Channel, Limit>,
    /// Percentage of customers (stable per customer) who get no offer at all: [0, 100].
    pub control_pct: f64,
}

impl Default for ContactPolicy {
    /// The industry default: at most one email and one SMS per customer per 7 days, no
    /// control group.
    fn default() -> Self {
        let week = Limit { max: 1, window_ms: 7 * 86_400_000 };
        ContactPolicy {
            channel_limits: [(Channel::Email, week), (Channel::Sms, week)].into_iter().collect(),
            control_pct: 0.0,
        }
    }
}

impl ContactPolicy {
    pub fn validate(&self) -> Result<(), OfferError> {
        for (c, l) in &self.channel_limits {
            check_limit(l).map_err(|(f, problem)| OfferError::Policy {
                field: format!("channel_limits.{c}.{f}"),
                problem,
            })?;
        }
        percentage(self.control_pct)
            .map_err(|problem| OfferError::Policy { field: "control_pct".into(), problem })
    }
}

/// Most offers a catalogue holds.
pub const MAX_OFFERS: usize = 10_000;

/// The offers and the contact policy: state of the engine, changed by logged mutations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalogue {
    /// Shared whole between versions: the decision state is cloned once per commit group
    /// that decides, and copying 200 keyed entries there (and freeing them when the old
    /// version goes) was paid by every group, though only offer changes touch the map.
    offers: Arc<BTreeMap<String, Arc<Offer>>>,
    policy: ContactPolicy,
}

impl Catalogue {
    pub fn new(policy: ContactPolicy) -> Result<Catalogue, OfferError> {
        policy.validate()?;
        Ok(Catalogue { offers: Arc::default(), policy })
    }

    /// Adds or replaces an offer (validated whole).
    pub fn put(&mut self, offer: Offer) -> Result<(), OfferError> {
        offer.validate()?;
        if !self.offers.contains_key(&offer.id) && self.offers.len() >= MAX_OFFERS {
            return Err(OfferError::TooMany(MAX_OFFERS));
        }
        Arc::make_mut(&mut self.offers).insert(offer.id.clone(), Arc::new(offer));
        Ok(())
    }

    pub fn delete(&mut self, id: &str) -> Result<Arc<Offer>, OfferError> {
        if !self.offers.contains_key(id) {
            // Not copying a shared map only to find nothing in it.
            return Err(OfferError::NotFound(id.into()));
        }
        Arc::make_mut(&mut self.offers).remove(id).ok_or_else(|| OfferError::NotFound(id.into()))
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Offer>> {
        self.offers.get(id)
    }

    /// Offers in id order (the order explanations list them in).
    pub fn offers(&self) -> impl Iterator<Item = &Arc<Offer>> {
        self.offers.values()
    }

    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Offers that read the saved segment (see [`Offer::segment_refs`]).
    pub fn offers_using_segment(&self, segment_id: &str) -> Vec<String> {
        self.offers
            .values()
            .filter(|o| o.segment_refs().iter().any(|s| s == segment_id))
            .map(|o| o.id.clone())
            .collect()
    }

    pub fn policy(&self) -> &ContactPolicy {
        &self.policy
    }

    pub fn set_policy(&mut self, policy: ContactPolicy) -> Result<(), OfferError> {
        policy.validate()?;
        self.policy = policy;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_errors_name_the_field() {
        let mut p = ContactPolicy { control_pct: 101.0, ..Default::default() };
        assert!(matches!(p.validate(), Err(OfferError::Policy { field, .. }) if field == "control_pct"));
        p.control_pct = 5.0;
        p.channel_limits.insert(Channel::Push, Limit { max: 0, window_ms: 10 });
        assert!(
            matches!(p.validate(), Err(OfferError::Policy { field, .. }) if field == "channel_limits.push.max")
        );
    }
}
