//! Reproducible tar and gzip: entries sorted by path, one fixed mtime,
//! owner root:root with no user or group names, modes as given, and a gzip
//! header without a time or file name. Same entries, same bytes.

use std::io::Write as _;

use flate2::{Compression, GzBuilder};

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
}

/// One file or directory of an archive; `path` is relative, `/`-separated,
/// without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub kind: Kind,
}

impl Entry {
    pub fn file(path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Entry {
        Entry {
            path: path.into(),
            mode,
            kind: Kind::File(data.into()),
        }
    }

    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            mode,
            kind: Kind::Dir,
        }
    }
}

/// A POSIX (ustar) tar of `entries` sorted by path (a directory sorts
/// before what it holds), every entry with modification time `mtime`.
pub fn tar(entries: &[Entry], mtime: u64) -> anyhow::Result<Vec<u8>> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(w) = sorted.windows(2).find(|w| w[0].path == w[1].path) {
        anyhow::bail!("{} is in the archive twice", w[0].path);
    }
    let mut builder = tar::Builder::new(Vec::new());
    for e in sorted {
        anyhow::ensure!(
            !e.path.is_empty() && !e.path.starts_with('/') && !e.path.ends_with('/'),
            "bad archive path {:?}",
            e.path
        );
        let mut header = tar::Header::new_ustar();
        header.set_mode(e.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match &e.kind {
            Kind::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, &e.path, data.as_slice())?;
            }
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{}/", e.path), std::io::empty())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// `data` gzipped at the best compression, with no time or name in the
/// header (so only the bytes decide the output).
pub fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}
