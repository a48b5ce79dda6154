//! The decision taken, outcomes and the contact-state snapshot as records.

use std::sync::Arc;

use super::{need, RecordError};
use crate::decide::arbitrate::{Context, DecisionRecord, ModelKey, Ranked};
use crate::decide::history::{
    BetaCounts, Contact, ContactConfig, ContactKind, ContactState, OfferStats, OutcomeKind, StoredDecision,
    TakenOffer,
};

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContextRecord {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(string, tag = "2")]
    pub placement: String,
    #[prost(string, tag = "3")]
    pub intent: String,
    #[prost(int64, tag = "4")]
    pub now_ms: i64,
}

/// Which adaptive model: present = adaptive; `segment` absent = the offer-wide model.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelKeyRecord {
    #[prost(string, optional, tag = "1")]
    pub segment: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RankedRecord {
    #[prost(string, tag = "1")]
    pub offer_id: String,
    #[prost(double, tag = "2")]
    pub priority: f64,
    #[prost(double, tag = "3")]
    pub propensity: f64,
    #[prost(double, tag = "4")]
    pub weight: f64,
    #[prost(double, tag = "5")]
    pub value: f64,
    #[prost(double, tag = "6")]
    pub lever: f64,
    #[prost(message, optional, tag = "7")]
    pub model: Option<ModelKeyRecord>,
}

/// "Decision taken": the mutation a decision logs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DecisionTakenRecord {
    #[prost(uint64, tag = "1")]
    pub decision_id: u64,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(message, optional, tag = "3")]
    pub context: Option<ContextRecord>,
    #[prost(bool, tag = "4")]
    pub counts_as_impression: bool,
    #[prost(bool, tag = "5")]
    pub control_group: bool,
    #[prost(message, repeated, tag = "6")]
    pub offers: Vec<RankedRecord>,
    #[prost(message, optional, tag = "7")]
    pub fallback: Option<RankedRecord>,
}

/// An outcome: the mutation `RecordOutcome` logs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OutcomeRecord {
    #[prost(uint64, tag = "1")]
    pub decision_id: u64,
    #[prost(string, tag = "2")]
    pub offer_id: String,
    /// 1 IMPRESSION, 2 CLICK, 3 ACCEPT, 4 REJECT, 5 CONVERT.
    #[prost(int32, tag = "3")]
    pub outcome: i32,
    #[prost(int64, tag = "4")]
    pub at_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TakenOfferRecord {
    #[prost(message, optional, tag = "1")]
    pub ranked: Option<RankedRecord>,
    #[prost(uint32, tag = "2")]
    pub outcomes: u32,
    #[prost(bool, tag = "3")]
    pub shown: bool,
    #[prost(bool, tag = "4")]
    pub reserved: bool,
    #[prost(bool, tag = "5")]
    pub success: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredDecisionRecord {
    #[prost(uint64, tag = "1")]
    pub decision_id: u64,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(message, optional, tag = "3")]
    pub context: Option<ContextRecord>,
    #[prost(message, repeated, tag = "4")]
    pub offers: Vec<TakenOfferRecord>,
    #[prost(bool, tag = "5")]
    pub fallback_used: bool,
    #[prost(bool, tag = "6")]
    pub control_group: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContactRecord {
    #[prost(uint64, tag = "1")]
    pub decision_id: u64,
    #[prost(string, tag = "2")]
    pub offer_id: String,
    #[prost(string, tag = "3")]
    pub channel: String,
    #[prost(int64, tag = "4")]
    pub at_ms: i64,
    /// 1 impression, 2 reject.
    #[prost(int32, tag = "5")]
    pub kind: i32,
    #[prost(bool, tag = "6")]
    pub responded: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CustomerContactsRecord {
    #[prost(uint64, tag = "1")]
    pub customer_id: u64,
    #[prost(message, repeated, tag = "2")]
    pub contacts: Vec<ContactRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelCountsRecord {
    #[prost(message, optional, tag = "1")]
    pub key: Option<ModelKeyRecord>,
    #[prost(uint64, tag = "2")]
    pub successes: u64,
    #[prost(uint64, tag = "3")]
    pub trials: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OfferStatsRecord {
    #[prost(string, tag = "1")]
    pub offer_id: String,
    #[prost(uint64, tag = "2")]
    pub accepted: u64,
    #[prost(uint64, tag = "3")]
    pub reserved: u64,
    #[prost(message, repeated, tag = "4")]
    pub models: Vec<ModelCountsRecord>,
}

/// The contact-state snapshot section. Maps are written in key order so the same state
/// always encodes to the same bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContactStateRecord {
    #[prost(int64, tag = "1")]
    pub history_ms: i64,
    #[prost(int64, tag = "2")]
    pub decision_retention_ms: i64,
    #[prost(int64, tag = "3")]
    pub clock_ms: i64,
    #[prost(message, repeated, tag = "4")]
    pub decisions: Vec<StoredDecisionRecord>,
    #[prost(message, repeated, tag = "5")]
    pub customers: Vec<CustomerContactsRecord>,
    #[prost(message, repeated, tag = "6")]
    pub offers: Vec<OfferStatsRecord>,
    #[prost(uint64, tag = "7")]
    pub last_decision_id: u64,
}

impl From<&Context> for ContextRecord {
    fn from(c: &Context) -> Self {
        let Context { channel, placement, intent, now_ms } = c;
        ContextRecord {
            channel: channel.name().into(),
            placement: placement.clone(),
            intent: intent.clone(),
            now_ms: *now_ms,
        }
    }
}

impl TryFrom<ContextRecord> for Context {
    type Error = RecordError;

    fn try_from(r: ContextRecord) -> Result<Self, RecordError> {
        let ContextRecord { channel, placement, intent, now_ms } = r;
        Ok(Context { channel: super::channel(&channel, "context.channel")?, placement, intent, now_ms })
    }
}

fn model_record(k: &ModelKey) -> ModelKeyRecord {
    match k {
        ModelKey::Offer => ModelKeyRecord { segment: None },
        ModelKey::Segment(s) => ModelKeyRecord { segment: Some(s.clone()) },
    }
}

fn model_key(r: ModelKeyRecord) -> ModelKey {
    match r.segment {
        None => ModelKey::Offer,
        Some(s) => ModelKey::Segment(s),
    }
}

impl From<&Ranked> for RankedRecord {
    fn from(r: &Ranked) -> Self {
        let Ranked { offer_id, priority, propensity, weight, value, lever, model } = r;
        RankedRecord {
            offer_id: offer_id.clone(),
            priority: *priority,
            propensity: *propensity,
            weight: *weight,
            value: *value,
            lever: *lever,
            model: model.as_ref().map(model_record),
        }
    }
}

impl From<RankedRecord> for Ranked {
    fn from(r: RankedRecord) -> Self {
        let RankedRecord { offer_id, priority, propensity, weight, value, lever, model } = r;
        Ranked { offer_id, priority, propensity, weight, value, lever, model: model.map(model_key) }
    }
}

impl From<&DecisionRecord> for DecisionTakenRecord {
    fn from(d: &DecisionRecord) -> Self {
        let DecisionRecord {
            decision_id,
            customer_id,
            context,
            counts_as_impression,
            control_group,
            offers,
            fallback,
        } = d;
        DecisionTakenRecord {
            decision_id: *decision_id,
            customer_id: *customer_id,
            context: Some(context.into()),
            counts_as_impression: *counts_as_impression,
            control_group: *control_group,
            offers: offers.iter().map(RankedRecord::from).collect(),
            fallback: fallback.as_ref().map(RankedRecord::from),
        }
    }
}

impl TryFrom<DecisionTakenRecord> for DecisionRecord {
    type Error = RecordError;

    fn try_from(r: DecisionTakenRecord) -> Result<Self, RecordError> {
        let DecisionTakenRecord {
            decision_id,
            customer_id,
            context,
            counts_as_impression,
            control_group,
            offers,
            fallback,
        } = r;
        Ok(DecisionRecord {
            decision_id,
            customer_id,
            context: need(context, "context")?.try_into()?,
            counts_as_impression,
            control_group,
            offers: offers.into_iter().map(Ranked::from).collect(),
            fallback: fallback.map(Ranked::from),
        })
    }
}

/// The wire code of an outcome.
pub fn outcome_code(k: OutcomeKind) -> i32 {
    match k {
        OutcomeKind::Impression => 1,
        OutcomeKind::Click => 2,
        OutcomeKind::Accept => 3,
        OutcomeKind::Reject => 4,
        OutcomeKind::Convert => 5,
    }
}

pub fn outcome_kind(code: i32) -> Result<OutcomeKind, RecordError> {
    OutcomeKind::ALL
        .into_iter()
        .find(|k| outcome_code(*k) == code)
        .ok_or(RecordError::Unknown { field: "outcome", value: code.to_string() })
}

impl OutcomeRecord {
    pub fn new(decision_id: u64, offer_id: &str, kind: OutcomeKind, at_ms: i64) -> Self {
        OutcomeRecord { decision_id, offer_id: offer_id.into(), outcome: outcome_code(kind), at_ms }
    }

    pub fn kind(&self) -> Result<OutcomeKind, RecordError> {
        outcome_kind(self.outcome)
    }
}

impl From<&ContactState> for ContactStateRecord {
    fn from(s: &ContactState) -> Self {
        let ContactState { config, clock_ms, decisions, expiry: _, customers, offers, last_decision_id } = s;
        let ContactConfig { history_ms, decision_retention_ms } = *config;
        // Both maps iterate in id order.
        let ds = decisions.iter().map(|(_, d)| d);
        let cs = customers.iter();
        let mut os: Vec<(&Arc<str>, &Arc<OfferStats>)> = offers.iter().collect();
        os.sort_by_key(|o| o.0);
        ContactStateRecord {
            history_ms,
            decision_retention_ms,
            clock_ms: *clock_ms,
            decisions: ds.map(stored_record).collect(),
            customers: cs
                .map(|(id, v)| CustomerContactsRecord {
                    customer_id: id,
                    contacts: v.iter().map(contact_record).collect(),
                })
                .collect(),
            offers: os
                .into_iter()
                .map(|(id, st)| {
                    let OfferStats { accepted, reserved, models } = &**st;
                    OfferStatsRecord {
                        offer_id: id.to_string(),
                        accepted: *accepted,
                        reserved: *reserved,
                        models: models
                            .iter()
                            .map(|(k, BetaCounts { successes, trials })| ModelCountsRecord {
                                key: Some(model_record(k)),
                                successes: *successes,
                                trials: *trials,
                            })
                            .collect(),
                    }
                })
                .collect(),
            last_decision_id: *last_decision_id,
        }
    }
}

fn stored_record(d: &StoredDecision) -> StoredDecisionRecord {
    let StoredDecision { decision_id, customer_id, context, offers, fallback_used, control_group } = d;
    StoredDecisionRecord {
        decision_id: *decision_id,
        customer_id: *customer_id,
        context: Some(context.into()),
        offers: offers
            .iter()
            .map(|t| {
                let TakenOffer { ranked, outcomes, shown, reserved, success } = t;
                TakenOfferRecord {
                    ranked: Some(ranked.into()),
                    outcomes: *outcomes as u32,
                    shown: *shown,
                    reserved: *reserved,
                    success: *success,
                }
            })
            .collect(),
        fallback_used: *fallback_used,
        control_group: *control_group,
    }
}

fn contact_record(c: &Contact) -> ContactRecord {
    let Contact { decision_id, offer_id, channel, at_ms, kind } = c;
    let (kind, responded) = match kind {
        ContactKind::Impression { responded } => (1, *responded),
        ContactKind::Reject => (2, false),
    };
    ContactRecord {
        decision_id: *decision_id,
        offer_id: offer_id.to_string(),
        channel: channel.name().into(),
        at_ms: *at_ms,
        kind,
        responded,
    }
}

impl TryFrom<ContactStateRecord> for ContactState {
    type Error = RecordError;

    fn try_from(r: ContactStateRecord) -> Result<Self, RecordError> {
        let ContactStateRecord {
            history_ms,
            decision_retention_ms,
            clock_ms,
            decisions,
            customers,
            offers,
            last_decision_id,
        } = r;
        let config = ContactConfig { history_ms, decision_retention_ms };
        let mut s = ContactState::new(config)?;
        s.clock_ms = clock_ms;
        s.last_decision_id = last_decision_id;
        for d in decisions {
            let StoredDecisionRecord {
                decision_id,
                customer_id,
                context,
                offers,
                fallback_used,
                control_group,
            } = d;
            let context: Context = need(context, "decision.context")?.try_into()?;
            let mut taken = Vec::with_capacity(offers.len());
            for t in offers {
                let TakenOfferRecord { ranked, outcomes, shown, reserved, success } = t;
                let outcomes = u8::try_from(outcomes)
                    .ok()
                    .filter(|o| *o < 32)
                    .ok_or(RecordError::Unknown { field: "taken.outcomes", value: outcomes.to_string() })?;
                taken.push(TakenOffer {
                    ranked: need(ranked, "taken.ranked")?.into(),
                    outcomes,
                    shown,
                    reserved,
                    success,
                });
            }
            let expires = context.now_ms.saturating_add(decision_retention_ms);
            s.expiry.insert((expires, decision_id));
            let stored = StoredDecision {
                decision_id,
                customer_id,
                context,
                offers: taken,
                fallback_used,
                control_group,
            };
            s.decisions.insert(decision_id, stored);
        }
        for CustomerContactsRecord { customer_id, contacts } in customers {
            let mut v = Vec::with_capacity(contacts.len());
            for ContactRecord { decision_id, offer_id, channel, at_ms, kind, responded } in contacts {
                let kind = match kind {
                    1 => ContactKind::Impression { responded },
                    2 => ContactKind::Reject,
                    k => return Err(RecordError::Unknown { field: "contact.kind", value: k.to_string() }),
                };
                let offer_id: Arc<str> = offer_id.into();
                let channel = super::channel(&channel, "contact.channel")?;
                v.push(Contact { decision_id, offer_id, channel, at_ms, kind });
            }
            s.customers.insert(customer_id, v);
        }
        for OfferStatsRecord { offer_id, accepted, reserved, models } in offers {
            let mut st = OfferStats { accepted, reserved, ..Default::default() };
            for ModelCountsRecord { key, successes, trials } in models {
                st.models.insert(model_key(need(key, "model.key")?), BetaCounts { successes, trials });
            }
            s.offers.insert(offer_id.into(), Arc::new(st));
        }
        Ok(s)
    }
}
