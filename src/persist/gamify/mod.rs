//! The snapshot and log form of gamification state: protobuf messages of their own, apart
//! from the in-memory types, so a renamed Rust field never changes the bytes; field
//! numbers are the compatibility contract (add fields, never renumber). The engine puts
//! [`encode_state`]'s bytes in a snapshot section and logs [`EventsRecord`],
//! [`SpendRecord`], [`GrantRecord`], [`ManualTierRecord`], [`TickRecord`] and
//! [`ProgramRecord`] as mutations.
//!
//! Everything a mutation accepts round-trips: ids and strings are bounded UTF-8, numbers
//! are checked finite before they are logged, instants are i64 milliseconds.

pub mod achieve;
pub mod change;

use std::collections::BTreeMap;

use prost::Message;

use crate::gamify::ledger::{Credit, Debit, DebitKind, Wallet};
use crate::gamify::program::Program;
use crate::gamify::rules::CapUse;
use crate::gamify::state::{Customer, Customers, GamifyState};
use crate::gamify::tiers::Buckets;
use crate::gamify::time::CapPeriod;
use crate::gamify::{Event, GamifyError, PropValue};
use crate::gamify::{Grant, Spend};

/// Bumped when a change cannot be read by older code.
pub const STATE_FORMAT: u32 = 1;

#[derive(Clone, PartialEq, Message)]
pub struct StateRecord {
    #[prost(uint32, tag = "1")]
    pub format: u32,
    #[prost(int64, tag = "2")]
    pub clock_ms: i64,
    /// Interned names, by key.
    #[prost(string, repeated, tag = "3")]
    pub names: Vec<String>,
    /// The dedup window, in logged order.
    #[prost(message, repeated, tag = "4")]
    pub dedup: Vec<DedupRecord>,
    #[prost(message, repeated, tag = "5")]
    pub customers: Vec<CustomerRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DedupRecord {
    #[prost(string, tag = "1")]
    pub event_id: String,
    #[prost(int64, tag = "2")]
    pub logged_at_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct CustomerRecord {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "2")]
    pub wallets: Vec<WalletRecord>,
    #[prost(message, repeated, tag = "3")]
    pub measures: Vec<MeasureRecord>,
    #[prost(message, repeated, tag = "4")]
    pub counters: Vec<CounterRecord>,
    #[prost(message, repeated, tag = "5")]
    pub caps: Vec<CapRecord>,
    /// Tier names, not indexes: a record stays meaningful whatever the tier order.
    #[prost(string, tag = "6")]
    pub tier: String,
    #[prost(string, optional, tag = "7")]
    pub manual_tier: Option<String>,
    #[prost(int64, tag = "8")]
    pub tier_since_ms: i64,
    #[prost(int64, tag = "9")]
    pub next_check_ms: i64,
    #[prost(uint32, tag = "10")]
    pub level: u32,
    #[prost(int64, tag = "11")]
    pub due_ms: i64,
    /// Badges, challenges and streaks (absent: none).
    #[prost(message, optional, tag = "20")]
    pub achieve: Option<achieve::AchieveRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct WalletRecord {
    #[prost(uint32, tag = "1")]
    pub wallet: u32,
    #[prost(uint32, tag = "2")]
    pub next_seq: u32,
    #[prost(message, repeated, tag = "3")]
    pub credits: Vec<CreditRecord>,
    #[prost(message, repeated, tag = "4")]
    pub debits: Vec<DebitRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreditRecord {
    #[prost(uint32, tag = "1")]
    pub seq: u32,
    #[prost(uint32, tag = "2")]
    pub rule: u32,
    #[prost(bool, tag = "3")]
    pub pending: bool,
    #[prost(string, tag = "4")]
    pub source: String,
    #[prost(int64, tag = "5")]
    pub amount: i64,
    #[prost(int64, tag = "6")]
    pub remaining: i64,
    #[prost(int64, tag = "7")]
    pub reversed: i64,
    #[prost(int64, tag = "8")]
    pub basis: i64,
    #[prost(int64, tag = "9")]
    pub refunded: i64,
    #[prost(int64, tag = "10")]
    pub created_ms: i64,
    #[prost(int64, tag = "11")]
    pub available_ms: i64,
    #[prost(int64, tag = "12")]
    pub expires_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct DebitRecord {
    #[prost(uint32, tag = "1")]
    pub seq: u32,
    /// 0 spend, 1 expiry, 2 reversal.
    #[prost(uint32, tag = "2")]
    pub kind: u32,
    #[prost(string, tag = "3")]
    pub source: String,
    #[prost(int64, tag = "4")]
    pub at_ms: i64,
    #[prost(int64, tag = "5")]
    pub amount: i64,
    #[prost(int64, tag = "6")]
    pub shortfall: i64,
    #[prost(uint32, repeated, tag = "7")]
    pub part_credits: Vec<u32>,
    #[prost(int64, repeated, tag = "8")]
    pub part_points: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MeasureRecord {
    #[prost(uint32, tag = "1")]
    pub measure: u32,
    #[prost(sint32, repeated, tag = "2")]
    pub days: Vec<i32>,
    #[prost(sint64, repeated, tag = "3")]
    pub hundredths: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CounterRecord {
    #[prost(uint32, tag = "1")]
    pub counter: u32,
    #[prost(sint64, tag = "2")]
    pub value: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct CapRecord {
    #[prost(uint32, tag = "1")]
    pub rule: u32,
    /// 0 day, 1 week, 2 month.
    #[prost(uint32, tag = "2")]
    pub period: u32,
    #[prost(sint32, tag = "3")]
    pub index: i32,
    #[prost(sint64, tag = "4")]
    pub used: i64,
}

/// A batch of events (`RecordEvents`), with the logged time the apply uses.
#[derive(Clone, PartialEq, Message)]
pub struct EventsRecord {
    #[prost(int64, tag = "1")]
    pub logged_at_ms: i64,
    #[prost(message, repeated, tag = "2")]
    pub events: Vec<EventRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EventRecord {
    #[prost(string, tag = "1")]
    pub event_id: String,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(string, tag = "3")]
    pub kind: String,
    #[prost(int64, tag = "4")]
    pub occurred_at_ms: i64,
    #[prost(message, repeated, tag = "5")]
    pub properties: Vec<PropRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PropRecord {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(oneof = "PropKind", tags = "2, 3, 4, 5")]
    pub value: Option<PropKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropKind {
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(sint64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Float(f64),
    #[prost(string, tag = "5")]
    Str(String),
}

#[derive(Clone, PartialEq, Message)]
pub struct SpendRecord {
    #[prost(int64, tag = "1")]
    pub logged_at_ms: i64,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(string, tag = "3")]
    pub wallet: String,
    #[prost(string, tag = "4")]
    pub request_id: String,
    #[prost(int64, tag = "5")]
    pub points: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GrantRecord {
    #[prost(int64, tag = "1")]
    pub logged_at_ms: i64,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    #[prost(string, tag = "3")]
    pub wallet: String,
    #[prost(string, tag = "4")]
    pub request_id: String,
    #[prost(int64, tag = "5")]
    pub points: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ManualTierRecord {
    #[prost(int64, tag = "1")]
    pub logged_at_ms: i64,
    #[prost(uint64, tag = "2")]
    pub customer_id: u64,
    /// Absent: clear the manual tier.
    #[prost(string, optional, tag = "3")]
    pub tier: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TickRecord {
    #[prost(int64, tag = "1")]
    pub now_ms: i64,
}

/// A program version: its JSON text (the documented file format, stable by itself) and
/// the logged time it took effect.
#[derive(Clone, PartialEq, Message)]
pub struct ProgramRecord {
    #[prost(int64, tag = "1")]
    pub effective_ms: i64,
    #[prost(string, tag = "2")]
    pub json: String,
}

fn corrupt(what: impl Into<String>) -> GamifyError {
    GamifyError::Corrupt(what.into())
}

/// The state's snapshot bytes (deterministic: the same state gives the same bytes).
pub fn encode_state(state: &GamifyState, program: &Program) -> Vec<u8> {
    let tier = |t: u16| program.spec.tiers.tiers.get(t as usize).map_or_else(String::new, |t| t.name.clone());
    let rec = StateRecord {
        format: STATE_FORMAT,
        clock_ms: state.clock_ms,
        names: state.names.iter().map(|n| n.to_string()).collect(),
        dedup: state
            .dedup_queue
            .iter()
            .map(|(t, id)| DedupRecord { event_id: id.to_string(), logged_at_ms: *t })
            .collect(),
        customers: state
            .customers
            .iter()
            .map(|(&id, c)| CustomerRecord {
                id,
                wallets: c.wallets.iter().map(|(k, w)| wallet_record(*k, w)).collect(),
                measures: c
                    .measures
                    .iter()
                    .map(|(k, b)| MeasureRecord {
                        measure: *k as u32,
                        days: b.0.iter().map(|x| x.0).collect(),
                        hundredths: b.0.iter().map(|x| x.1).collect(),
                    })
                    .collect(),
                counters: c
                    .counters
                    .iter()
                    .map(|(k, v)| CounterRecord { counter: *k as u32, value: *v })
                    .collect(),
                caps: c
                    .caps
                    .iter()
                    .map(|u| CapRecord {
                        rule: u.rule as u32,
                        period: match u.period {
                            CapPeriod::Day => 0,
                            CapPeriod::Week => 1,
                            CapPeriod::Month => 2,
                        },
                        index: u.index,
                        used: u.used,
                    })
                    .collect(),
                tier: tier(c.tier),
                manual_tier: c.manual_tier.map(tier),
                tier_since_ms: c.tier_since_ms,
                next_check_ms: c.next_check_ms,
                level: c.level,
                due_ms: c.due_ms,
                achieve: c.achieve.as_deref().map(achieve::encode),
            })
            .collect(),
    };
    rec.encode_to_vec()
}

fn wallet_record(key: u16, w: &Wallet) -> WalletRecord {
    WalletRecord {
        wallet: key as u32,
        next_seq: w.next_seq,
        credits: w
            .credits
            .iter()
            .map(|c| CreditRecord {
                seq: c.seq,
                rule: c.rule as u32,
                pending: c.pending,
                source: c.source.to_string(),
                amount: c.amount,
                remaining: c.remaining,
                reversed: c.reversed,
                basis: c.basis,
                refunded: c.refunded,
                created_ms: c.created_ms,
                available_ms: c.available_ms,
                expires_ms: c.expires_ms,
            })
            .collect(),
        debits: w
            .debits
            .iter()
            .map(|d| DebitRecord {
                seq: d.seq,
                kind: match d.kind {
                    DebitKind::Spend => 0,
                    DebitKind::Expiry => 1,
                    DebitKind::Reversal => 2,
                },
                source: d.source.to_string(),
                at_ms: d.at_ms,
                amount: d.amount,
                shortfall: d.shortfall,
                part_credits: d.parts.iter().map(|p| p.0).collect(),
                part_points: d.parts.iter().map(|p| p.1).collect(),
            })
            .collect(),
    }
}

fn key(k: u32, names: usize, what: &str) -> Result<u16, GamifyError> {
    if (k as usize) < names {
        Ok(k as u16)
    } else {
        Err(corrupt(format!("{what} key {k} is not one of the {names} names")))
    }
}

/// Reads [`encode_state`]'s bytes under the program in force when they were written.
pub fn decode_state(bytes: &[u8], program: &Program) -> Result<GamifyState, GamifyError> {
    let rec = StateRecord::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if rec.format != STATE_FORMAT {
        return Err(corrupt(format!("state format {} is not {STATE_FORMAT}", rec.format)));
    }
    let n = rec.names.len();
    if n >= u16::MAX as usize {
        return Err(corrupt(format!("{n} names")));
    }
    let tier = |name: &str| {
        program
            .tier_index(name)
            .map(|t| t as u16)
            .ok_or_else(|| corrupt(format!("tier '{name}' is not in the program")))
    };
    let mut state = GamifyState { clock_ms: rec.clock_ms, ..GamifyState::default() };
    for (i, name) in rec.names.into_iter().enumerate() {
        state.name_ids.insert(name.as_str().into(), i as u16);
        state.names.push(name.into());
    }
    let mut dedup = imbl::HashMap::new();
    let mut queue = imbl::Vector::new();
    for d in rec.dedup {
        let id: std::sync::Arc<str> = d.event_id.into();
        dedup.insert(id.clone(), d.logged_at_ms);
        queue.push_back((d.logged_at_ms, id));
    }
    state.dedup = dedup;
    state.dedup_queue = queue;
    let mut customers = Customers::default();
    for c in rec.customers {
        let mut wallets = Vec::new();
        for w in c.wallets {
            wallets.push((key(w.wallet, n, "wallet")?, decode_wallet(w, n)?));
        }
        let mut measures = Vec::new();
        for m in c.measures {
            if m.days.len() != m.hundredths.len() {
                return Err(corrupt(format!("customer {}: measure days and sums differ in length", c.id)));
            }
            measures.push((
                key(m.measure, n, "measure")?,
                Buckets(m.days.into_iter().zip(m.hundredths).collect()),
            ));
        }
        let mut counters = Vec::new();
        for x in c.counters {
            counters.push((key(x.counter, n, "counter")?, x.value));
        }
        let mut caps = Vec::new();
        for u in c.caps {
            let period = match u.period {
                0 => CapPeriod::Day,
                1 => CapPeriod::Week,
                2 => CapPeriod::Month,
                p => return Err(corrupt(format!("cap period {p}"))),
            };
            caps.push(CapUse { rule: key(u.rule, n, "rule")?, period, index: u.index, used: u.used });
        }
        let cust = Customer {
            wallets,
            measures,
            counters,
            caps,
            tier: tier(&c.tier)?,
            manual_tier: c.manual_tier.as_deref().map(tier).transpose()?,
            tier_since_ms: c.tier_since_ms,
            next_check_ms: c.next_check_ms,
            level: c.level,
            due_ms: c.due_ms,
            achieve: c.achieve.map(|a| achieve::decode(a, n).map(Box::new)).transpose()?,
        };
        if cust.due_ms != i64::MAX {
            state.agenda.insert((cust.due_ms, c.id));
        }
        customers.insert(c.id, cust);
    }
    state.customers = customers;
    Ok(state)
}

fn decode_wallet(w: WalletRecord, names: usize) -> Result<Wallet, GamifyError> {
    let mut credits = Vec::with_capacity(w.credits.len());
    for c in w.credits {
        let rule = if c.rule == crate::gamify::ledger::GRANT_RULE as u32 {
            crate::gamify::ledger::GRANT_RULE
        } else {
            key(c.rule, names, "rule")?
        };
        credits.push(Credit {
            seq: c.seq,
            rule,
            pending: c.pending,
            source: c.source.into(),
            amount: c.amount,
            remaining: c.remaining,
            reversed: c.reversed,
            basis: c.basis,
            refunded: c.refunded,
            created_ms: c.created_ms,
            available_ms: c.available_ms,
            expires_ms: c.expires_ms,
        });
    }
    let mut debits = Vec::with_capacity(w.debits.len());
    for d in w.debits {
        if d.part_credits.len() != d.part_points.len() {
            return Err(corrupt(format!("debit {}: parts differ in length", d.seq)));
        }
        let kind = match d.kind {
            0 => DebitKind::Spend,
            1 => DebitKind::Expiry,
            2 => DebitKind::Reversal,
            k => return Err(corrupt(format!("debit kind {k}"))),
        };
        debits.push(Debit {
            seq: d.seq,
            kind,
            source: d.source.into(),
            at_ms: d.at_ms,
            amount: d.amount,
            shortfall: d.shortfall,
            parts: d.part_credits.into_iter().zip(d.part_points).collect(),
        });
    }
    if !credits.windows(2).all(|p| p[0].seq < p[1].seq) || !debits.windows(2).all(|p| p[0].seq < p[1].seq) {
        return Err(corrupt("ledger entries out of sequence"));
    }
    Ok(Wallet::from_parts(credits, debits, w.next_seq))
}

/// An events batch's log form.
pub fn encode_events(events: &[Event], logged_at_ms: i64) -> Vec<u8> {
    events_record(events, logged_at_ms).encode_to_vec()
}

/// An events batch as its record message.
pub fn events_record(events: &[Event], logged_at_ms: i64) -> EventsRecord {
    EventsRecord {
        logged_at_ms,
        events: events
            .iter()
            .map(|e| EventRecord {
                event_id: e.event_id.clone(),
                customer_id: e.customer_id,
                kind: e.kind.clone(),
                occurred_at_ms: e.occurred_at_ms,
                properties: e
                    .properties
                    .iter()
                    .map(|(k, v)| PropRecord {
                        key: k.clone(),
                        value: Some(match v {
                            PropValue::Bool(b) => PropKind::Bool(*b),
                            PropValue::Int(i) => PropKind::Int(*i),
                            PropValue::Float(x) => PropKind::Float(*x),
                            PropValue::Str(s) => PropKind::Str(s.clone()),
                        }),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Reads [`encode_events`]'s bytes: (events, logged time).
pub fn decode_events(bytes: &[u8]) -> Result<(Vec<Event>, i64), GamifyError> {
    events_from_record(EventsRecord::decode(bytes).map_err(|e| corrupt(e.to_string()))?)
}

/// An events record message as (events, logged time).
pub fn events_from_record(rec: EventsRecord) -> Result<(Vec<Event>, i64), GamifyError> {
    let mut events = Vec::with_capacity(rec.events.len());
    for e in rec.events {
        let mut properties = BTreeMap::new();
        for p in e.properties {
            let v = match p.value {
                Some(PropKind::Bool(b)) => PropValue::Bool(b),
                Some(PropKind::Int(i)) => PropValue::Int(i),
                Some(PropKind::Float(x)) => PropValue::Float(x),
                Some(PropKind::Str(s)) => PropValue::Str(s),
                None => {
                    return Err(corrupt(format!("event '{}': property '{}' has no value", e.event_id, p.key)))
                }
            };
            properties.insert(p.key, v);
        }
        events.push(Event {
            event_id: e.event_id,
            customer_id: e.customer_id,
            kind: e.kind,
            occurred_at_ms: e.occurred_at_ms,
            properties,
        });
    }
    Ok((events, rec.logged_at_ms))
}

impl From<(&Spend, i64)> for SpendRecord {
    fn from((s, logged_at_ms): (&Spend, i64)) -> Self {
        let Spend { customer_id, wallet, request_id, points } = s;
        SpendRecord {
            logged_at_ms,
            customer_id: *customer_id,
            wallet: wallet.clone(),
            request_id: request_id.clone(),
            points: *points,
        }
    }
}

impl From<SpendRecord> for (Spend, i64) {
    fn from(r: SpendRecord) -> Self {
        let SpendRecord { logged_at_ms, customer_id, wallet, request_id, points } = r;
        (Spend { customer_id, wallet, request_id, points }, logged_at_ms)
    }
}

impl From<(&Grant, i64)> for GrantRecord {
    fn from((g, logged_at_ms): (&Grant, i64)) -> Self {
        let Grant { customer_id, wallet, request_id, points } = g;
        GrantRecord {
            logged_at_ms,
            customer_id: *customer_id,
            wallet: wallet.clone(),
            request_id: request_id.clone(),
            points: *points,
        }
    }
}

impl From<GrantRecord> for (Grant, i64) {
    fn from(r: GrantRecord) -> Self {
        let GrantRecord { logged_at_ms, customer_id, wallet, request_id, points } = r;
        (Grant { customer_id, wallet, request_id, points }, logged_at_ms)
    }
}

/// The log record of a `RecordEvents` change written straight from the events: the bytes
/// prost writes for `Record { gamify: ChangeRecord { events: events_record(..) } }`
/// (field `record_field` of the log's `Record`; a test compares them), without first
/// copying every id, type, property name and string into the record messages (building,
/// encoding and freeing them was ~10% of the commit thread at 16,000 events a group).
///
/// Prost's rules: fields in field-number order; a proto3 scalar or string at its default
/// (0, "") is left out; a oneof case is always written; a map's entries in its order.
pub fn encode_events_in_record(events: &[Event], logged_at_ms: i64, record_field: u32, buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    let body = events_body_len(events, logged_at_ms);
    // ChangeRecord { events (2): EventsRecord }.
    let change = key_len(2) + encoded_len_varint(body as u64) + body;
    buf.reserve(key_len(record_field) + encoded_len_varint(change as u64) + change);
    encode_key(record_field, WireType::LengthDelimited, buf);
    encode_varint(change as u64, buf);
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(body as u64, buf);
    if logged_at_ms != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(logged_at_ms as u64, buf);
    }
    for e in events {
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(event_len(e) as u64, buf);
        put_str(1, &e.event_id, buf);
        if e.customer_id != 0 {
            encode_key(2, WireType::Varint, buf);
            encode_varint(e.customer_id, buf);
        }
        put_str(3, &e.kind, buf);
        if e.occurred_at_ms != 0 {
            encode_key(4, WireType::Varint, buf);
            encode_varint(e.occurred_at_ms as u64, buf);
        }
        for (k, v) in &e.properties {
            encode_key(5, WireType::LengthDelimited, buf);
            encode_varint(prop_len(k, v) as u64, buf);
            put_str(1, k, buf);
            match v {
                PropValue::Bool(b) => {
                    encode_key(2, WireType::Varint, buf);
                    encode_varint(*b as u64, buf);
                }
                PropValue::Int(i) => {
                    encode_key(3, WireType::Varint, buf);
                    encode_varint(((i << 1) ^ (i >> 63)) as u64, buf);
                }
                PropValue::Float(x) => {
                    encode_key(4, WireType::SixtyFourBit, buf);
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                PropValue::Str(s) => {
                    // A oneof case is written even when empty.
                    encode_key(5, WireType::LengthDelimited, buf);
                    encode_varint(s.len() as u64, buf);
                    buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
}

fn key_len(field: u32) -> usize {
    prost::encoding::encoded_len_varint(u64::from(field << 3))
}

/// A string field, left out when empty (proto3).
fn put_str(field: u32, s: &str, buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    if !s.is_empty() {
        encode_key(field, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

fn str_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(field) + prost::encoding::encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn delimited(field: u32, len: usize) -> usize {
    key_len(field) + prost::encoding::encoded_len_varint(len as u64) + len
}

fn varint_field(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + prost::encoding::encoded_len_varint(v)
    }
}

fn events_body_len(events: &[Event], logged_at_ms: i64) -> usize {
    varint_field(1, logged_at_ms as u64) + events.iter().map(|e| delimited(2, event_len(e))).sum::<usize>()
}

fn event_len(e: &Event) -> usize {
    str_len(1, &e.event_id)
        + varint_field(2, e.customer_id)
        + str_len(3, &e.kind)
        + varint_field(4, e.occurred_at_ms as u64)
        + e.properties.iter().map(|(k, v)| delimited(5, prop_len(k, v))).sum::<usize>()
}

fn prop_len(k: &str, v: &PropValue) -> usize {
    use prost::encoding::encoded_len_varint;
    str_len(1, k)
        + match v {
            PropValue::Bool(b) => key_len(2) + encoded_len_varint(*b as u64),
            PropValue::Int(i) => key_len(3) + encoded_len_varint(((i << 1) ^ (i >> 63)) as u64),
            PropValue::Float(_) => key_len(4) + 8,
            PropValue::Str(s) => delimited(5, s.len()),
        }
}

#[cfg(test)]
mod tests;
