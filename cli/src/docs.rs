//! Reading SealedSecret files: YAML streams or JSON, documents in order.

use coffer_core::SealedSecret;

use crate::error::{Failure, Result};
use crate::io::Input;

/// A SealedSecret and where it came from.
pub struct Doc {
    pub file: String,
    /// From 1, in file order.
    pub index: usize,
    pub sealed: SealedSecret,
}

impl Doc {
    pub fn label(&self) -> String {
        format!(
            "{}: document {} ({}/{})",
            self.file,
            self.index,
            self.sealed.metadata.namespace.as_deref().unwrap_or("?"),
            self.sealed.metadata.name.as_deref().unwrap_or("?")
        )
    }
}

/// Every SealedSecret in the inputs; other kinds are skipped when
/// `skip_other_kinds`, refused otherwise.
pub fn read_sealed(inputs: &[Input], skip_other_kinds: bool) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    for input in inputs {
        let values: Vec<serde_json::Value> = if input.text.trim_start().starts_with('{') {
            vec![
                serde_json::from_str(&input.text)
                    .map_err(|e| Failure::input(format!("{}: not valid JSON: {e}", input.name)))?,
            ]
        } else {
            serde_saphyr::from_multiple(&input.text).map_err(|e| {
                Failure::input(format!(
                    "{}: not valid YAML: {}",
                    input.name,
                    e.to_string().lines().next().unwrap_or("")
                ))
            })?
        };
        let mut index = 0;
        for v in values {
            let items = if v.get("kind").and_then(|k| k.as_str()) == Some("List") {
                v.get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default()
            } else {
                vec![v]
            };
            for item in items {
                index += 1;
                let kind = item.get("kind").and_then(|k| k.as_str()).unwrap_or("");
                let api = item
                    .get("apiVersion")
                    .and_then(|k| k.as_str())
                    .unwrap_or("");
                if kind != "SealedSecret" || !api.starts_with("coffer.dev/") {
                    if skip_other_kinds {
                        continue;
                    }
                    return Err(Failure::input(format!(
                        "{}: document {index}: kind {kind:?} ({api}) is not a coffer.dev SealedSecret",
                        input.name
                    )));
                }
                let sealed: SealedSecret = serde_json::from_value(item).map_err(|e| {
                    Failure::input(format!(
                        "{}: document {index}: not a valid SealedSecret: {e}",
                        input.name
                    ))
                })?;
                out.push(Doc {
                    file: input.name.clone(),
                    index,
                    sealed,
                });
            }
        }
    }
    Ok(out)
}
