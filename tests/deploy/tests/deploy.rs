//! The two ways to install Coffer, the kustomize base `deploy/` and the
//! Helm chart `deploy/helm/coffer/`, ship the same objects and exactly the
//! same RBAC, and both pass a real API server's server-side dry run.
//!
//! helm is built from its Go module by `tests/helm/build`, kubectl by
//! `tests/envtest/build`; `kubectl kustomize` and `helm template` need no
//! server.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use coffer_test_support::tools::{output, run, tool};
use coffer_test_support::{
    Server, kubectl_bin, namespaced_kustomization, relative_path, root, suffix, target_dir,
};
use serde_json::{Value, json};

const NAMESPACE: &str = "coffer-system";

/// helm, built from its Go module once.
fn helm_bin() -> PathBuf {
    tool("tests/helm/build")
}

/// The envtest kubectl, built if needed.
fn kubectl() -> Command {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        run(&mut Command::new(root().join("tests/envtest/build")), None);
    });
    Command::new(kubectl_bin())
}

/// The chart.
fn chart_dir() -> PathBuf {
    root().join("deploy/helm/coffer")
}

/// helm, with its caches and config kept out of $HOME.
fn helm() -> Command {
    let home = target_dir().join("helm/home");
    let mut cmd = Command::new(helm_bin());
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// `helm template coffer deploy/helm/coffer --namespace NS ARGS...`, to run.
fn helm_template_command(namespace: &str, args: &[&str]) -> Command {
    let mut cmd = helm();
    cmd.args(["template", "coffer"])
        .arg(chart_dir())
        .args(["--namespace", namespace])
        .args(args);
    cmd
}

/// `helm template coffer deploy/helm/coffer --namespace NS ARGS...`.
fn helm_template(namespace: &str, args: &[&str]) -> String {
    run(&mut helm_template_command(namespace, args), None)
}

/// [`helm_template`] with `values` as a values file (`--values -`) before ARGS.
fn helm_template_values(namespace: &str, values: &str, args: &[&str]) -> String {
    let mut cmd = helm_template_command(namespace, &["--values", "-"]);
    cmd.args(args);
    run(&mut cmd, Some(values))
}

/// [`helm_template`], which must refuse to render: returns helm's error.
fn helm_template_refused(namespace: &str, args: &[&str]) -> String {
    let out = output(&mut helm_template_command(namespace, args), None);
    assert!(
        !out.status.success(),
        "helm template {args:?} rendered:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kubectl kustomize deploy/`.
fn kustomize() -> String {
    kustomize_dir(&root().join("deploy"))
}

/// `kubectl kustomize DIR`.
fn kustomize_dir(dir: &Path) -> String {
    run(kubectl().arg("kustomize").arg(dir), None)
}

/// The kustomization for namespaced mode that docs/operations.md describes
/// (deploy/, deploy/namespaced, one deploy/namespaced/watched per
/// namespace), with the controller in `home`, rendered.
fn kustomize_namespaced(home: &str, watched: &[&str]) -> String {
    let dir = target_dir().join(format!("kustomize/namespaced-{}", suffix()));
    let rendered = kustomize_dir(&namespaced_kustomization(&dir, home, watched));
    let _ = std::fs::remove_dir_all(&dir);
    rendered
}

/// The controller's container arguments.
fn controller_args(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "coffer-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
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

/// (kind, name) of every object but the Namespace.
fn kinds_and_names(objects: &[Value]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .filter(|o| kind(o) != "Namespace")
        .map(|o| (kind(o).to_string(), name(o).to_string()))
        .collect()
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

/// (kind, namespace or "", name) of an object.
type Id = (String, String, String);

fn id(o: &Value) -> Id {
    (
        kind(o).to_string(),
        o["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        name(o).to_string(),
    )
}

fn ids<const N: usize>(list: [(&str, &str, &str); N]) -> Vec<Id> {
    list.iter()
        .map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string()))
        .collect()
}

/// Every Role's and ClusterRole's rules, keyed by (kind, namespace, name),
/// each rule's lists sorted and the rules themselves sorted.
fn rbac_rules(objects: &[Value]) -> BTreeMap<Id, Vec<String>> {
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
            (id(o), rules)
        })
        .collect()
}

/// Every name a Role's rules pin (`resourceNames`).
fn resource_names(role: &Value) -> BTreeSet<String> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resourceNames"].as_array().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// The ServiceAccounts among every binding's subjects.
fn service_account_subjects(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding"))
        .flat_map(|o| o["subjects"].as_array().unwrap())
        .filter(|s| s["kind"] == "ServiceAccount")
        .collect()
}

/// Every RoleBinding's and ClusterRoleBinding's roleRef and sorted subjects.
fn rbac_bindings(objects: &[Value]) -> BTreeMap<Id, (Value, Vec<String>)> {
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
            (id(o), (o["roleRef"].clone(), subjects))
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
        ids([
            ("ClusterRole", "", "coffer-controller"),
            ("Role", NAMESPACE, "coffer-controller"),
            ("Role", NAMESPACE, "coffer-recipients-reader"),
        ]),
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
    assert_eq!(kinds_and_names(&chart), kinds_and_names(&base));

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

    // Every optional branch of the templates, into a fresh namespace, with
    // two more to watch (their Roles need them to exist).
    let ns = format!("coffer-helm-{}", suffix());
    let (shop, web) = (format!("{ns}-shop"), format!("{ns}-web"));
    for n in [&ns, &shop, &web] {
        server.kubectl_ok(&["create", "namespace", n]);
    }
    let watched = format!("namespaces={{{shop},{web}}}");
    let manifests = helm_template(
        &ns,
        &[
            "--set",
            "replicas=1",
            "--set",
            &watched,
            "--set",
            "secretTypes.allow={Opaque,kubernetes.io/tls}",
            "--set",
            "secretTypes.deny={kubernetes.io/service-account-token}",
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
    // And every value beyond deploy/'s (another name, its own annotated
    // ServiceAccount, a digest, spread constraints, extra env), in
    // namespaced mode so that the renamed per-namespace Roles go through.
    let renamed = helm_template_values(&ns, EVERY_NEW_VALUE, &["--set", &watched]);
    let result = std::panic::catch_unwind(|| (apply(&manifests), apply(&renamed)));
    for n in [&ns, &shop, &web] {
        server.kubectl_ok(&["delete", "namespace", n, "--wait=false"]);
    }
    let (_, out) = result.unwrap();
    for object in [
        "deployment.apps/sealer",
        "serviceaccount/sealer-identity",
        "rolebinding.rbac.authorization.k8s.io/sealer-unseal",
        "networkpolicy.networking.k8s.io/sealer",
    ] {
        assert!(out.contains(object), "unexpected kubectl output:\n{out}");
    }
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
            format!("--namespaces={shop},{web}"),
            "--secret-types-allow=Opaque,kubernetes.io/tls",
            "--secret-types-deny=kubernetes.io/service-account-token",
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
    // The kubelet probes a port of its own (the controller's default
    // --probe-listen), which clients of `http` cannot fill.
    assert_eq!(
        c["ports"],
        json!([
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "probes", "containerPort": 8081, "protocol": "TCP"},
        ]),
        "{what}: ports"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": path, "port": "probes"}),
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

/// The rules the controller needs where it unseals, as one rule set.
fn unseal_rules() -> Vec<String> {
    let base = objects(&kustomize());
    rbac_rules(&base)[&(
        "ClusterRole".to_string(),
        String::new(),
        "coffer-controller".to_string(),
    )]
        .clone()
}

#[test]
fn helm_and_kustomize_grant_unseal_rules_per_listed_namespace_and_nothing_cluster_wide() {
    let chart = objects(&helm_template(
        NAMESPACE,
        &["--set", "namespaces={shop,web}"],
    ));
    let base = objects(&kustomize_namespaced(NAMESPACE, &["shop", "web"]));
    for (what, objs) in [("the chart", &chart), ("deploy/namespaced", &base)] {
        let rules = rbac_rules(objs);
        assert_eq!(
            rules.keys().cloned().collect::<Vec<_>>(),
            ids([
                ("Role", NAMESPACE, "coffer-controller"),
                ("Role", NAMESPACE, "coffer-recipients-reader"),
                ("Role", "shop", "coffer-controller-unseal"),
                ("Role", "web", "coffer-controller-unseal"),
            ]),
            "{what}: namespaced mode has other roles than expected"
        );
        for ns in ["shop", "web"] {
            let key = ("Role".into(), ns.into(), "coffer-controller-unseal".into());
            assert_eq!(
                rules[&key],
                unseal_rules(),
                "{what}: the Role in {ns} differs from the all-namespaces ClusterRole"
            );
            let (role_ref, subjects) = &rbac_bindings(objs)[&(
                "RoleBinding".to_string(),
                ns.to_string(),
                "coffer-controller-unseal".to_string(),
            )];
            assert_eq!(role_ref["kind"], "Role", "{what}");
            assert_eq!(role_ref["name"], "coffer-controller-unseal", "{what}");
            assert_eq!(
                subjects,
                &[json!({"kind": "ServiceAccount", "name": "coffer-controller", "namespace": NAMESPACE}).to_string()],
                "{what}"
            );
        }
        assert!(
            !kinds(objs).contains("ClusterRole") && !kinds(objs).contains("ClusterRoleBinding"),
            "{what}: namespaced mode grants something cluster-wide"
        );
        assert!(
            controller_args(objs)
                .as_array()
                .unwrap()
                .contains(&json!("--namespaces=shop,web")),
            "{what}: {}",
            controller_args(objs)
        );
    }
    assert_eq!(rbac_rules(&chart), rbac_rules(&base));
    assert_eq!(rbac_bindings(&chart), rbac_bindings(&base));

    // All namespaces: the ClusterRole, and no per-namespace Role.
    let everywhere = objects(&helm_template(NAMESPACE, &[]));
    let rules = rbac_rules(&everywhere);
    assert_eq!(
        rules[&(
            "ClusterRole".to_string(),
            String::new(),
            "coffer-controller".to_string()
        )],
        unseal_rules()
    );
    assert!(
        !rules
            .keys()
            .any(|(_, _, n)| n == "coffer-controller-unseal")
    );
}

#[test]
fn the_controller_role_pins_the_recipients_configmap_and_the_lease_by_name() {
    for (what, objs) in [
        ("deploy/", objects(&kustomize())),
        ("the chart", objects(&helm_template(NAMESPACE, &[]))),
    ] {
        let role = objs
            .iter()
            .find(|o| kind(o) == "Role" && name(o) == "coffer-controller")
            .unwrap_or_else(|| panic!("{what}: no Role coffer-controller"));
        for rule in role["rules"].as_array().unwrap() {
            let resources = sorted(&rule["resources"]);
            let verbs = sorted(&rule["verbs"]);
            let names = sorted(&rule["resourceNames"]);
            if resources == json!(["configmaps"]) || resources == json!(["leases"]) {
                // RBAC cannot pin `create` by name; every other verb is pinned.
                assert!(
                    verbs == json!(["create"]) || names != json!([]),
                    "{what}: {rule} is not pinned by name"
                );
                assert!(
                    !verbs.as_array().unwrap().iter().any(|v| matches!(
                        v.as_str(),
                        Some("list" | "watch" | "update" | "delete")
                    )),
                    "{what}: {rule} grants more than the controller uses"
                );
            }
        }
        assert_eq!(
            resource_names(role),
            BTreeSet::from([
                "coffer-recipients".to_string(),
                "coffer-controller".to_string()
            ]),
            "{what}"
        );
    }
}

#[test]
fn an_overlay_that_moves_the_kustomize_base_binds_the_service_account_where_it_went() {
    let dir = target_dir().join(format!("kustomize/moved-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "namespace: elsewhere\nresources:\n  - {}\n",
            coffer_test_support::relative_path(&dir, &root().join("deploy")).display()
        ),
    )
    .unwrap();
    let moved = objects(&kustomize_dir(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let namespaced = objects(&kustomize_namespaced("elsewhere", &["shop"]));
    for (what, objs) in [("moved", &moved), ("moved, namespaced", &namespaced)] {
        let service_accounts = service_account_subjects(objs);
        assert!(!service_accounts.is_empty());
        for s in service_accounts {
            assert_eq!(
                s,
                &json!({"kind": "ServiceAccount", "name": "coffer-controller", "namespace": "elsewhere"}),
                "{what}"
            );
        }
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
    let err = helm_template_refused(
        NAMESPACE,
        &[
            "--set-json",
            &format!("networkPolicy.ingress.metricsFrom=[{scraper}]"),
        ],
    );
    assert!(err.contains("apiServerCIDRs"), "{err}");
}

/// A values file that sets every value the chart has beyond deploy/'s:
/// another name, an existing-style annotated ServiceAccount under its own
/// name, an image pinned by digest, spread constraints, extra env, a
/// Transit KEK with its CA Secret and egress, and an extra volume.
const EVERY_NEW_VALUE: &str = r#"
fullnameOverride: sealer
keyKind: mlkem768x25519
image:
  tag: 0.1.0-test
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
serviceAccount:
  create: true
  name: sealer-identity
  annotations:
    iam.gke.io/gcp-service-account: coffer@example-project.iam.gserviceaccount.com
extraEnv:
  - name: COFFER_HTTP_RATE
    value: "50"
  - name: COFFER_CONCURRENCY
    valueFrom:
      configMapKeyRef: {name: coffer-tuning, key: concurrency, optional: true}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
bitnami:
  enabled: true
  resync: 5m
web:
  enabled: true
kek:
  reference: transit:coffer
  transit:
    address: https://openbao.openbao.svc:8200
    mount: transit
    kubernetesRole: coffer
    kubernetesMount: kubernetes
    caSecret: openbao-ca
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.5/32}}]
      ports: [{protocol: TCP, port: 8200}]
extraVolumes:
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 1Mi}
extraVolumeMounts:
  - name: scratch
    mountPath: /var/run/coffer-scratch
"#;

/// A kustomization of the base `deploy/` with the component `component`
/// (a path from the repository's root), as its header tells users to
/// write it, rendered.
fn kustomize_with_component(component: &str) -> String {
    let name = component.replace('/', "-");
    let dir = target_dir().join(format!("kustomize/{name}-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = relative_path(&dir, &root().join("deploy"));
    let component = relative_path(&dir, &root().join(component));
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "resources:\n  - {}\ncomponents:\n  - {}\n",
            base.display(),
            component.display()
        ),
    )
    .unwrap();
    let rendered = kustomize_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    rendered
}

/// `bitnami.enabled` grants exactly what the kustomize component
/// deploy/bitnami adds to the base, and passes the same flag.
#[test]
fn helm_bitnami_enabled_and_the_kustomize_component_agree() {
    let cluster_rules = |objs: &[Value]| -> BTreeSet<String> {
        rbac_rules(objs)
            .into_iter()
            .filter(|(id, _)| id.0 == "ClusterRole")
            .flat_map(|(_, rules)| rules)
            .collect()
    };
    let chart = objects(&helm_template(
        NAMESPACE,
        &["--set", "bitnami.enabled=true"],
    ));
    let kustomized = objects(&kustomize_with_component("deploy/bitnami"));
    let with = cluster_rules(&kustomized);
    assert_eq!(cluster_rules(&chart), with);
    let without = cluster_rules(&objects(&kustomize()));
    let added: Vec<&String> = with.difference(&without).collect();
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added.iter().all(|r| r.contains("bitnami.com")), "{added:?}");
    // The component's binding names the base's ServiceAccount where it is.
    let binding = find(
        &kustomized,
        "ClusterRoleBinding",
        "coffer-controller-bitnami",
    );
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    for objs in [&chart, &kustomized] {
        let args = controller_args(objs).as_array().unwrap();
        assert!(args.iter().any(|a| a == "--bitnami"), "{args:?}");
    }
    assert!(
        controller_args(&chart)
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--bitnami-resync=10m")
    );
}

/// `web.enabled` passes `--web`, and only it: the page is off by default.
#[test]
fn helm_web_enabled_serves_the_page_and_is_off_by_default() {
    let has_web = |args: &[&str]| {
        controller_args(&objects(&helm_template(NAMESPACE, args)))
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--web")
    };
    assert!(!has_web(&[]));
    assert!(has_web(&["--set", "web.enabled=true"]));
    let refused = helm_template_refused(
        NAMESPACE,
        &["--set", "web.enabled=yes", "--set", "web.port=1"],
    );
    assert!(refused.contains("web"), "{refused}");
}

/// `helm lint --strict` on the chart, with `values` as a values file if
/// given; its status and all it printed.
fn helm_lint(values: Option<&str>) -> (bool, String) {
    let mut cmd = helm();
    cmd.args(["lint", "--strict"]).arg(chart_dir());
    if values.is_some() {
        cmd.args(["--values", "-"]);
    }
    let out = output(&mut cmd, values);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_with_every_new_value() {
    let kek = |reference: &str| format!("{}{}", kek_values(reference), KEK_EXTRA_VOLUME);
    let (pkcs11, aws) = (kek("pkcs11:coffer"), kek("awskms:alias/coffer"));
    for (what, values) in [
        ("defaults", None),
        ("every new value", Some(EVERY_NEW_VALUE)),
        ("a PKCS#11 KEK", Some(pkcs11.as_str())),
        ("an AWS KMS KEK", Some(aws.as_str())),
    ] {
        let (ok, text) = helm_lint(values);
        assert!(ok, "{what}: helm lint --strict failed:\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{what}:\n{text}"
        );
    }
    // The lint checks the values against values.schema.json.
    let (ok, text) = helm_lint(Some("replicas: abc\n"));
    assert!(!ok, "helm lint --strict passed replicas: abc:\n{text}");
    assert!(text.contains("at '/replicas'"), "{text}");
}

#[test]
fn helm_values_schema_refuses_bad_values_and_names_them() {
    for (set, at, why) in [
        ("replicas=abc", "'/replicas'", "want integer"),
        ("replicas=0", "'/replicas'", "minimum"),
        ("logFormat=xml", "'/logFormat'", "must be one of"),
        (
            "image.digest=notadigest",
            "'/image/digest'",
            "does not match",
        ),
        ("replica=3", "''", "additional properties 'replica'"),
        ("service.port=70000", "'/service/port'", "maximum"),
        ("extraEnv=foo", "'/extraEnv'", "want array"),
        // Beyond the issue's list: a typo inside an object the chart owns,
        // a duration the controller would not parse, a name that cannot
        // name a Service, and a list whose emptiness would open egress.
        (
            "serviceAccount.nmae=x",
            "'/serviceAccount'",
            "additional properties 'nmae'",
        ),
        ("keyRenewalPeriod=soon", "'/keyRenewalPeriod'", "soon"),
        ("keyRenewalPeriod=30", "'/keyRenewalPeriod'", "must be 0"),
        ("keyKind=rsa", "'/keyKind'", "must be one of"),
        (
            "fullnameOverride=Coffer_1",
            "'/fullnameOverride'",
            "does not match",
        ),
        (
            "metrics.prometheusRule.enabled=maybe",
            "'/metrics/prometheusRule/enabled'",
            "want boolean",
        ),
        (
            "networkPolicy.apiServerPorts=null",
            "'/networkPolicy'",
            "missing property 'apiServerPorts'",
        ),
        // The KEK's values: a rule list, an address the controller would
        // refuse, a typo, a Secret name that cannot name a Secret.
        ("kek.egress=port8200", "'/kek/egress'", "want array"),
        (
            "kek.transit.address=bao.example:8200",
            "'/kek/transit/address'",
            "does not match",
        ),
        (
            "kek.transit.adress=https://bao.example",
            "'/kek/transit'",
            "additional properties 'adress'",
        ),
        (
            "kek.pkcs11.pinSecret=HSM_PIN",
            "'/kek/pkcs11/pinSecret'",
            "does not match",
        ),
        ("kek.aws.region=true", "'/kek/aws/region'", "want string"),
        ("extraVolumes=hsm", "'/extraVolumes'", "want array"),
        (
            "extraVolumeMounts=hsm",
            "'/extraVolumeMounts'",
            "want array",
        ),
    ] {
        let err = helm_template_refused(NAMESPACE, &["--set", set]);
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "--set {set}: refused, but not by the schema:\n{err}"
        );
        assert!(
            err.contains(&format!("at {at}")) && err.contains(why),
            "--set {set}: expected `at {at}` and `{why}` in:\n{err}"
        );
    }

    // What the schema must still let through: Kubernetes objects passed to
    // the pod as they are, and durations as the controller parses them.
    let renewal = "/containers/0/env/2/value";
    for (args, pointer, expected) in [
        (
            &["--set", "podSecurityContext.fsGroup=65532"][..],
            "/securityContext/fsGroup",
            json!(65532),
        ),
        (
            &["--set-json", r#"affinity={"nodeAffinity":{}}"#],
            "/affinity",
            json!({"nodeAffinity": {}}),
        ),
        (
            &["--set", "resources.limits.cpu=1"],
            "/containers/0/resources/limits/cpu",
            json!(1),
        ),
        (&["--set", "keyRenewalPeriod=0"], renewal, json!("0")),
        (
            &["--set", "keyKind=mlkem768x25519"],
            "/containers/0/env/3",
            json!({"name": "COFFER_KEY_KIND", "value": "mlkem768x25519"}),
        ),
        (&["--set", "keyRenewalPeriod=30d"], renewal, json!("30d")),
        (
            &["--set", "keyRenewalPeriod=1h30m"],
            renewal,
            json!("1h30m"),
        ),
    ] {
        let objs = objects(&helm_template(NAMESPACE, args));
        let pod = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
        assert_eq!(pod.pointer(pointer), Some(&expected), "{args:?}");
    }
}

/// `text` with the chart's default object name replaced by `to`.
fn renamed(text: &str, to: &str) -> String {
    text.replace("coffer-controller", to)
}

#[test]
fn helm_fullname_override_renames_the_controller_objects_consistently() {
    let to = "sealer";
    for mode in [
        &[][..],
        &[
            "--set",
            "namespaces={shop,web}",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let default = objects(&helm_template(NAMESPACE, mode));
        let set_name = format!("fullnameOverride={to}");
        let mut args = vec!["--set", &set_name];
        args.extend(mode);
        let objs = objects(&helm_template(NAMESPACE, &args));

        // The same objects under the new name, but for the recipients
        // reader, which the CLI and the controller know by its fixed name.
        let names = kinds_and_names(&objs);
        assert_eq!(
            names,
            kinds_and_names(&default)
                .into_iter()
                .map(|(k, n)| (k, renamed(&n, to)))
                .collect(),
            "{mode:?}"
        );
        assert!(names.contains(&("Role".into(), "coffer-recipients-reader".into())));
        assert!(!names.iter().any(|(_, n)| n.contains("coffer-controller")));

        // The same grants, to the renamed ServiceAccount, with the Lease
        // pinned by its new name (and the recipients ConfigMap by its old).
        let rules_renamed = |rules: BTreeMap<Id, Vec<String>>| -> BTreeMap<Id, Vec<String>> {
            rules
                .into_iter()
                .map(|((k, ns, n), rules)| {
                    let mut rules: Vec<String> = rules.iter().map(|r| renamed(r, to)).collect();
                    rules.sort();
                    ((k, ns, renamed(&n, to)), rules)
                })
                .collect()
        };
        assert_eq!(rbac_rules(&objs), rules_renamed(rbac_rules(&default)));
        let bindings_renamed = |b: BTreeMap<Id, (Value, Vec<String>)>| {
            b.into_iter()
                .map(|((k, ns, n), (role_ref, subjects))| {
                    let role_ref = renamed(&role_ref.to_string(), to);
                    let mut subjects: Vec<String> =
                        subjects.iter().map(|s| renamed(s, to)).collect();
                    subjects.sort();
                    (
                        (k, ns, renamed(&n, to)),
                        (serde_json::from_str::<Value>(&role_ref).unwrap(), subjects),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            rbac_bindings(&objs),
            bindings_renamed(rbac_bindings(&default))
        );
        assert_eq!(
            resource_names(find(&objs, "Role", to)),
            BTreeSet::from(["coffer-recipients".to_string(), to.to_string()])
        );
        assert_bound_to(&objs, to, to);
        find(&objs, "ServiceAccount", to);

        // The controller elects its leader through the Lease the Role pins.
        let mut expected = controller_args(&default).as_array().unwrap().clone();
        expected.push(json!(format!("--lease-name={to}")));
        let deploy = find(&objs, "Deployment", to);
        let c = &deploy["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["args"], json!(expected));

        // The Service (the CLI's --controller-name) still selects the pods.
        let svc = find(&objs, "Service", to);
        assert_eq!(
            svc["spec"]["selector"],
            deploy["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(svc["spec"]["ports"][0]["name"], "http");
    }
}

/// The pod of the Deployment `deployment` runs as the ServiceAccount `sa`
/// of NAMESPACE, and every binding grants to it.
fn assert_bound_to(objs: &[Value], deployment: &str, sa: &str) {
    let pod = &find(objs, "Deployment", deployment)["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa);
    let subjects = service_account_subjects(objs);
    assert!(!subjects.is_empty());
    for s in subjects {
        assert_eq!(
            s,
            &json!({"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE})
        );
    }
}

#[test]
fn helm_service_account_values_name_annotate_or_skip_it() {
    // Created under its own name, annotated (e.g. for workload identity).
    let objs = objects(&helm_template(
        NAMESPACE,
        &[
            "--set",
            "serviceAccount.name=coffer-identity",
            "--set",
            "serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=coffer@p.iam.gserviceaccount.com",
        ],
    ));
    let sa = find(&objs, "ServiceAccount", "coffer-identity");
    assert_eq!(
        sa["metadata"]["annotations"],
        json!({"iam.gke.io/gcp-service-account": "coffer@p.iam.gserviceaccount.com"})
    );
    assert_eq!(sa["automountServiceAccountToken"], true);
    assert_eq!(
        objs.iter().filter(|o| kind(o) == "ServiceAccount").count(),
        1
    );
    assert_bound_to(&objs, "coffer-controller", "coffer-identity");
    // The chart's own account mounts its token: nothing to force on the pod.
    let pod = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
    assert!(pod.get("automountServiceAccountToken").is_none());

    // Not created: bound to serviceAccount.name, else to the fullname; the
    // pod mounts the token whatever the foreign account says.
    for (args, sa) in [
        (
            &[
                "--set",
                "serviceAccount.create=false",
                "--set",
                "serviceAccount.name=platform-coffer",
            ][..],
            "platform-coffer",
        ),
        (
            &["--set", "serviceAccount.create=false"],
            "coffer-controller",
        ),
    ] {
        for namespaced in [false, true] {
            let mut args = args.to_vec();
            if namespaced {
                args.extend(["--set", "namespaces={shop}"]);
            }
            let objs = objects(&helm_template(NAMESPACE, &args));
            assert!(!kinds(&objs).contains("ServiceAccount"), "{args:?}");
            assert_bound_to(&objs, "coffer-controller", sa);
            let pod = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
            assert_eq!(pod["automountServiceAccountToken"], true, "{args:?}");
        }
    }
}

#[test]
fn helm_image_digest_pins_the_image_by_digest() {
    let image = |args: &[&str]| {
        let objs = objects(&helm_template(NAMESPACE, args));
        find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"]["containers"][0]
            ["image"]
            .clone()
    };
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let set_digest = format!("image.digest={digest}");
    assert_eq!(image(&[]), "ghcr.io/coffer-dev/coffer-controller:0.1.0");
    assert_eq!(
        image(&["--set", &set_digest]),
        format!("ghcr.io/coffer-dev/coffer-controller@{digest}")
    );
    // The digest alone names the image: a tag is ignored.
    assert_eq!(
        image(&[
            "--set",
            &set_digest,
            "--set",
            "image.tag=0.2.0",
            "--set",
            "image.repository=registry.example.com/coffer",
        ]),
        format!("registry.example.com/coffer@{digest}")
    );
}

#[test]
fn helm_topology_spread_constraints_and_extra_env_reach_the_pod() {
    let zone = json!({
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
    });
    let own_selector = json!({
        "maxSkew": 2,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"tier": "secrets"}},
    });
    let env = json!([
        {"name": "COFFER_HTTP_RATE", "value": "50"},
        {"name": "COFFER_CONCURRENCY", "valueFrom": {"configMapKeyRef": {"name": "coffer-tuning", "key": "concurrency"}}},
    ]);
    let default = objects(&helm_template(NAMESPACE, &[]));
    let default = &find(&default, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
    assert!(default.get("topologySpreadConstraints").is_none());

    let objs = objects(&helm_template(
        NAMESPACE,
        &[
            "--set-json",
            &format!("topologySpreadConstraints={}", json!([zone, own_selector])),
            "--set-json",
            &format!("extraEnv={env}"),
        ],
    ));
    let deploy = find(&objs, "Deployment", "coffer-controller");
    let pod = &deploy["spec"]["template"]["spec"];
    // A constraint without a labelSelector counts the controller's pods.
    let mut zone_selected = zone.clone();
    zone_selected["labelSelector"] = deploy["spec"]["selector"].clone();
    assert_eq!(
        pod["topologySpreadConstraints"],
        json!([zone_selected, own_selector])
    );
    // The chart's variables (POD_NAMESPACE, POD_NAME,
    // COFFER_KEY_RENEWAL_PERIOD, COFFER_KEY_KIND), then the extra ones.
    let mut expected = default["containers"][0]["env"].as_array().unwrap().clone();
    assert_eq!(expected.len(), 4);
    expected.extend(env.as_array().unwrap().iter().cloned());
    assert_eq!(pod["containers"][0]["env"], json!(expected));
}

#[test]
fn the_chart_and_deploy_prometheus_ship_the_alert_rules_as_they_are() {
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/rules.yaml")).unwrap(),
    )
    .unwrap();
    assert!(
        !objects(&helm_template(NAMESPACE, &[]))
            .iter()
            .any(|o| kind(o) == "PrometheusRule"),
        "no PrometheusRule unless asked for"
    );
    let chart = objects(&helm_template(
        NAMESPACE,
        &[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.prometheusRule.labels.release=prom",
        ],
    ));
    let rule = find(&chart, "PrometheusRule", "coffer-controller");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    // The alerts' own {{ $labels }} templates reach Prometheus untouched.
    assert_eq!(rule["spec"]["groups"], rules["groups"]);
    let kustomized = objects(&kustomize_dir(&root().join("deploy/prometheus")));
    let rule = find(&kustomized, "PrometheusRule", "coffer-controller");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rule["spec"]["groups"], rules["groups"]);
}

#[test]
fn the_chart_packages_with_its_schema_crd_and_rules_and_the_package_renders_the_same() {
    let scratch = coffer_test_support::tools::Scratch::new("helm-package");
    run(
        helm()
            .arg("package")
            .arg(chart_dir())
            .arg("--destination")
            .arg(&scratch.0),
        None,
    );
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let package = scratch.0.join(format!(
        "coffer-{}.tgz",
        chart["version"].as_str().expect("Chart.yaml has a version")
    ));
    assert!(package.is_file(), "no {}", package.display());
    let listing = run(Command::new("tar").arg("tzf").arg(&package), None);
    for file in [
        "coffer/Chart.yaml",
        "coffer/values.yaml",
        "coffer/values.schema.json",
        "coffer/crds/sealedsecret.yaml",
        "coffer/files/rules.yaml",
        "coffer/templates/deployment.yaml",
        "coffer/templates/prometheusrule.yaml",
    ] {
        assert!(
            listing.lines().any(|l| l == file),
            "{file} is not in the package:\n{listing}"
        );
    }
    // The package lints and renders exactly as the directory does,
    // schema included.
    run(helm().args(["lint", "--strict"]).arg(&package), None);
    let args = [
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--include-crds",
    ];
    let from_package = run(
        helm()
            .args(["template", "coffer"])
            .arg(&package)
            .args(["--namespace", NAMESPACE])
            .args(args),
        None,
    );
    assert_eq!(from_package, helm_template(NAMESPACE, &args));
    let refused = output(
        helm()
            .args(["template", "coffer"])
            .arg(&package)
            .args(["--set", "replicas=abc"]),
        None,
    );
    assert!(
        !refused.status.success(),
        "the packaged schema refuses bad values"
    );
}

/// A values file that sets every KEK setting of every provider, with
/// `reference` as kek.reference: only the settings of its provider may
/// reach the pod.
fn kek_values(reference: &str) -> String {
    format!(
        r#"
kek:
  reference: "{reference}"
  transit:
    address: https://openbao.openbao.svc:8200
    mount: transit-coffer
    kubernetesRole: coffer
    kubernetesMount: kubernetes-prod
    caSecret: openbao-ca
  pkcs11:
    module: /hsm/lib/libvendorpkcs11.so
    token: coffer
    pinSecret: coffer-hsm-pin
  aws:
    region: eu-west-1
    endpoint: https://vpce-0123.kms.eu-west-1.vpce.amazonaws.com
  egress:
    - to: [{{ipBlock: {{cidr: 10.0.0.5/32}}}}]
      ports: [{{protocol: TCP, port: 8200}}]
"#
    )
}

/// An HSM's module, mounted from the node (values to append).
const KEK_EXTRA_VOLUME: &str = "
extraVolumes:
  - name: hsm
    hostPath: {path: /opt/hsm, type: Directory}
extraVolumeMounts:
  - name: hsm
    mountPath: /hsm
    readOnly: true
";

/// The controller's `--kek…` arguments.
fn kek_args(objects: &[Value]) -> Vec<Value> {
    controller_args(objects)
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.as_str().unwrap().starts_with("--kek"))
        .cloned()
        .collect()
}

/// The Secret volume the chart mounts for a KEK setting, and its mount.
fn kek_secret_volume(volume: &str, secret: &str, key: &str, dir: &str) -> (Value, Value) {
    (
        json!({"name": volume, "secret": {"secretName": secret, "items": [{"key": key, "path": key}]}}),
        json!({"name": volume, "mountPath": dir, "readOnly": true}),
    )
}

#[test]
fn helm_kek_passes_only_its_providers_flags_and_mounts_its_secrets() {
    let default = objects(&helm_template(NAMESPACE, &[]));
    let default_args = controller_args(&default).as_array().unwrap().clone();
    let default_policy = find(&default, "NetworkPolicy", "coffer-controller")["spec"].clone();
    let kek_rule = json!({"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 8200}]});
    let hsm = (
        json!({"name": "hsm", "hostPath": {"path": "/opt/hsm", "type": "Directory"}}),
        json!({"name": "hsm", "mountPath": "/hsm", "readOnly": true}),
    );

    // Without a reference, every other KEK setting changes nothing at all.
    assert_eq!(
        helm_template_values(NAMESPACE, &kek_values(""), &["--include-crds"]),
        helm_template(NAMESPACE, &["--include-crds"]),
    );

    let ca = kek_secret_volume(
        "kek-ca",
        "openbao-ca",
        "ca.crt",
        "/run/secrets/coffer-kek-ca",
    );
    let pin = kek_secret_volume(
        "kek-pin",
        "coffer-hsm-pin",
        "pin",
        "/run/secrets/coffer-kek-pin",
    );
    for (reference, expected_args, secrets) in [
        (
            "transit:coffer",
            json!([
                "--kek=transit:coffer",
                "--kek-address=https://openbao.openbao.svc:8200",
                "--kek-transit-mount=transit-coffer",
                "--kek-kubernetes-role=coffer",
                "--kek-kubernetes-mount=kubernetes-prod",
                "--kek-ca-file=/run/secrets/coffer-kek-ca/ca.crt",
            ]),
            vec![ca.clone()],
        ),
        (
            "pkcs11:coffer",
            json!([
                "--kek=pkcs11:coffer",
                "--kek-pkcs11-module=/hsm/lib/libvendorpkcs11.so",
                "--kek-pkcs11-token=coffer",
                "--kek-pkcs11-pin-file=/run/secrets/coffer-kek-pin/pin",
            ]),
            vec![pin.clone()],
        ),
        (
            "awskms:alias/coffer",
            json!([
                "--kek=awskms:alias/coffer",
                "--kek-aws-region=eu-west-1",
                "--kek-aws-endpoint=https://vpce-0123.kms.eu-west-1.vpce.amazonaws.com",
            ]),
            vec![],
        ),
    ] {
        let values = format!("{}{KEK_EXTRA_VOLUME}", kek_values(reference));
        let objs = objects(&helm_template_values(NAMESPACE, &values, &[]));
        let args = controller_args(&objs).as_array().unwrap().clone();
        // The chart's own flags, then the provider's, nothing else.
        let mut expected = default_args.clone();
        expected.extend(expected_args.as_array().unwrap().iter().cloned());
        assert_eq!(json!(args), json!(expected), "{reference}");

        // Its Secrets, read-only, one key each; then the extra volume.
        let pod = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
        let (mut volumes, mut mounts): (Vec<Value>, Vec<Value>) = secrets.into_iter().unzip();
        volumes.push(hsm.0.clone());
        mounts.push(hsm.1.clone());
        assert_eq!(pod["volumes"], json!(volumes), "{reference}");
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!(mounts),
            "{reference}"
        );
        // Transit's Kubernetes login presents the projected token: the
        // pod keeps it mounted (the chart's ServiceAccount automounts).
        assert!(
            pod.get("automountServiceAccountToken").is_none(),
            "{reference}"
        );
        assert_eq!(
            find(&objs, "ServiceAccount", "coffer-controller")["automountServiceAccountToken"],
            true
        );

        // kek.egress comes after the chart's own rules.
        let policy = &find(&objs, "NetworkPolicy", "coffer-controller")["spec"];
        let mut egress = default_policy["egress"].as_array().unwrap().clone();
        egress.push(kek_rule.clone());
        assert_eq!(policy["egress"], json!(egress), "{reference}");
        assert_eq!(policy["ingress"], default_policy["ingress"], "{reference}");
    }

    // Transit with a token Secret instead of the Kubernetes login; the
    // controller's defaults (mounts) are left to it when empty; without
    // the NetworkPolicy, no egress rule goes anywhere.
    let objs = objects(&helm_template_values(
        NAMESPACE,
        &kek_values("transit:coffer"),
        &[
            "--set",
            "kek.transit.kubernetesRole=",
            "--set",
            "kek.transit.tokenSecret=openbao-token",
            "--set",
            "kek.transit.mount=",
            "--set",
            "kek.transit.kubernetesMount=",
            "--set",
            "kek.transit.caSecret=",
            "--set",
            "networkPolicy.enabled=false",
        ],
    ));
    assert_eq!(
        json!(kek_args(&objs)),
        json!([
            "--kek=transit:coffer",
            "--kek-address=https://openbao.openbao.svc:8200",
            "--kek-token-file=/run/secrets/coffer-kek-token/token",
        ])
    );
    let token = kek_secret_volume(
        "kek-token",
        "openbao-token",
        "token",
        "/run/secrets/coffer-kek-token",
    );
    let pod = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"], json!([token.0]));
    assert_eq!(pod["containers"][0]["volumeMounts"], json!([token.1]));
    assert!(!kinds(&objs).contains("NetworkPolicy"));

    // AWS KMS with nothing but the key: the SDK's chain finds the region
    // and the credentials (IRSA: serviceAccount.annotations).
    let objs = objects(&helm_template(
        NAMESPACE,
        &["--set", "kek.reference=awskms:alias/coffer"],
    ));
    assert_eq!(json!(kek_args(&objs)), json!(["--kek=awskms:alias/coffer"]));
    let pod = &find(&objs, "Deployment", "coffer-controller")["spec"]["template"]["spec"];
    assert!(pod.get("volumes").is_none());
    assert!(pod["containers"][0].get("volumeMounts").is_none());
}

#[test]
fn helm_kek_refuses_a_reference_it_cannot_pass_and_names_the_value() {
    let transit = ["--set", "kek.transit.address=https://bao.example:8200"];
    for (args, expected) in [
        (
            vec!["--set", "kek.reference=vault:coffer"],
            &[
                r#"kek.reference "vault:coffer""#,
                r#"unknown provider "vault""#,
            ][..],
        ),
        (
            vec!["--set", "kek.reference=coffer"],
            &[r#"kek.reference "coffer""#, "expected PROVIDER:KEY"],
        ),
        (
            vec!["--set", "kek.reference=transit:"],
            &["expected PROVIDER:KEY"],
        ),
        (
            vec![
                "--set",
                "kek.reference=transit:coffer",
                "--set",
                "kek.transit.kubernetesRole=coffer",
            ],
            &["needs kek.transit.address"],
        ),
        (
            [&["--set", "kek.reference=transit:coffer"][..], &transit[..]].concat(),
            &["kek.transit.kubernetesRole", "kek.transit.tokenSecret"],
        ),
        (
            [
                &["--set", "kek.reference=transit:coffer"][..],
                &transit[..],
                &[
                    "--set",
                    "kek.transit.kubernetesRole=coffer",
                    "--set",
                    "kek.transit.tokenSecret=t",
                ],
            ]
            .concat(),
            &[
                "kek.transit.kubernetesRole and kek.transit.tokenSecret",
                "set one",
            ],
        ),
        (
            vec![
                "--set",
                "kek.reference=pkcs11:coffer",
                "--set",
                "kek.pkcs11.token=coffer",
                "--set",
                "kek.pkcs11.pinSecret=pin",
            ],
            &["needs kek.pkcs11.module"],
        ),
        (
            vec![
                "--set",
                "kek.reference=pkcs11:coffer",
                "--set",
                "kek.pkcs11.module=/hsm/m.so",
                "--set",
                "kek.pkcs11.pinSecret=pin",
            ],
            &["needs kek.pkcs11.token"],
        ),
        (
            vec![
                "--set",
                "kek.reference=pkcs11:coffer",
                "--set",
                "kek.pkcs11.module=/hsm/m.so",
                "--set",
                "kek.pkcs11.token=coffer",
            ],
            &["needs kek.pkcs11.pinSecret", "`pin`"],
        ),
    ] {
        let err = helm_template_refused(NAMESPACE, &args);
        assert!(
            !err.contains("values don't meet the specifications of the schema"),
            "{args:?}: refused by the schema, not by the chart:\n{err}"
        );
        for e in expected {
            assert!(err.contains(e), "{args:?}: expected `{e}` in:\n{err}");
        }
    }
}

/// The kustomize component deploy/kms/transit passes the flags the chart
/// passes for the same Transit settings, and opens TCP 8200 with a
/// NetworkPolicy of its own, in the base's namespace, which the API server
/// accepts.
#[test]
fn helm_kek_transit_and_the_kustomize_component_agree() {
    let kustomized = objects(&kustomize_with_component("deploy/kms/transit"));
    let chart = objects(&helm_template(
        NAMESPACE,
        &[
            "--set",
            "kek.reference=transit:coffer",
            "--set",
            "kek.transit.address=https://openbao.openbao.svc:8200",
            "--set",
            "kek.transit.kubernetesRole=coffer",
        ],
    ));
    assert_eq!(
        json!(kek_args(&kustomized)),
        json!([
            "--kek=transit:coffer",
            "--kek-address=https://openbao.openbao.svc:8200",
            "--kek-kubernetes-role=coffer",
        ])
    );
    assert_eq!(kek_args(&kustomized), kek_args(&chart));
    // The base's own arguments stay, before the component's.
    let base = objects(&kustomize());
    let base_args = controller_args(&base).as_array().unwrap();
    assert_eq!(
        &controller_args(&kustomized).as_array().unwrap()[..base_args.len()],
        &base_args[..]
    );

    let policy = find(&kustomized, "NetworkPolicy", "coffer-controller-kek");
    assert_eq!(policy["metadata"]["namespace"], NAMESPACE);
    let base_policy = find(&base, "NetworkPolicy", "coffer-controller");
    assert_eq!(
        policy["spec"]["podSelector"],
        base_policy["spec"]["podSelector"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(
        policy["spec"]["egress"],
        json!([{"ports": [{"protocol": "TCP", "port": 8200}]}])
    );
    // The base's policy is left as it was: NetworkPolicies add up.
    assert_eq!(
        find(&kustomized, "NetworkPolicy", "coffer-controller"),
        base_policy
    );

    let server = Server::shared();
    server.install_deploy();
    let mut cmd = server.kubectl();
    cmd.args(["apply", "--dry-run=server", "-f", "-"]);
    let out = run(&mut cmd, Some(&serde_json::to_string(policy).unwrap()));
    assert!(
        out.contains("networkpolicy.networking.k8s.io/coffer-controller-kek"),
        "unexpected kubectl output:\n{out}"
    );
}

/// The kustomize component deploy/kms/aws passes the flags the chart passes
/// for the same AWS settings, annotates the ServiceAccount for IRSA as the
/// chart's `serviceAccount.annotations` does, and opens TCP 443 with a
/// NetworkPolicy of its own that the API server accepts.
#[test]
fn helm_kek_aws_and_the_kustomize_component_agree() {
    let kustomized = objects(&kustomize_with_component("deploy/kms/aws"));
    let role = "arn:aws:iam::111122223333:role/coffer-kek";
    let chart = objects(&helm_template(
        NAMESPACE,
        &[
            "--set",
            "kek.reference=awskms:alias/coffer",
            "--set",
            "kek.aws.region=eu-west-1",
            "--set-string",
            &format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role}"),
        ],
    ));
    assert_eq!(
        json!(kek_args(&kustomized)),
        json!(["--kek=awskms:alias/coffer", "--kek-aws-region=eu-west-1"])
    );
    assert_eq!(kek_args(&kustomized), kek_args(&chart));
    let annotation = |objects: &[Value]| {
        find(objects, "ServiceAccount", "coffer-controller")["metadata"]["annotations"]
            ["eks.amazonaws.com/role-arn"]
            .clone()
    };
    assert_eq!(annotation(&kustomized), json!(role));
    assert_eq!(annotation(&kustomized), annotation(&chart));
    let base = objects(&kustomize());
    let policy = find(&kustomized, "NetworkPolicy", "coffer-controller-kek");
    assert_eq!(policy["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        policy["spec"]["egress"],
        json!([{"ports": [{"protocol": "TCP", "port": 443}]}])
    );
    assert_eq!(
        find(&kustomized, "NetworkPolicy", "coffer-controller"),
        find(&base, "NetworkPolicy", "coffer-controller")
    );
    let server = Server::shared();
    server.install_deploy();
    let mut cmd = server.kubectl();
    cmd.args(["apply", "--dry-run=server", "-f", "-"]);
    let out = run(&mut cmd, Some(&serde_json::to_string(policy).unwrap()));
    assert!(
        out.contains("networkpolicy.networking.k8s.io/coffer-controller-kek"),
        "unexpected kubectl output:\n{out}"
    );
}

/// `helm install --dry-run=server` against the test API server: the
/// release's NOTES, or helm's error.
fn helm_install_notes(server: &Server, args: &[&str]) -> String {
    let name = format!("coffer-{}", suffix());
    let mut cmd = helm();
    cmd.args(["install", &name])
        .arg(chart_dir())
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args([
            "--namespace",
            &name,
            "--create-namespace",
            "--dry-run=server",
        ])
        .args(["--set", &format!("fullnameOverride={name}")])
        .args(args);
    let out = run(&mut cmd, None);
    out.split_once("\nNOTES:\n")
        .unwrap_or_else(|| panic!("no NOTES in:\n{out}"))
        .1
        .to_string()
}

/// With a KEK and the NetworkPolicy on, the NOTES warn when kek.egress
/// opens nothing to the KMS, and only then.
#[test]
fn helm_kek_notes_warn_when_the_network_policy_shuts_the_kms_out() {
    let server = Server::shared();
    server.install_deploy();
    let transit = [
        "--set",
        "kek.reference=transit:coffer",
        "--set",
        "kek.transit.address=https://bao.example:8200",
        "--set",
        "kek.transit.kubernetesRole=coffer",
    ];
    let warning = "allow it with kek.egress";
    let notes = helm_install_notes(server, &transit);
    assert!(notes.contains(warning), "{notes}");
    assert!(notes.contains("transit:coffer"), "{notes}");
    assert!(notes.contains("(TCP 443, 6443)"), "{notes}");
    for more in [
        &[
            "--set-json",
            r#"kek.egress=[{"ports":[{"protocol":"TCP","port":8200}]}]"#,
        ][..],
        &["--set", "networkPolicy.enabled=false"],
    ] {
        let notes = helm_install_notes(server, &[&transit[..], more].concat());
        assert!(!notes.contains(warning), "{more:?}: {notes}");
    }
    assert!(!helm_install_notes(server, &[]).contains(warning));
}
