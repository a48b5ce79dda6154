//! The log record and snapshot metadata format: protobuf messages of their own
//! (`proto/segd/log/v1/log.proto`, package `segd.log.v1`), and the one place that converts
//! between them and the in-memory types. Every conversion destructures every field, so a
//! field added on either side breaks the build here until someone decides its encoding;
//! renaming a Rust field cannot change a byte on disk.
//!
//! # Versions
//! [`FORMAT`] is written in every log segment's header and every snapshot manifest.
//! - 1 ([`LEGACY_FORMAT`]): the first release: serde_json of the in-memory types, no
//!   segment header. Read only, by [`super::legacy`]; the next snapshot and log segment
//!   after opening such a data dir are written in the current format.
//! - 2: `segd.log.v1` protobuf.
//!
//! A change to the bytes any existing mutation encodes to must bump [`FORMAT`] (the
//! `encoding_is_pinned` test fails otherwise), keep decoding every older version, and add
//! a golden fixture under `tests/fixtures/golden/`.
//!
//! # Predicate trees
//! A dynamic segment defined by a tree is stored as a tree ([`pb::Expr`]), one message
//! case per [`Expr`] variant, rather than as JSON text to re-parse: decoding is then a
//! plain structural mapping whose result cannot change when a front end's parser does
//! (defaults, number parsing, limits). A `where` text is stored as the text the client
//! gave, because the text is the definition (it is what GetSegment shows); the SQL front
//! end must keep parsing every text it ever accepted the same way.

use prost::Message;

use crate::engine::Mutation;
use crate::query::ast::{CmpOp, Expr, Literal};
use crate::segments::Definition;
use crate::store::mutate::{CellValue, CustomerUpdate, NewAttribute};

/// The generated `segd.log.v1` messages.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/segd.log.v1.rs"));
}

/// The format this version writes.
pub const FORMAT: u32 = 2;
/// The first release's JSON records (read only).
pub const LEGACY_FORMAT: u32 = 1;

/// Bytes that are not a record of the format they claim.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid protobuf message: {0}")]
    Protobuf(String),
    #[error("not a valid format-1 JSON record: {0}")]
    Json(String),
    #[error("field '{0}' is missing")]
    Missing(&'static str),
    #[error("field '{field}' has unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("next-best-offer record: {0}")]
    Decide(String),
    #[error("gamify record: {0}")]
    Gamify(String),
    #[error("format {0} is not one this version reads (it reads {LEGACY_FORMAT} to {FORMAT}); upgrade segd")]
    UnknownFormat(u32),
}

/// What a snapshot keeps beside the table's columns.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotMeta {
    pub id_column: String,
    /// In creation order.
    pub segments: Vec<SegmentMeta>,
    /// The next-best-offer state's section ([`crate::persist::decide::encode_state`]; empty
    /// when decisions were never used).
    pub decide: Vec<u8>,
    /// The gamification section (`crate::persist::gamify::change::encode_snapshot`; empty:
    /// no program).
    pub gamify: Vec<u8>,
    /// The leaderboards (`crate::persist::leaderboard::encode_boards`; empty: none).
    pub leaderboards: Vec<u8>,
}

/// A saved segment in a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentMeta {
    pub id: String,
    pub description: String,
    pub definition: Definition,
    /// Static members' customer ids, ascending (empty for a dynamic segment).
    pub members: Vec<u64>,
}

#[path = "record_upsert.rs"]
mod upsert;

/// Appends the record of `m` to `buf` (the log's group buffer: no intermediate copy).
pub fn encode_mutation(m: &Mutation, buf: &mut Vec<u8>) {
    // The hot path: an upsert is written straight from the batch, byte for byte what the
    // general path below writes (`upsert_fast_path_writes_prost_bytes`).
    if let Mutation::Upsert(batch) = m {
        return upsert::encode_upsert(batch, buf);
    }
    // Likewise a batch of events (`Record.gamify`, field 20), in gamify's own record code.
    if let Mutation::Gamify(crate::gamify::Change::RecordEvents { events, logged_at_ms }) = m {
        return crate::persist::gamify::encode_events_in_record(events, *logged_at_ms, 20, buf);
    }
    encode_mutation_via_message(m, buf);
}

/// [`encode_mutation`] through the generated message, for every kind of mutation.
fn encode_mutation_via_message(m: &Mutation, buf: &mut Vec<u8>) {
    let r = pb::Record::from(m);
    buf.reserve(r.encoded_len());
    if r.encode(buf).is_err() {
        unreachable!("a Vec has room for any message");
    }
}

/// Decodes a log record written in `format`.
pub fn decode_mutation(format: u32, bytes: &[u8]) -> Result<Mutation, DecodeError> {
    match format {
        FORMAT => match upsert::decode_upsert(bytes) {
            // Replay's hot path: an upsert read straight into the batch; anything it does
            // not read exactly as prost would goes the general way.
            Some(batch) => Ok(Mutation::Upsert(batch)),
            None => decode_mutation_via_message(bytes),
        },
        LEGACY_FORMAT => super::legacy::decode_mutation(bytes),
        other => Err(DecodeError::UnknownFormat(other)),
    }
}

/// A format-2 record through the generated message, for every kind of mutation.
fn decode_mutation_via_message(bytes: &[u8]) -> Result<Mutation, DecodeError> {
    pb::Record::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?.try_into()
}

pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Vec<u8> {
    pb::SnapshotMeta::from(meta).encode_to_vec()
}

/// Decodes a snapshot's metadata written in `format`.
pub fn decode_snapshot_meta(format: u32, bytes: &[u8]) -> Result<SnapshotMeta, DecodeError> {
    match format {
        FORMAT => {
            pb::SnapshotMeta::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?.try_into()
        }
        LEGACY_FORMAT => super::legacy::decode_snapshot_meta(bytes),
        other => Err(DecodeError::UnknownFormat(other)),
    }
}

fn required<T>(v: Option<T>, field: &'static str) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::Missing(field))
}

impl From<&Mutation> for pb::Record {
    fn from(m: &Mutation) -> Self {
        use pb::record::Kind;
        let kind = match m {
            Mutation::Upsert(batch) => {
                Kind::Upsert(pb::Upsert { customers: batch.iter().map(pb::CustomerUpdate::from).collect() })
            }
            Mutation::Delete(ids) => Kind::Delete(pb::Delete { customer_ids: ids.clone() }),
            Mutation::AddAttribute { name, kind } => Kind::AddAttribute(pb::AddAttribute {
                name: name.clone(),
                kind: pb::AttributeKind::from(*kind) as i32,
            }),
            Mutation::CreateSegment { id, description, definition, members } => {
                Kind::CreateSegment(pb::CreateSegment {
                    id: id.clone(),
                    description: description.clone(),
                    definition: Some(definition.into()),
                    members: members.clone(),
                })
            }
            Mutation::DeleteSegment { id } => Kind::DeleteSegment(pb::DeleteSegment { id: id.clone() }),
            Mutation::EditMembers { id, customer_ids, add } => Kind::EditMembers(pb::EditMembers {
                id: id.clone(),
                customer_ids: customer_ids.clone(),
                add: *add,
            }),
            Mutation::Decide(c) => Kind::Decide(crate::persist::decide::encode_change(c)),
            Mutation::Gamify(c) => Kind::Gamify(crate::persist::gamify::change::encode_change(c)),
        };
        pb::Record { kind: Some(kind) }
    }
}

impl TryFrom<pb::Record> for Mutation {
    type Error = DecodeError;

    fn try_from(r: pb::Record) -> Result<Self, DecodeError> {
        use pb::record::Kind;
        let pb::Record { kind } = r;
        Ok(match required(kind, "record.kind")? {
            Kind::Upsert(pb::Upsert { customers }) => Mutation::Upsert(
                customers.into_iter().map(CustomerUpdate::try_from).collect::<Result<_, _>>()?,
            ),
            Kind::Delete(pb::Delete { customer_ids }) => Mutation::Delete(customer_ids),
            Kind::AddAttribute(pb::AddAttribute { name, kind }) => {
                let kind = pb::AttributeKind::try_from(kind)
                    .map_err(|_| DecodeError::UnknownEnum { field: "add_attribute.kind", value: kind })?;
                Mutation::AddAttribute { name, kind: kind.try_into()? }
            }
            Kind::CreateSegment(pb::CreateSegment { id, description, definition, members }) => {
                Mutation::CreateSegment {
                    id,
                    description,
                    definition: required(definition, "create_segment.definition")?.try_into()?,
                    members,
                }
            }
            Kind::DeleteSegment(pb::DeleteSegment { id }) => Mutation::DeleteSegment { id },
            Kind::EditMembers(pb::EditMembers { id, customer_ids, add }) => {
                Mutation::EditMembers { id, customer_ids, add }
            }
            Kind::Decide(bytes) => Mutation::Decide(
                crate::persist::decide::decode_change(&bytes)
                    .map_err(|e| DecodeError::Decide(e.to_string()))?,
            ),
            Kind::Gamify(bytes) => Mutation::Gamify(
                crate::persist::gamify::change::decode_change(&bytes)
                    .map_err(|e| DecodeError::Gamify(e.to_string()))?,
            ),
        })
    }
}

impl From<&CustomerUpdate> for pb::CustomerUpdate {
    fn from(u: &CustomerUpdate) -> Self {
        let CustomerUpdate { customer_id, attributes } = u;
        pb::CustomerUpdate {
            customer_id: *customer_id,
            cells: attributes
                .iter()
                .map(|(name, v)| pb::Cell { attribute: name.clone(), value: Some(v.into()) })
                .collect(),
        }
    }
}

impl TryFrom<pb::CustomerUpdate> for CustomerUpdate {
    type Error = DecodeError;

    fn try_from(u: pb::CustomerUpdate) -> Result<Self, DecodeError> {
        let pb::CustomerUpdate { customer_id, cells } = u;
        let attributes = cells
            .into_iter()
            .map(|pb::Cell { attribute, value }| Ok((attribute, required(value, "cell.value")?.into())))
            .collect::<Result<_, DecodeError>>()?;
        Ok(CustomerUpdate { customer_id, attributes })
    }
}

impl From<&CellValue> for pb::cell::Value {
    fn from(v: &CellValue) -> Self {
        use pb::cell::Value;
        match v {
            CellValue::Null => Value::Null(pb::Null {}),
            CellValue::Bool(b) => Value::Bool(*b),
            CellValue::Int(i) => Value::Int(*i),
            CellValue::Float(x) => Value::Float(*x),
            CellValue::Str(s) => Value::Str(s.clone()),
            CellValue::List(items) => Value::List(pb::StringList { items: items.clone() }),
        }
    }
}

impl From<pb::cell::Value> for CellValue {
    fn from(v: pb::cell::Value) -> Self {
        use pb::cell::Value;
        match v {
            Value::Null(pb::Null {}) => CellValue::Null,
            Value::Bool(b) => CellValue::Bool(b),
            Value::Int(i) => CellValue::Int(i),
            Value::Float(x) => CellValue::Float(x),
            Value::Str(s) => CellValue::Str(s),
            Value::List(pb::StringList { items }) => CellValue::List(items),
        }
    }
}

impl From<NewAttribute> for pb::AttributeKind {
    fn from(k: NewAttribute) -> Self {
        use pb::AttributeKind as K;
        match k {
            NewAttribute::Bool => K::Bool,
            NewAttribute::Int => K::Int,
            NewAttribute::Float => K::Float,
            NewAttribute::String => K::String,
            NewAttribute::StringList => K::StringList,
            NewAttribute::Date => K::Date,
            NewAttribute::Timestamp => K::Timestamp,
        }
    }
}

impl TryFrom<pb::AttributeKind> for NewAttribute {
    type Error = DecodeError;

    fn try_from(k: pb::AttributeKind) -> Result<Self, DecodeError> {
        use pb::AttributeKind as K;
        Ok(match k {
            K::Unspecified => return Err(DecodeError::Missing("add_attribute.kind")),
            K::Bool => NewAttribute::Bool,
            K::Int => NewAttribute::Int,
            K::Float => NewAttribute::Float,
            K::String => NewAttribute::String,
            K::StringList => NewAttribute::StringList,
            K::Date => NewAttribute::Date,
            K::Timestamp => NewAttribute::Timestamp,
        })
    }
}

impl From<&Definition> for pb::Definition {
    fn from(d: &Definition) -> Self {
        use pb::definition::Kind;
        let kind = match d {
            Definition::Sql(text) => Kind::Sql(text.clone()),
            Definition::Tree(e) => Kind::Tree(e.into()),
            Definition::Static => Kind::Static(pb::Null {}),
        };
        pb::Definition { kind: Some(kind) }
    }
}

impl TryFrom<pb::Definition> for Definition {
    type Error = DecodeError;

    fn try_from(d: pb::Definition) -> Result<Self, DecodeError> {
        use pb::definition::Kind;
        let pb::Definition { kind } = d;
        Ok(match required(kind, "definition.kind")? {
            Kind::Sql(text) => Definition::Sql(text),
            Kind::Tree(e) => Definition::Tree(e.try_into()?),
            Kind::Static(pb::Null {}) => Definition::Static,
        })
    }
}

impl From<&Expr> for pb::Expr {
    fn from(e: &Expr) -> Self {
        use pb::expr::Node;
        let list = |v: &[Expr]| pb::ExprList { items: v.iter().map(pb::Expr::from).collect() };
        let node = match e {
            Expr::And(v) => Node::And(list(v)),
            Expr::Or(v) => Node::Or(list(v)),
            Expr::Not(inner) => Node::Not(Box::new(pb::Not { arg: Some(Box::new(inner.as_ref().into())) })),
            Expr::Cmp { col, op, value } => Node::Cmp(pb::Cmp {
                col: col.clone(),
                op: pb::CmpOp::from(*op) as i32,
                value: Some(value.into()),
            }),
            Expr::In { col, values, negated } => Node::In(pb::In {
                col: col.clone(),
                values: values.iter().map(pb::Literal::from).collect(),
                negated: *negated,
            }),
            Expr::IsNull { col, negated } => Node::IsNull(pb::IsNull { col: col.clone(), negated: *negated }),
            Expr::Contains { col, value } => {
                Node::Contains(pb::Contains { col: col.clone(), value: Some(value.into()) })
            }
            Expr::Column(c) => Node::Column(c.clone()),
            Expr::Const(l) => Node::Const(l.into()),
            Expr::InSegment(id) => Node::InSegment(id.clone()),
        };
        pb::Expr { node: Some(node) }
    }
}

impl TryFrom<pb::Expr> for Expr {
    type Error = DecodeError;

    fn try_from(e: pb::Expr) -> Result<Self, DecodeError> {
        use pb::expr::Node;
        let list = |l: pb::ExprList| l.items.into_iter().map(Expr::try_from).collect::<Result<Vec<_>, _>>();
        let pb::Expr { node } = e;
        Ok(match required(node, "expr.node")? {
            Node::And(l) => Expr::And(list(l)?),
            Node::Or(l) => Expr::Or(list(l)?),
            Node::Not(n) => {
                let pb::Not { arg } = *n;
                Expr::Not(Box::new((*required(arg, "not.arg")?).try_into()?))
            }
            Node::Cmp(pb::Cmp { col, op, value }) => {
                let op = pb::CmpOp::try_from(op)
                    .map_err(|_| DecodeError::UnknownEnum { field: "cmp.op", value: op })?;
                Expr::Cmp { col, op: op.try_into()?, value: required(value, "cmp.value")?.try_into()? }
            }
            Node::In(pb::In { col, values, negated }) => Expr::In {
                col,
                values: values.into_iter().map(Literal::try_from).collect::<Result<_, _>>()?,
                negated,
            },
            Node::IsNull(pb::IsNull { col, negated }) => Expr::IsNull { col, negated },
            Node::Contains(pb::Contains { col, value }) => {
                Expr::Contains { col, value: required(value, "contains.value")?.try_into()? }
            }
            Node::Column(c) => Expr::Column(c),
            Node::Const(l) => Expr::Const(l.try_into()?),
            Node::InSegment(id) => Expr::InSegment(id),
        })
    }
}

impl From<CmpOp> for pb::CmpOp {
    fn from(op: CmpOp) -> Self {
        match op {
            CmpOp::Eq => pb::CmpOp::Eq,
            CmpOp::Ne => pb::CmpOp::Ne,
            CmpOp::Lt => pb::CmpOp::Lt,
            CmpOp::Le => pb::CmpOp::Le,
            CmpOp::Gt => pb::CmpOp::Gt,
            CmpOp::Ge => pb::CmpOp::Ge,
        }
    }
}

impl TryFrom<pb::CmpOp> for CmpOp {
    type Error = DecodeError;

    fn try_from(op: pb::CmpOp) -> Result<Self, DecodeError> {
        Ok(match op {
            pb::CmpOp::Unspecified => return Err(DecodeError::Missing("cmp.op")),
            pb::CmpOp::Eq => CmpOp::Eq,
            pb::CmpOp::Ne => CmpOp::Ne,
            pb::CmpOp::Lt => CmpOp::Lt,
            pb::CmpOp::Le => CmpOp::Le,
            pb::CmpOp::Gt => CmpOp::Gt,
            pb::CmpOp::Ge => CmpOp::Ge,
        })
    }
}

impl From<&Literal> for pb::Literal {
    fn from(l: &Literal) -> Self {
        use pb::literal::Value;
        let value = match l {
            Literal::Null => Value::Null(pb::Null {}),
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(x) => Value::Float(*x),
            Literal::Str(s) => Value::Str(s.clone()),
        };
        pb::Literal { value: Some(value) }
    }
}

impl TryFrom<pb::Literal> for Literal {
    type Error = DecodeError;

    fn try_from(l: pb::Literal) -> Result<Self, DecodeError> {
        use pb::literal::Value;
        let pb::Literal { value } = l;
        Ok(match required(value, "literal.value")? {
            Value::Null(pb::Null {}) => Literal::Null,
            Value::Bool(b) => Literal::Bool(b),
            Value::Int(i) => Literal::Int(i),
            Value::Float(x) => Literal::Float(x),
            Value::Str(s) => Literal::Str(s),
        })
    }
}

impl From<&SnapshotMeta> for pb::SnapshotMeta {
    fn from(m: &SnapshotMeta) -> Self {
        let SnapshotMeta { id_column, segments, decide, gamify, leaderboards } = m;
        pb::SnapshotMeta {
            decide: decide.clone(),
            leaderboards: leaderboards.clone(),
            id_column: id_column.clone(),
            gamify: gamify.clone(),
            segments: segments
                .iter()
                .map(|SegmentMeta { id, description, definition, members }| pb::SavedSegment {
                    id: id.clone(),
                    description: description.clone(),
                    definition: Some(definition.into()),
                    members: members.clone(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::SnapshotMeta> for SnapshotMeta {
    type Error = DecodeError;

    fn try_from(m: pb::SnapshotMeta) -> Result<Self, DecodeError> {
        let pb::SnapshotMeta { id_column, segments, decide, gamify, leaderboards } = m;
        let segments = segments
            .into_iter()
            .map(|pb::SavedSegment { id, description, definition, members }| {
                Ok(SegmentMeta {
                    id,
                    description,
                    definition: required(definition, "saved_segment.definition")?.try_into()?,
                    members,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(SnapshotMeta { id_column, segments, decide, gamify, leaderboards })
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
