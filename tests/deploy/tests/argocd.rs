//! Coffer's Argo CD health check, `deploy/argocd/health.lua`, run by Argo
//! CD itself: every case of `deploy/argocd/health_test.yaml` (Argo CD's own
//! layout for `resource_customizations`) goes through
//! `argocd admin settings resource-overrides health OBJECT
//! --argocd-cm-path deploy/argocd/argocd-cm.yaml`, which loads the script
//! from the ConfigMap and runs it as the application controller does (same
//! Lua VM, same libraries, same `obj` and return conventions). The
//! ConfigMap patch must hold the script verbatim.
//!
//! The argocd CLI is built from the `github.com/argoproj/argo-cd/v3` Go
//! module by `tests/argocd/build` (once, then cached like helm and
//! promtool).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use coffer_test_support::tools::{Scratch, argocd_health_of, argocd_health_run, output_text};
use coffer_test_support::{kubectl_bin, root};
use serde_json::Value;

const CM: &str = "deploy/argocd/argocd-cm.yaml";
const CM_KEY: &str = "resource.customizations.health.coffer.dev_SealedSecret";
const SCRIPT: &str = "deploy/argocd/health.lua";
const TESTS: &str = "deploy/argocd/health_test.yaml";

fn text(out: &Output) -> String {
    output_text(out)
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One case of `health_test.yaml`.
struct Case {
    input_path: String,
    status: String,
    message: String,
}

fn cases() -> Vec<Case> {
    let tests = yaml_file(&root().join(TESTS));
    tests["tests"]
        .as_array()
        .unwrap_or_else(|| panic!("{TESTS}: no `tests` list"))
        .iter()
        .map(|t| {
            let field = |v: &Value, what: &str| {
                v.as_str()
                    .unwrap_or_else(|| panic!("{TESTS}: a case without {what}: {t}"))
                    .to_string()
            };
            Case {
                input_path: field(&t["inputPath"], "inputPath"),
                status: field(&t["healthStatus"]["status"], "healthStatus.status"),
                message: field(&t["healthStatus"]["message"], "healthStatus.message"),
            }
        })
        .collect()
}

/// The argocd-cm patch with its health script replaced by `script`.
fn cm_with_script(script: &str) -> String {
    let mut cm = yaml_file(&root().join(CM));
    cm["data"][CM_KEY] = Value::String(script.to_string());
    serde_json::to_string_pretty(&cm).expect("JSON is YAML")
}

#[test]
fn every_case_of_health_test_yaml_passes_in_argo_cd() {
    let cases = cases();
    assert!(!cases.is_empty(), "{TESTS} has no cases");
    let dir = root().join("deploy/argocd");
    let cm = root().join(CM);
    let mut failures = Vec::new();
    for case in &cases {
        let out = argocd_health_run(&dir.join(&case.input_path), &cm);
        let want = (case.status.clone(), case.message.clone());
        match argocd_health_of(&out) {
            Some(got) if got == want => {}
            Some(got) => failures.push(format!(
                "{}: want {want:?}, Argo CD says {got:?}",
                case.input_path
            )),
            None => failures.push(format!(
                "{}: want {want:?}, argocd printed:\n{}",
                case.input_path,
                text(&out)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases of {TESTS} fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_cases_cover_each_health_and_every_testdata_file() {
    let cases = cases();
    let statuses: BTreeSet<&str> = cases.iter().map(|c| c.status.as_str()).collect();
    for status in ["Healthy", "Progressing", "Degraded"] {
        assert!(statuses.contains(status), "{TESTS} has no {status} case");
    }
    let referenced: Vec<&str> = cases.iter().map(|c| c.input_path.as_str()).collect();
    let unique: BTreeSet<&str> = referenced.iter().copied().collect();
    assert_eq!(unique.len(), referenced.len(), "{TESTS} repeats a case");
    let files: BTreeSet<String> = std::fs::read_dir(root().join("deploy/argocd/testdata"))
        .expect("deploy/argocd/testdata")
        .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let unique: BTreeSet<String> = unique.into_iter().map(String::from).collect();
    assert_eq!(
        unique, files,
        "{TESTS} and deploy/argocd/testdata/ must name the same files"
    );
    // Every input is a coffer.dev SealedSecret, so the script is what runs.
    for file in &files {
        let obj = yaml_file(&root().join("deploy/argocd").join(file));
        assert_eq!(obj["apiVersion"], "coffer.dev/v1alpha1", "{file}");
        assert_eq!(obj["kind"], "SealedSecret", "{file}");
    }
}

#[test]
fn the_argocd_cm_patch_holds_health_lua_verbatim() {
    let cm = yaml_file(&root().join(CM));
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let script = std::fs::read_to_string(root().join(SCRIPT)).expect(SCRIPT);
    assert!(
        cm["data"][CM_KEY].as_str() == Some(script.as_str()),
        "{CM} is stale: its data.{CM_KEY} must be {SCRIPT}, verbatim"
    );
}

/// The harness is honest: Argo CD runs the script of the ConfigMap it is
/// given, so a changed script changes the verdict, and a broken one fails.
#[test]
fn argo_cd_runs_the_script_of_the_given_configmap() {
    let script = std::fs::read_to_string(root().join(SCRIPT)).expect(SCRIPT);
    let object = root().join("deploy/argocd/testdata/degraded-stalled-scope-mismatch.yaml");
    let scratch = Scratch::new("altered");

    // A refusal reported as healthy.
    let lenient = script.replacen("hs.status = \"Degraded\"", "hs.status = \"Healthy\"", 1);
    assert_ne!(lenient, script);
    let cm = scratch.write("lenient.yaml", cm_with_script(&lenient));
    let out = argocd_health_run(&object, &cm);
    let (status, _) = argocd_health_of(&out).unwrap_or_else(|| panic!("{}", text(&out)));
    assert_eq!(status, "Healthy", "{}", text(&out));

    // A Lua error: argocd fails, naming it.
    let broken = format!("{script}\nlocal x = (\n");
    let cm = scratch.write("broken.yaml", cm_with_script(&broken));
    let out = argocd_health_run(&object, &cm);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("failed to get resource health for dev/db"),
        "{}",
        text(&out)
    );

    // The string library is not there at run time (only in Argo CD's own
    // unit tests): a script that used it would fail in the controller.
    let with_string_lib = script.replacen(
        "return reason .. \": \" .. message",
        "return string.format(\"%s: %s\", reason, message)",
        1,
    );
    assert_ne!(with_string_lib, script);
    let cm = scratch.write("string-lib.yaml", cm_with_script(&with_string_lib));
    let out = argocd_health_run(&object, &cm);
    assert!(argocd_health_of(&out).is_none(), "{}", text(&out));
    assert!(
        text(&out).contains("attempt to index a non-table object(nil) with key 'format'"),
        "{}",
        text(&out)
    );
}

/// Argo CD ships a check for bitnami.com/SealedSecret only: without the
/// argocd-cm patch a coffer.dev SealedSecret has no health check.
#[test]
fn argo_cd_has_no_built_in_check_for_coffer_sealed_secrets() {
    let scratch = Scratch::new("builtin");
    let mut cm = yaml_file(&root().join(CM));
    cm["data"] = serde_json::json!({});
    let cm = scratch.write("argocd-cm.yaml", serde_json::to_string_pretty(&cm).unwrap());

    let coffer = root().join("deploy/argocd/testdata/degraded-stalled-scope-mismatch.yaml");
    let out = argocd_health_run(&coffer, &cm);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Health script is not configured for 'coffer.dev/SealedSecret'",
        "{}",
        text(&out)
    );

    // The same object as a bitnami.com SealedSecret gets Argo CD's own.
    let mut bitnami = yaml_file(&coffer);
    bitnami["apiVersion"] = Value::String("bitnami.com/v1alpha1".into());
    let bitnami = scratch.write(
        "bitnami.yaml",
        serde_json::to_string_pretty(&bitnami).unwrap(),
    );
    let out = argocd_health_run(&bitnami, &cm);
    assert_eq!(
        argocd_health_of(&out),
        Some((
            "Progressing".to_string(),
            "Waiting for Sealed Secret to be decrypted".to_string()
        )),
        "{}",
        text(&out)
    );
}

/// The install command of docs/gitops.md: `kubectl patch` merges the patch
/// into an existing argocd-cm, keeping its other settings.
#[test]
fn the_patch_merges_into_an_existing_argocd_cm() {
    let built = Command::new(root().join("tests/envtest/build"))
        .output()
        .expect("run tests/envtest/build");
    assert!(
        built.status.success(),
        "tests/envtest/build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let scratch = Scratch::new("patch");
    let live = scratch.write(
        "live.yaml",
        serde_json::to_string_pretty(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "argocd-cm",
                "namespace": "argocd",
                "labels": {"app.kubernetes.io/part-of": "argocd"}
            },
            "data": {"url": "https://argocd.example.com"}
        }))
        .unwrap(),
    );
    let out = Command::new(kubectl_bin())
        .args(["patch", "--local", "-o", "json", "-f"])
        .arg(&live)
        .arg("--patch-file")
        .arg(root().join(CM))
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "{}", text(&out));
    let merged: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let script = std::fs::read_to_string(root().join(SCRIPT)).expect(SCRIPT);
    assert_eq!(merged["data"][CM_KEY].as_str(), Some(script.as_str()));
    assert_eq!(merged["data"]["url"], "https://argocd.example.com");
    assert_eq!(
        merged["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "argocd"
    );
}
