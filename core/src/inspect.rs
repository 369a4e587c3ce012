//! What a SealedSecret holds, read without a key: its items, their scope,
//! key ids and size, and the problems the controller would meet. `coffer
//! inspect` prints it; the web page shows it.

use std::collections::BTreeSet;

use coffer_format::envelope;

use crate::api::SealedSecret;

/// One sealed value, read without a key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemReport {
    /// The item's key.
    pub key: String,
    /// Its scope; `None` when the value cannot be read.
    pub scope: Option<String>,
    /// The key ids it is sealed to.
    pub key_ids: Vec<String>,
    /// Kind of each named key (`x25519`, `mlkem768x25519`), in key id order.
    pub key_kinds: Vec<String>,
    /// How many recipient stanzas it has.
    pub recipients: usize,
    /// Whether every recipient is post-quantum: only then does the value
    /// stay secret against a quantum computer.
    pub post_quantum: Option<bool>,
    /// The padded size bucket the plaintext falls in.
    pub size_bucket: Option<usize>,
    /// Why the value would not unseal, when that can be told offline.
    pub problem: Option<String>,
}

/// What one SealedSecret holds, and its problems.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SealedReport {
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: Option<String>,
    /// Every scope its values are sealed with (more than one is a problem).
    pub scopes: Vec<String>,
    /// Its items, in key order.
    pub items: Vec<ItemReport>,
    /// Its problems, for people.
    pub problems: Vec<String>,
}

/// The report of one SealedSecret; with `known` (the key ids of the
/// recipients files given), a value sealed to none of those ids is a
/// problem. Templates are not checked here: [`template_problem`].
pub fn report(sealed: &SealedSecret, known: Option<&BTreeSet<String>>) -> SealedReport {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let mut scopes = BTreeSet::new();
    for (key, value) in &sealed.spec.encrypted_data {
        let item = item(key, value, known);
        if let Some(scope) = &item.scope {
            scopes.insert(scope.clone());
        }
        if let Some(p) = &item.problem {
            problems.push(format!("item {key:?}: {p}"));
        }
        items.push(item);
    }
    if scopes.len() > 1 {
        problems.push(format!(
            "mixed scopes: {}",
            scopes.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if sealed.spec.encrypted_data.is_empty() {
        problems.push("no items".into());
    }
    SealedReport {
        namespace: sealed.metadata.namespace.clone(),
        name: sealed.metadata.name.clone(),
        scopes: scopes.into_iter().collect(),
        items,
        problems,
    }
}

/// The problem of `sealed`'s templates, if any: a mistyped item or a
/// syntax error, found here before the controller reports TemplateFailed.
/// Apart from [`report`] so that what does not check templates (the web
/// page, where minijinja would double the module's size) does not carry
/// the template engine.
pub fn template_problem(sealed: &SealedSecret) -> Option<String> {
    let t = sealed.spec.template.as_ref()?;
    let templates: Vec<(&str, &str)> = t
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let keys: Vec<&str> = sealed
        .spec
        .encrypted_data
        .keys()
        .map(String::as_str)
        .collect();
    crate::template::check(&templates, &keys)
        .err()
        .map(|e| e.to_string())
}

fn item(key: &str, value: &str, known: Option<&BTreeSet<String>>) -> ItemReport {
    let env = match envelope::inspect(value) {
        Ok((env, _)) => env,
        Err(e) => {
            return ItemReport {
                key: key.to_string(),
                scope: None,
                key_ids: vec![],
                key_kinds: vec![],
                recipients: 0,
                post_quantum: None,
                size_bucket: None,
                problem: Some(e.to_string()),
            };
        }
    };
    let ids: Vec<String> = env.key_ids.iter().map(|k| k.to_string()).collect();
    let problem = known.and_then(|known| {
        (!ids.iter().any(|i| known.contains(i))).then(|| {
            format!(
                "sealed only to key(s) {} that no given recipients file holds",
                ids.join(", ")
            )
        })
    });
    ItemReport {
        key: key.to_string(),
        scope: Some(env.scope.to_string()),
        key_ids: ids,
        key_kinds: env.key_kinds.iter().map(|k| k.to_string()).collect(),
        recipients: env.recipient_stanzas,
        post_quantum: Some(env.post_quantum()),
        size_bucket: Some(env.size_bucket()),
        problem,
    }
}
