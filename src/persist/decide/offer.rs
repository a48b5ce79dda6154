//! Offers, the contact policy and the catalogue as records.

use std::collections::BTreeMap;

use super::expr::ExprRecord;
use super::{need, RecordError};
use crate::decide::catalogue::{Catalogue, ContactPolicy};
use crate::decide::offer::{
    Channel, ContextWeights, Limit, Offer, Propensity, SegmentRef, Suppression, Value,
};

#[derive(Clone, PartialEq, prost::Message)]
pub struct OfferRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub group: String,
    #[prost(string, repeated, tag = "4")]
    pub channels: Vec<String>,
    #[prost(int64, optional, tag = "5")]
    pub start_ms: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub end_ms: Option<i64>,
    #[prost(message, optional, tag = "7")]
    pub eligibility: Option<SegmentRefRecord>,
    #[prost(message, optional, tag = "8")]
    pub applicability: Option<SegmentRefRecord>,
    #[prost(message, optional, tag = "9")]
    pub suitability: Option<SegmentRefRecord>,
    #[prost(oneof = "ValueRecord", tags = "10, 11")]
    pub value: Option<ValueRecord>,
    #[prost(oneof = "PropensityRecord", tags = "12, 13, 14")]
    pub propensity: Option<PropensityRecord>,
    #[prost(message, repeated, tag = "15")]
    pub channel_weights: Vec<WeightRecord>,
    #[prost(message, repeated, tag = "16")]
    pub placement_weights: Vec<WeightRecord>,
    #[prost(message, repeated, tag = "17")]
    pub intent_weights: Vec<WeightRecord>,
    #[prost(double, tag = "18")]
    pub lever: f64,
    #[prost(message, optional, tag = "19")]
    pub cap: Option<LimitRecord>,
    #[prost(uint64, optional, tag = "20")]
    pub budget: Option<u64>,
    #[prost(message, optional, tag = "21")]
    pub suppression: Option<SuppressionRecord>,
    #[prost(double, tag = "22")]
    pub holdout_pct: f64,
    #[prost(bool, tag = "23")]
    pub fallback: bool,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueRecord {
    #[prost(double, tag = "10")]
    Constant(f64),
    #[prost(message, tag = "11")]
    Attribute(AttributeValueRecord),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeValueRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(double, tag = "2")]
    pub factor: f64,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropensityRecord {
    #[prost(double, tag = "12")]
    Constant(f64),
    #[prost(string, tag = "13")]
    Attribute(String),
    #[prost(message, tag = "14")]
    Adaptive(AdaptiveRecord),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AdaptiveRecord {
    #[prost(double, tag = "1")]
    pub alpha: f64,
    #[prost(double, tag = "2")]
    pub beta: f64,
    #[prost(string, repeated, tag = "3")]
    pub per_segment: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WeightRecord {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(double, tag = "2")]
    pub weight: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LimitRecord {
    #[prost(uint32, tag = "1")]
    pub max: u32,
    #[prost(int64, tag = "2")]
    pub window_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SuppressionRecord {
    #[prost(uint32, tag = "1")]
    pub after: u32,
    #[prost(int64, tag = "2")]
    pub within_ms: i64,
    #[prost(int64, tag = "3")]
    pub pause_ms: i64,
    #[prost(int64, optional, tag = "4")]
    pub ignore_after_ms: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SegmentRefRecord {
    #[prost(oneof = "SegmentKind", tags = "1, 2, 3, 4")]
    pub kind: Option<SegmentKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SegmentKind {
    #[prost(bool, tag = "1")]
    All(bool),
    #[prost(string, tag = "2")]
    Where(String),
    #[prost(message, tag = "3")]
    Predicate(ExprRecord),
    #[prost(string, tag = "4")]
    Saved(String),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContactPolicyRecord {
    #[prost(message, repeated, tag = "1")]
    pub channel_limits: Vec<ChannelLimitRecord>,
    #[prost(double, tag = "2")]
    pub control_pct: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChannelLimitRecord {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<LimitRecord>,
}

/// The catalogue snapshot section.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CatalogueRecord {
    #[prost(message, optional, tag = "1")]
    pub policy: Option<ContactPolicyRecord>,
    #[prost(message, repeated, tag = "2")]
    pub offers: Vec<OfferRecord>,
}

impl From<&Offer> for OfferRecord {
    fn from(o: &Offer) -> Self {
        let Offer {
            id,
            name,
            group,
            channels,
            start_ms,
            end_ms,
            eligibility,
            applicability,
            suitability,
            value,
            propensity,
            weights,
            lever,
            cap,
            budget,
            suppression,
            holdout_pct,
            fallback,
        } = o;
        let ContextWeights { channel, placement, intent } = weights;
        let weights = |m: &mut dyn Iterator<Item = (String, f64)>| {
            m.map(|(key, weight)| WeightRecord { key, weight }).collect::<Vec<_>>()
        };
        OfferRecord {
            id: id.clone(),
            name: name.clone(),
            group: group.clone(),
            channels: channels.iter().map(|c| c.name().to_string()).collect(),
            start_ms: *start_ms,
            end_ms: *end_ms,
            eligibility: Some(eligibility.into()),
            applicability: Some(applicability.into()),
            suitability: Some(suitability.into()),
            value: Some(match value {
                Value::Constant(v) => ValueRecord::Constant(*v),
                Value::Attribute { name, factor } => {
                    ValueRecord::Attribute(AttributeValueRecord { name: name.clone(), factor: *factor })
                }
            }),
            propensity: Some(match propensity {
                Propensity::Constant(p) => PropensityRecord::Constant(*p),
                Propensity::Attribute(a) => PropensityRecord::Attribute(a.clone()),
                Propensity::Adaptive { alpha, beta, per_segment } => {
                    PropensityRecord::Adaptive(AdaptiveRecord {
                        alpha: *alpha,
                        beta: *beta,
                        per_segment: per_segment.clone(),
                    })
                }
            }),
            channel_weights: weights(&mut channel.iter().map(|(c, w)| (c.name().to_string(), *w))),
            placement_weights: weights(&mut placement.iter().map(|(k, w)| (k.clone(), *w))),
            intent_weights: weights(&mut intent.iter().map(|(k, w)| (k.clone(), *w))),
            lever: *lever,
            cap: cap.as_ref().map(LimitRecord::from),
            budget: *budget,
            suppression: suppression.as_ref().map(|s| {
                let Suppression { after, within_ms, pause_ms, ignore_after_ms } = *s;
                SuppressionRecord { after, within_ms, pause_ms, ignore_after_ms }
            }),
            holdout_pct: *holdout_pct,
            fallback: *fallback,
        }
    }
}

impl TryFrom<OfferRecord> for Offer {
    type Error = RecordError;

    fn try_from(r: OfferRecord) -> Result<Self, RecordError> {
        let OfferRecord {
            id,
            name,
            group,
            channels,
            start_ms,
            end_ms,
            eligibility,
            applicability,
            suitability,
            value,
            propensity,
            channel_weights,
            placement_weights,
            intent_weights,
            lever,
            cap,
            budget,
            suppression,
            holdout_pct,
            fallback,
        } = r;
        let mut channel = BTreeMap::new();
        for w in channel_weights {
            channel.insert(super::channel(&w.key, "channel_weights.key")?, w.weight);
        }
        let keyed = |v: Vec<WeightRecord>| v.into_iter().map(|w| (w.key, w.weight)).collect();
        Ok(Offer {
            id,
            name,
            group,
            channels: channels.iter().map(|c| super::channel(c, "channels")).collect::<Result<_, _>>()?,
            start_ms,
            end_ms,
            eligibility: need(eligibility, "eligibility")?.try_into()?,
            applicability: need(applicability, "applicability")?.try_into()?,
            suitability: need(suitability, "suitability")?.try_into()?,
            value: match need(value, "value")? {
                ValueRecord::Constant(v) => Value::Constant(v),
                ValueRecord::Attribute(AttributeValueRecord { name, factor }) => {
                    Value::Attribute { name, factor }
                }
            },
            propensity: match need(propensity, "propensity")? {
                PropensityRecord::Constant(p) => Propensity::Constant(p),
                PropensityRecord::Attribute(a) => Propensity::Attribute(a),
                PropensityRecord::Adaptive(AdaptiveRecord { alpha, beta, per_segment }) => {
                    Propensity::Adaptive { alpha, beta, per_segment }
                }
            },
            weights: ContextWeights {
                channel,
                placement: keyed(placement_weights),
                intent: keyed(intent_weights),
            },
            lever,
            cap: cap.map(Limit::from),
            budget,
            suppression: suppression.map(|s| {
                let SuppressionRecord { after, within_ms, pause_ms, ignore_after_ms } = s;
                Suppression { after, within_ms, pause_ms, ignore_after_ms }
            }),
            holdout_pct,
            fallback,
        })
    }
}

impl From<&Limit> for LimitRecord {
    fn from(l: &Limit) -> Self {
        let Limit { max, window_ms } = *l;
        LimitRecord { max, window_ms }
    }
}

impl From<LimitRecord> for Limit {
    fn from(l: LimitRecord) -> Self {
        let LimitRecord { max, window_ms } = l;
        Limit { max, window_ms }
    }
}

impl From<&SegmentRef> for SegmentRefRecord {
    fn from(s: &SegmentRef) -> Self {
        let kind = match s {
            SegmentRef::All => SegmentKind::All(true),
            SegmentRef::Where(t) => SegmentKind::Where(t.clone()),
            SegmentRef::Predicate(e) => SegmentKind::Predicate(e.into()),
            SegmentRef::Saved(id) => SegmentKind::Saved(id.clone()),
        };
        SegmentRefRecord { kind: Some(kind) }
    }
}

impl TryFrom<SegmentRefRecord> for SegmentRef {
    type Error = RecordError;

    fn try_from(r: SegmentRefRecord) -> Result<Self, RecordError> {
        Ok(match need(r.kind, "segment")? {
            SegmentKind::All(_) => SegmentRef::All,
            SegmentKind::Where(t) => SegmentRef::Where(t),
            SegmentKind::Predicate(e) => SegmentRef::Predicate(e.try_into()?),
            SegmentKind::Saved(id) => SegmentRef::Saved(id),
        })
    }
}

impl From<&ContactPolicy> for ContactPolicyRecord {
    fn from(p: &ContactPolicy) -> Self {
        let ContactPolicy { channel_limits, control_pct } = p;
        ContactPolicyRecord {
            channel_limits: channel_limits
                .iter()
                .map(|(c, l)| ChannelLimitRecord { channel: c.name().into(), limit: Some(l.into()) })
                .collect(),
            control_pct: *control_pct,
        }
    }
}

impl TryFrom<ContactPolicyRecord> for ContactPolicy {
    type Error = RecordError;

    fn try_from(r: ContactPolicyRecord) -> Result<Self, RecordError> {
        let ContactPolicyRecord { channel_limits, control_pct } = r;
        let mut limits: BTreeMap<Channel, Limit> = BTreeMap::new();
        for ChannelLimitRecord { channel, limit } in channel_limits {
            limits.insert(
                super::channel(&channel, "channel_limits.channel")?,
                need(limit, "channel_limits.limit")?.into(),
            );
        }
        Ok(ContactPolicy { channel_limits: limits, control_pct })
    }
}

impl From<&Catalogue> for CatalogueRecord {
    fn from(c: &Catalogue) -> Self {
        CatalogueRecord {
            policy: Some(c.policy().into()),
            offers: c.offers().map(|o| OfferRecord::from(o.as_ref())).collect(),
        }
    }
}

impl TryFrom<CatalogueRecord> for Catalogue {
    type Error = RecordError;

    /// Rebuilds the catalogue, validating each offer as `put` does.
    fn try_from(r: CatalogueRecord) -> Result<Self, RecordError> {
        let CatalogueRecord { policy, offers } = r;
        let mut cat = Catalogue::new(need(policy, "policy")?.try_into()?)?;
        for o in offers {
            cat.put(o.try_into()?)?;
        }
        Ok(cat)
    }
}
