//! The reasons people look up are the reasons the controller writes: every
//! `Reason` a Coffer SealedSecret can carry has its row in the
//! Troubleshooting table of docs/operations.md, every one a bitnami
//! SealedSecret can has its row in the reasons table of docs/migration.md,
//! and neither table names a reason that does not exist.

use std::collections::BTreeSet;
use std::path::Path;

use coffer_core::Reason;

/// The words in the first column of the table whose header row is `header`
/// in the doc at `path` (from the repository root), without their
/// backticks.
fn first_column(path: &str, header: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path))
        .unwrap();
    let start = text
        .lines()
        .position(|l| l == header)
        .unwrap_or_else(|| panic!("{path} has no table {header:?}"));
    // The header, the delimiter row, then the rows.
    let rows: Vec<&str> = text
        .lines()
        .skip(start + 2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!rows.is_empty(), "{path}: the table {header:?} is empty");
    rows.iter()
        .map(|row| {
            let cell = row.split('|').nth(1).unwrap().trim();
            cell.trim_matches('`').to_string()
        })
        .collect()
}

#[test]
fn the_docs_list_every_reason_and_no_other() {
    let operations = first_column("docs/operations.md", "| reason | meaning | what to do |");
    let migration = first_column("docs/migration.md", "| reason | what happened |");
    for r in Reason::ALL {
        if r.on_coffer() {
            assert!(
                operations.contains(r.as_str()),
                "docs/operations.md, Troubleshooting: no row for {r}"
            );
        }
        if r.on_bitnami() {
            assert!(
                migration.contains(r.as_str()),
                "docs/migration.md, the reasons table: no row for {r}"
            );
        }
    }
    for (doc, listed) in [("operations", &operations), ("migration", &migration)] {
        for word in listed {
            assert!(
                Reason::from_wire(word).is_some(),
                "docs/{doc}.md lists {word:?}, which is no reason"
            );
        }
    }
    // Each table holds exactly the reasons of its kind of SealedSecret.
    let of = |keep: fn(Reason) -> bool| -> BTreeSet<String> {
        Reason::ALL
            .into_iter()
            .filter(|r| keep(*r))
            .map(|r| r.as_str().to_string())
            .collect()
    };
    assert_eq!(operations, of(Reason::on_coffer));
    assert_eq!(migration, of(Reason::on_bitnami));
}
