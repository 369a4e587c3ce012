//! The controller's module graph stays a tree-like DAG: no module imports
//! the wiring (`run.rs`), and no import cycle comes back, in the controller
//! or in any other crate of the workspace (`format`, `core`, `cli`). Read
//! from the sources, like the CRD drift gate reads the generated YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `crate::` imports of each module of the crate whose sources are in
/// `src` (a path relative to the repository root).
fn graph_of(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(src);
    let mut g = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let module = path.file_stem().unwrap().to_str().unwrap().to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let uses: BTreeSet<String> = text
            .match_indices("crate::")
            .map(|(i, _)| {
                text[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|m| !m.is_empty() && *m != module)
            .collect();
        g.insert(module, uses);
    }
    g
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    graph_of("controller/src")
}

#[test]
fn no_module_imports_the_wiring() {
    let g = graph();
    assert!(
        g.contains_key("run") && g.contains_key("reconcile"),
        "{g:?}"
    );
    for (module, uses) in &g {
        assert!(!uses.contains("run"), "{module} imports run");
    }
}

/// The first import cycle of `g`, as `a -> b -> a`.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    // Depth-first search; a module met again while still on the path closes
    // a cycle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if done.contains(m) {
            return None;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            return Some(format!("{} -> {m}", path[at..].join(" -> ")));
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(m, g, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_of_the_workspace_has_an_import_cycle() {
    for src in ["controller/src", "format/src", "core/src", "cli/src"] {
        let g = graph_of(src);
        assert!(g.len() > 3, "{src}: {g:?}");
        if let Some(c) = cycle(&g) {
            panic!("{src}: import cycle {c}");
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("key", vec!["pq"]),
        ("pq", vec!["x25519", "key"]),
        ("x25519", vec![]),
    ]
    .into_iter()
    .map(|(m, uses)| {
        (
            m.to_string(),
            uses.into_iter().map(str::to_string).collect(),
        )
    })
    .collect();
    assert_eq!(cycle(&g).as_deref(), Some("key -> pq -> key"));
}
