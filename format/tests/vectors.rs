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

/// The test keys: the X25519 key and the post-quantum key, in that order.
fn keys() -> Vec<coffer_format::SecretKey> {
    parse_identity_file(include_str!("vectors/identity.txt")).unwrap()
}

fn ring() -> Keyring {
    Keyring::from_keys(keys())
}

fn vectors() -> Vec<Vector> {
    serde_saphyr::from_str(include_str!("vectors/vectors.yaml")).unwrap()
}

#[test]
fn every_vector_opens_or_is_refused_as_documented() {
    let ring = ring();
    let vs = vectors();
    assert!(vs.len() >= 8);
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
    let key = keys().remove(0);
    let other = SecretKey::generate();
    let r = [key.public().clone()];
    let at = Location {
        namespace: "shop",
        name: "db",
        key: "password",
    };
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
    print_cases(cases);
}

/// One vector: description, sealed value, where it is found, the value it
/// opens to or the reason it is refused.
type Case<'a> = (
    &'a str,
    String,
    [&'a str; 3],
    Option<&'a str>,
    Option<&'a str>,
);

/// Prints cases in the YAML of `vectors/vectors.yaml`.
fn print_cases(cases: Vec<Case>) {
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

/// Regenerates only the post-quantum vectors (appended to the others):
/// `cargo test -p coffer-format --test vectors generate_post_quantum -- --ignored --nocapture`.
#[test]
#[ignore = "generator, run by hand"]
fn generate_post_quantum_vectors() {
    use coffer_format::key::KeyKind;
    use coffer_format::{Scope, seal};
    let mut keys = keys();
    let pq = keys.remove(1);
    let x = keys.remove(0);
    assert_eq!(pq.kind(), KeyKind::MlKem768X25519);
    let at = Location {
        namespace: "shop",
        name: "db",
        key: "password",
    };
    print_cases(vec![
        (
            "post-quantum key, strict scope, opened where sealed",
            seal(b"pq-hunter2", Scope::Strict, at, &[pq.public().clone()]).unwrap(),
            ["shop", "db", "password"],
            Some("pq-hunter2"),
            None,
        ),
        (
            "post-quantum key, copied to another name",
            seal(b"pq-hunter2", Scope::Strict, at, &[pq.public().clone()]).unwrap(),
            ["shop", "web", "password"],
            None,
            Some("ScopeMismatch"),
        ),
        (
            "post-quantum and X25519 recipients (not post-quantum as a whole)",
            seal(
                b"mixed",
                Scope::Namespace,
                at,
                &[pq.public().clone(), x.public().clone()],
            )
            .unwrap(),
            ["shop", "web", "password"],
            Some("mixed"),
            None,
        ),
    ]);
}
