//! Projects: which directories are projects, and which project each file belongs to.
//!
//! Owns the project rules; pure (no file system access: it works on the markers the walk
//! reported). It must not walk or write anything.
//!
//! # Rules
//! - A directory holding `.git` (a directory, or a file as in git worktrees and submodules)
//!   is a project.
//! - A directory holding a build marker (`Cargo.toml`, `package.json`, ...; see
//!   [`BUILD_MARKERS`](super::walk::BUILD_MARKERS)) is a project when it is the outermost one
//!   inside its enclosing project: below a project that holds a build marker itself, further
//!   markers (workspace members, test fixtures) do not make new projects; below a `.git`
//!   project without one (a monorepo), they do.
//! - Each root is a project too, whatever it holds: a root that is not a project by the rules
//!   above becomes one of kind `root`, so every file has a project. Directories above a root
//!   are not looked at.
//! - A file belongs to its innermost project; its `path` is relative to that project's root.
//! - A project's id is the xxh3-64 of its absolute root path, in hex: stable across runs
//!   and machines that use the same path. Its name is the root directory's name.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::db::{FastMap, path_to_bytes};
use super::walk::Marker;

/// Why a directory is a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectKind {
    /// It holds `.git`.
    Git,
    /// It holds a build marker.
    Marker,
    /// It is a configured root and nothing more.
    Root,
}

impl ProjectKind {
    /// The name stored in `projects.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectKind::Git => "git",
            ProjectKind::Marker => "marker",
            ProjectKind::Root => "root",
        }
    }
}

/// A project found this cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// Hex xxh3-64 of the root path.
    pub id: String,
    /// Absolute root.
    pub root: PathBuf,
    /// The root's directory name.
    pub name: String,
    /// Why it is a project.
    pub kind: ProjectKind,
}

impl Project {
    fn new(root: &Path, kind: ProjectKind) -> Project {
        Project {
            id: project_id(root),
            root: root.to_path_buf(),
            name: root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| root.display().to_string()),
            kind,
        }
    }
}

/// The stable id of the project rooted at `root`.
pub fn project_id(root: &Path) -> String {
    format!("{:016x}", xxh3_64(path_to_bytes(root)))
}

/// Drops roots inside other roots, and duplicates.
pub fn dedup_roots(mut roots: Vec<PathBuf>) -> Vec<PathBuf> {
    roots.sort();
    let mut kept: Vec<PathBuf> = Vec::with_capacity(roots.len());
    for r in roots {
        if !kept.iter().any(|k| r.starts_with(k)) {
            kept.push(r);
        }
    }
    kept
}

/// The projects under `roots` (deduplicated, absolute) given the markers the walk saw.
pub fn resolve(roots: &[PathBuf], markers: Vec<(PathBuf, Marker)>) -> Vec<Project> {
    #[derive(Clone, Copy, Default)]
    struct Flags {
        git: bool,
        build: bool,
    }
    let mut flags: BTreeMap<PathBuf, Flags> = BTreeMap::new();
    for (dir, m) in markers {
        let f = flags.entry(dir).or_default();
        match m {
            Marker::Git => f.git = true,
            Marker::Build => f.build = true,
        }
    }
    let mut projects = Vec::new();
    for root in roots {
        let rf = flags.get(root).copied().unwrap_or_default();
        let kind = match (rf.git, rf.build) {
            (true, _) => ProjectKind::Git,
            (false, true) => ProjectKind::Marker,
            (false, false) => ProjectKind::Root,
        };
        projects.push(Project::new(root, kind));
        // Enclosing projects, innermost last: (root, holds a build marker).
        let mut stack: Vec<(&Path, bool)> = vec![(root.as_path(), rf.build)];
        for (dir, f) in flags.range::<Path, _>((Bound::Included(root.as_path()), Bound::Unbounded))
        {
            if !dir.starts_with(root) {
                break;
            }
            if dir == root {
                continue;
            }
            while stack.len() > 1 && !dir.starts_with(stack[stack.len() - 1].0) {
                stack.pop();
            }
            let enclosing_has_build = stack[stack.len() - 1].1;
            if f.git {
                projects.push(Project::new(dir, ProjectKind::Git));
                stack.push((dir, f.build));
            } else if f.build && !enclosing_has_build {
                projects.push(Project::new(dir, ProjectKind::Marker));
                stack.push((dir, true));
            }
        }
    }
    projects
}

/// Finds each file's innermost project, remembering directories already resolved.
pub struct Assigner<'p> {
    by_root: FastMap<&'p [u8], usize>,
    memo: FastMap<Vec<u8>, usize>,
}

impl<'p> Assigner<'p> {
    /// An assigner over `projects`.
    pub fn new(projects: &'p [Project]) -> Assigner<'p> {
        Assigner {
            by_root: projects
                .iter()
                .enumerate()
                .map(|(i, p)| (path_to_bytes(&p.root), i))
                .collect(),
            memo: FastMap::default(),
        }
    }

    /// The index of `file`'s innermost project, if it is under any project.
    pub fn project_of(&mut self, file: &Path) -> Option<usize> {
        let parent = file.parent()?;
        let key = path_to_bytes(parent);
        if let Some(&i) = self.memo.get(key) {
            return Some(i);
        }
        let found = parent
            .ancestors()
            .find_map(|a| self.by_root.get(path_to_bytes(a)).copied())?;
        self.memo.insert(key.to_vec(), found);
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn nesting_rules() {
        let roots = vec![p("/r")];
        let markers = vec![
            (p("/r/mono"), Marker::Git),
            (p("/r/mono/web"), Marker::Build),
            (p("/r/mono/web/node_modules/x"), Marker::Build),
            (p("/r/mono/api"), Marker::Build),
            (p("/r/crate"), Marker::Build),
            (p("/r/crate/member"), Marker::Build),
            (p("/r/crate/vendor/sub"), Marker::Git),
            (p("/r/crate/vendor/sub/inner"), Marker::Build),
            (p("/r/crate/vendor/sub/inner/deeper"), Marker::Build),
        ];
        let got: Vec<(String, ProjectKind)> = resolve(&roots, markers)
            .into_iter()
            .map(|pr| (pr.root.display().to_string(), pr.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/r".into(), ProjectKind::Root),
                ("/r/crate".into(), ProjectKind::Marker),
                ("/r/crate/vendor/sub".into(), ProjectKind::Git),
                ("/r/crate/vendor/sub/inner".into(), ProjectKind::Marker),
                ("/r/mono".into(), ProjectKind::Git),
                ("/r/mono/api".into(), ProjectKind::Marker),
                ("/r/mono/web".into(), ProjectKind::Marker),
            ]
        );
        let projects = resolve(&roots, vec![(p("/r/a"), Marker::Build)]);
        let mut a = Assigner::new(&projects);
        assert_eq!(a.project_of(Path::new("/r/a/src/x.rs")), Some(1));
        assert_eq!(a.project_of(Path::new("/r/b.txt")), Some(0));
        assert_eq!(a.project_of(Path::new("/r/ab/x")), Some(0));
    }

    #[test]
    fn root_with_marker_and_nested_roots() {
        let roots = dedup_roots(vec![p("/r/x"), p("/r"), p("/r")]);
        assert_eq!(roots, vec![p("/r")]);
        let projects = resolve(
            &roots,
            vec![(p("/r"), Marker::Build), (p("/r/w"), Marker::Build)],
        );
        assert_eq!(projects.len(), 1);
        assert_eq!(projects[0].kind, ProjectKind::Marker);
        assert_eq!(projects[0].name, "r");
        assert_eq!(projects[0].id, project_id(Path::new("/r")));
        assert_eq!(projects[0].id.len(), 16);
    }
}
