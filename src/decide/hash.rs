//! Stable draws per customer: hold-outs and the control group.
//!
//! A customer's membership must not move when customers are added, when segd restarts or
//! when the Rust toolchain changes, so it is a fixed function of the ids alone: SipHash-1-3
//! (the `siphasher` crate, whose output is specified) with the fixed keys below, over
//! `salt || customer_id (u64 little-endian) || offer_id (UTF-8)`. The top 53 bits of the
//! hash are a uniform fraction in [0, 1); a customer is in when `fraction * 100 < pct`.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// The fixed SipHash keys ("segd-decide-v1" spread over two words). Changing them moves
/// every customer: never do it for a running catalogue.
const K0: u64 = 0x7365_6764_2d64_6563;
const K1: u64 = 0x6964_652d_7631_0000;

/// Salt of offer hold-outs.
pub const HOLDOUT_SALT: &[u8] = b"segd.holdout.v1";
/// Salt of the global control group (drawn with an empty offer id).
pub const CONTROL_SALT: &[u8] = b"segd.control.v1";

/// The customer's uniform fraction in [0, 1) for (salt, offer).
pub fn fraction(salt: &[u8], customer_id: u64, offer_id: &str) -> f64 {
    let mut h = SipHasher13::new_with_keys(K0, K1);
    h.write(salt);
    h.write(&customer_id.to_le_bytes());
    h.write(offer_id.as_bytes());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Salt of the Thompson-sampling seeds.
pub const SAMPLING_SALT: &[u8] = b"segd.thompson.v1";

/// The RNG seed of an offer's draw in a decision: a function of the two ids only, so a
/// draw does not move when offers are added to or removed from the catalogue.
pub fn sampling_seed(decision_id: u64, offer_id: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(K0, K1);
    h.write(SAMPLING_SALT);
    h.write(&decision_id.to_le_bytes());
    h.write(offer_id.as_bytes());
    h.finish()
}

/// Whether the customer is held out of the offer at `pct` percent.
pub fn held_out(customer_id: u64, offer_id: &str, pct: f64) -> bool {
    fraction(HOLDOUT_SALT, customer_id, offer_id) * 100.0 < pct
}

/// Whether the customer is in the global control group at `pct` percent.
pub fn in_control(customer_id: u64, pct: f64) -> bool {
    fraction(CONTROL_SALT, customer_id, "") * 100.0 < pct
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draw depends on every input and on nothing else.
    #[test]
    fn the_draw_is_a_fixed_function_of_the_ids() {
        let a = fraction(HOLDOUT_SALT, 42, "offer-a");
        assert_eq!(a, fraction(HOLDOUT_SALT, 42, "offer-a"));
        assert_ne!(a, fraction(HOLDOUT_SALT, 43, "offer-a"));
        assert_ne!(a, fraction(HOLDOUT_SALT, 42, "offer-b"));
        assert_ne!(a, fraction(CONTROL_SALT, 42, "offer-a"));
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn zero_and_hundred_percent_are_none_and_all() {
        for id in 0..1000 {
            assert!(!held_out(id, "x", 0.0));
            assert!(held_out(id, "x", 100.0));
        }
    }
}
