//! The CLI's readers of a repository's files, through its own code
//! (`coffer_cli`): `.coffer.yaml` (`Rules::parse`) and `coffer check`'s
//! reading of one file (`check::check_file`: the documents of a YAML
//! stream or JSON file, `kind: List` items, plain Secrets, SealedSecrets
//! and their values, checked against the rule of the file's path).
//!
//! The input is `RULES\0DOCUMENT`: the text of a `.coffer.yaml` in a
//! scratch directory and of a file under it (`clusters/prod/db.yaml`),
//! written there and checked as `coffer check` does. Without a NUL byte
//! the whole input is parsed as rules, then checked as a document with no
//! rules. Recipients files (the test identity's and one of `keys.txt`) are
//! in the scratch directory; rules naming others outside `recipients/` are
//! parsed but not used, so the target reads nothing else on the machine.
//!
//! Properties: never panics; a parsed rule has recipients; a file whose
//! documents parse counts exactly its SealedSecrets and reports every plain
//! Secret with values, once; a file that does not parse is one problem if
//! it mentions a Secret, else skipped; no problem shows the value of a
//! Secret's `data` or `stringData` (the seeds' values hold a marker that
//! must never reach the output, unless the file holds it elsewhere too).
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use coffer_cli::check::{Checked, History, Problem, check_file};
use coffer_cli::documents::documents;
use coffer_cli::io::Input;
use coffer_cli::rules::Rules;
use coffer_core::api::is_sealed_secret;
use coffer_format::RecipientsFile;
use coffer_format::recipients::RecipientEntry;
use coffer_fuzz::{other_keys, test_key};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zeroize::Zeroizing;

/// In the values of the seeds' plain Secrets: no problem may show it.
const MARKER: &str = "PLAINTEXT-Zq7";

struct Scratch {
    root: PathBuf,
    file: PathBuf,
}

/// A directory of this process under the temporary directory (`fuzz/run`
/// points `TMPDIR` at its scratch space, in memory where it can, and
/// removes it afterwards: a file is written for every run).
fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coffer-fuzz-check-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("recipients")).unwrap();
        std::fs::create_dir_all(dir.join("clusters/prod")).unwrap();
        let file = |key: &coffer_format::SecretKey, cluster: &str| RecipientsFile {
            entries: vec![RecipientEntry {
                key: key.public().clone(),
                cluster: Some(cluster.into()),
                created: None,
            }],
        };
        std::fs::write(
            dir.join("recipients/prod.txt"),
            file(test_key(), "prod").render(),
        )
        .unwrap();
        std::fs::write(
            dir.join("recipients/dr.txt"),
            file(&other_keys()[0], "dr").render(),
        )
        .unwrap();
        // Rules match paths under their root as canonicalised.
        let root = dir.canonicalize().unwrap();
        let file = root.join("clusters/prod/db.yaml");
        Scratch { root, file }
    })
}

/// A recipients path that stays in the scratch directory's `recipients/`.
fn inside(p: &str) -> bool {
    let path = Path::new(p);
    path.starts_with("recipients") && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Whether `MARKER` appears in `v` anywhere but the values of a Secret's
/// `data` and `stringData`.
fn marker_elsewhere(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(MARKER),
        Value::Array(a) => a.iter().any(marker_elsewhere),
        Value::Object(o) => {
            let secret = o.get("kind").and_then(Value::as_str) == Some("Secret");
            o.iter().any(|(k, x)| {
                k.contains(MARKER)
                    || if secret && (k == "data" || k == "stringData") {
                        match x {
                            // The values are secret; their keys are not.
                            Value::Object(m) => m.keys().any(|k| k.contains(MARKER)),
                            other => marker_elsewhere(other),
                        }
                    } else {
                        marker_elsewhere(x)
                    }
            })
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => false,
    }
}

fn has_values(doc: &Value, field: &str) -> bool {
    doc.get(field)
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

fn check_document(text: &str, rules: Option<&Rules>) {
    let s = scratch();
    std::fs::write(&s.file, text).unwrap();
    let mut key_ids = BTreeMap::new();
    let mut problems: Vec<Problem> = Vec::new();
    // An error is a refusal of the rules (a recipients file they name that
    // is refused): one clear error, nothing else to check.
    let Ok(checked) = check_file(&s.file, rules, &mut key_ids, &mut History::default(), &mut problems) else {
        return;
    };

    let input = Input {
        name: s.file.display().to_string(),
        text: Zeroizing::new(text.to_string()),
    };
    let elsewhere = match documents(&input) {
        Ok(docs) => {
            let sealed = docs.iter().filter(|d| is_sealed_secret(d)).count();
            match checked {
                Checked::Read(n) => assert_eq!(n, sealed, "SealedSecrets counted"),
                Checked::Skipped => panic!("a file that parses was skipped"),
            }
            let plain = docs
                .iter()
                .filter(|d| {
                    // What `coffer seal` takes as a Secret: apiVersion v1,
                    // or none.
                    d.get("kind").and_then(Value::as_str) == Some("Secret")
                        && matches!(
                            d.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                            "v1" | ""
                        )
                        && (has_values(d, "data") || has_values(d, "stringData"))
                })
                .count();
            let reported = problems
                .iter()
                .filter(|p| p.what.starts_with("a plain Secret with values"))
                .count();
            assert_eq!(reported, plain, "plain Secrets reported");
            docs.iter().any(marker_elsewhere)
        }
        Err(_) => {
            if text.contains("Secret") {
                assert!(matches!(checked, Checked::Read(0)));
                assert_eq!(
                    problems.len(),
                    1,
                    "one problem for a file that does not parse"
                );
            } else {
                assert!(matches!(checked, Checked::Skipped));
                assert!(problems.is_empty());
            }
            false
        }
    };
    if !elsewhere {
        for p in &problems {
            for part in [&p.at, &p.what, &p.fix] {
                assert!(!part.contains(MARKER), "a problem shows a value: {part}");
            }
        }
    }
}

thread_local! {
    /// The last rules text and what it parsed to: the fuzzer mostly mutates
    /// the file after the NUL byte, and compiling the globs of the same text
    /// again (which dominates the run time) would find nothing new.
    static LAST_RULES: RefCell<Option<(String, Option<Rules>)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rules_text, document) = match text.split_once('\0') {
        Some((r, d)) => (r, Some(d)),
        None => (text, None),
    };
    LAST_RULES.with(|last| {
        let mut last = last.borrow_mut();
        if last.as_ref().is_none_or(|(t, _)| t != rules_text) {
            let root = &scratch().root;
            let rules = Rules::parse(root, root, rules_text).ok();
            if let Some(r) = &rules {
                for rule in &r.rules {
                    assert!(!rule.recipients.is_empty(), "a rule without recipients");
                }
                let _ = r.for_path(&scratch().file);
            }
            *last = Some((rules_text.to_string(), rules));
        }
        let rules = last.as_ref().and_then(|(_, r)| r.as_ref());
        match document {
            Some(doc) => {
                let usable = rules.filter(|r| {
                    r.rules
                        .iter()
                        .all(|rule| rule.recipients.iter().all(|p| inside(p)))
                });
                check_document(doc, usable);
            }
            None => check_document(text, None),
        }
    });
});
