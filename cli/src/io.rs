//! Reading inputs and writing outputs: stdin or files, YAML or JSON,
//! atomic writes. In the library because every command that reads or
//! writes a file does it here, and the fuzz targets build its `Input`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{Failure, Result};

/// Output format (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

/// An input: a file path, or `-`/none for stdin.
pub struct Input {
    pub name: String,
    pub text: Zeroizing<String>,
}

/// Largest input file accepted.
pub(crate) const MAX_INPUT: u64 = coffer_core::manifest::MAX_INPUT_LEN as u64;

/// Reads every file, or stdin when `paths` is empty or holds `-`.
pub fn read_inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    if paths.is_empty() {
        return Ok(vec![read_stdin()?]);
    }
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(read_stdin()?);
        } else if p.is_dir() {
            // A directory means every *.yaml, *.yml and *.json under it.
            for f in files_under(std::slice::from_ref(p))? {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(p)?);
        }
    }
    Ok(out)
}

/// Files under `paths`: files as given, directories searched recursively
/// for *.yaml, *.yml and *.json (hidden entries skipped), sorted.
pub fn files_under(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let roots = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    for root in roots {
        walk(&root, &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(p)
        .map_err(|e| Failure::input(format!("{}: {}", p.display(), io_reason(&e))))?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(p)
        .map_err(|e| Failure::input(format!("{}: {}", p.display(), io_reason(&e))))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let ft = e
            .file_type()
            .map_err(|err| Failure::input(format!("{}: {err}", path.display())))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if ft.is_file()
            && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

pub fn read_stdin() -> Result<Input> {
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut buf)
        .map_err(|e| Failure::input(format!("<stdin>: cannot read: {e}")))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Failure::input(format!(
            "<stdin>: input is larger than {MAX_INPUT} bytes"
        )));
    }
    Ok(Input {
        name: "<stdin>".into(),
        text: buf,
    })
}

/// Reads one text file (size-capped), in a buffer wiped on drop.
pub fn read_file(path: &Path) -> Result<Input> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::input(format!("{name}: cannot open: {}", io_reason(&e))))?;
    let mut buf = Zeroizing::new(String::new());
    file.take(MAX_INPUT + 1)
        .read_to_string(&mut buf)
        .map_err(|e| Failure::input(format!("{name}: cannot read: {}", io_reason(&e))))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Failure::input(format!(
            "{name}: file is larger than {MAX_INPUT} bytes"
        )));
    }
    Ok(Input { name, text: buf })
}

pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

/// Renders objects: YAML documents separated by `---`, or JSON (one
/// object, or a `List` for several).
pub fn render<T: Serialize>(items: &[T], format: Format) -> Result<String> {
    coffer_core::manifest::render(items, format == Format::Json).map_err(|e| Failure::new(1, e))
}

/// Writes `data` to `path` atomically: a temporary file in the same
/// directory, flushed and renamed over the target. Readers see the old
/// content or the new, never half of it. `private` makes it mode 0600.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<()> {
    let name = path.display().to_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // `-w clusters/prod.txt` in a fresh repository: make the directories,
    // as the README's first steps expect.
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::input(format!(
                "{name}: cannot create the directory {}: {}",
                dir.display(),
                io_reason(&e)
            ))
        })?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".coffer-")
        .tempfile_in(&dir)
        .map_err(|e| {
            Failure::input(format!(
                "{name}: cannot create a file in {}: {}",
                dir.display(),
                io_reason(&e)
            ))
        })?;
    if !private && let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    } else if !private {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Failure::input(format!("{name}: cannot write: {}", io_reason(&e))))?;
    tmp.persist(path)
        .map_err(|e| Failure::input(format!("{name}: cannot replace: {}", io_reason(&e.error))))?;
    Ok(())
}

/// Writes to `-w FILE` atomically, or to stdout.
pub fn emit(output: Option<&Path>, data: &str) -> Result<()> {
    match output {
        Some(p) if p.as_os_str() != "-" => write_atomic(p, data.as_bytes(), false),
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(data.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| Failure::new(1, format!("cannot write to stdout: {e}")))
        }
    }
}
