//! bitnami sealed-secrets, moving to Coffer (`coffer_core::bitnami`): the
//! text of a file `coffer convert --bitnami-keys` reads (each document as
//! the CLI splits and parses it, then `read_sealed_secret` and `convert`
//! with the published bitnami test key of `fuzz/bitnami-key.pem`), the same
//! text as a key backup (`read_key_backup`), and the input as one value
//! (`open` on the text, `open_bytes` on the raw bytes) at `shop/db`.
//!
//! Properties: never panics; anything that opens is a value the seeds
//! sealed (it starts with the marker every seed value starts with: RSA-OAEP
//! and AES-GCM admit no other); a converted SealedSecret holds the same
//! items, each opening with the test identity to such a value, bound to the
//! same place with the same scope; no refusal (of a value, a SealedSecret,
//! a conversion or a key backup) shows a value, and no refusal of a key
//! backup shows the private key.
#![no_main]

use coffer_cli::documents::{chunks_of, value_of};
use coffer_core::bitnami::{self, At, BitnamiKey, BitnamiScope};
use coffer_format::{Location, envelope};
use coffer_fuzz::{bitnami_key, test_key, test_ring};
use libfuzzer_sys::fuzz_target;

/// Every value the seeds seal starts with this; no refusal may show it.
const MARKER: &[u8] = b"BITNAMI-FUZZ-VALUE-";

fn keys() -> &'static [BitnamiKey] {
    std::slice::from_ref(bitnami_key())
}

fn has_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER)
}

fn no_marker(msg: &str, what: &str) {
    assert!(!has_marker(msg.as_bytes()), "{what} shows a value: {msg}");
}

/// Runs of the test key, as its PEM body and as the base64 of the PEM file
/// (the form of `data.tls.key` in a key backup): no refusal of a key backup
/// may hold 16 characters of either.
fn key_runs() -> &'static [String] {
    static RUNS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    RUNS.get_or_init(|| {
        use base64::Engine as _;
        let pem = include_str!("../bitnami-key.pem");
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
            .collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        [body, encoded]
            .iter()
            .flat_map(|t| {
                t.as_bytes()
                    .chunks(16)
                    .filter(|c| c.len() == 16)
                    .map(|c| String::from_utf8(c.to_vec()).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

fn opened(v: &[u8]) {
    assert!(
        v.starts_with(MARKER),
        "a value opened that no seed sealed ({} bytes)",
        v.len()
    );
    assert!(v.len() <= bitnami::MAX_VALUE_LEN);
}

/// One value found at `shop/db`, strict: a value sealed for another scope
/// is tried in the other two as well, inside `open_bytes`.
fn check_value(text: Option<&str>, raw: &[u8]) {
    let at = At {
        namespace: "shop",
        name: "db",
        scope: BitnamiScope::Strict,
    };
    match bitnami::open_bytes(raw, at, keys()) {
        Ok(v) => opened(&v),
        Err(e) => no_marker(&e.to_string(), "open_bytes"),
    }
    let Some(text) = text else { return };
    match bitnami::open(text, at, keys()) {
        Ok(v) => opened(&v),
        Err(e) => no_marker(&e.to_string(), "open"),
    }
}

fn check_document(body: &str) {
    let Some(value) = value_of(body) else {
        return;
    };
    let doc = match bitnami::read_sealed_secret(value) {
        Ok(Some(doc)) => doc,
        Ok(None) => return,
        Err(e) => return no_marker(&e, "read_sealed_secret"),
    };
    let me = [test_key().public().clone()];
    match bitnami::convert(&doc, keys(), &me) {
        Ok(out) => {
            let (namespace, name, scope) = doc.place();
            assert_eq!(
                out.spec.encrypted_data.keys().collect::<Vec<_>>(),
                doc.spec.encrypted_data.keys().collect::<Vec<_>>()
            );
            assert_eq!(out.metadata.name.as_deref(), Some(name));
            for (key, sealed) in &out.spec.encrypted_data {
                let at = Location {
                    namespace,
                    name,
                    key,
                };
                assert!(
                    envelope::open(sealed, at, test_ring()).is_ok(),
                    "a converted value does not open where it was"
                );
                let o = envelope::open_unchecked(sealed, test_ring()).expect("it opens");
                opened(&o.value);
                assert_eq!(o.binding.scope, scope.coffer());
            }
        }
        Err(e) => no_marker(&e.to_string(), "convert"),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();
    check_value(text, data);
    let Some(text) = text else {
        return;
    };
    let (_, chunks) = chunks_of(text);
    for (_, c) in chunks.iter().take(8) {
        check_document(&c.body);
    }
    if let Err(e) = bitnami::read_key_backup(text) {
        no_marker(&e, "read_key_backup");
        for run in key_runs() {
            assert!(
                !e.contains(run.as_str()),
                "a key backup refusal shows the key: {e}"
            );
        }
    }
});
