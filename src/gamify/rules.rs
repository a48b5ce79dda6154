//! Earning rules: what an event earns.
//!
//! # Evaluation order
//! For one event, the rules of its type are evaluated in program order, each on its own
//! (one rule's credit does not change what the next sees, except through a shared cap
//! of the same rule, which never happens as caps are per rule):
//! 1. the active window: `active_from ≤ occurred_at < active_until`;
//! 2. `when`, over the event's properties, must be TRUE (UNKNOWN does not earn);
//! 3. `customer`, over the customer's attributes as they were before this event, must be
//!    TRUE (so the tier an event earns counts from the next event);
//! 4. the base: `fixed`, or `property / unit` (a missing property earns nothing);
//! 5. × each multiplier whose customer condition is TRUE (or that has none), in order;
//! 6. rounded down once, at the end (19.99 € at 1 point per € is 19 points);
//! 7. caps: the credit is cut to what is left of the rule's day, week and month caps for
//!    this customer, in the periods (program time zone) that hold `occurred_at`; what
//!    it uses counts against all three.
//!
//! Then the event's credits are made, pending for `pending_days` when the rule says so.

use chrono_tz::Tz;

use super::eval::{eval, Lookup};
use super::program::{PointsSpec, Rule, MAX_POINTS};
use super::time::{cap_period, cap_period_end, CapPeriod};
use super::{Event, PropValue, Value};

/// Points used from one rule's cap in one period, for one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapUse {
    /// The interned rule id.
    pub rule: u16,
    pub period: CapPeriod,
    /// [`cap_period`]'s index.
    pub index: i32,
    pub used: i64,
}

/// An event's properties as a [`Lookup`].
pub struct EventProps<'a>(pub &'a Event);

impl Lookup for EventProps<'_> {
    fn value(&self, name: &str) -> Value {
        match self.0.properties.get(name) {
            None => Value::Null,
            Some(PropValue::Bool(b)) => Value::Bool(*b),
            Some(PropValue::Int(i)) => Value::Int(*i),
            Some(PropValue::Float(x)) => Value::Float(*x),
            Some(PropValue::Str(s)) => Value::Str(s.clone()),
        }
    }
    fn in_segment(&self, _: &str) -> bool {
        // Validation keeps in_segment out of event conditions.
        false
    }
}

/// Points a rule earns for an event before caps (steps 1 to 6), or 0.
pub fn base_points(rule: &Rule, event: &Event, customer: &dyn Lookup) -> i64 {
    if event.occurred_at_ms < rule.active_from || event.occurred_at_ms >= rule.active_until {
        return 0;
    }
    if let Some(w) = &rule.when {
        if !eval(w, &EventProps(event)).is_true() {
            return 0;
        }
    }
    if let Some(c) = &rule.customer {
        if !eval(c, customer).is_true() {
            return 0;
        }
    }
    let mut raw = match &rule.spec.points {
        PointsSpec::Fixed(p) => *p as f64,
        PointsSpec::PerUnit { property, unit } => {
            match event.properties.get(property).and_then(PropValue::as_f64) {
                Some(x) => x / unit,
                None => return 0,
            }
        }
    };
    for (factor, cond) in &rule.multipliers {
        if cond.as_ref().is_none_or(|c| eval(c, customer).is_true()) {
            raw *= factor;
        }
    }
    // `as` saturates; MAX_POINTS bounds a credit whatever the multipliers.
    (raw.floor() as i64).clamp(0, MAX_POINTS)
}

fn caps_of(rule: &Rule) -> [(CapPeriod, Option<i64>); 3] {
    let c = &rule.spec.caps;
    [(CapPeriod::Day, c.per_day), (CapPeriod::Week, c.per_week), (CapPeriod::Month, c.per_month)]
}

/// Step 7: cuts `points` to what the rule's caps leave for `at_ms`, and records the use.
pub fn apply_caps(
    tz: Tz,
    rule: &Rule,
    rule_key: u16,
    at_ms: i64,
    points: i64,
    uses: &mut Vec<CapUse>,
) -> i64 {
    let mut grant = points;
    for (period, cap) in caps_of(rule) {
        if let Some(cap) = cap {
            let index = cap_period(tz, at_ms, period);
            let used = uses
                .iter()
                .find(|u| u.rule == rule_key && u.period == period && u.index == index)
                .map_or(0, |u| u.used);
            grant = grant.min((cap - used).max(0));
        }
    }
    if grant > 0 {
        for (period, cap) in caps_of(rule) {
            if cap.is_some() {
                let index = cap_period(tz, at_ms, period);
                match uses.iter_mut().find(|u| u.rule == rule_key && u.period == period && u.index == index) {
                    Some(u) => u.used += grant,
                    None => uses.push(CapUse { rule: rule_key, period, index, used: grant }),
                }
            }
        }
    }
    grant
}

/// Drops cap uses of periods that ended before `before_ms` (no accepted event can fall
/// in them any more).
pub fn prune_caps(tz: Tz, uses: &mut Vec<CapUse>, before_ms: i64) {
    uses.retain(|u| cap_period_end(tz, u.index, u.period) > before_ms);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gamify::program::{Program, ProgramSpec, DEMO_PROGRAM};
    use crate::gamify::DAY_MS;

    struct Cust(&'static str);
    impl Lookup for Cust {
        fn value(&self, name: &str) -> Value {
            if name == "tier" {
                Value::Str(self.0.into())
            } else {
                Value::Null
            }
        }
        fn in_segment(&self, _: &str) -> bool {
            false
        }
    }

    fn ev(kind: &str, at: i64, props: &[(&str, PropValue)]) -> Event {
        Event {
            event_id: "e".into(),
            customer_id: 1,
            kind: kind.into(),
            occurred_at_ms: at,
            properties: props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        }
    }

    fn program_with(edit: impl FnOnce(&mut ProgramSpec)) -> Program {
        let mut s: ProgramSpec = serde_json::from_str(DEMO_PROGRAM).unwrap();
        edit(&mut s);
        Program::new(s).unwrap()
    }

    fn rule<'a>(p: &'a Program, id: &str) -> &'a Rule {
        p.rules.iter().find(|r| r.spec.id == id).unwrap()
    }

    /// One table per rule kind: (event properties, customer tier) -> points.
    #[test]
    fn rule_tables() {
        let p = Program::demo();
        let t0 = 1_780_000_000_000;
        let amount = |x: f64| vec![("amount_eur", PropValue::Float(x))];
        let per_unit = rule(&p, "purchase-points");
        for (x, want) in [(0.0, 0), (0.99, 0), (1.0, 1), (19.99, 19), (500.0, 500), (1e9, 1_000_000_000)] {
            assert_eq!(base_points(per_unit, &ev("purchase", t0, &amount(x)), &Cust("NONE")), want, "{x} €");
        }
        // Fixed, with a condition on the event and a multiplier on the customer.
        let books = rule(&p, "books-bonus");
        let mut props = amount(20.0);
        props.push(("category", PropValue::Str("books".into())));
        assert_eq!(base_points(books, &ev("purchase", t0, &props), &Cust("NONE")), 25);
        assert_eq!(base_points(books, &ev("purchase", t0, &props), &Cust("GOLD")), 50);
        assert_eq!(
            base_points(books, &ev("purchase", t0, &amount(20.0)), &Cust("GOLD")),
            0,
            "no category: UNKNOWN"
        );
        let mut cheap = amount(19.99);
        cheap.push(("category", PropValue::Str("books".into())));
        assert_eq!(base_points(books, &ev("purchase", t0, &cheap), &Cust("GOLD")), 0);
        // 20 × 1.5 for SILVER and GOLD.
        let review = rule(&p, "review-points");
        let rated = [("rating", PropValue::Int(4))];
        assert_eq!(base_points(review, &ev("review", t0, &rated), &Cust("SILVER")), 30);
        assert_eq!(base_points(review, &ev("review", t0, &rated), &Cust("BRONZE")), 20);
        assert_eq!(base_points(review, &ev("review", t0, &[]), &Cust("BRONZE")), 0);
    }

    #[test]
    fn active_window_and_customer_condition() {
        let p = program_with(|s| {
            s.rules[0].active_from = Some("2026-01-01T00:00:00Z".into());
            s.rules[0].active_until = Some("2026-02-01T00:00:00Z".into());
            s.rules[0].customer = Some("tier <> 'NONE'".into());
            s.rules[0].multipliers = vec![
                crate::gamify::program::MultiplierSpec { factor: 2.0, customer: None },
                crate::gamify::program::MultiplierSpec {
                    factor: 1.25,
                    customer: Some("tier = 'GOLD'".into()),
                },
            ];
        });
        let r = &p.rules[0];
        let jan1 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let feb1 = jan1 + 31 * DAY_MS;
        let e = |at| ev("purchase", at, &[("amount_eur", PropValue::Float(10.5))]);
        assert_eq!(base_points(r, &e(jan1 - 1), &Cust("GOLD")), 0);
        // 10.5 × 2 × 1.25 = 26.25 -> 26 (rounded once, at the end).
        assert_eq!(base_points(r, &e(jan1), &Cust("GOLD")), 26);
        assert_eq!(base_points(r, &e(feb1 - 1), &Cust("BRONZE")), 21);
        assert_eq!(base_points(r, &e(feb1), &Cust("GOLD")), 0);
        assert_eq!(base_points(r, &e(jan1), &Cust("NONE")), 0);
    }

    #[test]
    fn caps_per_day_week_and_month() {
        let p = program_with(|s| {
            s.rules[2].caps = crate::gamify::program::CapsSpec {
                per_day: Some(8),
                per_week: Some(20),
                per_month: Some(30),
            };
        });
        let r = &p.rules[2];
        let tz = p.tz; // Europe/Berlin
                       // Monday 2026-06-01 00:30 Berlin = 2026-05-31T22:30Z.
        let mon = 1_780_266_600_000;
        let mut uses = Vec::new();
        // Day cap 8: 5, then 3, then 0.
        assert_eq!(apply_caps(tz, r, 2, mon, 5, &mut uses), 5);
        assert_eq!(apply_caps(tz, r, 2, mon + 3_600_000, 5, &mut uses), 3);
        assert_eq!(apply_caps(tz, r, 2, mon + 7_200_000, 5, &mut uses), 0);
        // Tuesday: a new day; the week has 12 left.
        assert_eq!(apply_caps(tz, r, 2, mon + DAY_MS, 8, &mut uses), 8);
        // Wednesday: the week has 4 left.
        assert_eq!(apply_caps(tz, r, 2, mon + 2 * DAY_MS, 8, &mut uses), 4);
        assert_eq!(apply_caps(tz, r, 2, mon + 3 * DAY_MS, 8, &mut uses), 0);
        // Next Monday: a new week, the month (June) has 10 left.
        assert_eq!(apply_caps(tz, r, 2, mon + 7 * DAY_MS, 8, &mut uses), 8);
        assert_eq!(apply_caps(tz, r, 2, mon + 8 * DAY_MS, 8, &mut uses), 2);
        // Another rule key has caps of its own.
        assert_eq!(apply_caps(tz, r, 3, mon + 8 * DAY_MS, 8, &mut uses), 8);
        // 2026-05-31T21:59Z is still Sunday May 31 in Berlin: May's month, another week.
        assert_eq!(apply_caps(tz, r, 2, mon - 31 * 60_000, 8, &mut uses), 8);
        // Pruning at the start of July drops May's and June's uses.
        prune_caps(tz, &mut uses, mon + 31 * DAY_MS);
        assert!(uses.is_empty(), "{uses:?}");
    }
}
