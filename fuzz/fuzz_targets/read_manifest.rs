//! The manifest reader (YAML streams, JSON, Lists) must refuse any input
//! with an error, never panic; what it reads is numbered from 1 in order
//! and every Secret has a name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(secrets) = coffer_core::manifest::read_secrets(text)
    {
        assert!(!secrets.is_empty());
        for (i, s) in secrets.iter().enumerate() {
            assert_eq!(s.index, i + 1);
            assert!(!s.metadata.name.as_deref().unwrap_or("").is_empty());
        }
    }
});
