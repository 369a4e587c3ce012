//! Wiping what carries values: a Secret's values in memory, its JSON on
//! the wire, and HTTP bodies. Every Secret the controller or the CLI sends
//! or receives with values or keys in it goes through here; what is wiped
//! and what is not is listed in docs/security.md.

use std::collections::BTreeMap;

use bytes::Bytes;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use zeroize::{Zeroize, Zeroizing};

/// Overwrites the values of a Secret in memory.
pub fn secret(secret: &mut Secret) {
    for v in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        v.0.zeroize();
    }
    for v in secret.string_data.iter_mut().flat_map(|d| d.values_mut()) {
        v.zeroize();
    }
}

/// A Secret as the API server reads it (JSON), serialized without leaving
/// unwiped copies of its values behind. k8s-openapi's `ByteString`
/// serializes each value through a base64 `String` it drops as it is; here
/// each value is encoded into a buffer of exactly its size that is wiped
/// once written. `stringData` is never sent.
pub struct WireSecret<'a>(pub &'a Secret);

impl serde::Serialize for WireSecret<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Data<'a>(&'a BTreeMap<String, ByteString>);
        impl serde::Serialize for Data<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use base64::Engine as _;
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    let encoded =
                        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&v.0));
                    map.serialize_entry(k, encoded.as_str())?;
                }
                map.end()
            }
        }
        let secret = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("apiVersion", "v1")?;
        map.serialize_entry("kind", "Secret")?;
        map.serialize_entry("metadata", &secret.metadata)?;
        if let Some(t) = &secret.type_ {
            map.serialize_entry("type", t)?;
        }
        if let Some(i) = secret.immutable {
            map.serialize_entry("immutable", &i)?;
        }
        if let Some(d) = &secret.data {
            map.serialize_entry("data", &Data(d))?;
        }
        map.end()
    }
}

/// A JSON merge patch that merges some keys into a Secret of another
/// owner, serialized like [`WireSecret`]: the `data` of `secret` is set,
/// each key of `remove` is deleted (`null`), and of its metadata only the
/// labels and annotations it holds are merged in, with `resource_version`
/// as the precondition. Nothing else of the Secret is touched.
pub struct WireMergePatch<'a> {
    /// The Secret whose data, labels and annotations are merged in.
    pub secret: &'a Secret,
    /// Data keys to delete.
    pub remove: &'a [String],
    /// The `resourceVersion` the Secret must still have.
    pub resource_version: Option<&'a str>,
}

impl serde::Serialize for WireMergePatch<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Data<'a>(&'a WireMergePatch<'a>);
        impl serde::Serialize for Data<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use base64::Engine as _;
                let mut map = s.serialize_map(None)?;
                for (k, v) in self.0.secret.data.iter().flatten() {
                    let encoded =
                        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&v.0));
                    map.serialize_entry(k, encoded.as_str())?;
                }
                for k in self.0.remove {
                    map.serialize_entry(k, &())?;
                }
                map.end()
            }
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            resource_version: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            labels: Option<&'a BTreeMap<String, String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            annotations: Option<&'a BTreeMap<String, String>>,
        }
        let m = &self.secret.metadata;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(
            "metadata",
            &Meta {
                resource_version: self.resource_version,
                labels: m.labels.as_ref(),
                annotations: m.annotations.as_ref(),
            },
        )?;
        map.serialize_entry("data", &Data(self))?;
        map.end()
    }
}

/// Serializes `obj` as JSON into a buffer wiped on drop. The buffer is sized
/// first, so it never grows: growing would leave the old allocation behind
/// unwiped.
pub fn to_json(obj: &impl serde::Serialize) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, obj)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *buf, obj)?;
    Ok(buf)
}

/// A request body owned by the HTTP stack and wiped when it lets go of it.
struct WipedBody(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for WipedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `data` as a request body that is wiped once the HTTP stack drops it.
pub fn body(data: Vec<u8>) -> Bytes {
    Bytes::from_owner(WipedBody(Zeroizing::new(data)))
}

/// Wipes a response body when nothing else holds it (a body still shared
/// is left to its other holders).
pub fn bytes(bytes: &mut Bytes) {
    if let Ok(mut unique) = std::mem::take(bytes).try_into_mut() {
        unique.as_mut().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    /// The wire form carries exactly what serde of the typed Secret does,
    /// without `stringData`.
    #[test]
    fn wire_secret_serializes_like_the_typed_secret() {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("shop".into()),
                labels: Some([("a".to_string(), "b".to_string())].into()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(
                [
                    ("password".to_string(), ByteString(b"hunter2".to_vec())),
                    ("empty".to_string(), ByteString(Vec::new())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let wire = to_json(&WireSecret(&secret)).unwrap();
        // Sized before writing: it never grew, so no unwiped copy was left.
        assert_eq!(wire.capacity(), wire.len());
        let back: Secret = serde_json::from_slice(&wire).unwrap();
        assert_eq!(back, secret);
        let v: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["data"]["password"], "aHVudGVyMg==");
    }

    /// The merge patch sets the given keys, deletes the removed ones and
    /// names nothing else of the Secret.
    #[test]
    fn a_merge_patch_sets_and_removes_only_its_keys() {
        let secret = Secret {
            metadata: ObjectMeta {
                labels: Some([("l".to_string(), "db".to_string())].into()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        };
        let patch = WireMergePatch {
            secret: &secret,
            remove: &["old".to_string()],
            resource_version: Some("7"),
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&patch).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "metadata": {"resourceVersion": "7", "labels": {"l": "db"}},
                "data": {"password": "aHVudGVyMg==", "old": null}
            })
        );
    }

    #[test]
    fn a_secret_is_wiped_in_place() {
        let mut s = Secret {
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            string_data: Some([("token".to_string(), "abc".to_string())].into()),
            ..Default::default()
        };
        secret(&mut s);
        assert!(s.data.unwrap()["password"].0.is_empty());
        assert_eq!(s.string_data.unwrap()["token"], "");
    }
}
