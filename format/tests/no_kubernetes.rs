//! The format knows no Kubernetes: its manifest names no `kube` or
//! `k8s-openapi` dependency, so a Kubernetes type cannot creep into it.

#[test]
fn the_format_crate_depends_on_no_kubernetes_crate() {
    let manifest = include_str!("../Cargo.toml");
    for line in manifest.lines().map(str::trim) {
        let name = line.split(['=', ' ', '.']).next().unwrap_or("");
        assert!(
            !matches!(
                name,
                "kube" | "k8s-openapi" | "kube-runtime" | "kube-client"
            ),
            "format/Cargo.toml names {name}: the format must stay free of Kubernetes types"
        );
    }
}
