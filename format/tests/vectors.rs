//! Fixed test vectors of format v1 (`format/tests/vectors/`), also printed in
//! `docs/format.md`: a second implementation can check itself against them.

use coffer_format::{Keyring, Location, OpenError, key::parse_identity_file, open};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    description: String,
    found_at: [String; 3],
    sealed: String,
    /// Expected value (UTF-8) when it opens.
    #[serde(default)]
    value: Option<String>,
    /// Expected refusal reason when it does not.
    #[serde(default)]
    refused: Option<String>,
}

fn ring() -> Keyring {
    let text = include_str!("vectors/identity.txt");
    Keyring::from_keys(parse_identity_file(text).unwrap())
}

fn vectors() -> Vec<Vector> {
    serde_saphyr::from_str(include_str!("vectors/vectors.yaml")).unwrap()
}

#[test]
fn every_vector_opens_or_is_refused_as_documented() {
    let ring = ring();
    let vs = vectors();
    assert!(vs.len() >= 5);
    for v in vs {
        let at = Location {
            namespace: &v.found_at[0],
            name: &v.found_at[1],
            key: &v.found_at[2],
        };
        match (open(&v.sealed, at, &ring), &v.value, &v.refused) {
            (Ok(value), Some(want), None) => {
                assert_eq!(value.as_slice(), want.as_bytes(), "{}", v.description)
            }
            (Err(e), None, Some(reason)) => assert_eq!(e.reason(), reason, "{}", v.description),
            (r, _, _) => panic!("{}: unexpected {:?}", v.description, r.map(|_| "opened")),
        }
    }
}

#[test]
fn docs_format_md_shows_the_same_vectors() {
    let doc = include_str!("../../docs/format.md");
    assert!(doc.contains(include_str!("vectors/identity.txt").trim()));
    for v in vectors() {
        assert!(
            doc.contains(&v.sealed),
            "docs/format.md lacks vector {:?}",
            v.description
        );
    }
    let _ = OpenError::Base64;
}

/// Regenerates the vectors: `cargo test -p coffer-core --test vectors -- --ignored --nocapture`.
#[test]
#[ignore = "generator, run by hand"]
fn generate_vectors() {
    use coffer_format::{Scope, SecretKey, seal};
    let key = parse_identity_file(include_str!("vectors/identity.txt"))
        .unwrap()
        .remove(0);
    let other = SecretKey::generate();
    let r = [key.public().clone()];
    let at = Location {
        namespace: "shop",
        name: "db",
        key: "password",
    };
    type Case<'a> = (
        &'a str,
        String,
        [&'a str; 3],
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "strict scope, opened where sealed",
            seal(b"hunter2", Scope::Strict, at, &r).unwrap(),
            ["shop", "db", "password"],
            Some("hunter2"),
            None,
        ),
        (
            "namespace scope, opened under another name",
            seal(b"s3cret", Scope::Namespace, at, &r).unwrap(),
            ["shop", "web", "password"],
            Some("s3cret"),
            None,
        ),
        (
            "cluster scope, opened in another namespace",
            seal(b"token-123", Scope::Cluster, at, &r).unwrap(),
            ["dev", "x", "password"],
            Some("token-123"),
            None,
        ),
        (
            "two recipients, the first one unknown here",
            seal(
                b"multi",
                Scope::Strict,
                at,
                &[other.public().clone(), key.public().clone()],
            )
            .unwrap(),
            ["shop", "db", "password"],
            Some("multi"),
            None,
        ),
        (
            "strict scope copied to another namespace",
            seal(b"hunter2", Scope::Strict, at, &r).unwrap(),
            ["dev", "db", "password"],
            None,
            Some("ScopeMismatch"),
        ),
        (
            "sealed only to a key this ring lacks",
            seal(b"nope", Scope::Strict, at, &[other.public().clone()]).unwrap(),
            ["shop", "db", "password"],
            None,
            Some("NoMatchingKey"),
        ),
    ];
    for (d, s, f, v, r) in cases {
        println!(
            "- description: {d}\n  found_at: [{}, {}, {}]",
            f[0], f[1], f[2]
        );
        if let Some(v) = v {
            println!("  value: {v}");
        }
        if let Some(r) = r {
            println!("  refused: {r}");
        }
        println!("  sealed: {s}");
    }
}
