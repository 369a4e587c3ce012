//! Apply: sends what the plan decided to write, through the gateway, and
//! says what the API server did with it. It decides nothing: an answer that
//! needs a decision (a Secret of that name created meanwhile, a Secret the
//! API server finds invalid) goes back to the plan. Coffer's and bitnami's
//! reconcilers send the same way.

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::core::Status;

use crate::client::gateway;
use crate::reconcile::plan::WriteKind;

/// What the API server did with a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Did {
    /// Nothing was sent: the Secret was already right.
    Unchanged,
    Created,
    Replaced,
    /// An immutable Secret whose metadata only changed, updated where it
    /// is: pods never see it missing.
    UpdatedInPlace,
    /// Deleted (exactly that object) and created again.
    Recreated,
    /// Items merged into a Secret of another owner.
    Merged,
}

/// What sending a write came to.
#[derive(Debug)]
pub(crate) enum Sent {
    Written(Did),
    /// Creating found a Secret of that name (409): the plan decides on the
    /// live one.
    Conflict(Box<Status>),
    /// The API server refused the Secret as invalid (422), e.g. a type
    /// whose required keys are missing: retrying cannot help.
    Invalid(Box<Status>),
}

/// Sends `secret` as `kind` says, to `ns`/`name`. Other API errors are
/// returned as they are (the reconcile retries).
pub(crate) async fn send(
    client: &Client,
    ns: &str,
    name: &str,
    secret: &mut Secret,
    kind: &WriteKind,
) -> Result<Sent, kube::Error> {
    let sent = match kind {
        WriteKind::Unchanged => Ok(Did::Unchanged),
        WriteKind::Create => match gateway::create_secret(client, ns, secret).await {
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Sent::Conflict(e)),
            other => other.map(|_| Did::Created),
        },
        WriteKind::Recreate {
            uid,
            resource_version,
        } => recreate(client, ns, name, secret, uid, resource_version).await,
        WriteKind::Replace { resource_version } => {
            secret.metadata.resource_version = resource_version.clone();
            let replaced = gateway::replace_secret(client, ns, name, secret).await;
            secret.metadata.resource_version = None;
            replaced.map(|_| Did::Replaced)
        }
        WriteKind::Merge {
            resource_version,
            remove,
        } => gateway::merge_into_secret(
            client,
            ns,
            name,
            secret,
            remove,
            resource_version.as_deref(),
        )
        .await
        .map(|_| Did::Merged),
    };
    match sent {
        Ok(did) => Ok(Sent::Written(did)),
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(Sent::Invalid(status)),
        Err(e) => Err(e),
    }
}

/// Writes over an immutable Secret or one of another type. Its metadata
/// may still be updated: when only that changed (the `coffer.dev/unsealed`
/// annotation after a new generation with the same values), the Secret
/// stays. The API server refuses the update (422) when its data or type
/// differ; then exactly that object (uid and resourceVersion as
/// preconditions) is deleted and created again.
async fn recreate(
    client: &Client,
    ns: &str,
    name: &str,
    secret: &mut Secret,
    uid: &Option<String>,
    resource_version: &Option<String>,
) -> Result<Did, kube::Error> {
    secret.metadata.resource_version = resource_version.clone();
    let updated = gateway::replace_secret(client, ns, name, secret).await;
    secret.metadata.resource_version = None;
    match updated {
        Ok(_) => return Ok(Did::UpdatedInPlace),
        Err(kube::Error::Api(e)) if e.code == 422 => {}
        Err(e) => return Err(e),
    }
    gateway::delete_secret(client, ns, name, uid.clone(), resource_version.clone()).await?;
    gateway::create_secret(client, ns, secret).await?;
    Ok(Did::Recreated)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::client::mock::{Log, ok, scripted, status};

    fn secret() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        }
    }

    fn calls(log: &Log) -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s.method, s.uri.trim_end_matches('?')))
            .collect()
    }

    /// The resourceVersion the request `i` sent in its body.
    fn sent_version(log: &Log, i: usize) -> Option<String> {
        let body = log.lock().unwrap()[i].body.clone();
        let s: Secret = serde_json::from_slice(&body).unwrap();
        s.metadata.resource_version
    }

    async fn send_as(
        kind: WriteKind,
        answers: Vec<(u16, String)>,
    ) -> (Result<Sent, kube::Error>, Log) {
        let (c, log) = scripted(answers);
        let mut s = secret();
        let sent = send(&c, "shop", "db", &mut s, &kind).await;
        // The precondition is never left on the Secret for a later write.
        assert_eq!(s.metadata.resource_version, None);
        (sent, log)
    }

    const SECRETS: &str = "/api/v1/namespaces/shop/secrets";
    const DB: &str = "/api/v1/namespaces/shop/secrets/db";

    #[tokio::test]
    async fn create_posts_once() {
        let (sent, log) = send_as(WriteKind::Create, vec![ok(201)]).await;
        assert!(matches!(sent, Ok(Sent::Written(Did::Created))), "{sent:?}");
        assert_eq!(calls(&log), [format!("POST {SECRETS}")]);
    }

    #[tokio::test]
    async fn unchanged_sends_nothing() {
        let (sent, log) = send_as(WriteKind::Unchanged, vec![]).await;
        assert!(
            matches!(sent, Ok(Sent::Written(Did::Unchanged))),
            "{sent:?}"
        );
        assert!(calls(&log).is_empty());
    }

    #[tokio::test]
    async fn replace_puts_at_the_planned_resource_version() {
        let kind = WriteKind::Replace {
            resource_version: Some("5".into()),
        };
        let (sent, log) = send_as(kind, vec![ok(200)]).await;
        assert!(matches!(sent, Ok(Sent::Written(Did::Replaced))), "{sent:?}");
        assert_eq!(calls(&log), [format!("PUT {DB}")]);
        assert_eq!(sent_version(&log, 0).as_deref(), Some("5"));
    }

    #[tokio::test]
    async fn an_immutable_secret_whose_metadata_only_changed_is_updated_in_place() {
        let kind = WriteKind::Recreate {
            uid: Some("u1".into()),
            resource_version: Some("5".into()),
        };
        let (sent, log) = send_as(kind, vec![ok(200)]).await;
        assert!(
            matches!(sent, Ok(Sent::Written(Did::UpdatedInPlace))),
            "{sent:?}"
        );
        assert_eq!(calls(&log), [format!("PUT {DB}")]);
        assert_eq!(sent_version(&log, 0).as_deref(), Some("5"));
    }

    #[tokio::test]
    async fn an_immutable_secret_with_other_data_is_deleted_exactly_and_created() {
        let kind = WriteKind::Recreate {
            uid: Some("u1".into()),
            resource_version: Some("5".into()),
        };
        let refused = status(422, "Invalid", &[("data", "FieldValueForbidden")]);
        let (sent, log) = send_as(kind, vec![refused, ok(200), ok(201)]).await;
        assert!(
            matches!(sent, Ok(Sent::Written(Did::Recreated))),
            "{sent:?}"
        );
        assert_eq!(
            calls(&log),
            [
                format!("PUT {DB}"),
                format!("DELETE {DB}"),
                format!("POST {SECRETS}")
            ]
        );
        // The delete names exactly the object planned over.
        let delete: serde_json::Value =
            serde_json::from_slice(&log.lock().unwrap()[1].body).unwrap();
        assert_eq!(delete["preconditions"]["uid"], "u1");
        assert_eq!(delete["preconditions"]["resourceVersion"], "5");
        // The created Secret carries no resourceVersion.
        assert_eq!(sent_version(&log, 2), None);
    }

    #[tokio::test]
    async fn a_conflict_on_create_goes_back_to_the_plan() {
        let (sent, log) = send_as(WriteKind::Create, vec![status(409, "AlreadyExists", &[])]).await;
        match sent {
            Ok(Sent::Conflict(s)) => assert_eq!(s.code, 409),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(calls(&log).len(), 1, "nothing more is sent");
    }

    #[tokio::test]
    async fn a_conflict_on_replace_is_an_error_to_retry() {
        let kind = WriteKind::Replace {
            resource_version: Some("5".into()),
        };
        let (sent, _) = send_as(kind, vec![status(409, "Conflict", &[])]).await;
        assert!(
            matches!(sent, Err(kube::Error::Api(ref s)) if s.code == 409),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn an_invalid_secret_goes_back_to_the_plan_with_its_fields() {
        let refused = status(422, "Invalid", &[("data[tls.crt]", "FieldValueRequired")]);
        let (sent, _) = send_as(WriteKind::Create, vec![refused]).await;
        match sent {
            Ok(Sent::Invalid(s)) => {
                let causes = &s.details.as_ref().unwrap().causes;
                assert_eq!(causes[0].field, "data[tls.crt]");
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_server_error_is_returned_for_a_retry() {
        let (sent, log) = send_as(
            WriteKind::Create,
            vec![status(503, "ServiceUnavailable", &[])],
        )
        .await;
        assert!(
            matches!(sent, Err(kube::Error::Api(ref s)) if s.code == 503),
            "{sent:?}"
        );
        assert_eq!(calls(&log).len(), 1);
    }

    #[tokio::test]
    async fn merge_patches_the_named_secret() {
        let kind = WriteKind::Merge {
            resource_version: Some("5".into()),
            remove: vec!["old".into()],
        };
        let (sent, log) = send_as(kind, vec![ok(200)]).await;
        assert!(matches!(sent, Ok(Sent::Written(Did::Merged))), "{sent:?}");
        assert_eq!(calls(&log), [format!("PATCH {DB}")]);
    }
}
