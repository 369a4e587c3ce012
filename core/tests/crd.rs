//! `crds/sealedsecret.yaml` is exactly what the Rust types generate.
//! Regenerate with `cargo run -p coffer-controller -- crd > crds/sealedsecret.yaml`.

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = include_str!("../../crds/sealedsecret.yaml");
    assert!(
        committed == coffer_core::api::crd_yaml(),
        "crds/sealedsecret.yaml is stale: run `cargo run -p coffer-controller -- crd > crds/sealedsecret.yaml`"
    );
}

#[test]
#[cfg(feature = "bitnami")]
fn committed_bitnami_crd_matches_the_rust_types() {
    let committed = include_str!("../../deploy/bitnami/crd.yaml");
    assert!(
        committed == coffer_core::bitnami::crd_yaml(),
        "deploy/bitnami/crd.yaml is stale: run `cargo run -p coffer-controller -- crd --bitnami > deploy/bitnami/crd.yaml`"
    );
}
