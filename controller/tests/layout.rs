//! The controller's module graph stays a tree-like DAG: no module imports
//! the wiring (`run.rs`), and no import cycle comes back, in the controller
//! or in any other crate of the workspace (`format`, `core`, `cli`). Read
//! from the sources, like the CRD drift gate reads the generated YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules of the crate whose sources are in `src` (a path relative
/// to the repository root), by path (`reconcile::plan`; a folder's
/// `mod.rs` is the folder), with the file of each.
fn modules_of(src: &str) -> BTreeMap<String, std::path::PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(stem);
                walk(&path, &p, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let mut p = prefix.to_vec();
            match stem.as_str() {
                "lib" | "main" if prefix.is_empty() => continue,
                "mod" => {}
                _ => p.push(stem),
            }
            out.insert(p.join("::"), path);
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(src);
    let mut out = BTreeMap::new();
    walk(&src, &[], &mut out);
    out
}

/// The imports of each module of the crate in `src`: every `crate::a::b`
/// (and `super::x`) path, as the longest module path it names, other than
/// the module itself.
fn graph_of(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules_of(src);
    let mut g = BTreeMap::new();
    for (module, path) in &modules {
        let text = std::fs::read_to_string(path).unwrap();
        let parent: Vec<&str> = {
            let mut p: Vec<&str> = module.split("::").collect();
            if !path.ends_with("mod.rs") {
                p.pop();
            }
            p
        };
        let mut uses = BTreeSet::new();
        for (anchor, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            for (i, _) in text.match_indices(anchor) {
                // `crate::` inside a longer name (`coffer_crate::`) is not one.
                if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let rest: String = text[i + anchor.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                let mut found = None;
                for seg in rest.split("::").filter(|s| !s.is_empty()) {
                    path.push(seg.to_string());
                    let m = path.join("::");
                    if modules.contains_key(&m) {
                        found = Some(m);
                    } else {
                        break;
                    }
                }
                if let Some(m) = found
                    && m != *module
                {
                    uses.insert(m);
                }
            }
        }
        g.insert(module.clone(), uses);
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

/// The layers, as (modules, modules they must not import), each side a
/// module path or a folder (`client` is every module under it).
const LAYERS: &[(&[&str], &[&str])] = &[
    // Nothing imports the wiring.
    (&[""], &["run"]),
    // State is pure data: no API client, no HTTP, no pipeline stage.
    (
        &["state"],
        &[
            "client",
            "http",
            "reconcile",
            "bitnami",
            "keys::manager",
            "run",
        ],
    ),
    // The plan decides without a client.
    (
        &["reconcile::plan"],
        &[
            "client",
            "http",
            "keys::manager",
            "metrics",
            "pool",
            "reconcile::apply",
            "reconcile::report",
            "run",
        ],
    ),
    // The ring's state, the persisted outcomes and who needs which key are
    // pure as well; only the manager talks to the API server.
    (
        &["keys::ring", "keys::attest", "keys::users"],
        &["client", "http", "reconcile", "keys::manager"],
    ),
    // The client knows no stage of the pipeline and no listener.
    (
        &["client"],
        &["reconcile", "http", "bitnami", "keys::manager", "run"],
    ),
    // The listeners do not reconcile.
    (
        &["http"],
        &[
            "reconcile::apply",
            "reconcile::report",
            "reconcile::observe",
            "client::gateway",
        ],
    ),
];

/// Whether `module` is `layer` or under it (`""` is every module).
fn within(module: &str, layer: &str) -> bool {
    layer.is_empty() || module == layer || module.starts_with(&format!("{layer}::"))
}

/// Every import of `g` that crosses a layer it must not.
fn violations(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (module, uses) in g {
        for (these, not) in LAYERS {
            if !these.iter().any(|l| within(module, l)) {
                continue;
            }
            for u in uses {
                if not.iter().any(|l| within(u, l)) {
                    out.push(format!("{module} imports {u}"));
                }
            }
        }
    }
    out
}

#[test]
fn the_controller_tree_shows_the_pipeline() {
    let g = graph();
    for m in [
        "reconcile",
        "reconcile::observe",
        "reconcile::plan",
        "reconcile::apply",
        "reconcile::report",
        "state::store",
        "client::gateway",
        "keys::ring",
        "keys::manager",
        "http",
        "bitnami",
        "run",
    ] {
        assert!(g.contains_key(m), "{m} missing from {:?}", g.keys());
    }
    let v = violations(&g);
    assert!(v.is_empty(), "layer violations:\n{}", v.join("\n"));
}

#[test]
fn the_layer_check_finds_a_violation() {
    let mut g = graph();
    g.get_mut("reconcile::plan")
        .unwrap()
        .insert("client::gateway".into());
    g.get_mut("state::store").unwrap().insert("http".into());
    assert_eq!(
        violations(&g),
        [
            "reconcile::plan imports client::gateway",
            "state::store imports http"
        ]
    );
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
