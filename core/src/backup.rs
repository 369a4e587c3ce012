//! Key ring backups: an identity file with `# coffer:` comment lines (key
//! id, creation time, state), age-encrypted and armored to an admin's
//! recipient. The plaintext exists only in memory.

use std::fmt::Write as _;
use std::io::{Read, Write};

use zeroize::Zeroizing;

use crate::keys::{PublicKey, SecretKey};

/// One key in a backup.
#[derive(Clone, Debug)]
pub struct BackupEntry {
    pub key: SecretKey,
    pub created: Option<jiff::Timestamp>,
    pub retired: bool,
}

/// Why a backup could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the backup is not an age file encrypted to the given identity: {0}")]
    Decrypt(String),
    #[error("the backup holds no Coffer key")]
    Empty,
    #[error("line {line}: not an age X25519 identity")]
    BadLine { line: usize },
    #[error("encryption failed: {0}")]
    Encrypt(String),
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

/// Parses a backup plaintext (or any age identity file).
pub fn parse(text: &str) -> Result<Vec<BackupEntry>, BackupError> {
    let mut entries = Vec::new();
    let (mut created, mut retired) = (None, false);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            if let Some(fields) = c.trim().strip_prefix("coffer:") {
                for w in fields.split_whitespace() {
                    match w.split_once('=') {
                        Some(("created", v)) => created = v.parse().ok(),
                        Some(("state", v)) => retired = v == "retired",
                        _ => {}
                    }
                }
            }
            continue;
        }
        let key = SecretKey::parse(line).map_err(|_| BackupError::BadLine { line: i + 1 })?;
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
        let back = parse(&decrypt(armored.as_bytes(), &[admin]).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].key.id(), a.id());
        assert!(!back[0].retired && back[1].retired);
        assert_eq!(back[0].created, Some(jiff::Timestamp::UNIX_EPOCH));
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
}
