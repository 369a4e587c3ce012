//! End to end: the HTTP endpoints, rotation and retirement through the
//! Kubernetes API, metrics, and high availability with two replicas.

mod common;

use std::time::Duration;

use coffer_core::SealedSecret;

use coffer_format::{Scope, envelope};
use coffer_test_support::eventually;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};

/// Asks for a new key the way `coffer rotate` does: annotate the active key.
async fn request_rotation(t: &Cluster, active: &str) {
    let keys: Api<Secret> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let patch =
        serde_json::json!({"metadata": {"annotations": {"coffer.dev/rotation-requested": "now"}}});
    keys.patch(
        &format!("coffer-key-{active}"),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn public_endpoints_answer_and_reencryption_never_widens_scope() {
    let t = setup("http", &[]).await;
    t.ctrl.wait_ready(WAIT).await.unwrap();

    // /v1/recipients is the ConfigMap.
    let cms: Api<ConfigMap> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let cm = cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"].clone();
    let (code, text) = get(&t, "/v1/recipients");
    assert_eq!((code, text), (200, cm.clone()));

    // The probes' own listener (--probe-listen) answers the probes, and
    // nothing else.
    let probe = t.ctrl.probe.expect("a probe listener");
    assert_eq!(get_from(probe, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get_from(probe, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(get_from(probe, "/v1/recipients").0, 404);
    assert_eq!(get_from(probe, "/metrics").0, 404);

    // verify: 200 where sealed, 409 when copied elsewhere, nothing else said.
    let good = t.sealed(
        &secret_yaml("db", &[("password", "http-e2e")]),
        Scope::Strict,
    );
    assert_eq!(post(&t, "/v1/verify", &json(&good)).0, 200);
    let mut moved = good.clone();
    moved.metadata.namespace = Some("elsewhere".into());
    let (code, body) = post(&t, "/v1/verify", &json(&moved));
    assert_eq!(code, 409);
    assert_eq!(body, "{\"opens\":false}");

    // Rotate, then re-encrypt: new key, same place only.
    let old = t.recipients[0].id().to_string();
    request_rotation(&t, &old).await;
    let new = published_recipients(&t.admin, &t.key_ns, Some(&cm)).await[0].clone();
    assert_ne!(new.id().to_string(), old);
    eventually(WAIT, "the HTTP side to see the new key", || async {
        let a = t.ctrl.http;
        let text = tokio::task::spawn_blocking(move || {
            agent()
                .get(format!("http://{a}/v1/recipients"))
                .call()
                .ok()?
                .body_mut()
                .read_to_string()
                .ok()
        })
        .await
        .ok()??;
        text.contains(&new.to_string()).then_some(())
    })
    .await;

    // A request claiming a wider scope in annotations and template.
    let mut claim = good.clone();
    claim.metadata.annotations =
        Some([("coffer.dev/scope".to_string(), "cluster".to_string())].into());
    let (code, body) = post(&t, "/v1/reencrypt", &json(&claim));
    assert_eq!(code, 200, "{body}");
    let re: SealedSecret = serde_json::from_str(&body).unwrap();
    let value = &re.spec.encrypted_data["password"];
    let (env, _) = envelope::inspect(value).unwrap();
    assert_eq!(env.key_ids, vec![new.id()]);
    assert_eq!(env.scope, Scope::Strict);
    t.apply(&re).await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    assert_eq!(t.secret_data(&t.ns, "db").await["password"], b"http-e2e");
    let mut re_moved = re.clone();
    re_moved.metadata.name = Some("db-copy".into());
    assert_eq!(post(&t, "/v1/verify", &json(&re_moved)).0, 409);
    t.apply(&re_moved).await;
    t.wait_reason(&t.ns, "db-copy", "ScopeMismatch").await;

    // A copy elsewhere is not re-encrypted at all.
    assert_eq!(post(&t, "/v1/reencrypt", &json(&moved)).0, 409);
    t.ctrl.assert_log_free_of(&["http-e2e"]);
}

#[tokio::test]
async fn bad_requests_get_a_reason_and_the_process_stays_up() {
    let t = setup("httpbad", &["--http-rate", "5", "--http-burst", "10"]).await;
    t.ctrl.wait_ready(WAIT).await.unwrap();
    let good = t.sealed(
        &secret_yaml("db", &[("password", "bad-e2e")]),
        Scope::Strict,
    );

    let (code, body) = post(&t, "/v1/verify", b"{not json");
    assert_eq!(code, 400);
    assert!(body.contains("not valid JSON"), "{body}");

    let mut wrong = serde_json::to_value(&good).unwrap();
    wrong["kind"] = "Secret".into();
    let (code, body) = post(&t, "/v1/verify", &serde_json::to_vec(&wrong).unwrap());
    assert_eq!(code, 400);
    assert!(body.contains("SealedSecret"), "{body}");

    let huge = vec![b' '; 3 * 1024 * 1024];
    assert_eq!(post(&t, "/v1/reencrypt", &huge).0, 413);

    // The key users GET walks every SealedSecret: it is charged to the
    // same per-client limit as the POSTs.
    let users = format!("/v1/keys/{}/users", "0".repeat(64));
    let codes: Vec<u16> = (0..30).map(|_| get(&t, &users).0).collect();
    assert!(codes.contains(&429), "no 429 in {codes:?}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let codes: Vec<u16> = (0..30)
        .map(|_| post(&t, "/v1/verify", &json(&good)).0)
        .collect();
    assert!(codes.contains(&429), "no 429 in {codes:?}");
    assert_eq!(get(&t, "/healthz").0, 200);
    t.ctrl.assert_log_free_of(&["bad-e2e"]);
}

/// Finding 6 of the adversarial review: a low-order X25519 point in
/// `additionalRecipients` (every exchange with it is all zeros) made age
/// panic inside the unauthenticated endpoint. It is refused as not a
/// recipient, with 400, and nothing panics.
#[tokio::test]
async fn a_low_order_additional_recipient_is_refused_with_400() {
    let t = setup("loworder", &[]).await;
    t.ctrl.wait_ready(WAIT).await.unwrap();
    let good = t.sealed(
        &secret_yaml("db", &[("password", "low-e2e")]),
        Scope::Strict,
    );
    // The all-zero point, Bech32-encoded as an age recipient.
    let zero = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z";
    let body = serde_json::json!({"sealedSecret": good, "additionalRecipients": [zero]});
    let (code, text) = post(&t, "/v1/reencrypt", &serde_json::to_vec(&body).unwrap());
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not an age1 recipient"), "{text}");
    assert_eq!(get(&t, "/healthz").0, 200);
    let log = t.ctrl.log_text();
    assert!(!log.contains("panicked"), "the controller panicked");
    t.ctrl.assert_log_free_of(&["low-e2e"]);
}

/// Finding 2 of the adversarial review: with the active key's `created`
/// annotation set to 2099, a rotation request never completed and a new
/// key Secret was made every few seconds, and renewal stopped. Keys are
/// ordered by a counter the controller owns; a key dated in the future is
/// demoted to open-only (it opens, never seals).
#[tokio::test]
async fn a_key_dated_in_the_future_neither_blocks_rotation_nor_floods_the_ring() {
    let t = setup("futurekey", &[]).await;
    let first = t.recipients[0].id().to_string();
    t.apply(&t.sealed(
        &secret_yaml("db", &[("password", "future-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    let cms: Api<ConfigMap> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let text = || async {
        cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"].clone()
    };
    let keys: Api<Secret> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let patch = serde_json::json!({"metadata": {"annotations": {"coffer.dev/created": "2099-01-01T00:00:00Z"}}});
    let before = text().await;
    keys.patch(
        &format!("coffer-key-{first}"),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .unwrap();
    let second = published_recipients(&t.admin, &t.key_ns, Some(&before)).await[0]
        .id()
        .to_string();
    assert_ne!(second, first, "the future-dated key no longer seals");

    let before = text().await;
    request_rotation(&t, &second).await;
    let third = published_recipients(&t.admin, &t.key_ns, Some(&before)).await[0]
        .id()
        .to_string();
    assert!(third != second && third != first, "the rotation completed");

    let count = || async {
        keys.list(&ListParams::default().labels("coffer.dev/key-id"))
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(count().await, 3);
    // A while later: still three keys, and the third is still active.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(count().await, 3, "no key Secret was added since");
    assert_eq!(
        published_recipients(&t.admin, &t.key_ns, None).await[0]
            .id()
            .to_string(),
        third
    );
    // Values sealed to the future-dated key still open.
    t.apply(&t.sealed_to(
        &secret_yaml("db2", &[("password", "future2-e2e")]),
        Scope::Strict,
        &t.recipients,
    ))
    .await;
    t.wait_reason(&t.ns, "db2", "Unsealed").await;
    assert!(t.ctrl.log_text().contains("is in the future"));
    t.ctrl.assert_log_free_of(&["future-e2e", "future2-e2e"]);
}

#[tokio::test]
async fn the_http_limit_flags_hold_before_any_body_is_read() {
    use common::raw::{Answer, answer, connect, ends_within, head, send};
    let t = setup(
        "httplimits",
        &[
            "--http-header-timeout=1s",
            "--http-rate=0.01",
            "--http-burst=1",
        ],
    )
    .await;
    t.ctrl.wait_ready(WAIT).await.unwrap();
    let patience = Duration::from_secs(20);

    // Headers that never end: the connection is closed.
    let mut slow = connect(t.ctrl.http).await;
    send(
        &mut slow,
        b"POST /v1/verify HTTP/1.1\r\nHost: coffer\r\nContent-Le",
    )
    .await;
    assert!(
        ends_within(&mut slow, patience).await,
        "unfinished headers kept open"
    );

    // The burst is one request; the next is refused without waiting for the
    // 2 MiB it announces and never sends.
    assert_eq!(post(&t, "/v1/verify", b"{}").0, 400);
    let mut c = connect(t.ctrl.http).await;
    let announced = coffer_controller::http::MAX_BODY;
    send(
        &mut c,
        head("POST", "/v1/verify", Some(announced), true).as_bytes(),
    )
    .await;
    match answer(&mut c, patience).await {
        Answer::Response(code, body) => assert_eq!(code, 429, "{body}"),
        a => panic!("no answer before the body: {a:?}"),
    }
    assert_eq!(get(&t, "/healthz").0, 200);
}

#[tokio::test]
async fn rotation_request_publishes_a_new_key_and_retirement_refuses_old_values() {
    let t = setup("rotate", &[]).await;
    let old = t.recipients[0].id().to_string();
    t.apply(&t.sealed(
        &secret_yaml("db", &[("password", "rot-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    let cms: Api<ConfigMap> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let before =
        cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"].clone();

    let asked = std::time::Instant::now();
    request_rotation(&t, &old).await;
    let new = published_recipients(&t.admin, &t.key_ns, Some(&before)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );
    assert_ne!(new[0].id().to_string(), old);

    // Old values still open (a new object sealed to the old key).
    let old_key = t.recipients.clone();
    t.apply(&t.sealed_to(
        &secret_yaml("db2", &[("password", "rot2-e2e")]),
        Scope::Strict,
        &old_key,
    ))
    .await;
    t.wait_reason(&t.ns, "db2", "Unsealed").await;

    let keys: Api<Secret> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let patch = serde_json::json!({"metadata": {"labels": {"coffer.dev/key-state": "retired"}}});
    keys.patch(
        &format!("coffer-key-{old}"),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .unwrap();
    let s = t.wait_reason(&t.ns, "db", "KeyRetired").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(
        msg.contains(&format!("sealed for key {old}, which has been retired")),
        "{msg}"
    );
    t.ctrl.assert_log_free_of(&["rot-e2e", "rot2-e2e"]);
}

#[tokio::test]
async fn metrics_expose_the_named_series() {
    let t = setup("metrics", &[]).await;
    t.apply(&t.sealed(&secret_yaml("ok", &[("k", "m-e2e")]), Scope::Strict))
        .await;
    t.wait_reason(&t.ns, "ok", "Unsealed").await;
    let mut moved = t.sealed(&secret_yaml("ok", &[("k", "m-e2e")]), Scope::Strict);
    moved.metadata.name = Some("moved".into());
    t.apply(&moved).await;
    t.wait_reason(&t.ns, "moved", "ScopeMismatch").await;
    let _ = get(&t, "/v1/recipients");
    let ns = &t.ns;
    // The gauge counts what the controller's cache has seen of the status
    // it wrote: a moment after the API server has it.
    let text = eventually(WAIT, "the gauge to show both", || async {
        let (code, text) = get(&t, "/metrics");
        assert_eq!(code, 200);
        (text.contains(&format!("namespace=\"{ns}\",reason=\"Unsealed\"}} 1\n"))
            && text.contains(&format!(
                "namespace=\"{ns}\",reason=\"ScopeMismatch\"}} 1\n"
            )))
        .then_some(text)
    })
    .await;
    for line in [
        // State: one unsealed and one refused SealedSecret in the namespace.
        format!("coffer_sealed_secrets{{namespace=\"{ns}\",reason=\"Unsealed\"}} 1\n"),
        format!("coffer_sealed_secrets{{namespace=\"{ns}\",reason=\"ScopeMismatch\"}} 1\n"),
        // Counters: the refusal once, other reasons at zero from the start.
        "coffer_unseal_total{reason=\"Unsealed\"} 1\n".into(),
        "coffer_unseal_total{reason=\"ScopeMismatch\"} 1\n".into(),
        "coffer_unseal_total{reason=\"Tampered\"} 0\n".into(),
        "coffer_reconcile_errors_total{error=\"api_error\"} 0\n".into(),
        "coffer_leader 1\n".into(),
        format!(
            "coffer_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            coffer_test_support::git_commit()
        ),
        "coffer_keys{state=\"active\"} 1\n".into(),
        // --key-renewal-period's default, 720h.
        "coffer_key_renewal_period_seconds 2592000.0\n".into(),
        "coffer_http_requests_total{path=\"/v1/recipients\",code=\"200\"} 1\n".into(),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    for series in [
        "coffer_reconcile_duration_seconds_bucket",
        "coffer_active_key_age_seconds",
        "coffer_http_request_duration_seconds_bucket{le=\"0.0005\",path=\"/v1/recipients\"}",
        "coffer_http_request_duration_seconds_count{path=\"/v1/recipients\"} 1",
        // The list and watch of SealedSecrets, the Secret created, the
        // statuses patched.
        "coffer_kube_api_requests_total{verb=\"LIST\",code=\"200\"}",
        "coffer_kube_api_requests_total{verb=\"WATCH\",code=\"200\"}",
        "coffer_kube_api_requests_total{verb=\"POST\",code=\"201\"}",
        "coffer_kube_api_requests_total{verb=\"PATCH\",code=\"200\"}",
        "coffer_events_dropped_total",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    for name in ["ok", "moved"] {
        assert!(
            !text.contains(&format!("=\"{name}\"")),
            "object names must not be labels"
        );
    }
}

/// Waits until an Event with `reason` exists in the test's namespace.
async fn wait_event(t: &Cluster, reason: &str) {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(t.admin.clone(), &t.ns);
    eventually(WAIT, &format!("a {reason} event"), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason))
            .then_some(())
    })
    .await;
}

/// `coffer_unseal_total{reason=...}` as scraped now.
fn unseal_count(t: &Cluster, reason: &str) -> u64 {
    let (_, text) = get(t, "/metrics");
    let prefix = format!("coffer_unseal_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.trim().parse().expect("a counter value"))
        .unwrap_or(0)
}

#[tokio::test]
async fn a_refusal_is_counted_and_logged_once_while_nothing_changes() {
    let t = setup("refused-once", &[]).await;
    let mut moved = t.sealed(
        &secret_yaml("orig", &[("k", "once-refused")]),
        Scope::Strict,
    );
    moved.metadata.name = Some("moved".into());
    t.apply(&moved).await;
    t.wait_reason(&t.ns, "moved", "ScopeMismatch").await;
    // The status it wrote comes back through its watch and is reconciled
    // again; that is not a second refusal.
    wait_event(&t, "ScopeMismatch").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(unseal_count(&t, "ScopeMismatch"), 1);
    let log = t.ctrl.log_text();
    let logged = log
        .lines()
        .filter(|l| l.contains("ScopeMismatch") && l.contains("moved") && l.contains("not written"))
        .count();
    assert_eq!(logged, 1, "the refusal is logged once:\n{log}");

    // A new generation that is refused again is a new refusal.
    moved
        .spec
        .template
        .get_or_insert_with(Default::default)
        .immutable = Some(true);
    t.apply(&moved).await;
    eventually(WAIT, "the second refusal counted", || async {
        (unseal_count(&t, "ScopeMismatch") == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn echoes_of_its_own_writes_decrypt_nothing_but_drift_and_new_generations_do() {
    let t = setup("once", &[]).await;
    t.apply(&t.sealed(&secret_yaml("db", &[("k", "once-e2e")]), Scope::Strict))
        .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    // The Secret it created and the status it wrote both come back through
    // its watches and are reconciled; neither may decrypt again.
    wait_event(&t, "Unsealed").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(unseal_count(&t, "Unsealed"), 1);

    // A hand edit is drift: decrypted again and restored.
    let secrets = t.secrets(&t.ns);
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"k": "ZWRpdGVk"}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the edit undone", || async {
        let d = t.secret_data(&t.ns, "db").await;
        (d["k"] == b"once-e2e").then_some(())
    })
    .await;
    assert_eq!(unseal_count(&t, "Unsealed"), 2);

    // A new generation is decrypted again.
    t.apply(&t.sealed(&secret_yaml("db", &[("k", "twice-e2e")]), Scope::Strict))
        .await;
    eventually(WAIT, "the new value", || async {
        let d = t.secret_data(&t.ns, "db").await;
        (d["k"] == b"twice-e2e").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(unseal_count(&t, "Unsealed"), 3);
    t.ctrl.assert_log_free_of(&["once-e2e", "twice-e2e"]);
}

#[tokio::test]
async fn two_replicas_elect_one_writer_and_a_follower_takes_over() {
    let mut t = setup("ha", &["--lease-duration", "3s"]).await;
    // A second replica with the same key ring and namespaces.
    let mut second = t
        .controller(
            &format!("{}-b", t.ns),
            &t.watched,
            &["--lease-duration", "3s", "--log-format", "json"],
        )
        .await;
    eventually(WAIT, "the second replica to follow", || async {
        second
            .log_text()
            .contains("waiting to become leader")
            .then_some(())
    })
    .await;
    t.apply(&t.sealed(&secret_yaml("before", &[("k", "ha-e2e")]), Scope::Strict))
        .await;
    t.wait_reason(&t.ns, "before", "Unsealed").await;
    let leaders = [&t.ctrl, &second]
        .iter()
        .filter(|c| c.log_text().contains("became leader"))
        .count();
    assert_eq!(leaders, 1, "exactly one replica leads");
    assert!(
        !second.log_text().contains("created Secret"),
        "the follower wrote"
    );
    // The follower serves HTTP with the same keys.
    let a = second.http;
    let code = tokio::task::spawn_blocking(move || {
        agent()
            .get(format!("http://{a}/v1/recipients"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    // Only the leader reports that it leads and what state the
    // SealedSecrets are in.
    let (leader, follower) = if t.ctrl.log_text().contains("became leader") {
        (t.ctrl.http, second.http)
    } else {
        (second.http, t.ctrl.http)
    };
    let scrape = |a| async move {
        tokio::task::spawn_blocking(move || get_from(a, "/metrics").1)
            .await
            .unwrap()
    };
    let unsealed = format!(
        "coffer_sealed_secrets{{namespace=\"{}\",reason=\"Unsealed\"}} 1\n",
        t.ns
    );
    let text = eventually(WAIT, "the leader's gauge", || async {
        let text = scrape(leader).await;
        text.contains(&unsealed).then_some(text)
    })
    .await;
    assert!(text.contains("coffer_leader 1\n"), "{text}");
    let text = scrape(follower).await;
    assert!(text.contains("coffer_leader 0\n"), "{text}");
    assert!(!text.contains("coffer_sealed_secrets{"), "{text}");

    t.ctrl.kill();
    t.apply(&t.sealed(&secret_yaml("after", &[("k", "ha2-e2e")]), Scope::Strict))
        .await;
    t.wait_reason(&t.ns, "after", "Unsealed").await;
    assert!(second.log_text().contains("became leader"));
    let unsealed = unsealed.replace("} 1\n", "} 2\n");
    let text = eventually(WAIT, "the new leader's gauge", || async {
        let text = scrape(second.http).await;
        text.contains(&unsealed).then_some(text)
    })
    .await;
    assert!(text.contains("coffer_leader 1\n"), "{text}");
    let secrets: Api<Secret> = Api::namespaced(t.admin.clone(), &t.ns);
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    second.stop();
    assert!(second.log_text().contains("released the leader lease"));
    // JSON logs: one object per line, the message and fields at the top
    // level, where log pipelines look for them.
    for line in second.log_text().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["message"].is_string(), "no top-level message: {line}");
        assert!(v.get("fields").is_none(), "fields nested: {line}");
    }
    second.assert_log_free_of(&["ha-e2e", "ha2-e2e"]);
    t.ctrl.assert_log_free_of(&["ha-e2e", "ha2-e2e"]);
}
