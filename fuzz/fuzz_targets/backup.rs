//! The key files an admin hands the CLI: a backup's plaintext
//! (`backup::parse`, on arbitrary text), an encrypted backup
//! (`backup::decrypt` with the test identity as the admin's, then `parse`),
//! and recipients files (`RecipientsFile::parse`).
//!
//! Properties: never panics; a parsed backup holds at least one key, no
//! creation time in the future of `now`, and renders to a text that parses
//! back to the same keys, times and states; a refusal never quotes a key
//! line; a parsed recipients file renders and parses back to itself.
#![no_main]

use coffer_core::RecipientsFile;
use coffer_core::backup::{self, is_future};
use coffer_fuzz::{fixed_now, test_key};
use libfuzzer_sys::fuzz_target;

fn check_backup(text: &str) {
    let now = fixed_now();
    match backup::parse(text, now) {
        Ok(entries) => {
            assert!(!entries.is_empty());
            for e in &entries {
                assert!(e.created.is_none_or(|c| !is_future(c, now)));
            }
            let again = backup::render(&entries, now);
            let back = backup::parse(&again, now).expect("a rendered backup parses");
            assert_eq!(back.len(), entries.len());
            for (a, b) in entries.iter().zip(&back) {
                assert_eq!(a.key.id(), b.key.id());
                assert_eq!(a.created, b.created);
                assert_eq!(a.retired, b.retired);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with("AGE-SECRET-KEY-") && line.len() > 20 {
                    assert!(!msg.contains(line), "a refusal quotes a key line");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_backup(text);
        if let Ok(file) = RecipientsFile::parse(text) {
            let back = RecipientsFile::parse(&file.render()).expect("a rendered file parses");
            assert_eq!(back, file);
        }
    }
    if let Ok(plain) = backup::decrypt(data, std::slice::from_ref(test_key())) {
        check_backup(&plain);
    }
});
