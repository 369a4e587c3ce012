//! The sealed-value parser must refuse any input with an error, never panic.
#![no_main]

use coffer_core::{Keyring, Location, keys::parse_identity_file, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static RING: Keyring = Keyring::from_keys(
            parse_identity_file(include_str!("../../core/tests/vectors/identity.txt")).unwrap(),
        );
    }
    let at = Location { namespace: "shop", name: "db", key: "password" };
    // Raw bytes as the base64 text, and as the binary age file.
    if let Ok(text) = std::str::from_utf8(data) {
        RING.with(|r| { let _ = open(text, at, r); });
    }
    let b64 = base64_encode(data);
    RING.with(|r| { let _ = open(&b64, at, r); });
    let _ = coffer_core::envelope::parse_plaintext(data);
});

fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() { out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char) } else { out.push('=') }
        }
    }
    out
}
