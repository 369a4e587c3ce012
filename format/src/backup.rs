//! Key ring backups: an identity file with `# coffer:` comment lines (key
//! id, creation time, state), age-encrypted and armored to an admin's
//! recipient. The plaintext exists only in memory.

use std::fmt::Write as _;
use std::io::{Read, Write};

use zeroize::Zeroizing;

use crate::key::{KeyId, PublicKey, SecretKey};

/// One key in a backup.
#[derive(Clone, Debug)]
pub struct BackupEntry {
    /// The private key.
    pub key: SecretKey,
    /// When the key was made, as its `# coffer:` comment says (a claim,
    /// for people; never in the future).
    pub created: Option<jiff::Timestamp>,
    /// Whether the key was retired when the backup was written.
    pub retired: bool,
}

/// Why a backup could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file does not decrypt with the identity given (age's reason).
    #[error("the backup is not an age file encrypted to the given identity: {0}")]
    Decrypt(String),
    /// The file holds no identity at all.
    #[error("the backup holds no Coffer key")]
    Empty,
    /// A line that is neither a comment nor an age identity.
    #[error("line {line}: not an age identity (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…)")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
    },
    /// A `# coffer:` comment that does not parse.
    #[error("line {line}: bad coffer comment: {why}")]
    BadComment {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it (never the key).
        why: String,
    },
    /// A creation time in the future: forged, or from a wrong clock.
    #[error(
        "line {line}: key created {created}, which is in the future; a backup written by Coffer cannot say that (forged or from a machine with a wrong clock)"
    )]
    FutureCreated {
        /// The line's number, from 1.
        line: usize,
        /// The time the comment claims.
        created: jiff::Timestamp,
    },
    /// A comment that names another key than the identity below it.
    #[error("line {line}: the comment names key {said} but the identity below it is key {actual}")]
    KeyIdMismatch {
        /// The line's number, from 1.
        line: usize,
        /// The key id the comment names.
        said: String,
        /// The id of the identity below it.
        actual: String,
    },
    /// Encrypting the backup to the admin's recipient failed (age's reason).
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// How far a timestamp written by another machine may lie ahead of this
/// clock before it is refused as being in the future.
pub const MAX_CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Whether `t` lies in the future of `now` by more than [`MAX_CLOCK_SKEW`].
pub fn is_future(t: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    t > now
        .saturating_add(MAX_CLOCK_SKEW)
        .unwrap_or(jiff::Timestamp::MAX)
}

/// The backup plaintext: an age identity file that stock `age -d -i` users
/// can also read once decrypted.
pub fn render(entries: &[BackupEntry], created: jiff::Timestamp) -> Zeroizing<String> {
    let mut out = Zeroizing::new(format!(
        "# Coffer key ring backup, made {created}. PRIVATE KEYS: keep encrypted.\n"
    ));
    for e in entries {
        let _ = write!(out, "# coffer: key={}", e.key.id());
        if let Some(c) = e.created {
            let _ = write!(out, " created={c}");
        }
        let _ = writeln!(
            out,
            " state={}",
            if e.retired { "retired" } else { "usable" }
        );
        let secret = e.key.to_secret_string();
        out.push_str(&secret);
        out.push('\n');
    }
    out
}

/// Parses a backup plaintext (or any age identity file), strictly: every
/// `# coffer:` comment must name the key below it, hold a valid time that
/// is not in the future of `now`, and a known state. A backup is encrypted
/// to an admin's *public* key, so anyone can write one: nothing in it is
/// trusted beyond the keys themselves, and those only once the admin has
/// checked them against committed recipients files (`coffer keys restore`).
pub fn parse(text: &str, now: jiff::Timestamp) -> Result<Vec<BackupEntry>, BackupError> {
    let mut entries = Vec::new();
    let mut said: Option<(usize, String)> = None;
    let (mut created, mut retired) = (None, false);
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            if let Some(fields) = c.trim().strip_prefix("coffer:") {
                // Refusals name the line and the field, never text from the
                // file: a backup is private key material, and in a damaged
                // one a key (or part of one) may have run into a comment.
                let bad = |why: &str| BackupError::BadComment {
                    line: line_no,
                    why: why.to_string(),
                };
                for w in fields.split_whitespace() {
                    match w.split_once('=') {
                        Some(("key", v)) => said = Some((line_no, v.to_string())),
                        Some(("created", v)) => {
                            let t: jiff::Timestamp = v
                                .parse()
                                .map_err(|_| bad("created= is not an RFC 3339 time"))?;
                            if is_future(t, now) {
                                return Err(BackupError::FutureCreated {
                                    line: line_no,
                                    created: t,
                                });
                            }
                            created = Some(t);
                        }
                        Some(("state", "retired")) => retired = true,
                        Some(("state", "usable" | "open-only")) => retired = false,
                        Some(("state", _)) => {
                            return Err(bad("state= is not usable, open-only or retired"));
                        }
                        _ => return Err(bad("a field is not key=, created= or state=")),
                    }
                }
            }
            continue;
        }
        let key = SecretKey::parse(line).map_err(|_| BackupError::BadLine { line: line_no })?;
        if let Some((line, said)) = said.take()
            && said != key.id().to_string()
        {
            return Err(BackupError::KeyIdMismatch {
                line,
                said: said
                    .parse::<KeyId>()
                    .map_or_else(|_| "[not a key id]".to_string(), |id| id.to_string()),
                actual: key.id().to_string(),
            });
        }
        entries.push(BackupEntry {
            key,
            created: created.take(),
            retired: std::mem::take(&mut retired),
        });
    }
    if entries.is_empty() {
        return Err(BackupError::Empty);
    }
    Ok(entries)
}

/// Encrypts a backup to the admins' recipients, ASCII-armored.
pub fn encrypt(plain: &str, to: &[PublicKey]) -> Result<String, BackupError> {
    let enc =
        age::Encryptor::with_recipients(to.iter().map(|r| r.recipient() as &dyn age::Recipient))
            .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    let mut w = enc
        .wrap_output(armor)
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    w.write_all(plain.as_bytes())
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    w.finish()
        .and_then(|a| a.finish())
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    String::from_utf8(out).map_err(|e| BackupError::Encrypt(e.to_string()))
}

/// Decrypts a backup (armored or binary) with the admin's identities.
pub fn decrypt(data: &[u8], identities: &[SecretKey]) -> Result<Zeroizing<String>, BackupError> {
    let reader = age::armor::ArmoredReader::new(data);
    let d = age::Decryptor::new(reader).map_err(|e| BackupError::Decrypt(e.to_string()))?;
    let mut r = d
        .decrypt(
            identities
                .iter()
                .map(|i| i.identity() as &dyn age::Identity),
        )
        .map_err(|e| BackupError::Decrypt(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out)
        .map_err(|e| BackupError::Decrypt(e.to_string()))?;
    let text = std::str::from_utf8(&out).map_err(|_| BackupError::Decrypt("not text".into()))?;
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_round_trips_through_age_and_keeps_states() {
        let admin = SecretKey::generate();
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let entries = vec![
            BackupEntry {
                key: a.clone(),
                created: Some(jiff::Timestamp::UNIX_EPOCH),
                retired: false,
            },
            BackupEntry {
                key: b.clone(),
                created: None,
                retired: true,
            },
        ];
        let plain = render(&entries, jiff::Timestamp::UNIX_EPOCH);
        let armored = encrypt(&plain, &[admin.public().clone()]).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("AGE-SECRET-KEY"));
        let back = parse(
            &decrypt(armored.as_bytes(), &[admin]).unwrap(),
            jiff::Timestamp::now(),
        )
        .unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].key.id(), a.id());
        assert!(!back[0].retired && back[1].retired);
        assert_eq!(back[0].created, Some(jiff::Timestamp::UNIX_EPOCH));
    }

    /// A backup to a post-quantum admin opens with that admin's key; age
    /// refuses a backup to a post-quantum and an X25519 admin at once (the
    /// X25519 stanza would undo the protection).
    #[test]
    fn backups_to_post_quantum_admins_round_trip_and_never_mix_kinds() {
        use crate::key::KeyKind;
        let admin = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let key = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let plain = render(
            &[BackupEntry {
                key: key.clone(),
                created: None,
                retired: false,
            }],
            jiff::Timestamp::UNIX_EPOCH,
        );
        let armored = encrypt(&plain, &[admin.public().clone()]).unwrap();
        let back = parse(
            &decrypt(armored.as_bytes(), std::slice::from_ref(&admin)).unwrap(),
            jiff::Timestamp::now(),
        )
        .unwrap();
        assert_eq!(back[0].key.id(), key.id());
        assert_eq!(back[0].key.kind(), KeyKind::MlKem768X25519);
        assert!(matches!(
            encrypt(
                &plain,
                &[
                    admin.public().clone(),
                    SecretKey::generate().public().clone()
                ]
            ),
            Err(BackupError::Encrypt(_))
        ));
    }

    #[test]
    fn wrong_identity_cannot_open_a_backup() {
        let plain = render(
            &[BackupEntry {
                key: SecretKey::generate(),
                created: None,
                retired: false,
            }],
            jiff::Timestamp::UNIX_EPOCH,
        );
        let armored = encrypt(&plain, &[SecretKey::generate().public().clone()]).unwrap();
        assert!(matches!(
            decrypt(armored.as_bytes(), &[SecretKey::generate()]),
            Err(BackupError::Decrypt(_))
        ));
    }

    fn backup_of(key: &SecretKey, comment: &str) -> String {
        format!("# coffer: {comment}\n{}\n", key.to_secret_string().as_str())
    }

    #[test]
    fn future_created_is_refused() {
        let key = SecretKey::generate();
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let text = backup_of(&key, "created=2099-01-01T00:00:00Z state=usable");
        assert!(matches!(
            parse(&text, now),
            Err(BackupError::FutureCreated { line: 1, .. })
        ));
        // Within the allowed skew is fine; the past is fine.
        let soon = backup_of(&key, "created=2026-12-01T00:04:00Z");
        assert!(parse(&soon, now).is_ok());
        let past = backup_of(&key, "created=2020-01-01T00:00:00Z");
        assert!(parse(&past, now).is_ok());
    }

    /// Fuzzing finding (`backup`): a comment's unknown field, state or time
    /// was quoted whole in the error, so a private key run into its comment
    /// line (a lost line break, old CR line endings, a stray control
    /// character) was printed with the refusal. Now no text of a backup is
    /// quoted, only key ids that are key ids.
    #[test]
    fn refusals_never_show_a_private_key_run_into_a_comment() {
        let key = SecretKey::generate();
        let secret = key.to_secret_string();
        let payload = &secret["AGE-SECRET-KEY-1".len()..];
        let now = jiff::Timestamp::now();
        let id = key.id();
        for text in [
            // CR line endings: one line for `lines()`, the key a word of it.
            format!("# coffer: key={id} state=usable\r{}\r", secret.as_str()),
            // The crashing input's shape: a control character, not a space.
            format!("# coffer: key={id} state=retired\x0e{}\n", secret.as_str()),
            format!("# coffer: created=2026\x0e{}\n", secret.as_str()),
            format!("# coffer: key={}\n{}\n", secret.as_str(), secret.as_str()),
            // The second crashing input: a key that lost its prefix, glued
            // to a creation time.
            format!("# coffer: created=202{}\n", &secret[14..]),
            format!(
                "# coffer: key={id} state=usable\r{}\r",
                secret.to_lowercase()
            ),
        ] {
            let err = parse(&text, now).unwrap_err().to_string();
            assert!(!err.to_uppercase().contains(payload), "{err}");
        }
        // A key id in a comment is public, and shown when it is one.
        let other = SecretKey::generate().id();
        let err = parse(&backup_of(&key, &format!("key={other}")), now).unwrap_err();
        assert!(err.to_string().contains(&other.to_string()), "{err}");
    }

    #[test]
    fn comments_must_name_the_key_below_and_be_well_formed() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let now = jiff::Timestamp::now();
        let text = backup_of(&key, &format!("key={}", other.id()));
        assert!(matches!(
            parse(&text, now),
            Err(BackupError::KeyIdMismatch { line: 1, .. })
        ));
        for bad in ["created=yesterday", "state=active", "owner=me"] {
            assert!(
                matches!(
                    parse(&backup_of(&key, bad), now),
                    Err(BackupError::BadComment { line: 1, .. })
                ),
                "{bad}"
            );
        }
        let ok = backup_of(&key, &format!("key={} state=retired", key.id()));
        let entries = parse(&ok, now).unwrap();
        assert!(entries[0].retired);
    }
}
