//! The two ways to install Coffer, the kustomize base `deploy/` and the
//! Helm chart `deploy/helm/coffer/`, ship the same objects and exactly the
//! same RBAC, and both pass a real API server's server-side dry run.
//!
//! helm is built from its Go module by `tests/helm/build`, kubectl by
//! `tests/envtest/build`; `kubectl kustomize` and `helm template` need no
//! server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use coffer_test_support::{Server, kubectl_bin, root, suffix, target_dir};
use serde_json::{Value, json};

const NAMESPACE: &str = "coffer-system";

/// Runs `cmd`, feeding it `stdin` if given; returns stdout, failing on error.
fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The helm binary, built once per test process.
fn helm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = run(&mut Command::new(root().join("tests/helm/build")), None);
        let path = PathBuf::from(out.lines().last().expect("tests/helm/build prints a path"));
        assert!(path.is_file(), "{} is not a file", path.display());
        path
    })
}

/// The envtest kubectl, built if needed.
fn kubectl() -> Command {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        run(&mut Command::new(root().join("tests/envtest/build")), None);
    });
    Command::new(kubectl_bin())
}

/// `helm template coffer deploy/helm/coffer --namespace NS ARGS...`.
fn helm_template(namespace: &str, args: &[&str]) -> String {
    let home = target_dir().join("helm/home");
    let mut cmd = Command::new(helm_bin());
    cmd.args(["template", "coffer"])
        .arg(root().join("deploy/helm/coffer"))
        .args(["--namespace", namespace])
        .args(args)
        // Keep helm's caches and config out of $HOME.
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    run(&mut cmd, None)
}

/// `kubectl kustomize deploy/`.
fn kustomize() -> String {
    run(kubectl().arg("kustomize").arg(root().join("deploy")), None)
}

/// The objects of a multi-document YAML stream (empty documents dropped).
fn objects(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("parse YAML stream: {e}\n{yaml}"));
    docs.into_iter()
        .filter(|d| !d.is_null())
        .inspect(|d| {
            assert!(
                d["kind"].is_string() && d["metadata"]["name"].is_string(),
                "not a Kubernetes object: {d}"
            );
        })
        .collect()
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().map(|o| kind(o).to_string()).collect()
}

fn find<'a>(objects: &'a [Value], kind_: &str, name_: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == kind_ && name(o) == name_)
        .unwrap_or_else(|| panic!("no {kind_} {name_}"))
}

/// A sorted copy of a JSON array of strings (absent: empty).
fn sorted(v: &Value) -> Value {
    let mut items: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    json!(items)
}

/// Every Role's and ClusterRole's rules, keyed by (kind, name), each rule's
/// lists sorted and the rules themselves sorted.
fn rbac_rules(objects: &[Value]) -> BTreeMap<(String, String), Vec<String>> {
    objects
        .iter()
        .filter(|o| matches!(kind(o), "Role" | "ClusterRole"))
        .map(|o| {
            let mut rules: Vec<String> = o["rules"]
                .as_array()
                .unwrap_or_else(|| panic!("{} {} has no rules", kind(o), name(o)))
                .iter()
                .map(|r| {
                    json!({
                        "apiGroups": sorted(&r["apiGroups"]),
                        "resources": sorted(&r["resources"]),
                        "verbs": sorted(&r["verbs"]),
                        "resourceNames": sorted(&r["resourceNames"]),
                        "nonResourceURLs": sorted(&r["nonResourceURLs"]),
                    })
                    .to_string()
                })
                .collect();
            rules.sort();
            ((kind(o).to_string(), name(o).to_string()), rules)
        })
        .collect()
}

/// Every RoleBinding's and ClusterRoleBinding's roleRef and sorted subjects.
fn rbac_bindings(objects: &[Value]) -> BTreeMap<(String, String), (Value, Vec<String>)> {
    objects
        .iter()
        .filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding"))
        .map(|o| {
            let mut subjects: Vec<String> = o["subjects"]
                .as_array()
                .expect("subjects")
                .iter()
                .map(Value::to_string)
                .collect();
            subjects.sort();
            (
                (kind(o).to_string(), name(o).to_string()),
                (o["roleRef"].clone(), subjects),
            )
        })
        .collect()
}

#[test]
fn helm_chart_and_kustomize_base_grant_the_same_rbac() {
    let chart = objects(&helm_template(NAMESPACE, &["--include-crds"]));
    let base = objects(&kustomize());

    let chart_rules = rbac_rules(&chart);
    let base_rules = rbac_rules(&base);
    assert_eq!(
        base_rules.keys().cloned().collect::<Vec<_>>(),
        [
            ("ClusterRole", "coffer-controller"),
            ("Role", "coffer-controller"),
            ("Role", "coffer-recipients-reader"),
        ]
        .map(|(k, n)| (k.to_string(), n.to_string())),
        "deploy/ ships other roles than expected"
    );
    assert_eq!(
        chart_rules, base_rules,
        "the chart's RBAC differs from deploy/rbac.yaml's"
    );
    assert_eq!(
        rbac_bindings(&chart),
        rbac_bindings(&base),
        "the chart binds roles differently from deploy/rbac.yaml"
    );

    // The same objects, except that the chart leaves the namespace to
    // `helm install --create-namespace` (Helm does not own namespaces).
    let mut chart_kinds = kinds(&chart);
    chart_kinds.insert("Namespace".into());
    let base_kinds = kinds(&base);
    assert_eq!(chart_kinds, base_kinds);
    for k in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(base_kinds.contains(k), "deploy/ has no {k}");
    }
    let names = |objs: &[Value]| -> BTreeSet<(String, String)> {
        objs.iter()
            .filter(|o| kind(o) != "Namespace")
            .map(|o| (kind(o).to_string(), name(o).to_string()))
            .collect()
    };
    assert_eq!(names(&chart), names(&base));

    // The chart's CRD is the generated one, verbatim.
    assert_eq!(
        std::fs::read_to_string(root().join("deploy/helm/coffer/crds/sealedsecret.yaml")).unwrap(),
        std::fs::read_to_string(root().join("crds/sealedsecret.yaml")).unwrap(),
        "deploy/helm/coffer/crds/sealedsecret.yaml is stale: copy crds/sealedsecret.yaml"
    );
    assert_eq!(
        find(
            &chart,
            "CustomResourceDefinition",
            "sealedsecrets.coffer.dev"
        )["spec"],
        find(
            &base,
            "CustomResourceDefinition",
            "sealedsecrets.coffer.dev"
        )["spec"],
    );

    // Everything namespaced lands in the release namespace.
    for o in &chart {
        let cluster_scoped = matches!(
            kind(o),
            "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
        );
        assert_eq!(
            o["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some(NAMESPACE),
            "{} {}",
            kind(o),
            name(o)
        );
    }

    // The CLI's way in: services/http:coffer-controller:http/proxy.
    for objs in [&chart, &base] {
        let svc = find(objs, "Service", "coffer-controller");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 8080, "targetPort": "http"}])
        );
        let deploy = find(objs, "Deployment", "coffer-controller");
        assert_eq!(
            svc["spec"]["selector"],
            deploy["spec"]["selector"]["matchLabels"]
        );
        for (k, n) in [
            ("NetworkPolicy", "coffer-controller"),
            ("PodDisruptionBudget", "coffer-controller"),
        ] {
            let sel = &find(objs, k, n)["spec"];
            let sel = sel
                .get("podSelector")
                .or_else(|| sel.get("selector"))
                .unwrap();
            assert_eq!(sel["matchLabels"], svc["spec"]["selector"], "{k}");
        }
    }
    assert_eq!(
        find(&chart, "NetworkPolicy", "coffer-controller")["spec"],
        find(&base, "NetworkPolicy", "coffer-controller")["spec"],
    );
    assert_eq!(
        find(&chart, "PodDisruptionBudget", "coffer-controller")["spec"],
        find(&base, "PodDisruptionBudget", "coffer-controller")["spec"],
    );

    // The ServiceMonitor only when asked for.
    assert!(!kinds(&chart).contains("ServiceMonitor"));
    let monitored = objects(&helm_template(
        NAMESPACE,
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.serviceMonitor.interval=15s",
        ],
    ));
    let sm = find(&monitored, "ServiceMonitor", "coffer-controller");
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "http", "path": "/metrics", "scheme": "http", "interval": "15s"}])
    );
    let svc = find(&monitored, "Service", "coffer-controller");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects {k}"
        );
    }
}

#[test]
fn helm_chart_passes_server_side_dry_run() {
    let server = Server::shared();
    server.install_deploy();
    let apply = |manifests: &str| {
        let mut cmd = server.kubectl();
        cmd.args(["apply", "--dry-run=server", "-f", "-"]);
        run(&mut cmd, Some(manifests))
    };

    // The defaults, over the objects deploy/ created.
    let out = apply(&helm_template(NAMESPACE, &["--include-crds"]));
    assert!(
        out.contains("deployment.apps/coffer-controller"),
        "unexpected kubectl output:\n{out}"
    );

    // Every optional branch of the templates, into a fresh namespace.
    let ns = format!("coffer-helm-{}", suffix());
    server.kubectl_ok(&["create", "namespace", &ns]);
    let manifests = helm_template(
        &ns,
        &[
            "--set",
            "replicas=1",
            "--set",
            "namespaces={shop,web}",
            "--set",
            "clusterName=prod-eu",
            "--set",
            "leaderElect=false",
            "--set",
            "image.tag=0.1.0-test",
            "--set-json",
            r#"extraArgs=["--lease-duration=30s"]"#,
            "--set",
            "nodeSelector.kubernetes\\.io/os=linux",
            "--set",
            "tolerations[0].operator=Exists",
        ],
    );
    let result = std::panic::catch_unwind(|| apply(&manifests));
    server.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    result.unwrap();
    let objs = objects(&manifests);
    assert!(!kinds(&objs).contains("PodDisruptionBudget"));
    let c = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"]["containers"]
        [0];
    assert_eq!(
        c["args"],
        json!([
            "--log-format=json",
            "--log-level=info",
            "--kube-qps=200",
            "--kube-burst=400",
            "--leader-elect=false",
            "--namespaces=shop,web",
            "--cluster-name=prod-eu",
            "--lease-duration=30s"
        ])
    );
    assert_eq!(
        c["image"],
        "ghcr.io/coffer-dev/coffer-controller:0.1.0-test"
    );
}

/// The pod-security "restricted" profile, and the probes.
fn assert_restricted_and_probed(deploy: &Value, what: &str) {
    let pod = &deploy["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{what}: pod runAsNonRoot");
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "{what}: pod seccomp"
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{what}: one container");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{what}: runAsNonRoot");
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "{what}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{what}: allowPrivilegeEscalation"
    );
    assert_eq!(sc["privileged"], false, "{what}: privileged");
    assert_eq!(
        sc["capabilities"],
        json!({"drop": ["ALL"]}),
        "{what}: capabilities"
    );
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{what}: container seccomp"
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
        "{what}: ports"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": path, "port": "http"}),
            "{what}: {probe}"
        );
    }
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                &e["valueFrom"]["fieldRef"]["fieldPath"],
            )
        })
        .collect();
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace", "{what}");
    assert_eq!(env["POD_NAME"], "metadata.name", "{what}");
    assert_eq!(pod["serviceAccountName"], "coffer-controller", "{what}");
    assert_eq!(deploy["spec"]["replicas"], 2, "{what}: replicas");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname",
        "{what}: anti-affinity"
    );
}

#[test]
fn deployment_is_restricted_and_probed() {
    let text = std::fs::read_to_string(root().join("deploy/deployment.yaml")).unwrap();
    let base: Value = serde_saphyr::from_str(&text).expect("deploy/deployment.yaml parses");
    assert_restricted_and_probed(&base, "deploy/deployment.yaml");
    let base_pod = &base["spec"]["template"]["spec"];

    // The chart's Deployment, with its default values, runs the same pod.
    let chart = objects(&helm_template(NAMESPACE, &[]));
    let deploy = find(&chart, "Deployment", "coffer-controller");
    assert_restricted_and_probed(deploy, "the chart's Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"], base_pod["securityContext"]);
    assert_eq!(pod["affinity"], base_pod["affinity"]);
    assert_eq!(deploy["spec"]["selector"], base["spec"]["selector"]);
    let (c, b) = (&pod["containers"][0], &base_pod["containers"][0]);
    for field in [
        "securityContext",
        "livenessProbe",
        "readinessProbe",
        "ports",
        "resources",
        "env",
        "image",
        "imagePullPolicy",
    ] {
        assert_eq!(c[field], b[field], "the chart's container {field}");
    }
}

/// The HTTP port: open to every source by default (the API server, which
/// the CLI goes through, cannot be selected by labels), and narrowed to the
/// API server's addresses and the metrics scrapers when the chart is told
/// them.
#[test]
fn helm_chart_narrows_the_http_port_to_the_api_server_and_scrapers_when_told() {
    let port = json!([{"protocol": "TCP", "port": 8080}]);
    let policy = |objs: &[Value]| find(objs, "NetworkPolicy", "coffer-controller")["spec"].clone();

    let default = policy(&objects(&helm_template(NAMESPACE, &[])));
    assert_eq!(default["ingress"], json!([{ "ports": port }]));

    let scraper = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    });
    let manifests = helm_template(
        NAMESPACE,
        &[
            "--set-json",
            r#"networkPolicy.ingress.apiServerCIDRs=["192.0.2.10/32","198.51.100.0/28"]"#,
            "--set-json",
            &format!("networkPolicy.ingress.metricsFrom=[{scraper}]"),
        ],
    );
    let narrowed = policy(&objects(&manifests));
    assert_eq!(
        narrowed["ingress"],
        json!([{
            "ports": port,
            "from": [
                {"ipBlock": {"cidr": "192.0.2.10/32"}},
                {"ipBlock": {"cidr": "198.51.100.0/28"}},
                scraper,
            ],
        }])
    );
    // Only the ingress rule changes.
    assert_eq!(narrowed["egress"], default["egress"]);
    assert_eq!(narrowed["podSelector"], default["podSelector"]);

    // The API server accepts the narrowed policy.
    let np = manifests
        .split("\n---")
        .find(|d| d.contains("kind: NetworkPolicy"))
        .expect("a NetworkPolicy document");
    let server = Server::shared();
    server.install_deploy();
    let mut cmd = server.kubectl();
    cmd.args(["apply", "--dry-run=server", "-f", "-"]);
    let out = run(&mut cmd, Some(np));
    assert!(
        out.contains("networkpolicy"),
        "unexpected kubectl output:\n{out}"
    );

    // Scrapers alone would shut the API server (and so the CLI) out: refused.
    let home = target_dir().join("helm/home");
    let out = Command::new(helm_bin())
        .args(["template", "coffer"])
        .arg(root().join("deploy/helm/coffer"))
        .args(["--namespace", NAMESPACE, "--set-json"])
        .arg(format!("networkPolicy.ingress.metricsFrom=[{scraper}]"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm");
    assert!(
        !out.status.success(),
        "metricsFrom without apiServerCIDRs was rendered"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apiServerCIDRs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
