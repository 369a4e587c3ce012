//! The alerts in `deploy/prometheus/rules.yaml` pass `promtool check rules`
//! and their unit tests (`promtool test rules`), a broken rule file fails
//! the same check, and the PrometheusRule copies ship exactly those groups.
//!
//! promtool is built from the Prometheus Go module by
//! `tests/prometheus/build` (once, then cached like helm and envtest).

use std::path::PathBuf;
use std::process::{Command, Output};

use coffer_test_support::tools::{output_text, tool};
use coffer_test_support::{root, suffix, target_dir};
use serde_json::Value;

/// promtool, built from the Prometheus module once.
fn promtool() -> PathBuf {
    tool("tests/prometheus/build")
}

fn promtool_run(args: &[&str]) -> Output {
    Command::new(promtool())
        .args(args)
        .current_dir(root())
        .output()
        .expect("run promtool")
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// The `groups` of a rule file, as JSON.
fn groups(path: &str) -> Value {
    let yaml = std::fs::read_to_string(root().join(path)).expect(path);
    let v: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{path}: {e}"));
    v
}

#[test]
fn the_rules_pass_promtool_check() {
    let out = promtool_run(&["check", "rules", "deploy/prometheus/rules.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 8 rules found"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_broken_rule_fails_promtool_check() {
    let dir = target_dir().join(format!("prometheus/broken-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.yaml");
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/rules.yaml")).unwrap();
    // An unbalanced parenthesis in the first expression.
    let broken = rules.replacen("(coffer_sealed_secrets{", "((coffer_sealed_secrets{", 1);
    assert_ne!(broken, rules);
    std::fs::write(&file, broken).unwrap();
    let out = promtool_run(&["check", "rules", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FAILED"), "{}", text(&out));
}

#[test]
fn every_alert_fires_when_it_should_and_only_then() {
    let out = promtool_run(&["test", "rules", "tests/prometheus/rules_test.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SUCCESS"), "{}", text(&out));
    // Every alert of the file is tested.
    let tests = std::fs::read_to_string(root().join("tests/prometheus/rules_test.yaml")).unwrap();
    let rules = groups("deploy/prometheus/rules.yaml");
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let alert = rule["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no test in tests/prometheus/rules_test.yaml"
        );
    }
}

#[test]
fn the_prometheus_rule_copies_ship_the_same_groups() {
    let rules = groups("deploy/prometheus/rules.yaml");
    let cr = groups("deploy/prometheus/prometheusrule.yaml");
    assert_eq!(cr["kind"], "PrometheusRule");
    assert_eq!(
        cr["spec"]["groups"], rules["groups"],
        "deploy/prometheus/prometheusrule.yaml is stale: copy the groups of rules.yaml"
    );
    let chart =
        std::fs::read_to_string(root().join("deploy/helm/coffer/files/rules.yaml")).unwrap();
    let file = std::fs::read_to_string(root().join("deploy/prometheus/rules.yaml")).unwrap();
    assert!(
        chart == file,
        "deploy/helm/coffer/files/rules.yaml is stale: copy deploy/prometheus/rules.yaml"
    );
}
