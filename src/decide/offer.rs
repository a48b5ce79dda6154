//! What an offer is: who may get it, how it is scored and limited. Validation is of an offer whole, before it is
//! logged, with errors naming the offer id and the field.

use std::collections::BTreeMap;
use std::fmt;

use crate::query::Expr;

/// Channels an offer can be presented on. A closed set so that a typo in an offer or a
/// request is an error rather than an offer that silently never matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    Email,
    Sms,
    Push,
    Web,
    App,
    CallCenter,
    Mail,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::Web,
        Channel::App,
        Channel::CallCenter,
        Channel::Mail,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Web => "web",
            Channel::App => "app",
            Channel::CallCenter => "call_center",
            Channel::Mail => "mail",
        }
    }

    /// Parses a channel name; the error lists the allowed ones.
    pub fn parse(s: &str) -> Result<Channel, UnknownChannel> {
        Channel::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownChannel(s.to_string()))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown channel '{0}'; channels are: email, sms, push, web, app, call_center, mail")]
pub struct UnknownChannel(pub String);

/// A segment an offer rule refers to; the engine resolves it against its table and saved
/// segments (see [`super::facts`]).
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentRef {
    /// Every customer (a rule left open).
    All,
    /// SQL `WHERE` text (may use `in_segment(...)`).
    Where(String),
    /// A predicate tree.
    Predicate(Expr),
    /// A saved segment by id.
    Saved(String),
}

/// What an offer is worth to the business for one customer.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Constant(f64),
    /// A numeric customer attribute times a factor (e.g. `avg_basket_eur` × 0.1).
    Attribute {
        name: String,
        factor: f64,
    },
}

/// How likely the customer is to accept.
#[derive(Clone, Debug, PartialEq)]
pub enum Propensity {
    /// A fixed prior probability in [0, 1].
    Constant(f64),
    /// A numeric attribute holding a probability in [0, 1] (a model score).
    Attribute(String),
    /// A Beta-Bernoulli model learnt from outcomes, sampled by Thompson sampling. The
    /// posterior is Beta(alpha + successes, beta + failures); Beta(1, 1) (uniform) is the
    /// documented default prior. With `per_segment`, a customer uses the model of the first
    /// listed saved segment they belong to, else the offer-wide model.
    Adaptive { alpha: f64, beta: f64, per_segment: Vec<String> },
}

impl Propensity {
    /// The documented default adaptive model: Beta(1, 1), one model per offer.
    pub fn adaptive_default() -> Propensity {
        Propensity::Adaptive { alpha: 1.0, beta: 1.0, per_segment: vec![] }
    }
}

/// Multiplicative weights by context; a key absent from a map weighs 1.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContextWeights {
    pub channel: BTreeMap<Channel, f64>,
    pub placement: BTreeMap<String, f64>,
    pub intent: BTreeMap<String, f64>,
}

impl ContextWeights {
    /// The product of the weights that match the context.
    pub fn weight(&self, channel: Channel, placement: &str, intent: &str) -> f64 {
        self.channel.get(&channel).copied().unwrap_or(1.0)
            * self.placement.get(placement).copied().unwrap_or(1.0)
            * self.intent.get(intent).copied().unwrap_or(1.0)
    }
}

/// At most `max` of something per customer within a sliding window of `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window_ms: i64,
}

/// After `after` negative responses (rejects, and ignores when `ignore_after_ms` is set)
/// within `within_ms`, the offer pauses for the customer for `pause_ms` from the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub after: u32,
    pub within_ms: i64,
    pub pause_ms: i64,
    /// An impression with no CLICK / ACCEPT / CONVERT counts as an ignore this long after it.
    pub ignore_after_ms: Option<i64>,
}

/// One offer of the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// 1-128 letters, digits, '_', '-', '.'.
    pub id: String,
    pub name: String,
    /// The issue / group the offer belongs to (free text, for reporting).
    pub group: String,
    pub channels: Vec<Channel>,
    /// Active from this instant (inclusive), if set.
    pub start_ms: Option<i64>,
    /// Active until this instant (exclusive), if set.
    pub end_ms: Option<i64>,
    /// Who may get the offer at all (e.g. legal, product ownership).
    pub eligibility: SegmentRef,
    /// Whether it applies to the customer's situation.
    pub applicability: SegmentRef,
    /// Whether it is good for the customer.
    pub suitability: SegmentRef,
    pub value: Value,
    pub propensity: Propensity,
    pub weights: ContextWeights,
    /// A business lever: multiplies priority (≥ 0).
    pub lever: f64,
    /// N impressions of this offer per customer per window.
    pub cap: Option<Limit>,
    /// At most this many acceptances, across all customers.
    pub budget: Option<u64>,
    pub suppression: Option<Suppression>,
    /// Percentage of customers (stable per customer and offer) who never get it: [0, 100].
    pub holdout_pct: f64,
    /// Returned only when no other offer qualifies.
    pub fallback: bool,
}

impl Offer {
    /// An offer with every rule open, value and propensity 1, on `channels`.
    pub fn new(id: &str, channels: &[Channel]) -> Offer {
        Offer {
            id: id.into(),
            name: id.into(),
            group: String::new(),
            channels: channels.to_vec(),
            start_ms: None,
            end_ms: None,
            eligibility: SegmentRef::All,
            applicability: SegmentRef::All,
            suitability: SegmentRef::All,
            value: Value::Constant(1.0),
            propensity: Propensity::Constant(1.0),
            weights: ContextWeights::default(),
            lever: 1.0,
            cap: None,
            budget: None,
            suppression: None,
            holdout_pct: 0.0,
            fallback: false,
        }
    }

    pub fn in_window(&self, now_ms: i64) -> bool {
        self.start_ms.is_none_or(|s| now_ms >= s) && self.end_ms.is_none_or(|e| now_ms < e)
    }

    /// The three rules in stage order.
    pub fn rules(&self) -> [(Rule, &SegmentRef); 3] {
        [
            (Rule::Eligibility, &self.eligibility),
            (Rule::Applicability, &self.applicability),
            (Rule::Suitability, &self.suitability),
        ]
    }

    /// Saved segments the offer reads: saved-segment rules, `in_segment(...)` in its rule
    /// texts and trees, and the segments of per-segment models. A saved segment an offer
    /// reads must not be deleted (as with `in_segment` between saved segments).
    pub fn segment_refs(&self) -> Vec<String> {
        let mut out = vec![];
        for (_, seg) in self.rules() {
            match seg {
                SegmentRef::All => {}
                SegmentRef::Saved(id) => out.push(id.clone()),
                SegmentRef::Predicate(e) => out.extend(e.segment_refs()),
                // A text that does not parse reads nothing (and is refused when resolved).
                SegmentRef::Where(t) => {
                    if let Ok(e) = crate::query::sql::parse(t, &crate::query::Limits::default()) {
                        out.extend(e.segment_refs());
                    }
                }
            }
        }
        if let Propensity::Adaptive { per_segment, .. } = &self.propensity {
            out.extend(per_segment.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Checks every field; the first problem is reported with the offer id and field.
    pub fn validate(&self) -> Result<(), OfferError> {
        let err = |field: &str, problem: String| OfferError::Invalid {
            offer: self.id.clone(),
            field: field.into(),
            problem,
        };
        if !valid_id(&self.id) {
            return Err(OfferError::BadId(self.id.clone()));
        }
        if self.name.len() > MAX_TEXT {
            return Err(err("name", format!("longer than {MAX_TEXT} bytes")));
        }
        if self.group.len() > MAX_TEXT {
            return Err(err("group", format!("longer than {MAX_TEXT} bytes")));
        }
        if self.channels.is_empty() {
            return Err(err("channels", "empty: an offer needs at least one channel".into()));
        }
        for (i, c) in self.channels.iter().enumerate() {
            if self.channels[..i].contains(c) {
                return Err(err("channels", format!("'{c}' listed twice")));
            }
        }
        if let (Some(s), Some(e)) = (self.start_ms, self.end_ms) {
            if e <= s {
                return Err(err("end_ms", format!("{e} is not after start_ms {s}")));
            }
        }
        for (rule, seg) in self.rules() {
            check_segment(seg).map_err(|p| err(rule.field(), p))?;
        }
        match &self.value {
            Value::Constant(v) => non_negative(*v).map_err(|p| err("value", p))?,
            Value::Attribute { name, factor } => {
                check_name(name).map_err(|p| err("value.attribute", p))?;
                non_negative(*factor).map_err(|p| err("value.factor", p))?;
            }
        }
        match &self.propensity {
            Propensity::Constant(p) => {
                if !(p.is_finite() && (0.0..=1.0).contains(p)) {
                    return Err(err("propensity", format!("{p} is not a probability in [0, 1]")));
                }
            }
            Propensity::Attribute(name) => check_name(name).map_err(|p| err("propensity.attribute", p))?,
            Propensity::Adaptive { alpha, beta, per_segment } => {
                positive(*alpha).map_err(|p| err("propensity.alpha", p))?;
                positive(*beta).map_err(|p| err("propensity.beta", p))?;
                if per_segment.len() > MAX_MODEL_SEGMENTS {
                    return Err(err(
                        "propensity.per_segment",
                        format!("more than {MAX_MODEL_SEGMENTS} segments"),
                    ));
                }
                for s in per_segment {
                    if !valid_id(s) {
                        return Err(err("propensity.per_segment", format!("bad segment id '{s}'")));
                    }
                }
            }
        }
        let weights =
            [("weights.placement", &self.weights.placement), ("weights.intent", &self.weights.intent)];
        for (c, w) in &self.weights.channel {
            non_negative(*w).map_err(|p| err("weights.channel", format!("{c}: {p}")))?;
        }
        for (field, map) in weights {
            for (k, w) in map {
                if k.len() > MAX_TEXT {
                    return Err(err(field, format!("key longer than {MAX_TEXT} bytes")));
                }
                non_negative(*w).map_err(|p| err(field, format!("'{k}': {p}")))?;
            }
        }
        non_negative(self.lever).map_err(|p| err("lever", p))?;
        if let Some(cap) = &self.cap {
            check_limit(cap).map_err(|(f, p)| err(&format!("cap.{f}"), p))?;
        }
        if self.budget == Some(0) {
            return Err(err("budget", "0: omit the budget for none, or allow at least 1".into()));
        }
        if let Some(s) = &self.suppression {
            if s.after == 0 {
                return Err(err("suppression.after", "0: at least 1 negative response".into()));
            }
            duration(s.within_ms).map_err(|p| err("suppression.within_ms", p))?;
            duration(s.pause_ms).map_err(|p| err("suppression.pause_ms", p))?;
            if let Some(i) = s.ignore_after_ms {
                duration(i).map_err(|p| err("suppression.ignore_after_ms", p))?;
            }
        }
        percentage(self.holdout_pct).map_err(|p| err("holdout_pct", p))?;
        // A fallback is what is shown when limits leave nothing: it has none of its own.
        if self.fallback {
            let limits = [
                ("cap", self.cap.is_some()),
                ("budget", self.budget.is_some()),
                ("suppression", self.suppression.is_some()),
                ("holdout_pct", self.holdout_pct > 0.0),
            ];
            if let Some((f, _)) = limits.iter().find(|(_, set)| *set) {
                return Err(err("fallback", format!("a fallback offer cannot have {f}")));
            }
        }
        Ok(())
    }
}

/// Which of the three segment rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Eligibility,
    Applicability,
    Suitability,
}

impl Rule {
    /// Position in [`Offer::rules`].
    pub fn index(self) -> usize {
        match self {
            Rule::Eligibility => 0,
            Rule::Applicability => 1,
            Rule::Suitability => 2,
        }
    }

    pub fn field(self) -> &'static str {
        match self {
            Rule::Eligibility => "eligibility",
            Rule::Applicability => "applicability",
            Rule::Suitability => "suitability",
        }
    }
}

/// Longest name, group, attribute name or `where` text.
pub const MAX_TEXT: usize = 64 * 1024;
/// Longest list of per-segment adaptive models of one offer.
pub const MAX_MODEL_SEGMENTS: usize = 64;
/// Longest window any limit may have (10 years): keeps `now - window` far from overflow.
pub const MAX_WINDOW_MS: i64 = 10 * 366 * 86_400_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OfferError {
    #[error("bad offer id '{0}': 1-128 characters of letters, digits, '_', '-', '.'")]
    BadId(String),
    #[error("offer '{offer}': {field}: {problem}")]
    Invalid { offer: String, field: String, problem: String },
    #[error("contact policy: {field}: {problem}")]
    Policy { field: String, problem: String },
    #[error("unknown offer id '{0}'")]
    NotFound(String),
    #[error("too many offers: the limit is {0}")]
    TooMany(usize),
}

pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TEXT {
        return Err(format!("attribute name must be 1-{MAX_TEXT} bytes"));
    }
    Ok(())
}

fn check_segment(seg: &SegmentRef) -> Result<(), String> {
    match seg {
        SegmentRef::All | SegmentRef::Predicate(_) => Ok(()),
        SegmentRef::Where(t) if t.trim().is_empty() => Err("empty where text (use All for everyone)".into()),
        SegmentRef::Where(t) if t.len() > MAX_TEXT => Err(format!("where text longer than {MAX_TEXT} bytes")),
        SegmentRef::Where(_) => Ok(()),
        SegmentRef::Saved(id) if !valid_id(id) => Err(format!("bad saved segment id '{id}'")),
        SegmentRef::Saved(_) => Ok(()),
    }
}

fn non_negative(x: f64) -> Result<(), String> {
    if !x.is_finite() || x < 0.0 {
        return Err(format!("{x} is not a finite number ≥ 0"));
    }
    Ok(())
}

fn positive(x: f64) -> Result<(), String> {
    if !x.is_finite() || x <= 0.0 {
        return Err(format!("{x} is not a finite number > 0"));
    }
    Ok(())
}

pub(crate) fn percentage(x: f64) -> Result<(), String> {
    if !x.is_finite() || !(0.0..=100.0).contains(&x) {
        return Err(format!("{x} is not a percentage in [0, 100]"));
    }
    Ok(())
}

fn duration(ms: i64) -> Result<(), String> {
    if !(1..=MAX_WINDOW_MS).contains(&ms) {
        return Err(format!("{ms} ms is not in 1..={MAX_WINDOW_MS}"));
    }
    Ok(())
}

pub(crate) fn check_limit(l: &Limit) -> Result<(), (&'static str, String)> {
    if l.max == 0 {
        return Err(("max", "0: omit the limit to forbid nothing, or allow at least 1".into()));
    }
    duration(l.window_ms).map_err(|p| ("window_ms", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: OfferError) -> String {
        match e {
            OfferError::Invalid { offer, field, .. } => {
                assert_eq!(offer, "o1");
                field
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_plain_offer_is_valid() {
        Offer::new("o1", &[Channel::Email]).validate().unwrap();
    }

    type Edit = Box<dyn Fn(&mut Offer)>;

    #[test]
    fn each_bad_field_is_named() {
        let base = Offer::new("o1", &[Channel::Email]);
        let cases: Vec<(&str, Edit)> = vec![
            ("channels", Box::new(|o| o.channels.clear())),
            ("channels", Box::new(|o| o.channels.push(Channel::Email))),
            ("end_ms", Box::new(|o| (o.start_ms, o.end_ms) = (Some(10), Some(10)))),
            ("eligibility", Box::new(|o| o.eligibility = SegmentRef::Where(" ".into()))),
            ("suitability", Box::new(|o| o.suitability = SegmentRef::Saved("a b".into()))),
            ("value", Box::new(|o| o.value = Value::Constant(f64::NAN))),
            ("value", Box::new(|o| o.value = Value::Constant(-1.0))),
            (
                "value.factor",
                Box::new(|o| o.value = Value::Attribute { name: "x".into(), factor: f64::INFINITY }),
            ),
            ("value.attribute", Box::new(|o| o.value = Value::Attribute { name: "".into(), factor: 1.0 })),
            ("propensity", Box::new(|o| o.propensity = Propensity::Constant(1.5))),
            (
                "propensity.alpha",
                Box::new(|o| {
                    o.propensity = Propensity::Adaptive { alpha: 0.0, beta: 1.0, per_segment: vec![] }
                }),
            ),
            (
                "propensity.beta",
                Box::new(|o| {
                    o.propensity = Propensity::Adaptive { alpha: 1.0, beta: f64::NAN, per_segment: vec![] }
                }),
            ),
            ("weights.channel", Box::new(|o| _ = o.weights.channel.insert(Channel::Sms, f64::NEG_INFINITY))),
            ("weights.intent", Box::new(|o| _ = o.weights.intent.insert("buy".into(), -0.5))),
            ("lever", Box::new(|o| o.lever = f64::NAN)),
            ("cap.max", Box::new(|o| o.cap = Some(Limit { max: 0, window_ms: 1000 }))),
            ("cap.window_ms", Box::new(|o| o.cap = Some(Limit { max: 1, window_ms: 0 }))),
            ("budget", Box::new(|o| o.budget = Some(0))),
            (
                "suppression.after",
                Box::new(|o| {
                    o.suppression =
                        Some(Suppression { after: 0, within_ms: 1, pause_ms: 1, ignore_after_ms: None })
                }),
            ),
            (
                "suppression.pause_ms",
                Box::new(|o| {
                    o.suppression =
                        Some(Suppression { after: 1, within_ms: 1, pause_ms: -5, ignore_after_ms: None })
                }),
            ),
            ("holdout_pct", Box::new(|o| o.holdout_pct = 100.5)),
            ("holdout_pct", Box::new(|o| o.holdout_pct = -0.1)),
            ("holdout_pct", Box::new(|o| o.holdout_pct = f64::NAN)),
            ("fallback", Box::new(|o| (o.fallback, o.budget) = (true, Some(5)))),
        ];
        for (field, edit) in cases {
            let mut o = base.clone();
            edit(&mut o);
            assert_eq!(field_of(o.validate().unwrap_err()), field);
        }
        let mut o = base.clone();
        o.id = "bad id".into();
        assert_eq!(o.validate().unwrap_err(), OfferError::BadId("bad id".into()));
    }

    #[test]
    fn unknown_channel_lists_the_allowed() {
        assert_eq!(Channel::parse("sms"), Ok(Channel::Sms));
        let e = Channel::parse("fax").unwrap_err().to_string();
        assert!(e.contains("'fax'") && e.contains("email, sms"), "{e}");
    }

    #[test]
    fn segment_refs_come_from_every_rule_and_model() {
        let mut o = Offer::new("o1", &[Channel::Web]);
        o.eligibility = SegmentRef::Saved("a".into());
        o.applicability = SegmentRef::Where("in_segment('b') AND NOT in_segment('a') AND age > 3".into());
        o.suitability = SegmentRef::Predicate(crate::query::Expr::Not(Box::new(
            crate::query::Expr::InSegment("c".into()),
        )));
        o.propensity =
            Propensity::Adaptive { alpha: 1.0, beta: 1.0, per_segment: vec!["d".into(), "a".into()] };
        assert_eq!(o.segment_refs(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn window_is_half_open() {
        let mut o = Offer::new("o1", &[Channel::Web]);
        (o.start_ms, o.end_ms) = (Some(100), Some(200));
        assert!(!o.in_window(99) && o.in_window(100) && o.in_window(199) && !o.in_window(200));
    }
}
