//! The manifest reader must refuse any input with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = coffer_core::manifest::read_secrets(text);
    }
});
