//! Offers, the contact policy and the catalogue as records.

use std::collections::BTreeMap;

use super::{need, RecordError};
use crate::decide::offer::{
    Catalogue, Channel, ContactPolicy, ContextWeights, Limit, Offer, Propensity, SegmentRef, Suppression,
    Value,
};
use crate::query::ast::{CmpOp, Expr, Literal};

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

/// A segment predicate tree ([`Expr`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExprRecord {
    #[prost(oneof = "ExprNode", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub node: Option<ExprNode>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ExprNode {
    #[prost(message, tag = "1")]
    And(ExprList),
    #[prost(message, tag = "2")]
    Or(ExprList),
    #[prost(message, boxed, tag = "3")]
    Not(Box<ExprRecord>),
    #[prost(message, tag = "4")]
    Cmp(CmpRecord),
    #[prost(message, tag = "5")]
    In(InRecord),
    #[prost(message, tag = "6")]
    IsNull(IsNullRecord),
    #[prost(message, tag = "7")]
    Contains(ContainsRecord),
    #[prost(string, tag = "8")]
    Column(String),
    #[prost(message, tag = "9")]
    Const(LiteralRecord),
    #[prost(string, tag = "10")]
    InSegment(String),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExprList {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<ExprRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CmpRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    /// 1 =, 2 <>, 3 <, 4 <=, 5 >, 6 >=.
    #[prost(int32, tag = "2")]
    pub op: i32,
    #[prost(message, optional, tag = "3")]
    pub value: Option<LiteralRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<LiteralRecord>,
    #[prost(bool, tag = "3")]
    pub negated: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IsNullRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    #[prost(bool, tag = "2")]
    pub negated: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainsRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<LiteralRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteralRecord {
    #[prost(oneof = "LiteralKind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<LiteralKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum LiteralKind {
    #[prost(bool, tag = "1")]
    Null(bool),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Float(f64),
    #[prost(string, tag = "5")]
    Str(String),
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

const CMP_OPS: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];

fn cmp_code(op: CmpOp) -> i32 {
    match op {
        CmpOp::Eq => 1,
        CmpOp::Ne => 2,
        CmpOp::Lt => 3,
        CmpOp::Le => 4,
        CmpOp::Gt => 5,
        CmpOp::Ge => 6,
    }
}

impl From<&Expr> for ExprRecord {
    fn from(e: &Expr) -> Self {
        let list = |v: &Vec<Expr>| ExprList { items: v.iter().map(ExprRecord::from).collect() };
        let node = match e {
            Expr::And(v) => ExprNode::And(list(v)),
            Expr::Or(v) => ExprNode::Or(list(v)),
            Expr::Not(x) => ExprNode::Not(Box::new(x.as_ref().into())),
            Expr::Cmp { col, op, value } => {
                ExprNode::Cmp(CmpRecord { col: col.clone(), op: cmp_code(*op), value: Some(value.into()) })
            }
            Expr::In { col, values, negated } => ExprNode::In(InRecord {
                col: col.clone(),
                values: values.iter().map(LiteralRecord::from).collect(),
                negated: *negated,
            }),
            Expr::IsNull { col, negated } => {
                ExprNode::IsNull(IsNullRecord { col: col.clone(), negated: *negated })
            }
            Expr::Contains { col, value } => {
                ExprNode::Contains(ContainsRecord { col: col.clone(), value: Some(value.into()) })
            }
            Expr::Column(c) => ExprNode::Column(c.clone()),
            Expr::Const(l) => ExprNode::Const(l.into()),
            Expr::InSegment(id) => ExprNode::InSegment(id.clone()),
        };
        ExprRecord { node: Some(node) }
    }
}

impl TryFrom<ExprRecord> for Expr {
    type Error = RecordError;

    fn try_from(r: ExprRecord) -> Result<Self, RecordError> {
        let list = |l: ExprList| l.items.into_iter().map(Expr::try_from).collect::<Result<Vec<_>, _>>();
        Ok(match need(r.node, "expr")? {
            ExprNode::And(l) => Expr::And(list(l)?),
            ExprNode::Or(l) => Expr::Or(list(l)?),
            ExprNode::Not(x) => Expr::Not(Box::new((*x).try_into()?)),
            ExprNode::Cmp(CmpRecord { col, op, value }) => {
                let op = CMP_OPS
                    .into_iter()
                    .find(|o| cmp_code(*o) == op)
                    .ok_or(RecordError::Unknown { field: "cmp.op", value: op.to_string() })?;
                Expr::Cmp { col, op, value: need(value, "cmp.value")?.try_into()? }
            }
            ExprNode::In(InRecord { col, values, negated }) => Expr::In {
                col,
                values: values.into_iter().map(Literal::try_from).collect::<Result<_, _>>()?,
                negated,
            },
            ExprNode::IsNull(IsNullRecord { col, negated }) => Expr::IsNull { col, negated },
            ExprNode::Contains(ContainsRecord { col, value }) => {
                Expr::Contains { col, value: need(value, "contains.value")?.try_into()? }
            }
            ExprNode::Column(c) => Expr::Column(c),
            ExprNode::Const(l) => Expr::Const(l.try_into()?),
            ExprNode::InSegment(id) => Expr::InSegment(id),
        })
    }
}

impl From<&Literal> for LiteralRecord {
    fn from(l: &Literal) -> Self {
        let kind = match l {
            Literal::Null => LiteralKind::Null(true),
            Literal::Bool(b) => LiteralKind::Bool(*b),
            Literal::Int(i) => LiteralKind::Int(*i),
            Literal::Float(x) => LiteralKind::Float(*x),
            Literal::Str(s) => LiteralKind::Str(s.clone()),
        };
        LiteralRecord { kind: Some(kind) }
    }
}

impl TryFrom<LiteralRecord> for Literal {
    type Error = RecordError;

    fn try_from(r: LiteralRecord) -> Result<Self, RecordError> {
        Ok(match need(r.kind, "literal")? {
            LiteralKind::Null(_) => Literal::Null,
            LiteralKind::Bool(b) => Literal::Bool(b),
            LiteralKind::Int(i) => Literal::Int(i),
            LiteralKind::Float(x) => Literal::Float(x),
            LiteralKind::Str(s) => Literal::Str(s),
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
