//! Validation of a program: every error at once, each naming its item and field, so a
//! bad program is refused whole and nothing of it is applied.

use std::collections::{BTreeSet, HashMap};

use chrono_tz::Tz;

use super::program::*;
use super::GamifyError;
use crate::query::ast::{Expr, Limits};
use crate::query::sql;

struct Errs(Vec<String>);

impl Errs {
    fn at(&mut self, item: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{item}: {msg}"));
    }
}

fn check_name(errs: &mut Errs, item: &str, field: &str, name: &str) {
    if name.is_empty() || name.len() > 64 {
        errs.at(item, format!("{field} must be 1 to 64 bytes, got {} bytes", name.len()));
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        errs.at(item, format!("{field} '{name}' may hold only ASCII letters, digits, '_' and '-'"));
    }
}

fn parse_cond(errs: &mut Errs, item: &str, field: &str, text: &Option<String>) -> Option<Expr> {
    let text = text.as_ref()?;
    match sql::parse(text, &Limits { max_text: 4096, max_depth: 16, max_in_list: 1000 }) {
        Ok(e) => Some(e),
        Err(e) => {
            errs.at(item, format!("{field}: {e}"));
            None
        }
    }
}

fn parse_time(errs: &mut Errs, item: &str, field: &str, text: &Option<String>, default: i64) -> i64 {
    let Some(t) = text else { return default };
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) if (0..=super::time::MAX_MS).contains(&d.timestamp_millis()) => d.timestamp_millis(),
        Ok(_) => {
            errs.at(item, format!("{field} '{t}' is outside 1970..9999"));
            default
        }
        Err(e) => {
            errs.at(item, format!("{field} '{t}' is not an RFC 3339 time: {e}"));
            default
        }
    }
}

impl Program {
    /// Validates a program whole: every error, each naming its item and field.
    pub fn new(spec: ProgramSpec) -> Result<Program, GamifyError> {
        let mut errs = Errs(Vec::new());
        let tz: Tz = spec.time_zone.parse().unwrap_or_else(|_| {
            errs.at("time_zone", format!("'{}' is not an IANA time zone", spec.time_zone));
            Tz::UTC
        });
        if spec.wallets.is_empty() {
            errs.at("wallets", "at least one wallet is needed (the first is the primary one)");
        }
        let mut wallet_ids = BTreeSet::new();
        for (i, w) in spec.wallets.iter().enumerate() {
            let item = format!("wallets[{i}] \"{}\"", w.id);
            check_name(&mut errs, &item, "id", &w.id);
            if !wallet_ids.insert(w.id.as_str()) {
                errs.at(&item, "id is a duplicate");
            }
            match w.expiry {
                ExpirySpec::Never => {}
                ExpirySpec::AfterDays { days } if !(1..=36_500).contains(&days) => {
                    errs.at(&item, format!("expiry.days must be 1 to 36500, got {days}"))
                }
                ExpirySpec::EndOfMonth { months } if months > 1200 => {
                    errs.at(&item, format!("expiry.months must be at most 1200, got {months}"))
                }
                ExpirySpec::EndOfYear { years } if years > 100 => {
                    errs.at(&item, format!("expiry.years must be at most 100, got {years}"))
                }
                ExpirySpec::AfterDays { .. }
                | ExpirySpec::EndOfMonth { .. }
                | ExpirySpec::EndOfYear { .. } => {}
            }
        }
        let mut event_types = HashMap::new();
        for (i, t) in spec.event_types.iter().enumerate() {
            let item = format!("event_types[{i}] \"{}\"", t.name);
            check_name(&mut errs, &item, "name", &t.name);
            if spec.event_types[..i].iter().any(|o| o.name == t.name) {
                errs.at(&item, "name is a duplicate");
            }
            if t.properties.len() > MAX_PROPERTIES {
                errs.at(&item, format!("at most {MAX_PROPERTIES} properties, got {}", t.properties.len()));
            }
            for (name, p) in &t.properties {
                check_name(&mut errs, &item, "property name", name);
                if let Some(min) = p.min {
                    if !matches!(p.ty, PropType::Number | PropType::Integer) || !min.is_finite() {
                        errs.at(
                            &item,
                            format!("properties.{name}.min needs a finite number on a numeric property"),
                        );
                    }
                }
            }
            if let Some(r) = &t.refund_of {
                match t.properties.get(r) {
                    Some(PropSpec { ty: PropType::String, required: true, .. }) => {}
                    _ => errs.at(&item, format!("refund_of '{r}' must name a required string property")),
                }
            }
            if let Some(a) = &t.refund_amount {
                if t.refund_of.is_none() {
                    errs.at(&item, "refund_amount needs refund_of");
                }
                if !matches!(
                    t.properties.get(a),
                    Some(PropSpec { ty: PropType::Number | PropType::Integer, .. })
                ) {
                    errs.at(&item, format!("refund_amount '{a}' must name a numeric property"));
                }
            }
            event_types.insert(t.name.clone(), EventType { spec: t.clone() });
        }
        let numeric = |event: &str, prop: &str| {
            event_types.get(event).and_then(|t: &EventType| t.spec.properties.get(prop)).map(|p| p.ty)
        };
        let check_term = |errs: &mut Errs, item: &str, field: &str, event: &str, prop: &str| {
            if !event_types.contains_key(event) {
                errs.at(item, format!("{field}.event '{event}' is not an event type"));
            } else if !matches!(numeric(event, prop), Some(PropType::Number | PropType::Integer)) {
                errs.at(item, format!("{field}.property '{prop}' is not a numeric property of '{event}'"));
            }
        };
        for (i, m) in spec.measures.iter().enumerate() {
            let item = format!("measures[{i}] \"{}\"", m.id);
            check_name(&mut errs, &item, "id", &m.id);
            if spec.measures[..i].iter().any(|o| o.id == m.id) {
                errs.at(&item, "id is a duplicate");
            }
            if !(1..=3660).contains(&m.window_days) {
                errs.at(&item, format!("window_days must be 1 to 3660, got {}", m.window_days));
            }
            for (j, t) in m.add.iter().enumerate() {
                check_term(&mut errs, &item, &format!("add[{j}]"), &t.event, &t.property);
            }
            for (j, t) in m.subtract.iter().enumerate() {
                check_term(&mut errs, &item, &format!("subtract[{j}]"), &t.event, &t.property);
            }
        }
        for (i, c) in spec.counters.iter().enumerate() {
            let item = format!("counters[{i}] \"{}\"", c.name);
            check_name(&mut errs, &item, "name", &c.name);
            if BUILTIN_ATTRIBUTES.contains(&c.name.as_str())
                || spec.counters[..i].iter().any(|o| o.name == c.name)
            {
                errs.at(&item, "name is taken (a built-in attribute or another counter)");
            }
            match &c.sum {
                Some(p) => check_term(&mut errs, &item, "sum", &c.event, p),
                None if !event_types.contains_key(&c.event) => {
                    errs.at(&item, format!("event '{}' is not an event type", c.event))
                }
                None => {}
            }
        }
        let mut rules = Vec::new();
        let mut rules_by_event: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in spec.rules.iter().enumerate() {
            let item = format!("rules[{i}] \"{}\"", r.id);
            check_name(&mut errs, &item, "id", &r.id);
            if spec.rules[..i].iter().any(|o| o.id == r.id) {
                errs.at(&item, "id is a duplicate");
            }
            let etype = event_types.get(&r.event);
            if etype.is_none() {
                errs.at(&item, format!("event '{}' is not an event type", r.event));
            }
            let wallet = match &r.wallet {
                None => 0,
                Some(w) => spec.wallets.iter().position(|x| &x.id == w).unwrap_or_else(|| {
                    errs.at(&item, format!("wallet '{w}' is not a wallet"));
                    0
                }),
            };
            let when = parse_cond(&mut errs, &item, "when", &r.when);
            if let (Some(e), Some(t)) = (&when, etype) {
                for n in super::eval::names(e) {
                    if !t.spec.properties.contains_key(n) {
                        errs.at(&item, format!("when: '{n}' is not a property of '{}'", r.event));
                    }
                }
                if !e.segment_refs().is_empty() {
                    errs.at(&item, "when: in_segment() belongs in the customer condition");
                }
            }
            let customer = parse_cond(&mut errs, &item, "customer", &r.customer);
            match &r.points {
                PointsSpec::Fixed(p) if !(1..=MAX_POINTS).contains(p) => {
                    errs.at(&item, format!("points.fixed must be 1 to {MAX_POINTS}, got {p}"))
                }
                PointsSpec::Fixed(_) => {}
                PointsSpec::PerUnit { property, unit } => {
                    if !(unit.is_finite() && *unit > 0.0) {
                        errs.at(&item, format!("points.per_unit.unit must be > 0, got {unit}"));
                    }
                    if etype.is_some()
                        && !matches!(numeric(&r.event, property), Some(PropType::Number | PropType::Integer))
                    {
                        errs.at(
                            &item,
                            format!(
                                "points.per_unit.property '{property}' is not a numeric property of '{}'",
                                r.event
                            ),
                        );
                    }
                }
            }
            let mut multipliers = Vec::new();
            for (j, m) in r.multipliers.iter().enumerate() {
                if !(m.factor.is_finite() && m.factor > 0.0 && m.factor <= 1000.0) {
                    errs.at(
                        &item,
                        format!("multipliers[{j}].factor must be > 0 and at most 1000, got {}", m.factor),
                    );
                }
                let c = parse_cond(&mut errs, &item, &format!("multipliers[{j}].customer"), &m.customer);
                multipliers.push((m.factor, c));
            }
            for (field, cap) in
                [("per_day", r.caps.per_day), ("per_week", r.caps.per_week), ("per_month", r.caps.per_month)]
            {
                if let Some(c) = cap {
                    if !(1..=MAX_POINTS).contains(&c) {
                        errs.at(&item, format!("caps.{field} must be 1 to {MAX_POINTS}, got {c}"));
                    }
                }
            }
            let active_from = parse_time(&mut errs, &item, "active_from", &r.active_from, 0);
            let active_until = parse_time(&mut errs, &item, "active_until", &r.active_until, i64::MAX);
            if active_from >= active_until {
                errs.at(&item, "active_from must be before active_until");
            }
            if r.pending_days > 365 {
                errs.at(&item, format!("pending_days must be at most 365, got {}", r.pending_days));
            }
            if let Some(ExpirySpec::AfterDays { days }) = spec.wallets.get(wallet).map(|w| w.expiry) {
                if r.pending_days >= days {
                    errs.at(
                        &item,
                        format!(
                            "pending_days ({}) must be shorter than the wallet's expiry ({days} days)",
                            r.pending_days
                        ),
                    );
                }
            }
            rules_by_event.entry(r.event.clone()).or_default().push(i);
            rules.push(Rule {
                spec: r.clone(),
                wallet,
                when,
                customer,
                multipliers,
                active_from,
                active_until,
            });
        }
        let tier_measure =
            spec.measures.iter().position(|m| m.id == spec.tiers.measure).unwrap_or_else(|| {
                errs.at("tiers", format!("measure '{}' is not a measure", spec.tiers.measure));
                0
            });
        let ts = &spec.tiers.tiers;
        if ts.is_empty() || ts[0].min != 0.0 {
            errs.at("tiers", "the first tier must have min 0 (every customer holds at least it)");
        }
        for (i, t) in ts.iter().enumerate() {
            let item = format!("tiers.tiers[{i}] \"{}\"", t.name);
            check_name(&mut errs, &item, "name", &t.name);
            if ts[..i].iter().any(|o| o.name == t.name) {
                errs.at(&item, "name is a duplicate");
            }
            if !(t.min.is_finite() && (0.0..=MAX_NUMBER).contains(&t.min)) {
                errs.at(&item, format!("min must be 0 to {MAX_NUMBER}, got {}", t.min));
            } else if i > 0 && cents(t.min) <= cents(ts[i - 1].min) {
                errs.at(
                    &item,
                    format!("min must be above the previous tier's ({}), got {}", ts[i - 1].min, t.min),
                );
            }
        }
        if let DowngradeSpec::PeriodEnd { grace_days, .. } = spec.tiers.downgrade {
            if grace_days > 365 {
                errs.at("tiers.downgrade", format!("grace_days must be at most 365, got {grace_days}"));
            }
        }
        let lv = &spec.levels.thresholds;
        if lv.first() != Some(&0) {
            errs.at("levels", "thresholds must start at 0 (level 1)");
        }
        if lv.len() > 1000 {
            errs.at("levels", format!("at most 1000 levels, got {}", lv.len()));
        }
        for (i, w) in lv.windows(2).enumerate() {
            if w[1] <= w[0] {
                errs.at(
                    "levels",
                    format!("thresholds[{}] ({}) must be above thresholds[{i}] ({})", i + 1, w[1], w[0]),
                );
            }
        }
        let achieve = super::achieve::Achieve::new(&spec, &event_types, &mut errs.0);
        errs.0.extend(super::leaderboards::check(&spec));
        if !errs.0.is_empty() {
            return Err(GamifyError::Program(errs.0.join("; ")));
        }
        let tier_mins = ts.iter().map(|t| cents(t.min)).collect();
        let attr_names = BUILTIN_ATTRIBUTES
            .iter()
            .map(|n| n.to_string())
            .chain(spec.counters.iter().map(|c| c.name.clone()))
            .chain(achieve.columns().into_iter().map(|(n, _)| n))
            .collect();
        Ok(Program {
            tz,
            event_types,
            rules,
            rules_by_event,
            tier_measure,
            tier_mins,
            achieve,
            attr_names,
            spec,
        })
    }
}
