//! Recipients files: the age recipients format (one `age1…` per line) with
//! `# coffer:` comment lines that carry each key's id, cluster and creation
//! time. Stock `age -R FILE` reads them as they are.

use std::fmt::Write as _;

use crate::key::{KeyError, KeyId, PublicKey, shown};

/// One recipient of a recipients file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientEntry {
    /// The recipient.
    pub key: PublicKey,
    /// Cluster name from the comment line, if any.
    pub cluster: Option<String>,
    /// Creation time from the comment line, if any.
    pub created: Option<jiff::Timestamp>,
}

/// A parsed recipients file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientsFile {
    /// The recipients, in the file's order.
    pub entries: Vec<RecipientEntry>,
}

/// Why a recipients file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecipientsError {
    /// A line that is not a valid recipient.
    #[error("line {line}: {source}")]
    Key {
        /// The line's number, from 1.
        line: usize,
        /// Why the recipient was refused.
        source: KeyError,
    },
    /// A comment that names another key than the recipient below it.
    #[error("line {line}: comment says key {said} but the recipient below it has id {actual}")]
    KeyIdMismatch {
        /// The line's number, from 1.
        line: usize,
        /// The key id the comment names.
        said: KeyId,
        /// The id of the recipient below it.
        actual: KeyId,
    },
    /// A `# coffer:` comment that does not parse.
    #[error("line {line}: bad coffer comment: {why}")]
    BadComment {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The file holds no recipient.
    #[error("no recipients in the file")]
    Empty,
}

#[derive(Default)]
struct Meta {
    line: usize,
    key: Option<KeyId>,
    cluster: Option<String>,
    created: Option<jiff::Timestamp>,
}

impl RecipientsFile {
    /// Parses a recipients file.
    pub fn parse(text: &str) -> Result<Self, RecipientsError> {
        let mut entries = Vec::new();
        let mut meta: Option<Meta> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(fields) = comment.trim().strip_prefix("coffer:") {
                    meta = Some(parse_meta(line_no, fields)?);
                }
                continue;
            }
            let key: PublicKey = line.parse().map_err(|source| RecipientsError::Key {
                line: line_no,
                source,
            })?;
            let m = meta.take().unwrap_or_default();
            if let Some(said) = m.key
                && said != key.id()
            {
                return Err(RecipientsError::KeyIdMismatch {
                    line: m.line,
                    said,
                    actual: key.id(),
                });
            }
            entries.push(RecipientEntry {
                key,
                cluster: m.cluster,
                created: m.created,
            });
        }
        if entries.is_empty() {
            return Err(RecipientsError::Empty);
        }
        Ok(RecipientsFile { entries })
    }

    /// Writes the file in the canonical form `parse` reads back.
    pub fn render(&self) -> String {
        // The format names no command or flag: how to seal with the file is
        // the CLI's to say (coffer seal --help, docs/cli.md).
        let mut out = String::from("# Coffer recipients file: public keys only, safe to commit.\n");
        for e in &self.entries {
            let _ = write!(out, "# coffer: key={}", e.key.id());
            if let Some(c) = &e.cluster {
                let _ = write!(out, " cluster={c}");
            }
            if let Some(t) = &e.created {
                let _ = write!(out, " created={t}");
            }
            let _ = writeln!(out, "\n{}", e.key);
        }
        out
    }

    /// The public keys, in file order.
    pub fn keys(&self) -> Vec<PublicKey> {
        self.entries.iter().map(|e| e.key.clone()).collect()
    }

    /// The newest creation time in the file, if any entry has one.
    pub fn newest(&self) -> Option<jiff::Timestamp> {
        self.entries.iter().filter_map(|e| e.created).max()
    }
}

fn parse_meta(line: usize, fields: &str) -> Result<Meta, RecipientsError> {
    let bad = |why: String| RecipientsError::BadComment { line, why };
    let mut meta = Meta {
        line,
        ..Meta::default()
    };
    for word in fields.split_whitespace() {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| bad(format!("{} is not key=value", shown(word))))?;
        match k {
            "key" => {
                meta.key = Some(
                    v.parse()
                        .map_err(|e: crate::key::BadKeyId| bad(e.to_string()))?,
                )
            }
            "cluster" => meta.cluster = Some(v.to_string()),
            "created" => {
                let t: jiff::Timestamp = v
                    .parse()
                    .map_err(|_| bad(format!("created={} is not an RFC 3339 time", shown(v))))?;
                // A date in the future would silence the staleness warning
                // forever; no file Coffer wrote can say it.
                if crate::backup::is_future(t, jiff::Timestamp::now()) {
                    return Err(bad(format!("created={} is in the future", shown(v))));
                }
                meta.created = Some(t)
            }
            // Unknown fields are kept for forward compatibility.
            _ => {}
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SecretKey;

    #[test]
    fn rendered_file_parses_back_with_metadata() {
        let k = SecretKey::generate();
        let file = RecipientsFile {
            entries: vec![RecipientEntry {
                key: k.public().clone(),
                cluster: Some("prod-eu".into()),
                created: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            }],
        };
        let text = file.render();
        assert_eq!(RecipientsFile::parse(&text).unwrap(), file);
    }

    #[test]
    fn plain_age_recipients_file_is_accepted() {
        let k = SecretKey::generate();
        let f = RecipientsFile::parse(&format!("# made by age\n{}\n", k.public())).unwrap();
        assert_eq!(f.entries[0].key.id(), k.id());
        assert_eq!(f.entries[0].cluster, None);
    }

    #[test]
    fn comment_with_wrong_key_id_is_refused() {
        let k = SecretKey::generate();
        let text = format!("# coffer: key={}\n{}\n", "0".repeat(64), k.public());
        assert!(matches!(
            RecipientsFile::parse(&text),
            Err(RecipientsError::KeyIdMismatch { line: 1, .. })
        ));
    }

    /// Fuzzing finding (`backup` target, which parses recipients files
    /// too): an identity file given where a recipients file belongs was
    /// refused with its private key in the message ("not an age X25519
    /// recipient: AGE-SECRET-KEY-1…"), printed to a terminal or CI log. Now
    /// text holding a private key is never shown.
    #[test]
    fn an_identity_file_given_as_recipients_is_refused_without_showing_the_key() {
        let k = SecretKey::generate();
        let secret = k.to_secret_string();
        let payload = &secret["AGE-SECRET-KEY-1".len()..];
        let identity_file = k.to_identity_file(&jiff::Timestamp::UNIX_EPOCH);
        for text in [
            identity_file.to_string(),
            secret.to_lowercase(),
            format!("# coffer: cluster=a\r{}\r", secret.as_str()),
            format!("# coffer: key={}\n{}\n", secret.as_str(), k.public()),
        ] {
            let err = RecipientsFile::parse(&text).unwrap_err().to_string();
            assert!(!err.to_uppercase().contains(payload), "{err}");
            assert!(err.contains("not shown"), "{err}");
        }
        // A public key typo is still shown, quoted.
        let err = RecipientsFile::parse("age1nope\n").unwrap_err().to_string();
        assert!(err.contains("\"age1nope\""), "{err}");
    }

    #[test]
    fn a_creation_time_in_the_future_is_refused() {
        let k = SecretKey::generate();
        let text = format!(
            "# coffer: key={} created=2099-01-01T00:00:00Z\n{}\n",
            k.id(),
            k.public()
        );
        let err = RecipientsFile::parse(&text).unwrap_err();
        assert!(matches!(err, RecipientsError::BadComment { line: 1, .. }));
        assert!(err.to_string().contains("in the future"), "{err}");
    }

    /// Files may list both kinds; every rule (metadata, key id check, no
    /// private key shown) holds for post-quantum lines too.
    #[test]
    fn post_quantum_and_x25519_lines_mix_in_one_file() {
        use crate::key::KeyKind;
        let pq = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let x = SecretKey::generate();
        let file = RecipientsFile {
            entries: [&pq, &x]
                .iter()
                .map(|k| RecipientEntry {
                    key: k.public().clone(),
                    cluster: Some("prod".into()),
                    created: Some("2026-11-01T00:00:00Z".parse().unwrap()),
                })
                .collect(),
        };
        let text = file.render();
        assert!(text.contains(&format!("# coffer: key={}", pq.id())));
        let back = RecipientsFile::parse(&text).unwrap();
        assert_eq!(back, file);
        assert_eq!(
            back.keys().iter().map(|k| k.kind()).collect::<Vec<_>>(),
            [KeyKind::MlKem768X25519, KeyKind::X25519]
        );
        // A comment naming the other key is refused.
        let swapped = format!("# coffer: key={}\n{}\n", x.id(), pq.public());
        assert!(matches!(
            RecipientsFile::parse(&swapped),
            Err(RecipientsError::KeyIdMismatch { line: 1, .. })
        ));
        // A post-quantum identity file in its place is refused unseen.
        let secret = pq.to_secret_string();
        let payload = &secret["AGE-SECRET-KEY-PQ-1".len()..];
        let err = RecipientsFile::parse(&pq.to_identity_file(&jiff::Timestamp::UNIX_EPOCH))
            .unwrap_err()
            .to_string();
        assert!(!err.to_uppercase().contains(payload), "{err}");
        // A damaged post-quantum recipient is refused, quoted short.
        let mut damaged = pq.public().to_string();
        damaged.truncate(1000);
        let err = RecipientsFile::parse(&damaged).unwrap_err().to_string();
        assert!(
            err.contains("not an age recipient") && err.len() < 200,
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(matches!(
            RecipientsFile::parse("# nothing\n"),
            Err(RecipientsError::Empty)
        ));
    }
}
