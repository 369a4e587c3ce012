//! `spec.template.data`: MiniJinja templates written by whoever writes the
//! SealedSecret, compiled and rendered through `coffer_core::template`
//! (`render`, as the controller does, and `check`, as `coffer inspect`
//! does offline) over a fixed set of items, one of them a distinctive
//! secret. The input is the template text; NUL bytes separate up to four
//! templates, which share one fuel budget as a SealedSecret's do.
//!
//! Properties: never panics, aborts or hangs (the fuel bounds every loop);
//! what renders is at most `MAX_OUTPUT` bytes in all, one value per
//! template; `check` and `render` agree (what renders checks; what checks
//! fails to render only on the values, never as a syntax error or an
//! undefined name); no error, in its `Display` or its `Debug`, shows an
//! item's value unless the template text itself holds it.
#![no_main]

use std::collections::BTreeMap;

use coffer_core::template::{self, Cause, MAX_OUTPUT, TemplateError};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

/// The value no error may show.
const SECRET: &str = "FUZZ-ITEM-VALUE-hunter2-7f3a";
/// Its base64 (the `b64` item; `b64decode` gives the secret back).
const SECRET_B64: &str = "RlVaWi1JVEVNLVZBTFVFLWh1bnRlcjItN2YzYQ==";

fn items() -> &'static BTreeMap<String, Zeroizing<Vec<u8>>> {
    static ITEMS: std::sync::OnceLock<BTreeMap<String, Zeroizing<Vec<u8>>>> =
        std::sync::OnceLock::new();
    ITEMS.get_or_init(|| {
        let text: [(&str, &[u8]); 7] = [
            ("user", b"admin"),
            ("password", SECRET.as_bytes()),
            ("b64", SECRET_B64.as_bytes()),
            ("port", b"5432"),
            ("json", br#"{"a": [1, 2], "b": "c"}"#),
            (
                "tls.crt",
                b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
            ),
            // Not UTF-8: no variable, and not in `items`.
            ("bin", b"\xff\xfe\x00binary"),
        ];
        text.iter()
            .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_vec())))
            .collect()
    })
}

/// The item keys `render` makes variables of (the UTF-8 ones), as `check`
/// takes them.
const TEXT_KEYS: [&str; 6] = ["b64", "json", "password", "port", "tls.crt", "user"];
const TEMPLATE_KEYS: [&str; 4] = ["url", "config", "tls.key", "t3"];

fn no_secret(e: &TemplateError, sources: &str, what: &str) {
    if sources.contains(SECRET) {
        return;
    }
    let shown = e.to_string();
    assert!(
        !shown.contains(SECRET),
        "{what} error shows a value: {shown}"
    );
    let debug = format!("{e:?}");
    assert!(
        !debug.contains(SECRET),
        "{what} error's Debug shows a value"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let templates: Vec<(&str, &str)> = TEMPLATE_KEYS
        .iter()
        .copied()
        .zip(text.split('\0'))
        .collect();

    let checked = template::check(&templates, &TEXT_KEYS);
    if let Err(e) = &checked {
        no_secret(e, text, "check");
        assert!(
            matches!(
                e,
                TemplateError::Syntax { .. }
                    | TemplateError::Undefined { .. }
                    | TemplateError::TooComplex { .. }
            ),
            "check, which renders nothing, failed otherwise: {e}"
        );
    }

    match template::render(&templates, items()) {
        Ok(out) => {
            assert!(checked.is_ok(), "rendered what check refuses");
            assert_eq!(out.len(), templates.len(), "one value per template");
            let total: usize = out.values().map(|v| v.len()).sum();
            assert!(total <= MAX_OUTPUT, "rendered {total} bytes");
        }
        Err(e) => {
            no_secret(&e, text, "render");
            // The engine never panics on the template thread.
            assert!(
                !matches!(
                    e,
                    TemplateError::Failed {
                        cause: Cause::Panicked,
                        ..
                    }
                ),
                "the engine panicked"
            );
            if checked.is_ok() {
                assert!(
                    !matches!(
                        e,
                        TemplateError::Syntax { .. }
                            | TemplateError::Undefined { .. }
                            | TemplateError::TooComplex { .. }
                    ),
                    "check passed but render says: {e}"
                );
            }
            // The structural bounds are the same for both.
            if matches!(checked, Err(TemplateError::TooComplex { .. })) {
                assert!(
                    matches!(e, TemplateError::TooComplex { .. }),
                    "check found it too complex, render says: {e}"
                );
            }
        }
    }
});
