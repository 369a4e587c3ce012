//! The key files an admin hands the CLI: a backup's plaintext
//! (`backup::parse`, on arbitrary text), an encrypted backup
//! (`backup::decrypt` with the test identity as the admin's, then `parse`),
//! and recipients files (`RecipientsFile::parse`).
//!
//! Properties: never panics; a parsed backup holds at least one key, no
//! creation time in the future of `now`, and renders to a text that parses
//! back to the same keys, times and states; a parsed recipients file
//! renders and parses back to itself; no refusal of a backup shows any
//! private key material (a damaged backup), no refusal of a recipients file
//! shows a private key (an identity file given as a recipients file).
#![no_main]

use coffer_format::RecipientsFile;
use coffer_format::backup::{self, is_future};
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
        Err(e) => assert_quotes_no_key(text, &e.to_string()),
    }
}

/// A refusal may be printed to a terminal or a CI log: it must not show
/// any of the private key material in `text` (the bech32 payload after any
/// `AGE-SECRET-KEY-1`, in either case), even of a damaged key.
fn assert_quotes_no_key(text: &str, msg: &str) {
    let upper_text = text.to_ascii_uppercase();
    // Key ids are public (SHA-256 of a public key): drop them first.
    let upper_msg: String = msg
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !(w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit())))
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    for (at, _) in upper_text.match_indices("SECRET-KEY-1") {
        let payload: String = upper_text[at + "SECRET-KEY-1".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        if payload.len() >= 8 {
            assert!(
                !upper_msg.contains(&payload),
                "a refusal shows private key material: {msg}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_backup(text);
        match RecipientsFile::parse(text) {
            Ok(file) => {
                let back = RecipientsFile::parse(&file.render()).expect("a rendered file parses");
                assert_eq!(back, file);
            }
            // A recipients file is public: a refusal may quote its text,
            // but never text that holds a private key.
            Err(e) => assert!(
                !e.to_string().to_ascii_uppercase().contains("SECRET-KEY"),
                "a refusal shows a private key: {e}"
            ),
        }
    }
    if let Ok(plain) = backup::decrypt(data, std::slice::from_ref(test_key())) {
        check_backup(&plain);
    }
});
