//! The sealed-value parser, on raw bytes: as the base64 text of
//! `encryptedData`, and as the binary age file (base64-encoded first). The
//! ring holds the published test identities (X25519 and post-quantum), so
//! the seeds of `fuzz/seeds/open_value/` (values sealed to them, with
//! `X25519` and `mlkem768x25519` stanzas) get past age's header MAC and
//! their mutations reach the STREAM and binding-header checks.
//!
//! Properties: never panics; one open costs at most one unwrap; a
//! value that opens is no longer than `MAX_VALUE_LEN`, inspects, and has the
//! scope its age header announces.
#![no_main]

use coffer_format::envelope::{self, MAX_VALUE_LEN};
use coffer_format::key::unwraps_on_this_thread;
use coffer_fuzz::{AT, b64, test_ring_with_pq};
use libfuzzer_sys::fuzz_target;

fn check(sealed: &str) {
    let ring = test_ring_with_pq();
    let before = unwraps_on_this_thread();
    let opened = envelope::open_unchecked(sealed, ring);
    let unwraps = unwraps_on_this_thread() - before;
    assert!(unwraps <= 1, "opening cost {unwraps} unwraps");
    if let Ok(o) = opened {
        assert!(
            o.value.len() <= MAX_VALUE_LEN,
            "opened {} bytes",
            o.value.len()
        );
        let (env, _) = envelope::inspect(sealed).expect("a value that opens inspects");
        assert_eq!(env.scope, o.binding.scope);
        // `open` is `open_unchecked` plus the binding check.
        assert_eq!(
            envelope::open(sealed, AT, ring).is_ok(),
            o.binding.allows(AT)
        );
    } else {
        let _ = envelope::inspect(sealed);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    check(&b64(data));
    let _ = envelope::parse_plaintext(data);
});
