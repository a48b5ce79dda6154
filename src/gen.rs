//! Deterministic synthetic customer table: a Rust port of `bench/gen.py`.
//!
//! Same schema, column names, Arrow types and value distributions as the Python
//! generator, but not the same values: the RNG and the order of draws differ.
//! Rows come in chunks of 500_000 rows, each drawn from its own RNG stream keyed
//! by `(seed, chunk_no)`, so chunks are independent and can be built in parallel
//! while the output still depends only on `(rows, seed)`. Columns are drawn one
//! after another, numpy style, so `gen_chunk` reads side by side with gen.py.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, Int8Array, ListArray, RecordBatch,
    StringArray, UInt64Array, UInt8Array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::distr::Open01;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

pub const DEFAULT_SEED: u64 = 20240601;
/// Rows per chunk = per RecordBatch = per Parquet row group (as in gen.py).
const CHUNK: usize = 500_000;

const GENDERS: [&str; 4] = ["F", "M", "X", "unknown"];
const GENDER_P: [f64; 4] = [0.49, 0.47, 0.025, 0.015];
/// Ordered by popularity rank: index 0 gets the largest Zipf weight.
const COUNTRIES: [&str; 40] = [
    "DE", "FR", "GB", "IT", "ES", "NL", "PL", "BE", "SE", "AT", "CH", "US", "DK", "NO", "FI", "IE", "PT",
    "CZ", "HU", "RO", "GR", "CA", "AU", "JP", "BR", "MX", "SK", "SI", "HR", "BG", "LT", "LV", "EE", "LU",
    "IS", "MT", "CY", "NZ", "SG", "AE",
];
const INCOME_BANDS: [&str; 5] = ["low", "lower_mid", "mid", "upper_mid", "high"];
const INCOME_P: [f64; 5] = [0.18, 0.27, 0.30, 0.17, 0.08];
const TIERS: [&str; 5] = ["NONE", "BRONZE", "SILVER", "GOLD", "PLATINUM"];
const TIER_EDGES: [f64; 4] = [500.0, 1000.0, 5000.0, 20000.0];
const CHANNELS: [&str; 4] = ["email", "sms", "push", "none"];
#[rustfmt::skip]
const CATEGORIES: [&str; 30] = [
    "electronics", "fashion", "beauty", "home", "grocery", "books", "sports", "toys", "garden",
    "shoes", "health", "kitchen", "outdoor", "pet", "baby", "music", "movies", "games", "office",
    "jewelry", "automotive", "tools", "furniture", "travel", "crafts", "wine", "photography",
    "software", "gourmet", "luxury",
];
#[rustfmt::skip]
const BADGES: [&str; 20] = [
    "welcome", "first_purchase", "app_user", "reviewer", "streak_7", "bargain_hunter", "loyal_1y",
    "referrer", "weekend_warrior", "night_owl", "social_sharer", "eco_friendly", "big_spender",
    "streak_30", "early_adopter", "top_reviewer", "loyal_5y", "super_referrer", "vip",
    "beta_tester",
];

fn zipf_p(n: usize, s: f64) -> Vec<f64> {
    let w: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| x / sum).collect()
}

fn cdf(p: &[f64]) -> Vec<f64> {
    (0..p.len()).map(|i| p[..=i].iter().sum()).collect()
}

/// numpy's `np.where(cond, yes, no)` for one element; keeps the formulas one-liners.
fn pick<T>(cond: bool, yes: T, no: T) -> T {
    if cond {
        yes
    } else {
        no
    }
}

/// Lookup tables shared by all chunks, built once.
struct Tables {
    city_names: Vec<String>,
    /// Per country: index of its first city and the within-country Zipf CDF.
    cities: Vec<(usize, Vec<f64>)>,
    gender: Vec<f64>,
    country: Vec<f64>,
    income: Vec<f64>,
    cat_logw: Vec<f64>,
    badge_logw: Vec<f64>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    // Mirrors build_cities(): popular countries get more (sub-linearly) cities, at
    // least 5 each; np.round is half-to-even, hence round_ties_even (2003 cities).
    let cw = zipf_p(COUNTRIES.len(), 1.1);
    let alloc: Vec<f64> = cw.iter().map(|p| p.powf(0.6)).collect();
    let total: f64 = alloc.iter().sum();
    let (mut city_names, mut cities) = (Vec::new(), Vec::new());
    for (cc, a) in COUNTRIES.iter().zip(&alloc) {
        let k = (a / total * 2000.0).round_ties_even().max(5.0) as usize;
        cities.push((city_names.len(), cdf(&zipf_p(k, 1.0))));
        city_names.extend((1..=k).map(|j| format!("{cc}-{j:03}")));
    }
    let logw = |n, s| zipf_p(n, s).into_iter().map(f64::ln).collect();
    Tables {
        city_names,
        cities,
        gender: cdf(&GENDER_P),
        country: cdf(&cw),
        income: cdf(&INCOME_P),
        cat_logw: logw(CATEGORIES.len(), 0.8),
        badge_logw: logw(BADGES.len(), 0.9),
    }
});

/// Hand-rolled samplers, to avoid a rand_distr dependency; one instance per chunk.
/// StdRng (ChaCha12) rather than SmallRng because its stream is platform-independent.
struct Sampler(StdRng);

impl Sampler {
    fn new(key: [u64; 3]) -> Self {
        let mut seed = [0u8; 32];
        for (dst, k) in seed.chunks_mut(8).zip(key) {
            dst.copy_from_slice(&k.to_le_bytes());
        }
        Sampler(StdRng::from_seed(seed))
    }
    fn uniform(&mut self) -> f64 {
        self.0.random()
    }
    /// ln of a uniform in (0, 1), never -inf.
    fn ln_u(&mut self) -> f64 {
        self.0.sample::<f64, _>(Open01).ln()
    }
    /// Box-Muller (one variate per call: simpler than caching the pair, cheap enough).
    fn normal(&mut self) -> f64 {
        (-2.0 * self.ln_u()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        (mu + sigma * self.normal()).exp()
    }
    fn exponential(&mut self, scale: f64) -> f64 {
        -self.ln_u() * scale
    }
    /// Marsaglia-Tsang; valid for shape >= 1, which is all we need (2.2).
    fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && self.ln_u() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }
    /// Knuth's multiplication method: fine because lambda <= 1 + ln(501) ~ 7.2 here.
    fn poisson(&mut self, lambda: f64) -> usize {
        let (limit, mut p, mut k) = ((-lambda).exp(), self.uniform(), 0);
        while p > limit {
            p *= self.uniform();
            k += 1;
        }
        k
    }
    /// Trials up to and including the first success (numpy's convention, >= 1), capped.
    fn geometric(&mut self, p: f64, cap: i16) -> i16 {
        (1.0 + self.ln_u() / (1.0 - p).ln()).min(cap as f64) as i16
    }
    /// Index drawn from a (possibly unnormalised) CDF, like numpy's choice(p=...).
    fn choice(&mut self, cdf: &[f64]) -> usize {
        let u = self.uniform() * cdf[cdf.len() - 1];
        cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
    }
    /// Per row, k[i] distinct items drawn without replacement with weights exp(log_w),
    /// in pick order: Gumbel top-k, as sample_lists() does in gen.py.
    fn lists(&mut self, log_w: &[f64], k: &[usize], vocab: &[&str]) -> ArrayRef {
        let (mut offsets, mut picks) = (vec![0i32], Vec::new());
        let mut keys = [(0.0, 0); 32];
        let keys = &mut keys[..log_w.len()];
        for &k in k {
            if k > 0 {
                // Rows with k == 0 skip their draws: shifts the stream, not the distribution.
                // Key = log weight + standard Gumbel noise -ln(-ln u).
                for (i, (key, idx)) in keys.iter_mut().enumerate() {
                    (*key, *idx) = (log_w[i] - (-self.ln_u()).ln(), i);
                }
                keys.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
                picks.extend(keys[..k].iter().map(|&(_, i)| i));
            }
            offsets.push(picks.len() as i32);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = Arc::new(take(vocab, &picks));
        Arc::new(ListArray::new(item_field(), offsets, values, None))
    }
}

fn item_field() -> FieldRef {
    Arc::new(Field::new("item", DataType::Utf8, false))
}

/// Arrow schema identical to gen.py's schema() (field names, types, nullability; list
/// item field named "item", non-null).
pub fn schema() -> SchemaRef {
    use DataType::*;
    let f = |name, ty| Field::new(name, ty, name == "last_purchase_days_ago");
    Arc::new(Schema::new(vec![
        f("customer_id", UInt64),
        f("age", UInt8),
        f("gender", Utf8),
        f("country", Utf8),
        f("city", Utf8),
        f("income_band", Utf8),
        f("signup_days_ago", Int16),
        f("last_purchase_days_ago", Int16),
        f("purchase_count", Int16),
        f("total_spend_eur", Float64),
        f("avg_basket_eur", Float64),
        f("loyalty_points", Int32),
        f("tier", Utf8),
        f("email_opt_in", Boolean),
        f("push_opt_in", Boolean),
        f("app_sessions_30d", Int16),
        f("preferred_channel", Utf8),
        f("categories_bought", List(item_field())),
        f("badges", List(item_field())),
        f("churn_risk", Float64),
        f("level", Int8),
    ]))
}

fn take<S: AsRef<str>>(vocab: &[S], idx: &[usize]) -> StringArray {
    StringArray::from_iter_values(idx.iter().map(|&i| vocab[i].as_ref()))
}

/// np.round(x, 2): scale, round half to even, unscale.
fn round2(x: f64) -> f64 {
    (x * 100.0).round_ties_even() / 100.0
}

fn col<T>(n: usize, f: impl FnMut(usize) -> T) -> Vec<T> {
    (0..n).map(f).collect()
}

/// One chunk, following gen_chunk() in gen.py formula by formula.
fn gen_chunk(seed: u64, (chunk_no, ids): (usize, &[u64])) -> RecordBatch {
    let (t, n) = (&*TABLES, ids.len());
    let mut r = Sampler::new([seed, 1, chunk_no as u64]);
    // Float-to-int `as` truncates, i.e. floors these non-negative values (and saturates).
    let age = col(n, |_| (18.0 + r.gamma(2.2, 11.0)).min(90.0) as u8);
    let gender = col(n, |_| r.choice(&t.gender));
    let country = col(n, |_| r.choice(&t.country));
    let city = col(n, |i| {
        let (first, cdf) = &t.cities[country[i]];
        first + r.choice(cdf)
    });
    let income = col(n, |_| r.choice(&t.income));

    // Recent-heavy signup mixture over 0..=3650 days.
    let recent = col(n, |_| r.uniform() < 0.7);
    let signup = col(n, |i| {
        let days = pick(recent[i], r.exponential(700.0), r.uniform() * 3651.0);
        days.min(3650.0) as i16
    });
    // 18% never purchased; heavy lognormal tail capped at 500 purchases.
    let never = col(n, |_| r.uniform() < 0.18);
    let pc = col(n, |i| {
        let count = 1.0 + r.lognormal(2.4, 1.25);
        pick(never[i], 0, count.min(500.0) as i16)
    });
    let last = col(n, |i| signup[i].min(1000).min(r.exponential(160.0) as i16));
    let basket = col(n, |_| round2(r.lognormal(45f64.ln(), 0.7)));
    let total = col(n, |i| round2(pc[i] as f64 * basket[i]));
    let avg = col(n, |i| pick(pc[i] > 0, round2(total[i] / pc[i] as f64), 0.0));
    // searchsorted(side="right"): a total equal to an edge already is in the higher tier.
    let tier = col(n, |i| TIER_EDGES.iter().filter(|&&e| e <= total[i]).count());

    let sessions = col(n, |_| pick(r.uniform() < 0.5, 0, r.geometric(0.12, 300)));
    let email = col(n, |_| r.uniform() < 0.62);
    let push = col(n, |i| r.uniform() < pick(sessions[i] > 0, 0.6, 0.12));
    // Channel preference leans towards whatever the customer opted in to.
    let channel = col(n, |i| {
        let (e, p) = (pick(email[i], 0.6, 0.08), pick(push[i], 0.5, 0.03));
        r.choice(&cdf(&[e, 0.12, p, 0.2]))
    });
    let points = col(n, |i| {
        let bonus = r.0.random_range(0..pick(sessions[i] > 0, 500, 50));
        total[i].floor() as i32 + bonus
    });
    let level = col(n, |i| (1.0 + (points[i] as f64).sqrt() / 3.0).min(50.0) as i8);

    let ncat = col(n, |i| match pc[i] as usize {
        0 => 0,
        c => c.min(8).min(1 + r.poisson(1.0 + (c as f64).ln_1p())),
    });
    let cats = r.lists(&t.cat_logw, &ncat, &CATEGORIES);
    // Binomial(6, p) as six Bernoulli trials.
    let nbadge = col(n, |i| {
        let p = 0.04 + 0.5 * level[i] as f64 / 50.0;
        (0..6).filter(|_| r.uniform() < p).count()
    });
    let badges = r.lists(&t.badge_logw, &nbadge, &BADGES);

    let churn = col(n, |i| {
        let recency = pick(pc[i] > 0, last[i] as f64, 900.0);
        let z =
            -1.6 + 0.0045 * recency - 0.06 * sessions[i] as f64 + pick(email[i], 0.0, 0.4) + 0.9 * r.normal();
        1.0 / (1.0 + (-z).exp())
    });
    let last = last.iter().zip(&pc).map(|(&l, &c)| (c > 0).then_some(l));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(ids.to_vec())),
        Arc::new(UInt8Array::from(age)),
        Arc::new(take(&GENDERS, &gender)),
        Arc::new(take(&COUNTRIES, &country)),
        Arc::new(take(&t.city_names, &city)),
        Arc::new(take(&INCOME_BANDS, &income)),
        Arc::new(Int16Array::from(signup)),
        Arc::new(last.collect::<Int16Array>()),
        Arc::new(Int16Array::from(pc)),
        Arc::new(Float64Array::from(total)),
        Arc::new(Float64Array::from(avg)),
        Arc::new(Int32Array::from(points)),
        Arc::new(take(&TIERS, &tier)),
        Arc::new(BooleanArray::from(email)),
        Arc::new(BooleanArray::from(push)),
        Arc::new(Int16Array::from(sessions)),
        Arc::new(take(&CHANNELS, &channel)),
        cats,
        badges,
        Arc::new(Float64Array::from(churn)),
        Arc::new(Int8Array::from(level)),
    ];
    RecordBatch::try_new(schema(), cols).expect("columns match schema()")
}

/// Global shuffle of 1..=rows from its own stream, independent of the chunking.
fn customer_ids(rows: usize, seed: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = (1..=rows as u64).collect();
    ids.shuffle(&mut Sampler::new([seed, 0xC0FFEE, rows as u64]).0);
    ids
}

fn generate_with(rows: usize, seed: u64, chunk: usize) -> Vec<RecordBatch> {
    let ids = customer_ids(rows, seed);
    let chunks: Vec<_> = ids.chunks(chunk).enumerate().collect();
    chunks.into_par_iter().map(|c| gen_chunk(seed, c)).collect()
}

/// Generate `rows` customers, one RecordBatch per chunk of 500_000 rows, deterministic
/// for `(rows, seed)`. customer_id is a random permutation of 1..=rows.
pub fn generate(rows: usize, seed: u64) -> Vec<RecordBatch> {
    generate_with(rows, seed, CHUNK)
}

/// Write the table as Parquet (zstd, one row group per chunk) via `<path>.tmp` + rename,
/// so readers never see a half-written file.
pub fn write_parquet(path: &Path, rows: usize, seed: u64) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let write = || -> anyhow::Result<()> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(CHUNK))
            .build();
        let file = BufWriter::new(File::create(&tmp)?);
        let mut w = ArrowWriter::try_new(file, schema(), Some(props))?;
        let ids = customer_ids(rows, seed);
        // One wave of chunks per thread at a time: memory stays at a few batches
        // instead of the whole table, and every core still works.
        let chunks: Vec<_> = ids.chunks(CHUNK).enumerate().collect();
        for wave in chunks.chunks(rayon::current_num_threads()) {
            let batches: Vec<_> = wave.par_iter().map(|&c| gen_chunk(seed, c)).collect();
            for b in &batches {
                w.write(b)?;
                w.flush()?; // close the row group: one per chunk
            }
        }
        let file = w.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        Ok(file.sync_all()?)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(fs::rename(&tmp, path)?)
}

/// The 100 saved segments of the real-time benchmark (s000..s099), shared by
/// `benches/updates.rs` and `segd loadgen --rpc create-segments`: thresholds and lists
/// varied over this table's columns.
pub fn benchmark_segments() -> Vec<(String, String)> {
    let mut v = vec![];
    for i in 0..25 {
        v.push(format!("total_spend_eur >= {} AND last_purchase_days_ago < {}", 100 * (i + 1), 30 + 10 * i));
        v.push(format!("tier IN ('GOLD', 'PLATINUM') AND age >= {}", 20 + i * 2));
        v.push(format!("last_purchase_days_ago >= {} AND email_opt_in", 60 + i * 20));
        v.push(format!("country = 'DE' AND total_spend_eur < {} AND NOT (tier = 'NONE')", 500 + i * 300));
    }
    v.into_iter().enumerate().map(|(i, w)| (format!("s{i:03}"), w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int16Type, UInt64Type};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn strs(b: &RecordBatch, name: &str) -> Vec<String> {
        let col = b[name].as_string::<i32>();
        col.iter().map(|s| s.unwrap().to_string()).collect()
    }

    #[test]
    fn schema_fields_in_order() {
        let s = schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names.len(), 21);
        assert_eq!(names[..3], ["customer_id", "age", "gender"]);
        assert_eq!(names[17..], ["categories_bought", "badges", "churn_risk", "level"]);
        assert_eq!(s.fields().iter().filter(|f| f.is_nullable()).count(), 1);
        assert_eq!(TABLES.city_names.len(), 2003); // what build_cities() yields
    }

    #[test]
    fn chunk_invariants() {
        let n = 2_500;
        let batches = generate_with(n, DEFAULT_SEED, 1_000);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), n);
        let mut ids: Vec<u64> = Vec::new();
        for b in &batches {
            ids.extend(b["customer_id"].as_primitive::<UInt64Type>().values());
            let pc = b["purchase_count"].as_primitive::<Int16Type>();
            for i in 0..b.num_rows() {
                assert_eq!(b["last_purchase_days_ago"].is_null(i), pc.value(i) == 0);
            }
            let spend = b["total_spend_eur"].as_primitive::<Float64Type>().values();
            for (tier, s) in strs(b, "tier").iter().zip(spend) {
                assert_eq!(tier, TIERS[TIER_EDGES.iter().filter(|&&e| e <= *s).count()]);
            }
            for (city, country) in strs(b, "city").iter().zip(strs(b, "country")) {
                assert_eq!(city[..2], country);
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=n as u64).collect::<Vec<_>>());
    }

    #[test]
    fn deterministic_per_seed() {
        let gen = |seed| generate_with(3_000, seed, 1_000);
        assert_eq!(gen(7), gen(7));
        assert_ne!(gen(7), gen(8));
    }

    #[test]
    fn country_share_and_parquet_roundtrip() {
        let b = &generate(100_000, DEFAULT_SEED)[0];
        let de = strs(b, "country").iter().filter(|c| *c == "DE").count() as f64 / 1e5;
        assert!((0.25..0.295).contains(&de), "DE share {de}"); // zipf(1.1) over 40: 27.2%
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parquet");
        write_parquet(&path, 1_000, DEFAULT_SEED).unwrap();
        let file = File::open(&path).unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(r.schema().fields(), schema().fields());
        assert_eq!(r.metadata().num_row_groups(), 1);
        let back: Vec<RecordBatch> = r.build().unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(back, generate(1_000, DEFAULT_SEED));
    }
}
