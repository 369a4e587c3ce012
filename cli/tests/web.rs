//! The web page (docs/web.md) in a real browser: Debian's Chromium driven by
//! Playwright (`web/tests/browser.py`), against the page a controller
//! started with `--web` serves on the test API server. The browser seals a
//! Secret from the form, adds an item to a SealedSecret the CLI made, and
//! seals for three clusters at once; this test applies what it gave with
//! kubectl and reads the Secrets the controller writes, asks a second
//! controller whether the values open there, opens them offline with
//! `coffer recover`, compares every field with `coffer seal`'s output, and
//! audits every request the page made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coffer_core::SealedSecret;
use coffer_format::envelope;
use coffer_test_support::{Cluster, controller_bin, suffix, target_dir};

fn coffer(cluster: &Cluster, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .current_dir(dir)
        .arg("--kubeconfig")
        .arg(cluster.server.kubeconfig())
        .args(["--controller-namespace", &cluster.key_ns])
        .args(["--controller-url", &format!("http://{}", cluster.ctrl.http)])
        .args(args)
        .output()
        .unwrap()
}

fn coffer_ok(cluster: &Cluster, dir: &Path, args: &[&str]) -> String {
    let out = coffer(cluster, dir, args);
    assert!(
        out.status.success(),
        "coffer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sealed(text: &str) -> SealedSecret {
    serde_saphyr::from_str(text).expect("a SealedSecret")
}

fn manifest(ns: &str, name: &str, items: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: Opaque\nstringData:\n"
    );
    for (k, v) in items {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    s
}

/// Everything of a SealedSecret but its ciphertexts: metadata, template,
/// and for each item what `inspect` reads without a key (scope, key ids,
/// recipients, size bucket).
fn structure(s: &SealedSecret) -> serde_json::Value {
    let items: BTreeMap<&String, String> = s
        .spec
        .encrypted_data
        .iter()
        .map(|(k, v)| {
            let (e, _) = envelope::inspect(v).expect("a sealed value");
            (
                k,
                format!(
                    "{} {:?} {} {}",
                    e.scope,
                    e.key_ids,
                    e.recipient_stanzas,
                    e.size_bucket()
                ),
            )
        })
        .collect();
    serde_json::json!({
        "metadata": s.metadata,
        "template": s.spec.template,
        "items": items,
    })
}

fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("chromium"))
                .find(|c| c.exists())
        })
        .expect("Debian's chromium is not installed: run tests/setup")
}

async fn wait_secret(c: &Cluster, name: &str) -> BTreeMap<String, Vec<u8>> {
    c.wait_reason(&c.ns, name, "Unsealed").await;
    c.secret_data(&c.ns, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_seals_in_a_real_browser_and_sends_nothing() {
    let bin = controller_bin();
    let a = Cluster::start(&bin, "web-a", &["--web"]).await;
    let b = Cluster::start(&bin, "web-b", &[]).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let shots = target_dir().join("web-shots");
    std::fs::create_dir_all(&shots).unwrap();

    // Values no request may carry: unique to this run.
    let run = suffix();
    let v = |n: &str| format!("v4lue-{n}-{run}");
    let (password, user, token, api, bad) = (v("pw"), v("user"), v("token"), v("api"), v("bad"));

    let existing = prepare(&a, &b, dir, &user, &password);

    let timing_items: Vec<(String, String)> = (0..10)
        .map(|i| (format!("item{i}"), format!("t-{i}")))
        .collect();
    let timing_refs: Vec<(&str, &str)> = timing_items
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let config = serde_json::json!({
        "chromium": chromium(),
        "url": format!("http://{}", a.ctrl.http),
        "shots": shots,
        "results": dir.join("results.json"),
        "form": {"name": "form-db", "namespace": a.ns, "items": {"password": password, "user": user}},
        "merge": {
            "secret": manifest(&a.ns, "merged", &[("token", &token)]),
            "existing": dir.join("existing.yaml"),
        },
        "two": {
            "secret": manifest(&a.ns, "two", &[("api", &api)]),
            "recipients": [dir.join("b.txt"), dir.join("c.txt")],
        },
        "bad": {"secret": format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\nstringData:\n  {bad}: 1\n  {bad}: 2\n")},
        "timing": {
            "secret": manifest("timing", "ten", &timing_refs),
            "recipients": [{"name": "a", "text": std::fs::read_to_string(dir.join("c.txt")).unwrap()}],
        },
    });
    let results = run_browser(dir, &config);
    let output = |k: &str| results["outputs"][k].as_str().unwrap().to_string();

    // 1. The form: applied with kubectl, unsealed by the controller.
    let form = output("form");
    std::fs::write(dir.join("form.yaml"), &form).unwrap();
    a.server
        .kubectl_ok(&["apply", "-f", dir.join("form.yaml").to_str().unwrap()]);
    let data = wait_secret(&a, "form-db").await;
    assert_eq!(data["password"], password.as_bytes());
    assert_eq!(data["user"], user.as_bytes());
    // Every field as `coffer seal` writes it for the same Secret.
    std::fs::write(
        dir.join("form.secret.yaml"),
        manifest(
            &a.ns,
            "form-db",
            &[("password", &password), ("user", &user)],
        ),
    )
    .unwrap();
    let cli = sealed(&coffer_ok(&a, dir, &["seal", "form.secret.yaml"]));
    let page = sealed(&form);
    assert_eq!(structure(&page), structure(&cli));
    assert_ne!(
        page.spec.encrypted_data["password"], cli.spec.encrypted_data["password"],
        "age encryption is randomised"
    );

    // 2. The item added: the CLI's ciphertexts kept byte for byte.
    let merged = sealed(&output("merge"));
    assert_eq!(results["merge_error"], "");
    for item in ["user", "password"] {
        assert_eq!(
            merged.spec.encrypted_data[item], existing.spec.encrypted_data[item],
            "{item} kept"
        );
    }
    std::fs::write(dir.join("merged.yaml"), output("merge")).unwrap();
    a.server
        .kubectl_ok(&["apply", "-f", dir.join("merged.yaml").to_str().unwrap()]);
    let data = wait_secret(&a, "merged").await;
    assert_eq!(data["token"], token.as_bytes());
    assert_eq!(data["password"], password.as_bytes());

    // 3. Three clusters: this one unseals it, B says it opens there, and
    // the offline key opens it with `coffer recover`.
    check_three_clusters(&a, &b, dir, &output("two"), &api, &results).await;

    // 4. A refused input says why, without the value.
    let bad_error = results["bad_error"].as_str().unwrap();
    assert!(bad_error.contains("duplicate mapping key"), "{bad_error}");

    // 5. Every request: this origin, GET, no body, no value anywhere;
    // 6. the policy, and an injected inline script blocked by it.
    let values = [&password, &user, &token, &api, &bad].map(String::as_str);
    audit(&results, &format!("http://{}/", a.ctrl.http), &values);

    // 7. No value in the controller's log either.
    a.ctrl.assert_log_free_of(&values);

    print_figures(&results, &shots);
}

#[test]
fn web_export_writes_the_page_for_a_static_host() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["web", "export"])
        .arg(&site)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for a in coffer_web::assets::ASSETS {
        assert_eq!(
            std::fs::read(site.join(a.name)).unwrap(),
            a.bytes,
            "{}",
            a.name
        );
    }
    let page = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(page.contains("http-equiv=\"Content-Security-Policy\""));
    assert!(!page.contains("<script>"), "no inline script");
    // A file in the way is refused, not replaced by a directory.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["web", "export"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// Runs web/tests/browser.py with `config`; what it recorded.
fn run_browser(dir: &Path, config: &serde_json::Value) -> serde_json::Value {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let driver = coffer_test_support::root().join("web/tests/browser.py");
    let out = Command::new("python3")
        .arg(&driver)
        .arg(dir.join("config.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "web/tests/browser.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

/// The SealedSecret sealed for this cluster, B's recipients file and an
/// offline key: this cluster unseals it, B says it opens there, and
/// `coffer recover` opens it with the offline key; inspect names all three.
async fn check_three_clusters(
    a: &Cluster,
    b: &Cluster,
    dir: &Path,
    two: &str,
    api: &str,
    results: &serde_json::Value,
) {
    std::fs::write(dir.join("two.yaml"), two).unwrap();
    a.server
        .kubectl_ok(&["apply", "-f", dir.join("two.yaml").to_str().unwrap()]);
    assert_eq!(wait_secret(a, "two").await["api"], api.as_bytes());
    let verified = coffer(b, dir, &["verify", "two.yaml"]);
    assert!(
        verified.status.success(),
        "B: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let recovered = coffer_ok(a, dir, &["recover", "-i", "c-identity.txt", "two.yaml"]);
    let secret: k8s_openapi::api::core::v1::Secret = serde_saphyr::from_str(&recovered).unwrap();
    assert_eq!(secret.data.unwrap()["api"].0, api.as_bytes());
    stock_age_opens(dir, &sealed(two).spec.encrypted_data["api"], api);
    let inspected = results["inspect"].as_str().unwrap();
    for source in ["this cluster's controller", "b.txt", "c.txt"] {
        assert!(
            inspected.contains(source),
            "inspect names {source}: {inspected}"
        );
    }
    assert!(inspected.contains("No problem found"), "{inspected}");
}

/// Stock `age` (Debian's, installed by tests/setup) opens a value the page
/// sealed, with the offline key `coffer keygen` wrote: the page's output is
/// an age file like the CLI's, the binding header first, then the value.
fn stock_age_opens(dir: &Path, value: &str, plain: &str) {
    use base64::Engine;
    let file = dir.join("api.age");
    std::fs::write(
        &file,
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap(),
    )
    .unwrap();
    // Stock `age` from Debian (tests/setup installs it).
    let text = coffer_test_support::tools::run(
        Command::new("age")
            .args(["-d", "-i", "c-identity.txt", "api.age"])
            .current_dir(dir),
        None,
    );
    assert!(
        text.starts_with("coffer.dev/v1\nscope: "),
        "age's output starts with the binding header"
    );
    assert!(
        text.ends_with(&format!("\n\n{plain}")),
        "age's output holds the value"
    );
}

/// Every request the page made: to `origin`, a GET without a body, no value
/// in its URL, headers or body; nothing else fetched; no value in the
/// console; the policy header sent, and an injected inline script blocked.
fn audit(results: &serde_json::Value, origin: &str, values: &[&str]) {
    // 5. Every request: this origin, GET, no body, no value anywhere.
    let requests = results["requests"].as_array().unwrap();
    let mut paths = std::collections::BTreeSet::new();
    for r in requests {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(origin),
            "a request to another origin: {url}"
        );
        assert_eq!(r["method"], "GET", "{url}");
        assert!(r["body"].is_null(), "a request with a body: {url}");
        let whole = r.to_string();
        for value in values {
            assert!(!whole.contains(value), "a request carries a value: {url}");
        }
        paths.insert(url[origin.len() - 1..].to_string());
    }
    let expected: std::collections::BTreeSet<String> = [
        "/ui/",
        "/ui/app.js",
        "/ui/style.css",
        "/ui/coffer_web.js",
        "/ui/coffer_web_bg.wasm",
        "/v1/recipients",
    ]
    .map(String::from)
    .into();
    assert_eq!(paths, expected);
    // Nor does anything the page logged.
    let console = results["console"].to_string();
    for value in values {
        assert!(!console.contains(value), "the console shows a value");
    }

    // 6. The policy, and an injected inline script blocked by it.
    let csp = results["page_headers"]["content-security-policy"]
        .as_str()
        .unwrap();
    assert_eq!(csp, coffer_web::assets::CSP);
    assert_eq!(results["page_headers"]["x-content-type-options"], "nosniff");
    assert_eq!(results["inline_script"]["ran"], false);
    let violations = results["inline_script"]["violations"].to_string();
    assert!(violations.contains("script-src"), "{violations}");
}

/// The figures docs/web.md quotes.
fn print_figures(results: &serde_json::Value, shots: &Path) {
    let seal_ms: Vec<f64> = results["timings"]["seal_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    println!(
        "web page: loaded and keys fetched in {:.0} ms; sealing a 10-item Secret: median {:.1} ms, max {:.1} ms ({} runs); screenshots in {}",
        results["timings"]["load_ms"].as_f64().unwrap(),
        seal_ms[seal_ms.len() / 2],
        seal_ms[seal_ms.len() - 1],
        seal_ms.len(),
        shots.display()
    );
}

/// B's recipients file, an offline key (a third cluster) to open values
/// with `coffer recover`, and the SealedSecret the browser adds to, made
/// by the CLI (existing.yaml, returned).
fn prepare(a: &Cluster, b: &Cluster, dir: &Path, user: &str, password: &str) -> SealedSecret {
    coffer_ok(b, dir, &["recipients", "-w", "b.txt"]);
    coffer_ok(
        a,
        dir,
        &[
            "keygen",
            "-w",
            "c-identity.txt",
            "--recipients-out",
            "c.txt",
        ],
    );
    // The SealedSecret the browser adds to, made by the CLI.
    std::fs::write(
        dir.join("merged.secret.yaml"),
        manifest(&a.ns, "merged", &[("user", user), ("password", password)]),
    )
    .unwrap();
    coffer_ok(
        a,
        dir,
        &["seal", "merged.secret.yaml", "-w", "existing.yaml"],
    );
    sealed(&std::fs::read_to_string(dir.join("existing.yaml")).unwrap())
}
