//! What a decision needs to know about one customer: segment membership and numeric
//! attributes. The engine answers from its indexes ([`DatasetFacts`]); tests answer from a
//! map ([`MapFacts`]).

use std::collections::{HashMap, HashSet};

use std::sync::{Arc, OnceLock};

use super::catalogue::Catalogue;
use super::offer::{Offer, Propensity, Rule, SegmentRef, Value};
use super::rules::{Check, CompiledRules, Members};
use crate::index::Postings;
use crate::query::{self, eval, plan::Segments, Limits, Plan, QueryError};
use crate::store::column::{ColumnData, Kind, Temporal};
use crate::store::Dataset;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FactsError {
    #[error("unknown customer id {0}")]
    UnknownCustomer(u64),
    #[error("{0} was not resolved for this catalogue (facts are built per catalogue version)")]
    Unresolved(String),
    #[error("offer '{offer}': {field}: attribute '{attribute}' is not a numeric column{found}")]
    NotNumeric { offer: String, field: String, attribute: String, found: String },
    #[error("attribute '{attribute}' is not a numeric column{found}")]
    NotNumericAttribute { attribute: String, found: String },
    #[error("offer '{offer}': {field}: {source}")]
    Segment { offer: String, field: String, source: QueryError },
}

/// Facts about customers, as of one version of the state.
pub trait CustomerFacts {
    /// Whether the customer is held at all.
    fn known(&self, customer_id: u64) -> bool;
    /// Whether the customer passes one segment rule of an offer.
    fn passes(&self, customer_id: u64, offer: &Offer, rule: Rule) -> Result<bool, FactsError>;
    /// [`CustomerFacts::passes`] for the `nth` offer of the catalogue in id order (a hint
    /// that spares a lookup by id; the answer is the same).
    fn passes_nth(
        &self,
        customer_id: u64,
        nth: usize,
        offer: &Offer,
        rule: Rule,
    ) -> Result<bool, FactsError> {
        let _ = nth;
        self.passes(customer_id, offer, rule)
    }
    /// Whether the customer is in a saved segment (per-segment adaptive models).
    fn in_saved(&self, customer_id: u64, segment_id: &str) -> Result<bool, FactsError>;
    /// A numeric attribute's value; None when NULL (or NaN).
    fn number(&self, customer_id: u64, attribute: &str) -> Result<Option<f64>, FactsError>;
}

/// A stable key of a segment reference, for caches of resolved segments.
pub fn segment_key(seg: &SegmentRef) -> String {
    match seg {
        SegmentRef::All => "all".into(),
        SegmentRef::Where(t) => format!("where:{t}"),
        // serde_json of the tree is deterministic (struct fields in order, Vec order kept).
        SegmentRef::Predicate(e) => format!("tree:{}", serde_json::to_string(e).expect("Expr serializes")),
        SegmentRef::Saved(id) => format!("saved:{id}"),
    }
}

/// Facts from a customer table: each offer's rules compiled against it ([`CompiledRules`]),
/// numbers read from the columns. Built per decision from cached rules
/// ([`DatasetFacts::with_rules`]: a decision then only walks plans on one row), or with
/// every rule compiled for this table ([`DatasetFacts::new`]).
pub struct DatasetFacts<'a> {
    ds: &'a Dataset,
    rules: Arc<CompiledRules>,
    /// Saved-segment membership of the version the decision reads; None: the members bound
    /// when the rules were compiled (the same version, for [`DatasetFacts::new`]).
    members: Option<Members<'a>>,
    /// The first row asked about (a decision asks about one) and its membership of each
    /// slot of live rules, filled as offers ask: 200 offers over 50 segments look each
    /// segment up once.
    memo_row: OnceLock<u32>,
    memo: Box<[OnceLock<bool>]>,
    /// The first customer asked about and their row (see [`DatasetFacts::row`]).
    memo_customer: OnceLock<(u64, u32)>,
}

/// One offer resolved against a table: its three rule plans and the members of the saved
/// segments of its per-segment models.
pub struct Resolved {
    pub rules: [Plan; 3],
    pub saved: Vec<(String, Arc<Postings>)>,
}

/// Resolves an offer against a table: compiles its rules (resolving `in_segment` and saved
/// segment ids through `segs`), finds its model segments, and checks its value /
/// propensity attributes are numeric columns. What `PutOffer` checks before logging.
pub fn resolve(ds: &Dataset, o: &Offer, segs: Segments<'_>, limits: &Limits) -> Result<Resolved, FactsError> {
    let [e, a, s] = o.rules().map(|(rule, seg)| {
        compile(ds, seg, segs, limits).map_err(|source| FactsError::Segment {
            offer: o.id.clone(),
            field: rule.field().into(),
            source,
        })
    });
    let rules = [e?, a?, s?];
    let mut saved = vec![];
    if let Propensity::Adaptive { per_segment, .. } = &o.propensity {
        for id in per_segment {
            let members = segs(id).ok_or_else(|| FactsError::Segment {
                offer: o.id.clone(),
                field: "propensity.per_segment".into(),
                source: QueryError::UnknownSegment(id.clone()),
            })?;
            saved.push((id.clone(), members));
        }
    }
    if let Value::Attribute { name, .. } = &o.value {
        numeric_column(ds, name).map_err(|found| not_numeric(&o.id, "value.attribute", name, found))?;
    }
    if let Propensity::Attribute(name) = &o.propensity {
        numeric_column(ds, name).map_err(|found| not_numeric(&o.id, "propensity.attribute", name, found))?;
    }
    Ok(Resolved { rules, saved })
}

impl<'a> DatasetFacts<'a> {
    /// Resolves every offer of the catalogue ([`resolve`]).
    pub fn new(
        ds: &'a Dataset,
        cat: &Catalogue,
        segs: Segments<'_>,
        limits: &Limits,
    ) -> Result<Self, FactsError> {
        let rules = Arc::new(CompiledRules::build(ds, cat, segs, limits)?);
        Ok(DatasetFacts {
            ds,
            rules,
            members: None,
            memo_row: OnceLock::new(),
            memo: Box::new([]),
            memo_customer: OnceLock::new(),
        })
    }

    /// Facts from rules compiled earlier for this table's bindings and catalogue (see
    /// [`CompiledRules::fits`]), saved segments answered by `members` from the version read.
    pub fn with_rules(ds: &'a Dataset, rules: Arc<CompiledRules>, members: Members<'a>) -> Self {
        debug_assert!(rules.fits_bindings(ds), "rules compiled for other bindings");
        let memo = (0..rules.segments()).map(|_| OnceLock::new()).collect();
        DatasetFacts {
            ds,
            rules,
            members: Some(members),
            memo_row: OnceLock::new(),
            memo,
            memo_customer: OnceLock::new(),
        }
    }

    /// Whether `row` passes a compiled rule.
    fn check(&self, c: &Check, row: u32) -> Result<bool, FactsError> {
        Ok(match c {
            Check::Const(b) => *b,
            Check::Row(node) => eval::matches_row(self.ds, node, row),
            Check::Segment { slot, negated } => self.member(*slot, row)? != *negated,
            Check::And(kids) => {
                for k in kids {
                    if !self.check(k, row)? {
                        return Ok(false);
                    }
                }
                true
            }
            Check::Or(kids) => {
                for k in kids {
                    if self.check(k, row)? {
                        return Ok(true);
                    }
                }
                false
            }
        })
    }

    /// Whether `row` is in the saved segment of a live rules' slot, in the version read.
    fn member(&self, slot: u32, row: u32) -> Result<bool, FactsError> {
        let memo = (*self.memo_row.get_or_init(|| row) == row).then(|| &self.memo[slot as usize]);
        if let Some(&b) = memo.and_then(|m| m.get()) {
            return Ok(b);
        }
        let id = self.rules.segment_id(slot);
        let members = self.members.and_then(|m| m(id));
        let b = members.ok_or_else(|| FactsError::Unresolved(format!("saved segment '{id}'")))?.contains(row);
        if let Some(m) = memo {
            let _ = m.set(b);
        }
        Ok(b)
    }

    pub fn dataset(&self) -> &Dataset {
        self.ds
    }

    /// The customer's row; the first customer asked about is remembered (a decision asks
    /// about one customer a few hundred times: for every rule and number of its offers).
    fn row(&self, customer_id: u64) -> Result<u32, FactsError> {
        if let Some(&(id, row)) = self.memo_customer.get() {
            if id == customer_id {
                return Ok(row);
            }
        }
        let row = self.ds.row_of(customer_id).ok_or(FactsError::UnknownCustomer(customer_id))?;
        let _ = self.memo_customer.set((customer_id, row));
        Ok(row)
    }
}

fn not_numeric(offer: &str, field: &str, attribute: &str, found: String) -> FactsError {
    FactsError::NotNumeric { offer: offer.into(), field: field.into(), attribute: attribute.into(), found }
}

/// Compiles one segment reference to a plan over `ds`.
pub fn compile(
    ds: &Dataset,
    seg: &SegmentRef,
    segs: Segments<'_>,
    limits: &Limits,
) -> Result<Plan, QueryError> {
    match seg {
        SegmentRef::All => {
            query::compile_expr_in(ds, &query::Expr::Const(query::Literal::Bool(true)), limits, segs)
        }
        SegmentRef::Where(text) => query::compile_sql_in(ds, text, limits, segs),
        SegmentRef::Predicate(e) => query::compile_expr_in(ds, e, limits, segs),
        SegmentRef::Saved(id) => {
            query::compile_expr_in(ds, &query::Expr::InSegment(id.clone()), limits, segs)
        }
    }
}

/// The column index of a plain numeric attribute (int or float, not a date).
pub(crate) fn numeric_column(ds: &Dataset, name: &str) -> Result<usize, String> {
    let ci = ds.column_index(name).ok_or_else(|| " (no such column)".to_string())?;
    match ds.columns[ci].kind {
        Kind::Int(Temporal::None) | Kind::Float => Ok(ci),
        k => Err(format!(" (it is {})", k.name())),
    }
}

/// A numeric cell; None when NULL or NaN.
pub fn number_at(ds: &Dataset, col: usize, row: u32) -> Option<f64> {
    let column = &ds.columns[col];
    if column.is_null(row) {
        return None;
    }
    let (c, o) = crate::store::column::split(row);
    let x = match &column.data {
        ColumnData::Int(_) => column.ints(c).get(o) as f64,
        ColumnData::Float(_) => column.floats(c).get(o),
        _ => return None,
    };
    (!x.is_nan()).then_some(x)
}

impl CustomerFacts for DatasetFacts<'_> {
    fn known(&self, customer_id: u64) -> bool {
        self.row(customer_id).is_ok()
    }

    fn passes(&self, customer_id: u64, offer: &Offer, rule: Rule) -> Result<bool, FactsError> {
        self.passes_nth(customer_id, usize::MAX, offer, rule)
    }

    fn passes_nth(
        &self,
        customer_id: u64,
        nth: usize,
        offer: &Offer,
        rule: Rule,
    ) -> Result<bool, FactsError> {
        let row = self.row(customer_id)?;
        let entry = self
            .rules
            .entry(nth, offer)
            .ok_or_else(|| FactsError::Unresolved(format!("offer '{}'", offer.id)))?;
        self.check(&entry.rules[rule.index()], row)
    }

    fn in_saved(&self, customer_id: u64, segment_id: &str) -> Result<bool, FactsError> {
        let row = self.row(customer_id)?;
        let unresolved = || FactsError::Unresolved(format!("saved segment '{segment_id}'"));
        if self.rules.live() {
            return self.member(self.rules.slot(segment_id).ok_or_else(unresolved)?, row);
        }
        Ok(self.rules.saved(segment_id).ok_or_else(unresolved)?.contains(row))
    }

    fn number(&self, customer_id: u64, attribute: &str) -> Result<Option<f64>, FactsError> {
        let row = self.row(customer_id)?;
        let col = numeric_column(self.ds, attribute)
            .map_err(|found| FactsError::NotNumericAttribute { attribute: attribute.into(), found })?;
        Ok(number_at(self.ds, col, row))
    }
}

/// Facts held in maps: a customer's segments (by [`segment_key`]) and numbers.
#[derive(Clone, Debug, Default)]
pub struct MapFacts {
    pub customers: HashMap<u64, MapCustomer>,
}

#[derive(Clone, Debug, Default)]
pub struct MapCustomer {
    pub segments: HashSet<String>,
    pub numbers: HashMap<String, f64>,
}

impl MapFacts {
    /// Adds a customer in the given segments, with the given numbers.
    pub fn with(mut self, id: u64, segments: &[&SegmentRef], numbers: &[(&str, f64)]) -> Self {
        let c = MapCustomer {
            segments: segments.iter().map(|s| segment_key(s)).collect(),
            numbers: numbers.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        self.customers.insert(id, c);
        self
    }
}

impl MapFacts {
    fn customer(&self, customer_id: u64) -> Result<&MapCustomer, FactsError> {
        self.customers.get(&customer_id).ok_or(FactsError::UnknownCustomer(customer_id))
    }
}

impl CustomerFacts for MapFacts {
    fn known(&self, customer_id: u64) -> bool {
        self.customers.contains_key(&customer_id)
    }

    fn passes(&self, customer_id: u64, offer: &Offer, rule: Rule) -> Result<bool, FactsError> {
        let c = self.customer(customer_id)?;
        let seg = offer.rules()[rule.index()].1;
        Ok(matches!(seg, SegmentRef::All) || c.segments.contains(&segment_key(seg)))
    }

    fn in_saved(&self, customer_id: u64, segment_id: &str) -> Result<bool, FactsError> {
        Ok(self.customer(customer_id)?.segments.contains(&segment_key(&SegmentRef::Saved(segment_id.into()))))
    }

    fn number(&self, customer_id: u64, attribute: &str) -> Result<Option<f64>, FactsError> {
        Ok(self.customer(customer_id)?.numbers.get(attribute).copied().filter(|x| !x.is_nan()))
    }
}
