//! The controller's module graph stays a tree-like DAG: no module imports
//! the wiring (`run.rs`), and no import cycle comes back. Read from the
//! sources, like the CRD drift gate reads the generated YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
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

#[test]
fn the_controller_modules_have_no_import_cycle() {
    let g = graph();
    // Depth-first search; a module met again while still on the path closes
    // a cycle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flatten() {
            visit(next, g, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done);
    }
}
