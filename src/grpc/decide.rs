//! `segd.v1.DecisionService`: translation between the proto messages and the decision core
//! and application types (every message destructured), and the service adapter.

use std::collections::{BTreeMap, HashMap};

use tonic::{Request, Response, Status};

use crate::app::{
    AppError, BlastMessage, BlastRequest, DecisionContext, MemberDecision, NboAnswer, NboRequest,
    OutcomeRecorded,
};
use crate::decide::history::StoredDecision;
use crate::decide::{
    Channel, ContactPolicy, Context, ContextWeights, DropReason, Dropped, Funnel, Limit, ModelKey, Offer,
    OutcomeKind, Propensity, Ranked, SegmentRef, Stage, Suppression, Value,
};
use crate::metrics::Rpc;
use crate::query::Expr;

use super::pb::{self, decision_service_server::DecisionService};
use super::service::Ctx;

#[derive(Clone)]
pub struct DecisionSvc(pub std::sync::Arc<Ctx>);

fn invalid(field: &'static str, msg: impl Into<String>) -> AppError {
    AppError::Invalid { field, msg: msg.into() }
}

fn channel(s: &str, field: &'static str) -> Result<Channel, AppError> {
    Channel::parse(s).map_err(|e| invalid(field, e.to_string()))
}

/// An offer rule: unset is everyone.
fn rule(s: Option<pb::Segment>) -> Result<SegmentRef, AppError> {
    let Some(pb::Segment { segment }) = s else { return Ok(SegmentRef::All) };
    Ok(match segment {
        None => SegmentRef::All,
        Some(pb::segment::Segment::Where(w)) => SegmentRef::Where(w),
        Some(pb::segment::Segment::Predicate(p)) => SegmentRef::Predicate(Expr::try_from(p)?),
        Some(pb::segment::Segment::SegmentId(id)) => SegmentRef::Saved(id),
    })
}

fn rule_pb(s: &SegmentRef) -> Option<pb::Segment> {
    let segment = match s {
        SegmentRef::All => return None,
        SegmentRef::Where(w) => pb::segment::Segment::Where(w.clone()),
        SegmentRef::Predicate(e) => pb::segment::Segment::Predicate(super::convert::predicate_of(e)?),
        SegmentRef::Saved(id) => pb::segment::Segment::SegmentId(id.clone()),
    };
    Some(pb::Segment { segment: Some(segment) })
}

fn limit(l: pb::Limit) -> Limit {
    let pb::Limit { max, window_ms } = l;
    Limit { max, window_ms }
}

fn limit_pb(l: &Limit) -> pb::Limit {
    let Limit { max, window_ms } = *l;
    pb::Limit { max, window_ms }
}

fn weights<K: Ord>(
    m: HashMap<String, f64>,
    key: impl Fn(String) -> Result<K, AppError>,
) -> Result<BTreeMap<K, f64>, AppError> {
    m.into_iter().map(|(k, w)| Ok((key(k)?, w))).collect()
}

impl TryFrom<pb::Offer> for Offer {
    type Error = AppError;

    fn try_from(o: pb::Offer) -> Result<Offer, AppError> {
        let pb::Offer {
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
        } = o;
        use pb::offer::{Propensity as P, Value as V};
        Ok(Offer {
            id,
            name,
            group,
            channels: channels.iter().map(|c| channel(c, "offer.channels")).collect::<Result<_, _>>()?,
            start_ms,
            end_ms,
            eligibility: rule(eligibility)?,
            applicability: rule(applicability)?,
            suitability: rule(suitability)?,
            value: match value {
                None => Value::Constant(1.0),
                Some(V::ValueConstant(v)) => Value::Constant(v),
                Some(V::ValueAttribute(pb::AttributeValue { attribute, factor })) => {
                    Value::Attribute { name: attribute, factor }
                }
            },
            propensity: match propensity {
                None => Propensity::Constant(1.0),
                Some(P::PropensityConstant(p)) => Propensity::Constant(p),
                Some(P::PropensityAttribute(a)) => Propensity::Attribute(a),
                Some(P::PropensityAdaptive(pb::AdaptivePropensity { alpha, beta, per_segment })) => {
                    Propensity::Adaptive {
                        alpha: alpha.unwrap_or(1.0),
                        beta: beta.unwrap_or(1.0),
                        per_segment,
                    }
                }
            },
            weights: ContextWeights {
                channel: weights(channel_weights, |k| channel(&k, "offer.channel_weights"))?,
                placement: weights(placement_weights, Ok)?,
                intent: weights(intent_weights, Ok)?,
            },
            lever: lever.unwrap_or(1.0),
            cap: cap.map(limit),
            budget,
            suppression: suppression.map(|s| {
                let pb::Suppression { after, within_ms, pause_ms, ignore_after_ms } = s;
                Suppression { after, within_ms, pause_ms, ignore_after_ms }
            }),
            holdout_pct,
            fallback,
        })
    }
}

pub(crate) fn offer_pb(o: &Offer) -> pb::Offer {
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
    use pb::offer::{Propensity as P, Value as V};
    let ContextWeights { channel, placement, intent } = weights;
    pb::Offer {
        id: id.clone(),
        name: name.clone(),
        group: group.clone(),
        channels: channels.iter().map(|c| c.name().to_string()).collect(),
        start_ms: *start_ms,
        end_ms: *end_ms,
        eligibility: rule_pb(eligibility),
        applicability: rule_pb(applicability),
        suitability: rule_pb(suitability),
        value: Some(match value {
            Value::Constant(v) => V::ValueConstant(*v),
            Value::Attribute { name, factor } => {
                V::ValueAttribute(pb::AttributeValue { attribute: name.clone(), factor: *factor })
            }
        }),
        propensity: Some(match propensity {
            Propensity::Constant(p) => P::PropensityConstant(*p),
            Propensity::Attribute(a) => P::PropensityAttribute(a.clone()),
            Propensity::Adaptive { alpha, beta, per_segment } => {
                P::PropensityAdaptive(pb::AdaptivePropensity {
                    alpha: Some(*alpha),
                    beta: Some(*beta),
                    per_segment: per_segment.clone(),
                })
            }
        }),
        channel_weights: channel.iter().map(|(c, w)| (c.name().to_string(), *w)).collect(),
        placement_weights: placement.iter().map(|(k, w)| (k.clone(), *w)).collect(),
        intent_weights: intent.iter().map(|(k, w)| (k.clone(), *w)).collect(),
        lever: Some(*lever),
        cap: cap.as_ref().map(limit_pb),
        budget: *budget,
        suppression: suppression.as_ref().map(|s| {
            let Suppression { after, within_ms, pause_ms, ignore_after_ms } = *s;
            pb::Suppression { after, within_ms, pause_ms, ignore_after_ms }
        }),
        holdout_pct: *holdout_pct,
        fallback: *fallback,
    }
}

impl TryFrom<pb::ContactPolicy> for ContactPolicy {
    type Error = AppError;

    fn try_from(p: pb::ContactPolicy) -> Result<ContactPolicy, AppError> {
        let pb::ContactPolicy { channel_limits, control_pct } = p;
        let channel_limits = channel_limits
            .into_iter()
            .map(|(c, l)| Ok((channel(&c, "channel_limits")?, limit(l))))
            .collect::<Result<_, AppError>>()?;
        Ok(ContactPolicy { channel_limits, control_pct })
    }
}

pub(crate) fn policy_pb(p: &ContactPolicy) -> pb::ContactPolicy {
    let ContactPolicy { channel_limits, control_pct } = p;
    pb::ContactPolicy {
        channel_limits: channel_limits.iter().map(|(c, l)| (c.name().to_string(), limit_pb(l))).collect(),
        control_pct: *control_pct,
    }
}

pub(crate) fn context(c: Option<pb::DecisionContext>) -> Result<DecisionContext, AppError> {
    let pb::DecisionContext { channel: ch, placement, intent, now_ms } =
        c.ok_or_else(|| invalid("context", "missing: set at least context.channel"))?;
    Ok(DecisionContext { channel: channel(&ch, "context.channel")?, placement, intent, now_ms })
}

impl TryFrom<pb::NextBestOfferRequest> for NboRequest {
    type Error = AppError;

    fn try_from(r: pb::NextBestOfferRequest) -> Result<NboRequest, AppError> {
        let pb::NextBestOfferRequest {
            customer_id,
            context: ctx,
            max_results,
            counts_as_impression,
            dry_run,
            explain,
        } = r;
        Ok(NboRequest {
            customer_id,
            context: context(ctx)?,
            max_results: match max_results {
                0 => crate::app::decide::DEFAULT_MAX_RESULTS,
                n => n as usize,
            },
            counts_as_impression: counts_as_impression.unwrap_or(true),
            dry_run,
            explain,
        })
    }
}

pub fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Window => "window",
        Stage::Channel => "channel",
        Stage::Eligibility => "eligibility",
        Stage::Applicability => "applicability",
        Stage::Suitability => "suitability",
        Stage::ControlGroup => "control_group",
        Stage::HoldOut => "hold_out",
        Stage::Budget => "budget",
        Stage::Cap => "cap",
        Stage::ContactPolicy => "contact_policy",
        Stage::Suppression => "suppression",
        Stage::Scoring => "scoring",
        Stage::Arbitration => "arbitration",
        Stage::Fallback => "fallback",
        Stage::Catalogue => "catalogue",
    }
}

/// The reason in words, with the numbers that decided it.
pub fn reason_text(r: &DropReason) -> String {
    let ms = |t: Option<i64>| t.map_or("open".to_string(), |t| t.to_string());
    match r {
        DropReason::OutsideWindow { start_ms, end_ms } => {
            format!("outside its active window [{}, {})", ms(*start_ms), ms(*end_ms))
        }
        DropReason::WrongChannel { channel } => format!("not offered on channel {channel}"),
        DropReason::NotEligible => "customer not in the eligibility segment".into(),
        DropReason::NotApplicable => "customer not in the applicability segment".into(),
        DropReason::NotSuitable => "customer not in the suitability segment".into(),
        DropReason::ControlGroup => "customer is in the global control group".into(),
        DropReason::HeldOut { pct } => format!("customer is in the offer's {pct}% hold-out"),
        DropReason::BudgetSpent { used, budget } => format!("budget spent: {used} of {budget} used"),
        DropReason::Capped { shown, max } => format!("capped: shown {shown} times, the cap is {max}"),
        DropReason::ContactLimit { channel, contacts, max } => {
            format!("contact policy: {contacts} contacts on {channel}, the limit is {max}")
        }
        DropReason::Suppressed { until_ms } => format!("suppressed until {until_ms}"),
        DropReason::NoScore { field, value } => match value {
            Some(v) => format!("no score: {field} is {v}"),
            None => format!("no score: {field} is NULL"),
        },
        DropReason::LostArbitration { rank, priority } => {
            format!("lost arbitration: rank {rank} with priority {priority}")
        }
        DropReason::FallbackNotNeeded => "fallback not needed: other offers qualified".into(),
        DropReason::Deleted => "deleted from the catalogue".into(),
    }
}

pub(crate) fn ranked_pb(rank: usize, r: &Ranked) -> pb::RankedOffer {
    let Ranked { offer_id, priority, propensity, weight, value, lever, model } = r;
    pb::RankedOffer {
        offer_id: offer_id.clone(),
        rank: rank as u32 + 1,
        priority: *priority,
        propensity: *propensity,
        weight: *weight,
        value: *value,
        lever: *lever,
        model: match model {
            None => String::new(),
            Some(ModelKey::Offer) => "offer".into(),
            Some(ModelKey::Segment(s)) => format!("segment:{s}"),
        },
    }
}

pub(crate) fn dropped_pb(d: &Dropped) -> pb::DroppedOffer {
    let Dropped { offer_id, reason, at_apply } = d;
    pb::DroppedOffer {
        offer_id: offer_id.clone(),
        stage: stage_name(reason.stage()).into(),
        reason: reason_text(reason),
        at_apply: *at_apply,
    }
}

fn outcome_pb(k: OutcomeKind) -> pb::Outcome {
    match k {
        OutcomeKind::Impression => pb::Outcome::Impression,
        OutcomeKind::Click => pb::Outcome::Click,
        OutcomeKind::Accept => pb::Outcome::Accept,
        OutcomeKind::Reject => pb::Outcome::Reject,
        OutcomeKind::Convert => pb::Outcome::Convert,
    }
}

/// A retained decision (`GetDecision`).
pub(crate) fn stored_pb(d: &StoredDecision, expires_ms: i64) -> pb::GetDecisionResponse {
    let StoredDecision { decision_id, customer_id, context, offers, fallback_used, control_group } = d;
    let Context { channel, placement, intent, now_ms } = context;
    pb::GetDecisionResponse {
        decision_id: *decision_id,
        customer_id: *customer_id,
        context: Some(pb::DecisionContext {
            channel: channel.name().into(),
            placement: placement.clone(),
            intent: intent.clone(),
            now_ms: Some(*now_ms),
        }),
        offers: offers
            .iter()
            .enumerate()
            .map(|(i, t)| pb::PresentedOffer {
                offer: Some(ranked_pb(i, &t.ranked)),
                outcomes: t.recorded().map(|k| outcome_pb(k) as i32).collect(),
                shown: t.shown,
            })
            .collect(),
        fallback_used: *fallback_used,
        control_group: *control_group,
        expires_ms,
    }
}

impl TryFrom<pb::DecideForSegmentRequest> for BlastRequest {
    type Error = AppError;

    fn try_from(r: pb::DecideForSegmentRequest) -> Result<BlastRequest, AppError> {
        let pb::DecideForSegmentRequest {
            segment,
            context: ctx,
            max_results,
            counts_as_impression,
            dry_run,
            batch_size,
            explain,
        } = r;
        let segment = super::convert::segment_ref(segment.and_then(|pb::Segment { segment }| segment))?;
        Ok(BlastRequest {
            segment,
            context: context(ctx)?,
            max_results: match max_results {
                0 => crate::app::decide::DEFAULT_MAX_RESULTS,
                n => n as usize,
            },
            counts_as_impression: counts_as_impression.unwrap_or(true),
            dry_run,
            batch_size: match batch_size {
                0 => crate::app::campaign::DEFAULT_BATCH,
                n => n as usize,
            },
            explain,
        })
    }
}

/// One message of a blast.
pub(crate) fn blast_pb(m: BlastMessage) -> pb::DecideForSegmentResponse {
    let BlastMessage { decisions, members, now_ms, sequence } = m;
    pb::DecideForSegmentResponse {
        decisions: decisions
            .into_iter()
            .map(|d| {
                let MemberDecision {
                    decision_id,
                    customer_id,
                    presented,
                    fallback_used,
                    control_group,
                    dropped,
                    logged,
                } = d;
                pb::MemberDecision {
                    decision_id,
                    customer_id,
                    offers: presented.iter().enumerate().map(|(i, r)| ranked_pb(i, r)).collect(),
                    fallback_used,
                    control_group,
                    dropped: dropped.iter().map(dropped_pb).collect(),
                    logged,
                }
            })
            .collect(),
        members,
        now_ms,
        sequence: sequence.unwrap_or(0),
    }
}

pub type BlastStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::DecideForSegmentResponse, Status>> + Send>>;

pub(crate) fn answer_pb(a: NboAnswer) -> pb::NextBestOfferResponse {
    let NboAnswer {
        decision_id,
        customer_id,
        now_ms,
        control_group,
        presented,
        fallback_used,
        dropped,
        sequence,
    } = a;
    pb::NextBestOfferResponse {
        decision_id,
        customer_id,
        now_ms,
        offers: presented.iter().enumerate().map(|(i, r)| ranked_pb(i, r)).collect(),
        fallback_used,
        dropped: dropped.iter().map(dropped_pb).collect(),
        control_group,
        sequence: sequence.unwrap_or(0),
    }
}

pub(crate) fn funnel_pb(f: Funnel, now_ms: i64) -> pb::ReachEstimateResponse {
    let Funnel {
        customers,
        in_window,
        on_channel,
        eligible,
        applicable,
        suitable,
        not_control,
        not_held_out,
        within_budget,
        not_capped,
        within_contact_policy,
        not_suppressed,
    } = f;
    pb::ReachEstimateResponse {
        customers,
        in_window,
        on_channel,
        eligible,
        applicable,
        suitable,
        not_control,
        not_held_out,
        within_budget,
        not_capped,
        within_contact_policy,
        not_suppressed,
        now_ms,
    }
}

pub(crate) fn outcome_kind(code: i32) -> Result<OutcomeKind, AppError> {
    use pb::Outcome as O;
    match O::try_from(code) {
        Ok(O::Impression) => Ok(OutcomeKind::Impression),
        Ok(O::Click) => Ok(OutcomeKind::Click),
        Ok(O::Accept) => Ok(OutcomeKind::Accept),
        Ok(O::Reject) => Ok(OutcomeKind::Reject),
        Ok(O::Convert) => Ok(OutcomeKind::Convert),
        Ok(O::Unspecified) | Err(_) => Err(invalid(
            "outcome",
            format!("{code} is not an outcome; use OUTCOME_IMPRESSION, _CLICK, _ACCEPT, _REJECT or _CONVERT"),
        )),
    }
}

#[tonic::async_trait]
impl DecisionService for DecisionSvc {
    async fn put_offer(
        &self,
        req: Request<pb::PutOfferRequest>,
    ) -> Result<Response<pb::PutOfferResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::PutOffer, async {
            let pb::PutOfferRequest { offer } = req.into_inner();
            let offer = Offer::try_from(offer.ok_or_else(|| invalid("offer", "missing"))?)?;
            let (sequence, replaced) = ctx.app.put_offer(offer).await?;
            Ok(pb::PutOfferResponse { sequence, replaced })
        })
        .await
    }

    async fn get_offer(&self, req: Request<pb::GetOfferRequest>) -> Result<Response<pb::Offer>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GetOffer, async {
            let pb::GetOfferRequest { offer_id } = req.into_inner();
            Ok(offer_pb(ctx.app.get_offer(&offer_id)?.as_ref()))
        })
        .await
    }

    async fn list_offers(
        &self,
        req: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::ListOffers, async {
            let pb::ListOffersRequest {} = req.into_inner();
            Ok(pb::ListOffersResponse { offers: ctx.app.list_offers().iter().map(|o| offer_pb(o)).collect() })
        })
        .await
    }

    async fn delete_offer(
        &self,
        req: Request<pb::DeleteOfferRequest>,
    ) -> Result<Response<pb::DeleteOfferResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::DeleteOffer, async {
            let pb::DeleteOfferRequest { offer_id } = req.into_inner();
            Ok(pb::DeleteOfferResponse { sequence: ctx.app.delete_offer(offer_id).await? })
        })
        .await
    }

    async fn get_contact_policy(
        &self,
        req: Request<pb::GetContactPolicyRequest>,
    ) -> Result<Response<pb::ContactPolicy>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GetContactPolicy, async {
            let pb::GetContactPolicyRequest {} = req.into_inner();
            Ok(policy_pb(&ctx.app.contact_policy()))
        })
        .await
    }

    async fn set_contact_policy(
        &self,
        req: Request<pb::ContactPolicy>,
    ) -> Result<Response<pb::SetContactPolicyResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::SetContactPolicy, async {
            let p = ContactPolicy::try_from(req.into_inner())?;
            Ok(pb::SetContactPolicyResponse { sequence: ctx.app.set_contact_policy(p).await? })
        })
        .await
    }

    async fn next_best_offer(
        &self,
        req: Request<pb::NextBestOfferRequest>,
    ) -> Result<Response<pb::NextBestOfferResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::NextBestOffer, async {
            let r = NboRequest::try_from(req.into_inner())?;
            Ok(answer_pb(ctx.app.next_best_offer(r).await?))
        })
        .await
    }

    async fn record_outcome(
        &self,
        req: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RecordOutcomeResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::RecordOutcome, async {
            let pb::RecordOutcomeRequest { decision_id, offer_id, outcome, at_ms } = req.into_inner();
            let kind = outcome_kind(outcome)?;
            let OutcomeRecorded { sequence, duplicate } =
                ctx.app.record_outcome(decision_id, offer_id, kind, at_ms).await?;
            Ok(pb::RecordOutcomeResponse { sequence, duplicate })
        })
        .await
    }

    async fn reach_estimate(
        &self,
        req: Request<pb::ReachEstimateRequest>,
    ) -> Result<Response<pb::ReachEstimateResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::ReachEstimate, async {
            let pb::ReachEstimateRequest { offer_id, context: c } = req.into_inner();
            let (f, now_ms) = ctx.app.reach_estimate(&offer_id, context(c)?).await?;
            Ok(funnel_pb(f, now_ms))
        })
        .await
    }

    type DecideForSegmentStream = BlastStream;

    async fn decide_for_segment(
        &self,
        req: Request<pb::DecideForSegmentRequest>,
    ) -> Result<Response<Self::DecideForSegmentStream>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::DecideForSegment, async {
            let r = BlastRequest::try_from(req.into_inner())?;
            let rx = ctx.app.decide_for_segment(r).await?;
            let s = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |m| {
                m.map(blast_pb).map_err(super::status::status_of)
            });
            Ok(Box::pin(s) as BlastStream)
        })
        .await
    }

    async fn get_decision(
        &self,
        req: Request<pb::GetDecisionRequest>,
    ) -> Result<Response<pb::GetDecisionResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::GetDecision, async {
            let pb::GetDecisionRequest { decision_id } = req.into_inner();
            let (d, expires_ms) = ctx.app.get_decision(decision_id)?;
            Ok(stored_pb(&d, expires_ms))
        })
        .await
    }
}

/// The demo offer catalogue `segd serve` loads into a fresh demo data dir:
/// `src/decide/demo_offers.json`, in the proto3 JSON form `PutOffer` takes (a
/// `ListOffersResponse`), so the file doubles as an example of the format.
pub fn demo_offers() -> Result<Vec<Offer>, AppError> {
    let list: pb::ListOffersResponse = serde_json::from_str(include_str!("../decide/demo_offers.json"))
        .map_err(|e| AppError::Internal(format!("src/decide/demo_offers.json: {e}")))?;
    let pb::ListOffersResponse { offers } = list;
    offers.into_iter().map(Offer::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo catalogue parses, and every offer survives the proto round trip whole.
    #[test]
    fn the_demo_catalogue_parses_and_round_trips() {
        let offers = demo_offers().unwrap();
        assert_eq!(offers.len(), 6);
        assert_eq!(offers.iter().filter(|o| o.fallback).count(), 1);
        for o in &offers {
            o.validate().unwrap();
            assert_eq!(&Offer::try_from(offer_pb(o)).unwrap(), o);
        }
        let w = &offers[0];
        assert_eq!(w.cap, Some(Limit { max: 2, window_ms: 7 * 86_400_000 }));
        assert_eq!(w.holdout_pct, 10.0);
        assert_eq!(w.propensity, Propensity::Attribute("churn_risk".into()));
    }
}
