//! One indexing cycle: load the index, walk, resolve projects, write the differences.
//!
//! Owns the decisions of a cycle (new / changed / unchanged / removed, projects created and
//! vanished) and its figures. It must not loop, sleep or exit: the run loop does that.
//!
//! A cycle writes nothing for unchanged files: with nothing changed on disk, it costs one
//! `lstat` per file, a hash-map lookup, and one small transaction for the `cycles` row.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use super::IndexingSettings;
use super::db::{CycleRow, Db, DbError, FileRow, Op};
use super::language;
use super::progress::{Phase, Progress};
use super::projects::{self, Assigner, Project};
use super::walk::{self, FileState};

/// Ops handed to the database thread at a time.
const OPS_CHUNK: usize = 1024;

/// Runs cycle number `n`. Per-file errors are counted in the result; an `Err` is a database
/// failure that is not a busy/locked database (those are retried inside).
pub fn run(
    settings: &IndexingSettings,
    db: &Db,
    progress: &Progress,
    n: u64,
) -> Result<CycleRow, DbError> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now().to_string();
    progress.start_cycle(n);
    let mut errors = 0u64;

    let prev = db.load()?;
    let loaded = started.elapsed();
    let roots = canonical_roots(&settings.roots, &mut errors);
    let walked = walk::walk(&roots, &prev, progress);
    let walk_done = started.elapsed();
    errors += walked.errors;
    progress.set_phase(Phase::Writing);

    let projects = projects::resolve(&roots, walked.markers);
    let current: HashMap<&str, usize> = projects
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    // Previous project index -> current project index, when it still exists.
    let prev_to_cur: Vec<Option<usize>> = prev
        .projects
        .iter()
        .map(|p| current.get(p.id.as_str()).copied())
        .collect();
    let known: std::collections::HashSet<&str> =
        prev.projects.iter().map(|p| p.id.as_str()).collect();

    let mut out = Batcher::new(db);
    for p in projects.iter().filter(|p| !known.contains(p.id.as_str())) {
        out.push(Op::AddProject {
            id: p.id.clone(),
            root: p.root.clone(),
            name: p.name.clone(),
            kind: p.kind.as_str(),
        })?;
    }

    let mut row = CycleRow {
        started_at,
        projects: projects.len() as u64,
        bytes_read: walked.bytes_read,
        ..CycleRow::default()
    };
    // With the same set of projects as before, every file keeps its project: unchanged files
    // need no assignment at all.
    let same_projects =
        projects.len() == prev.projects.len() && prev_to_cur.iter().all(|c| c.is_some());
    let mut assigner = Assigner::new(&projects);
    // Rows are written in primary-key order: appending to the b-tree beats random inserts.
    let mut puts: Vec<FileRow> = Vec::new();
    for file in walked.files {
        if same_projects && matches!(file.state, FileState::Unchanged { .. }) {
            row.unchanged += 1;
            continue;
        }
        let Some(pi) = assigner.project_of(&file.path) else {
            continue; // not under any root: cannot happen, roots are projects
        };
        let project = &projects[pi];
        let (content, prev_project) = match file.state {
            FileState::Failed => continue,
            FileState::Unchanged { prev_project }
                if prev_to_cur[prev_project as usize] == Some(pi) =>
            {
                row.unchanged += 1;
                continue;
            }
            FileState::Unchanged { prev_project } => {
                // Same file, new project (a marker appeared or went): read it again.
                match walk::read_one(&file.path, file.size) {
                    Ok(c) => {
                        row.bytes_read += c.bytes_read;
                        (c, Some(prev_project))
                    }
                    Err(err) => {
                        errors += 1;
                        tracing::warn!(
                            "cannot read {}: {}",
                            file.path.display(),
                            walk::describe(&err)
                        );
                        continue;
                    }
                }
            }
            FileState::Read {
                content,
                prev_project,
            } => (content, prev_project),
        };
        match prev_project {
            None => row.new += 1,
            Some(pp) => {
                row.changed += 1;
                if prev_to_cur[pp as usize] != Some(pi) {
                    let key = file.path.as_os_str().as_bytes();
                    if let Some(old) = prev.files.get(key) {
                        out.push(Op::DeleteFile {
                            project_id: prev.projects[pp as usize].id.clone(),
                            path: key[old.rel_start as usize..].to_vec(),
                        })?;
                    }
                }
            }
        }
        puts.push(file_row(
            project,
            &file.path,
            file.size,
            file.mtime_ns,
            content,
        ));
    }
    puts.sort_unstable_by(|a, b| (&a.project_id, &a.path).cmp(&(&b.project_id, &b.path)));
    for put in puts {
        out.push(Op::PutFile(put))?;
    }

    // Files that were not seen, and projects that vanished.
    for (key, pf) in &prev.files {
        if pf.seen.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        row.removed += 1;
        if prev_to_cur[pf.project as usize].is_some() {
            out.push(Op::DeleteFile {
                project_id: prev.projects[pf.project as usize].id.clone(),
                path: key[pf.rel_start as usize..].to_vec(),
            })?;
        }
    }
    for (p, cur) in prev.projects.iter().zip(&prev_to_cur) {
        if cur.is_none() {
            tracing::info!("removed project {} {}", p.id, p.root.display());
            out.push(Op::DeleteProject {
                project_id: p.id.clone(),
            })?;
        }
    }
    out.flush()?;
    let decided = started.elapsed();

    row.files = (prev.files.len() as u64 + row.new).saturating_sub(row.removed);
    row.errors = errors;
    row.seconds = started.elapsed().as_secs_f64();
    db.finish(row.clone())?;
    row.seconds = started.elapsed().as_secs_f64();
    tracing::debug!(
        "cycle {n} timings: load {:.3} s, walk {:.3} s, decide {:.3} s, write {:.3} s",
        loaded.as_secs_f64(),
        (walk_done - loaded).as_secs_f64(),
        (decided - walk_done).as_secs_f64(),
        row.seconds - decided.as_secs_f64()
    );
    Ok(row)
}

fn file_row(
    project: &Project,
    path: &std::path::Path,
    size: u64,
    mtime_ns: i64,
    content: super::content::Content,
) -> FileRow {
    let rel = path.strip_prefix(&project.root).unwrap_or(path);
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    FileRow {
        project_id: project.id.clone(),
        path: rel.as_os_str().as_bytes().to_vec(),
        size,
        mtime_ns,
        hash: content.hash,
        language: language::detect(name),
        lines: content.lines,
        is_binary: content.is_binary,
    }
}

/// Absolute, symlink-free, deduplicated roots; a root that cannot be resolved is logged and
/// counted (its projects then vanish from the index, like any deleted directory).
fn canonical_roots(roots: &[PathBuf], errors: &mut u64) -> Vec<PathBuf> {
    let mut ok = Vec::with_capacity(roots.len());
    for r in roots {
        match std::fs::canonicalize(r) {
            Ok(c) if c.is_dir() => ok.push(c),
            Ok(c) => {
                *errors += 1;
                tracing::warn!("root {} is not a directory; skipping it", c.display());
            }
            Err(err) => {
                *errors += 1;
                tracing::warn!(
                    "root {} cannot be used: {}",
                    r.display(),
                    walk::describe(&err)
                );
            }
        }
    }
    projects::dedup_roots(ok)
}

/// Hands ops to the database thread in chunks.
struct Batcher<'d> {
    db: &'d Db,
    ops: Vec<Op>,
}

impl<'d> Batcher<'d> {
    fn new(db: &'d Db) -> Batcher<'d> {
        Batcher {
            db,
            ops: Vec::with_capacity(OPS_CHUNK),
        }
    }

    fn push(&mut self, op: Op) -> Result<(), DbError> {
        self.ops.push(op);
        if self.ops.len() >= OPS_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DbError> {
        let ops = std::mem::replace(&mut self.ops, Vec::with_capacity(OPS_CHUNK));
        self.db.write(ops)
    }
}
