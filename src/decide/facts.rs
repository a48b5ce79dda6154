//! What a decision needs to know about one customer: segment membership and numeric
//! attributes. The engine answers from its indexes ([`DatasetFacts`]); tests answer from a
//! map ([`MapFacts`]).

use std::collections::{HashMap, HashSet};

use super::offer::{Catalogue, Propensity, SegmentRef, Value};
use crate::query::{self, eval, plan::Segments, Limits, Plan, QueryError};
use crate::store::column::{ColumnData, Kind, Temporal};
use crate::store::Dataset;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FactsError {
    #[error("unknown customer id {0}")]
    UnknownCustomer(u64),
    #[error("segment {0} was not resolved for this catalogue")]
    Unresolved(String),
    #[error("offer '{offer}': {field}: attribute '{attribute}' is not a numeric column{found}")]
    NotNumeric { offer: String, field: String, attribute: String, found: String },
    #[error("offer '{offer}': {field}: {source}")]
    Segment { offer: String, field: String, source: QueryError },
}

/// Facts about customers, as of one version of the state.
pub trait CustomerFacts {
    /// Whether the customer is held at all.
    fn known(&self, customer_id: u64) -> bool;
    /// Whether the customer is in the segment.
    fn in_segment(&self, customer_id: u64, seg: &SegmentRef) -> Result<bool, FactsError>;
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

/// Every segment a catalogue refers to, with the offer and field that names it.
pub fn catalogue_segments(cat: &Catalogue) -> Vec<(String, &'static str, SegmentRef)> {
    let mut out = vec![];
    for o in cat.offers() {
        for (rule, seg) in o.rules() {
            out.push((o.id.clone(), rule.field(), seg.clone()));
        }
        if let Propensity::Adaptive { per_segment, .. } = &o.propensity {
            for s in per_segment {
                out.push((o.id.clone(), "propensity.per_segment", SegmentRef::Saved(s.clone())));
            }
        }
    }
    out
}

/// Facts from a customer table: segments compiled once against it (build one per
/// published version and catalogue, not per decision), numbers read from the columns.
pub struct DatasetFacts<'a> {
    ds: &'a Dataset,
    plans: HashMap<String, Plan>,
}

impl<'a> DatasetFacts<'a> {
    /// Compiles every segment of the catalogue (resolving `in_segment` and saved segment
    /// ids through `segs`) and checks every value / propensity attribute is numeric.
    pub fn new(
        ds: &'a Dataset,
        cat: &Catalogue,
        segs: Segments<'_>,
        limits: &Limits,
    ) -> Result<Self, FactsError> {
        let mut plans = HashMap::new();
        for (offer, field, seg) in catalogue_segments(cat) {
            let key = segment_key(&seg);
            if plans.contains_key(&key) {
                continue;
            }
            let err = |source| FactsError::Segment { offer: offer.clone(), field: field.into(), source };
            plans.insert(key, compile(ds, &seg, segs, limits).map_err(err)?);
        }
        for o in cat.offers() {
            if let Value::Attribute { name, .. } = &o.value {
                numeric_column(ds, name)
                    .map_err(|found| not_numeric(&o.id, "value.attribute", name, found))?;
            }
            if let Propensity::Attribute(name) = &o.propensity {
                numeric_column(ds, name)
                    .map_err(|found| not_numeric(&o.id, "propensity.attribute", name, found))?;
            }
        }
        Ok(DatasetFacts { ds, plans })
    }

    pub fn dataset(&self) -> &Dataset {
        self.ds
    }

    /// The compiled plan of a segment of the catalogue.
    pub fn plan(&self, seg: &SegmentRef) -> Result<&Plan, FactsError> {
        let key = segment_key(seg);
        self.plans.get(&key).ok_or(FactsError::Unresolved(key))
    }

    fn row(&self, customer_id: u64) -> Result<u32, FactsError> {
        self.ds.row_of(customer_id).ok_or(FactsError::UnknownCustomer(customer_id))
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
fn numeric_column(ds: &Dataset, name: &str) -> Result<usize, String> {
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
        self.ds.row_of(customer_id).is_some()
    }

    fn in_segment(&self, customer_id: u64, seg: &SegmentRef) -> Result<bool, FactsError> {
        let row = self.row(customer_id)?;
        Ok(eval::matches_row(self.ds, &self.plan(seg)?.root, row))
    }

    fn number(&self, customer_id: u64, attribute: &str) -> Result<Option<f64>, FactsError> {
        let row = self.row(customer_id)?;
        let col = numeric_column(self.ds, attribute)
            .map_err(|found| not_numeric("?", "attribute", attribute, found))?;
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

impl CustomerFacts for MapFacts {
    fn known(&self, customer_id: u64) -> bool {
        self.customers.contains_key(&customer_id)
    }

    fn in_segment(&self, customer_id: u64, seg: &SegmentRef) -> Result<bool, FactsError> {
        let c = self.customers.get(&customer_id).ok_or(FactsError::UnknownCustomer(customer_id))?;
        Ok(matches!(seg, SegmentRef::All) || c.segments.contains(&segment_key(seg)))
    }

    fn number(&self, customer_id: u64, attribute: &str) -> Result<Option<f64>, FactsError> {
        let c = self.customers.get(&customer_id).ok_or(FactsError::UnknownCustomer(customer_id))?;
        Ok(c.numbers.get(attribute).copied().filter(|x| !x.is_nan()))
    }
}
