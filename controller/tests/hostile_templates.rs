//! End to end, against a real kube-apiserver: one SealedSecret must never
//! take the controller down. The second security review found that a
//! `template.data` with a long operator chain aborted the process (a
//! crash loop stopping every unseal in the cluster), that one render could
//! hold ~60 MB, and that the line of a template error told a value one
//! character per generation. Here every hostile shape is applied beside
//! ordinary SealedSecrets; the process must survive, answer `/healthz`
//! throughout, stay small, unseal the ordinary ones and refuse the hostile
//! ones with a message that holds no line and no value.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coffer_core::SealedSecret;
use coffer_format::Scope;
use coffer_test_support::http_get;
use coffer_test_support::procfs::proc_status_kib;
use common::*;
use kube::ResourceExt;

const SECRET: &str = "hostile-e2e-7q";

fn chain(head: &str, link: &str, n: usize, tail: &str) -> String {
    format!("{{{{ {head}{}{tail} }}}}", link.repeat(n))
}

/// Every shape of the review: the ten chains that aborted, the memory and
/// CPU hogs, and the value-recovery probe.
fn hostile() -> Vec<(&'static str, String)> {
    let probe: String = "abcdefghijklmnopqrstuvwxyz0123456789-"
        .chars()
        .map(|c| format!("{{% if password[0] == \"{c}\" %}}{{{{ password + 1 }}}}{{% endif %}}\n"))
        .collect();
    vec![
        ("plus", chain("1", " + 1", 10_000, "")),
        ("minus", chain("1", " - 1", 10_000, "")),
        ("tilde", chain("password", " ~ password", 10_000, "")),
        ("filter", chain("password", "|lower", 30_000, "")),
        ("not", chain("", "not ", 10_000, "password")),
        ("is", chain("password", " is defined", 10_000, "")),
        ("attr", chain("items", ".a", 10_000, "")),
        ("index", chain("password", "[0]", 10_000, "")),
        ("call", chain("range", "()", 10_000, "")),
        (
            "ifelse",
            chain("password", " if password else password", 10_000, ""),
        ),
        (
            "memory",
            r#"{% set a = "x" * 60000000 %}{{ a|length }}"#.to_string(),
        ),
        (
            "b64",
            format!(
                "{{{{ (password * 100000){}|length }}}}",
                "|b64encode".repeat(40)
            ),
        ),
        ("probe", probe),
    ]
}

#[tokio::test]
async fn hostile_templates_are_refused_and_the_controller_goes_on() {
    let t = setup("hostile", &[]).await;
    let pid = t.ctrl.pid() as i32;
    let http = t.ctrl.http;

    // /healthz, polled from the start to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut worst, mut polls, mut failures) = (Duration::ZERO, 0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let r =
                    tokio::time::timeout(Duration::from_secs(1), http_get(http, "/healthz")).await;
                let took = start.elapsed();
                worst = worst.max(took);
                polls += 1;
                match r {
                    Ok(Ok((200, _))) => {}
                    other => failures.push(format!("{other:?} after {took:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (worst, polls, failures)
        }
    });

    let sealed = |name: &str, template: Option<&str>| -> SealedSecret {
        let mut s = t.sealed(
            &secret_yaml(name, &[("user", "app"), ("password", SECRET)]),
            Scope::Strict,
        );
        if let Some(template) = template {
            s.spec.template.get_or_insert_with(Default::default).data =
                BTreeMap::from([("url".to_string(), template.to_string())]);
        }
        s
    };
    let shapes = hostile();
    // Hostile and ordinary objects interleaved, so the ordinary ones wait
    // behind the hostile ones in the queue.
    for (i, (shape, template)) in shapes.iter().enumerate() {
        t.apply(&sealed(&format!("h-{shape}"), Some(template)))
            .await;
        t.apply(&sealed(&format!("ok-{i}"), None)).await;
    }
    t.apply(&sealed("ok-templated", Some("{{ user }}:{{ password }}")))
        .await;

    for i in 0..shapes.len() {
        t.wait_reason(&t.ns, &format!("ok-{i}"), "Unsealed").await;
    }
    t.wait_reason(&t.ns, "ok-templated", "Unsealed").await;
    assert_eq!(
        t.secret_data(&t.ns, "ok-templated").await["url"],
        format!("app:{SECRET}").as_bytes()
    );
    let mut messages = Vec::new();
    for (shape, _) in &shapes {
        let s = t
            .wait_reason(&t.ns, &format!("h-{shape}"), "TemplateFailed")
            .await;
        let msg = s.ready_condition().unwrap().message.clone();
        assert!(!msg.contains("line"), "{shape}: {msg}");
        assert!(!msg.contains(SECRET), "{shape}: {msg}");
        assert!(msg.len() < 1024, "{shape}: {} bytes", msg.len());
        assert!(msg.contains("\"url\""), "{shape}: {msg}");
        messages.push((shape, msg));
        // No Secret was written for it.
        assert!(
            t.secrets(&t.ns)
                .get_opt(&format!("h-{shape}"))
                .await
                .unwrap()
                .is_none()
        );
    }

    // Another object after all of them is still served at once.
    t.apply(&sealed("ok-last", None)).await;
    t.wait_reason(&t.ns, "ok-last", "Unsealed").await;

    stop.store(true, Ordering::Relaxed);
    let (worst, polls, failures) = poller.await.unwrap();
    // A process that has exited (a zombie too) has no VmRSS.
    assert!(
        proc_status_kib(pid, "VmRSS:").is_some(),
        "the controller process is gone"
    );
    assert_eq!(t.ctrl.pid() as i32, pid);
    let log = t.ctrl.log_text();
    assert!(
        !log.contains("overflowed its stack") && !log.contains("panicked"),
        "{log}"
    );
    let peak_kib = proc_status_kib(pid, "VmHWM:").expect("the controller's VmHWM");
    eprintln!(
        "hostile templates: /healthz worst {:.1} ms over {polls} polls, controller peak RSS {:.1} MiB",
        worst.as_secs_f64() * 1e3,
        peak_kib as f64 / 1024.0
    );
    for (shape, msg) in &messages {
        eprintln!("  {shape}: {msg}");
    }
    assert!(failures.is_empty(), "/healthz failed: {failures:?}");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
    t.ctrl.assert_log_free_of(&[SECRET]);
    // Every object was decided: refused or unsealed, none left pending.
    for s in t.sealed_api(&t.ns).list(&Default::default()).await.unwrap() {
        let reason = s.ready_condition().map(|c| c.reason.clone());
        let want = if s.name_any().starts_with("h-") {
            "TemplateFailed"
        } else {
            "Unsealed"
        };
        assert_eq!(reason.as_deref(), Some(want), "{}", s.name_any());
    }
}
