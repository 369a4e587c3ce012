//! The git repository a path lies in, found from the path as the user
//! typed it, and the symlinks that lead out of it. `.coffer.yaml` rules and
//! `coffer check` trust only what is inside the repository being worked
//! in: a symlinked directory inside it that points elsewhere must not bring
//! another tree's `.git` and rules with it. In the library, private to
//! it, for those two.

use std::path::{Component, Path, PathBuf};

/// `path` made absolute against the current directory, with `.` and `..`
/// removed lexically (as a shell's `cd -L` does): no symlink is resolved,
/// so the result names the place the user typed, not where a link leads.
pub(crate) fn lexical(path: &Path) -> Option<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// `rel` joined to `dir` lexically, or `None` when it is absolute or its
/// `..` climb above `top`.
pub(crate) fn join_within(top: &Path, dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if rel.is_absolute() || rel.has_root() {
        return None;
    }
    let mut out = dir.to_path_buf();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out == top || !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    out.starts_with(top).then_some(out)
}

/// The repository `dir` (absolute and lexical, see [`lexical`]) lies in:
/// the nearest directory above it, or itself, that holds `.git`, unless it
/// is reached through a symlink from inside an enclosing repository. So
/// `s/linked -> /elsewhere/` inside the user's repository, with a `.git` of
/// its own there, does not make `/elsewhere` the repository; a repository
/// reached through a symlink from outside any other (`~/src/app ->
/// /data/app`) still is one.
pub(crate) fn root_of(dir: &Path) -> Option<PathBuf> {
    let holders: Vec<&Path> = dir
        .ancestors()
        .filter(|d| d.join(".git").exists())
        .collect();
    holders
        .iter()
        .enumerate()
        .find(|(i, d)| match holders.get(i + 1) {
            None => true,
            Some(outer) => first_symlink(outer, d).is_none(),
        })
        .map(|(_, d)| d.to_path_buf())
}

/// The first symlink on the way from `top` down to `path` (not `top`
/// itself; `path` included), if any.
fn first_symlink(top: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(top).ok()?;
    let mut at = top.to_path_buf();
    for c in rel.components() {
        at.push(c);
        if is_symlink(&at) {
            return Some(at);
        }
    }
    None
}

pub(crate) fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A repository, and its real path (symlinks resolved) to tell what is
/// inside it.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    /// As found from the path typed (lexical).
    pub(crate) root: PathBuf,
    real: PathBuf,
}

impl Repository {
    /// `root`, which must exist.
    pub(crate) fn new(root: PathBuf) -> Option<Repository> {
        let real = root.canonicalize().ok()?;
        Some(Repository { root, real })
    }

    /// Whether the real path `real` (symlinks resolved) is inside.
    pub(crate) fn holds(&self, real: &Path) -> bool {
        real.starts_with(&self.real)
    }

    /// The first symlink on the way from the root down to `path` (lexical,
    /// under the root; `path` itself included) that leads out of the
    /// repository. A link that cannot be resolved (dangling, a cycle) leads
    /// nowhere; reading through it fails on its own.
    pub(crate) fn link_out(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut at = self.root.clone();
        for c in rel.components() {
            at.push(c);
            if is_symlink(&at)
                && let Ok(real) = at.canonicalize()
                && !self.holds(&real)
            {
                return Some(at);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_drop_dots_without_resolving_links() {
        assert_eq!(
            lexical(Path::new("/r/s/./linked/../x.yaml")).unwrap(),
            PathBuf::from("/r/s/x.yaml")
        );
        assert_eq!(lexical(Path::new("/../r")).unwrap(), PathBuf::from("/r"));
    }

    #[test]
    fn recipients_paths_stay_within_the_repository() {
        let top = Path::new("/repo");
        let dir = Path::new("/repo/sub");
        assert_eq!(
            join_within(top, dir, "../recipients/prod.txt"),
            Some(PathBuf::from("/repo/recipients/prod.txt"))
        );
        assert_eq!(
            join_within(top, dir, "./r/a.txt"),
            Some(PathBuf::from("/repo/sub/r/a.txt"))
        );
        assert_eq!(join_within(top, dir, "../../other/prod.txt"), None);
        assert_eq!(join_within(top, top, "../repo/prod.txt"), None);
        assert_eq!(join_within(top, dir, "/repo/prod.txt"), None);
    }
}
