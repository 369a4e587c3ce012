//! Facts about X25519 points that both kinds of key need: the X25519 keys
//! of `key.rs` and the X25519 half of `pq.rs`'s hybrid keys. Its own module
//! so that neither of those imports the other for it.

/// Whether an X25519 point lies in the small subgroup (order 1, 2, 4 or 8).
/// Every X25519 scalar is clamped to a multiple of 8, so the exchange with
/// such a point is all zeros whatever the scalar; one exchange with any
/// scalar tells. age refuses the resulting non-contributory secret by
/// panicking while sealing, so Coffer refuses the point when it is read.
pub(crate) fn is_low_order(point: &[u8; 32]) -> bool {
    x25519_dalek::x25519([9u8; 32], *point) == [0u8; 32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_subgroup_is_low_order_and_a_real_key_is_not() {
        // The identity point (0) and the order-2 point (1).
        assert!(is_low_order(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        let key = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([7u8; 32]));
        assert!(!is_low_order(key.as_bytes()));
    }
}
