//! One indexing cycle: load the index, walk, resolve projects, write the differences.
//!
//! Owns the decisions of a cycle (new / changed / unchanged / removed, projects created and
//! vanished) and its figures. It must not loop, sleep or exit: the run loop does that.
//!
//! The steps, and what runs at the same time:
//! 1. walk the roots (`lstat` every file, on all cores) while the database thread loads the
//!    previous index (path → size, mtime) into a hash map;
//! 2. decide: a file whose size and mtime match (and whose project is unchanged) is skipped;
//!    the rest become read jobs in primary-key order;
//! 3. read the jobs on all cores (fixed-size chunks, running xxh3 and line count) while the
//!    database thread writes their rows in batched transactions;
//! 4. delete rows of files and projects that are gone, and write the `cycles` row.
//!
//! Several Indexing workers may share one `index.sqlite`: a cycle only removes projects and
//! files under its own roots (their roots must not overlap; the config loader rejects a config
//! where they do).
//!
//! A cycle writes nothing for unchanged files: with nothing changed on disk, it costs one
//! `lstat` per file, a hash-map lookup, and one small transaction for the `cycles` row.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::IndexingSettings;
use super::content::{self, CHUNK};
use super::db::{CycleRow, Db, DbError, FileRow, Op, Previous};
use super::language;
use super::progress::{Phase, Progress};
use super::projects::{self, Assigner, Project};
use super::walk::{self, PrevSource, Walked};

/// Ops handed to the database thread at a time.
const OPS_CHUNK: usize = 512;
/// Files a reading thread claims at a time.
const CLAIM: usize = 32;
/// Per-cycle cap on logged read errors (all are counted).
const MAX_LOGGED_ERRORS: u64 = 50;

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

    // The database thread loads the previous index while we walk.
    let loading = db.start_load()?;
    let source = PrevSource::new(&loading);
    let roots = canonical_roots(&settings.roots, &mut errors);
    let walked = walk::walk(&roots, &source, progress);
    tracing::debug!("walked in {:.3} s", started.elapsed().as_secs_f64());
    errors += walked.errors;
    let prev = source.into_inner()?;
    let walk_done = started.elapsed();

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
    // The projects this worker answers for: those under its roots (as configured, or as
    // resolved). Others in the same database belong to another Indexing worker.
    let owned: Vec<bool> = prev
        .projects
        .iter()
        .map(|p| {
            roots
                .iter()
                .chain(&settings.roots)
                .any(|r| p.root.starts_with(r))
        })
        .collect();
    let known: HashSet<&str> = prev.projects.iter().map(|p| p.id.as_str()).collect();
    let added: Vec<Op> = projects
        .iter()
        .filter(|p| !known.contains(p.id.as_str()))
        .map(|p| Op::AddProject {
            id: p.id.clone(),
            root: p.root.clone(),
            name: p.name.clone(),
            kind: p.kind.as_str(),
        })
        .collect();
    // With the same set of projects as before, every file keeps its project: unchanged files
    // need no assignment at all.
    let same_projects = added.is_empty()
        && prev_to_cur
            .iter()
            .zip(&owned)
            .all(|(cur, owned)| cur.is_some() || !owned);
    db.write(added)?;

    let mut row = CycleRow {
        started_at,
        projects: projects.len() as u64,
        ..CycleRow::default()
    };
    let jobs = decide(
        walked.files,
        walked.unchanged,
        &prev,
        &projects,
        &prev_to_cur,
        same_projects,
        &mut row,
    );
    let decided = started.elapsed();

    let read = read_all(&jobs, &projects, &prev, &prev_to_cur, db, progress)?;
    row.new = read.new;
    row.changed = read.changed;
    row.bytes_read = read.bytes;
    errors += read.errors;
    let read_done = started.elapsed();

    progress.set_phase(Phase::Writing);
    let mut ops = Vec::new();
    let mut owned_files = 0u64;
    for (key, pf) in prev.iter() {
        if !owned[pf.project as usize] {
            continue;
        }
        owned_files += 1;
        if pf.seen.load(Ordering::Relaxed) {
            continue;
        }
        row.removed += 1;
        if prev_to_cur[pf.project as usize].is_some() {
            ops.push(Op::DeleteFile {
                project_id: prev.projects[pf.project as usize].id.clone(),
                path: key[pf.rel_start as usize..].to_vec(),
            });
        }
    }
    for ((p, cur), owned) in prev.projects.iter().zip(&prev_to_cur).zip(&owned) {
        if cur.is_none() && *owned {
            tracing::info!("removed project {} {}", p.id, p.root.display());
            ops.push(Op::DeleteProject {
                project_id: p.id.clone(),
            });
        }
    }
    db.write(ops)?;

    row.files = (owned_files + row.new).saturating_sub(row.removed);
    row.errors = errors;
    row.seconds = started.elapsed().as_secs_f64();
    db.finish(row.clone())?;
    row.seconds = started.elapsed().as_secs_f64();
    tracing::debug!(
        "cycle {n} timings: walk+load {:.3} s, decide {:.3} s, read {:.3} s, write {:.3} s",
        walk_done.as_secs_f64(),
        (decided - walk_done).as_secs_f64(),
        (read_done - decided).as_secs_f64(),
        row.seconds - read_done.as_secs_f64()
    );
    Ok(row)
}

/// A file to read: new, changed, or moved to another project.
struct Job {
    file: Walked,
    /// Index into the current projects.
    project: usize,
    /// Its previous row: (previous project index, where the relative path starts).
    old: Option<(u32, u32)>,
}

/// Splits the walk into unchanged files (counted) and files to read (returned in primary-key
/// order, so rows reach the b-tree in order).
fn decide(
    files: Vec<Walked>,
    unchanged_in_walk: u64,
    prev: &Previous,
    projects: &[Project],
    prev_to_cur: &[Option<usize>],
    same_projects: bool,
    row: &mut CycleRow,
) -> Vec<Job> {
    let mut assigner = Assigner::new(projects);
    let mut jobs = Vec::new();
    if same_projects {
        row.unchanged += unchanged_in_walk;
    } else {
        // Files the walk found unchanged may still have moved to another project.
        for (key, p) in prev.iter() {
            if !p.unchanged.load(Ordering::Relaxed) {
                continue;
            }
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(key));
            let project = assigner.project_of(path);
            if project.is_some() && project == prev_to_cur[p.project as usize] {
                row.unchanged += 1;
                continue;
            }
            let Some(project) = project else { continue };
            jobs.push(Job {
                file: Walked {
                    path: path.to_path_buf(),
                    size: p.size,
                    mtime_ns: p.mtime_ns,
                },
                project,
                old: Some((p.project, p.rel_start)),
            });
        }
    }
    for file in files {
        let old = prev.get(file.path.as_os_str().as_bytes());
        let same_stat = match old {
            Some(p) => {
                p.seen.store(true, Ordering::Relaxed);
                p.size == file.size && p.mtime_ns == file.mtime_ns
            }
            None => false,
        };
        if same_stat && same_projects {
            row.unchanged += 1;
            continue;
        }
        let Some(project) = assigner.project_of(&file.path) else {
            continue; // not under any root: cannot happen, roots are projects
        };
        let old = old.map(|p| (p.project, p.rel_start));
        if same_stat && old.is_some_and(|(pp, _)| prev_to_cur[pp as usize] == Some(project)) {
            row.unchanged += 1;
            continue;
        }
        jobs.push(Job { file, project, old });
    }
    // Byte order, as SQLite compares TEXT (Path's own order goes component by component).
    let mut by_id: Vec<usize> = (0..projects.len()).collect();
    by_id.sort_unstable_by(|&a, &b| projects[a].id.cmp(&projects[b].id));
    let mut rank = vec![0u32; projects.len()];
    for (r, &p) in by_id.iter().enumerate() {
        rank[p] = r as u32;
    }
    jobs.sort_unstable_by(|a, b| {
        rank[a.project].cmp(&rank[b.project]).then_with(|| {
            a.file
                .path
                .as_os_str()
                .as_bytes()
                .cmp(b.file.path.as_os_str().as_bytes())
        })
    });
    jobs
}

#[derive(Default)]
struct ReadFigures {
    new: u64,
    changed: u64,
    bytes: u64,
    errors: u64,
}

/// Reads the jobs on every core, handing rows to the database thread as they come.
fn read_all(
    jobs: &[Job],
    projects: &[Project],
    prev: &Previous,
    prev_to_cur: &[Option<usize>],
    db: &Db,
    progress: &Progress,
) -> Result<ReadFigures, DbError> {
    progress.start_reading(jobs.len() as u64);
    if jobs.is_empty() {
        return Ok(ReadFigures::default());
    }
    let next = AtomicUsize::new(0);
    let errors = AtomicU64::new(0);
    let failed: Mutex<Option<DbError>> = Mutex::new(None);
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(jobs.len().div_ceil(CLAIM));
    let reader = || {
        let mut figures = ReadFigures::default();
        let mut buf = vec![0; CHUNK];
        let mut ops = Vec::with_capacity(OPS_CHUNK);
        loop {
            let start = next.fetch_add(CLAIM, Ordering::Relaxed);
            if start >= jobs.len() {
                break;
            }
            for job in &jobs[start..(start + CLAIM).min(jobs.len())] {
                let path = &job.file.path;
                let c = match content::read(path, job.file.size, &mut buf) {
                    Ok(c) => c,
                    Err(err) => {
                        progress.read(0);
                        if errors.fetch_add(1, Ordering::Relaxed) < MAX_LOGGED_ERRORS {
                            tracing::warn!(
                                "cannot read {}: {}",
                                path.display(),
                                walk::describe(&err)
                            );
                        }
                        continue;
                    }
                };
                progress.read(c.bytes_read);
                figures.bytes += c.bytes_read;
                match job.old {
                    None => figures.new += 1,
                    Some((pp, rel_start)) => {
                        figures.changed += 1;
                        if prev_to_cur[pp as usize] != Some(job.project) {
                            ops.push(Op::DeleteFile {
                                project_id: prev.projects[pp as usize].id.clone(),
                                path: path.as_os_str().as_bytes()[rel_start as usize..].to_vec(),
                            });
                        }
                    }
                }
                ops.push(Op::PutFile(file_row(&projects[job.project], &job.file, c)));
            }
            if ops.len() >= OPS_CHUNK {
                if let Err(e) = db.write(std::mem::replace(&mut ops, Vec::with_capacity(OPS_CHUNK)))
                {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    break;
                }
            }
        }
        if let Err(e) = db.write(ops) {
            failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        }
        figures
    };
    let mut total = ReadFigures::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(reader)).collect();
        let mine = reader();
        for f in handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .chain([mine])
        {
            total.new += f.new;
            total.changed += f.changed;
            total.bytes += f.bytes;
        }
    });
    total.errors = errors.load(Ordering::Relaxed);
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

fn file_row(project: &Project, file: &Walked, content: content::Content) -> FileRow {
    let path = &file.path;
    let rel = path.strip_prefix(&project.root).unwrap_or(path);
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    FileRow {
        project_id: project.id.clone(),
        path: rel.as_os_str().as_bytes().to_vec(),
        size: file.size,
        mtime_ns: file.mtime_ns,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A file that vanishes between the walk and its read is counted as an error; the others
    /// are indexed and the cycle completes.
    #[test]
    fn file_vanishing_between_walk_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("stays.rs"), "fn a() {}\n").unwrap();
        std::fs::write(root.join("gone.rs"), "fn b() {}\n").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let progress = Arc::new(Progress::default());
        let db_path = dir.path().join("index.sqlite");
        let db = Db::open(&db_path, Arc::clone(&progress), None).unwrap();

        let loading = db.start_load().unwrap();
        let source = PrevSource::new(&loading);
        let walked = walk::walk(std::slice::from_ref(&root), &source, &progress);
        assert_eq!(walked.files.len(), 2);
        std::fs::remove_file(root.join("gone.rs")).unwrap();

        let prev = source.into_inner().unwrap();
        let projects = projects::resolve(std::slice::from_ref(&root), walked.markers);
        db.write(vec![Op::AddProject {
            id: projects[0].id.clone(),
            root: root.clone(),
            name: projects[0].name.clone(),
            kind: projects[0].kind.as_str(),
        }])
        .unwrap();
        let mut row = CycleRow::default();
        let jobs = decide(walked.files, 0, &prev, &projects, &[], false, &mut row);
        assert_eq!(jobs.len(), 2);
        let read = read_all(&jobs, &projects, &prev, &[], &db, &progress).unwrap();
        assert_eq!((read.new, read.errors), (1, 1));
        db.finish(row).unwrap();
        drop(db);

        let conn = rusqlite::Connection::open(&db_path).unwrap();
        let paths: Vec<String> = conn
            .prepare("SELECT path FROM files")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(paths, ["stays.rs"]);
    }

    /// With the previous index loaded before the walk, unchanged files are decided by the
    /// walker threads; one that moves to a new project is still reread and re-homed.
    #[test]
    fn unchanged_file_moving_to_a_new_project() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("top.rs"), "a\n").unwrap();
        std::fs::write(root.join("sub/x.rs"), "b\n").unwrap();
        let settings = IndexingSettings {
            worker_name: "t".into(),
            roots: vec![root.clone()],
            interval: std::time::Duration::from_secs(1),
            db_path: dir.path().join("index.sqlite"),
        };
        let progress = Arc::new(Progress::default());
        let db = Db::open(&settings.db_path, Arc::clone(&progress), None).unwrap();
        let first = run(&settings, &db, &progress, 1).unwrap();
        assert_eq!((first.new, first.files), (2, 2));

        std::fs::write(root.join("sub/Cargo.toml"), "[package]\n").unwrap();
        let loading = db.start_load().unwrap();
        let source = PrevSource::new(&loading);
        source.preload();
        let canon = std::fs::canonicalize(&root).unwrap();
        let walked = walk::walk(std::slice::from_ref(&canon), &source, &progress);
        assert_eq!(walked.unchanged, 2, "decided in the walk");
        assert_eq!(
            walked.files.len(),
            1,
            "only the new Cargo.toml is handed on"
        );
        let prev = source.into_inner().unwrap();
        let projects = projects::resolve(std::slice::from_ref(&canon), walked.markers);
        assert_eq!(projects.len(), 2);
        let prev_to_cur: Vec<Option<usize>> = prev
            .projects
            .iter()
            .map(|p| projects.iter().position(|c| c.id == p.id))
            .collect();
        let mut row = CycleRow::default();
        let jobs = decide(
            walked.files,
            walked.unchanged,
            &prev,
            &projects,
            &prev_to_cur,
            false,
            &mut row,
        );
        assert_eq!(row.unchanged, 1, "top.rs");
        let mut got: Vec<(String, bool)> = jobs
            .iter()
            .map(|j| {
                (
                    j.file
                        .path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    j.old.is_some(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("Cargo.toml".to_string(), false),
                ("x.rs".to_string(), true)
            ]
        );
        drop((jobs, prev, loading));

        let second = run(&settings, &db, &progress, 2).unwrap();
        assert_eq!(
            (second.new, second.changed, second.unchanged, second.files),
            (1, 1, 1, 3)
        );
        drop(db);
        let conn = rusqlite::Connection::open(&settings.db_path).unwrap();
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT p.name, f.path FROM files f JOIN projects p ON p.id = f.project_id ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want = [("sub", "Cargo.toml"), ("sub", "x.rs"), ("tree", "top.rs")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(rows, want);
    }
}
