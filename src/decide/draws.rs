//! Hold-out and control-group draws as bitmaps over rows, cached per (draw, percentage).
//!
//! A draw is a fixed function of the customer id ([`super::hash`]), and a row's customer id
//! never changes (rows are only appended; a deleted customer's row stays dead and a
//! re-added one gets a new row), so the bitmap of rows drawn for one offer at one
//! percentage only grows at the end: a newer table version extends it by hashing the
//! appended rows, and a customer's draw never moves. Reach funnels and campaign blasts
//! then AND these bitmaps instead of hashing every (customer, offer) pair per call: at 10M
//! rows a hold-out is ~10M SipHashes once (~0.1 s on 2 cores), then a container AND.
//!
//! Dead rows are drawn too (their old id): callers always intersect with live rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::hash;
use crate::index::container::{Container, CHUNK_ROWS};
use crate::index::Postings;
use crate::store::Dataset;

/// Which draw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Control { pct_bits: u64 },
    HoldOut { offer_id: String, pct_bits: u64 },
}

/// The drawn rows of `0..rows`, with the id of the last one (to notice another table).
struct Drawn {
    rows: usize,
    last_id: Option<u64>,
    bits: Arc<Postings>,
}

/// Cached draws. Bounded: past `max_entries` draws (default 256) the cache is emptied (a catalogue
/// edited in a loop cannot grow it without bound; each entry is at most ~1.2 MB at 10M
/// rows, a dense container per 65,536-row chunk).
pub struct DrawCache {
    entries: Mutex<HashMap<Key, Arc<Drawn>>>,
    max_entries: usize,
}

impl Default for DrawCache {
    fn default() -> Self {
        DrawCache::new(256)
    }
}

impl DrawCache {
    pub fn new(max_entries: usize) -> DrawCache {
        DrawCache { entries: Mutex::new(HashMap::new()), max_entries: max_entries.max(1) }
    }

    /// Rows in the global control group at `pct`.
    pub fn control(&self, ds: &Dataset, pct: f64) -> Arc<Postings> {
        self.get(ds, Key::Control { pct_bits: pct.to_bits() }, &|id| hash::in_control(id, pct))
    }

    /// Rows held out of `offer_id` at `pct`.
    pub fn holdout(&self, ds: &Dataset, offer_id: &str, pct: f64) -> Arc<Postings> {
        let key = Key::HoldOut { offer_id: offer_id.to_string(), pct_bits: pct.to_bits() };
        self.get(ds, key, &|id| hash::held_out(id, offer_id, pct))
    }

    fn get(&self, ds: &Dataset, key: Key, drawn: &(dyn Fn(u64) -> bool + Sync)) -> Arc<Postings> {
        let rows = ds.rows();
        let last_id = rows.checked_sub(1).map(|r| ds.id_of(r as u32));
        let old = self.entries.lock().expect("draw cache").get(&key).cloned();
        // Reusable when it covers a prefix of this table (its last row has the same id here).
        let base =
            old.filter(|d| d.rows <= rows && d.last_id == d.rows.checked_sub(1).map(|r| ds.id_of(r as u32)));
        if let Some(d) = &base {
            if d.rows == rows {
                return d.bits.clone();
            }
        }
        let bits = Arc::new(extend(ds, base.as_ref().map(|d| (d.rows, &*d.bits)), drawn));
        let mut map = self.entries.lock().expect("draw cache");
        if map.len() >= self.max_entries && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, Arc::new(Drawn { rows, last_id, bits: bits.clone() }));
        bits
    }
}

/// The drawn rows of `ds`, reusing `base` (the drawn rows of its first `n` rows).
fn extend(ds: &Dataset, base: Option<(usize, &Postings)>, drawn: &(dyn Fn(u64) -> bool + Sync)) -> Postings {
    let rows = ds.rows();
    let from = base.map_or(0, |b| b.0);
    let chunks: Vec<Container> = (0..ds.n_chunks())
        .into_par_iter()
        .map(|c| {
            let start = c * CHUNK_ROWS;
            let end = (start + CHUNK_ROWS).min(rows);
            if end <= from {
                return base.expect("rows below `from` come from the base").1.chunk(c).clone();
            }
            let mut offs: Vec<u16> = vec![];
            if let Some((_, b)) = base.filter(|_| start < from) {
                b.chunk(c).for_each(|o| offs.push(o));
            }
            for row in start.max(from)..end {
                if drawn(ds.id_of(row as u32)) {
                    offs.push((row - start) as u16);
                }
            }
            Container::from_sorted(&offs)
        })
        .collect();
    Postings::from_chunks(chunks)
}
