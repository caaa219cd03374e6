//! `--only groups`: what the supervision tree's groups cost (issue 13).
//!
//! Owns two measurements, each against a baseline taken in the same run:
//! - **start**: 1000 workers in 10 `OneForOne` groups of 100 vs the same 1000 workers flat
//!   (time from launch until every worker wrote START), alternating runs; goal ≤ 2×.
//! - **rest_for_one**: 10 siblings in one `RestForOne` group, running at spawn (`start_secs:
//!   "0s"`, the "all READY at once" case); kill -9 the first, time until all 10 wrote a new
//!   START. The siblings' own start time is measured in the same run as the floor (the bench
//!   binary as a minimal supervisor) starting 10 workers one after the other; goal: the
//!   restart ≤ 50 ms + that.
//!
//! It drives vigil from outside only (config, signals, the START file) and must not change
//! what the other parts measure.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Res, Supervised, log, now_ns, stats, worker_entry};

/// Run both measurements; append their tables to `r` and their goals to `goals`.
pub fn run(
    opts: &crate::Opts,
    root: &Path,
    worker: &Path,
    r: &mut String,
    goals: &mut Vec<(String, String, bool)>,
) -> Res<()> {
    start_cost(root, worker, r, goals)?;
    rest_for_one(opts, root, worker, r, goals)
}

/// 1000 workers, flat and in 10 groups of 100, three runs each, alternating.
fn start_cost(
    root: &Path,
    worker: &Path,
    r: &mut String,
    goals: &mut Vec<(String, String, bool)>,
) -> Res<()> {
    const N: usize = 1000;
    const GROUPS: usize = 10;
    const RUNS: usize = 3;
    let (mut flat, mut grouped) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        for layout in ["flat", "grouped"] {
            log(&format!("groups: {N} workers {layout}, run {}", run + 1));
            let dir = root.join(format!("groups-start-{layout}-{run}"));
            let file = dir.join("starts");
            let entries: Vec<String> = (0..N)
                .map(|id| worker_entry(worker, &file, id, ""))
                .collect();
            let workers = if layout == "flat" {
                entries.concat()
            } else {
                entries
                    .chunks(N / GROUPS)
                    .enumerate()
                    .map(|(g, chunk)| {
                        format!(
                            "        (name: \"g{g}\", kind: Group(strategy: OneForOne, workers: [\n{}        ])),\n",
                            chunk.concat()
                        )
                    })
                    .collect()
            };
            let mut vigil = Supervised::vigil_config(&dir, N, "vigil", "", &workers)?;
            let up = vigil.all_up(Duration::from_secs(120))?;
            vigil.stop(Duration::from_secs(60))?;
            if layout == "flat" {
                flat.push(up);
            } else {
                grouped.push(up);
            }
        }
    }
    let (f, g) = (stats(&flat), stats(&grouped));
    let ratio = g.median / f.median;
    let _ = writeln!(
        r,
        "## Groups: {N} workers flat vs in {GROUPS} OneForOne groups of {} (all up, ms, {RUNS} runs each, alternating)\n",
        N / GROUPS
    );
    let _ = writeln!(
        r,
        "| layout | min | **median** | max | / flat |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        r,
        "| flat | {:.0} | **{:.0}** | {:.0} | 1.00× |",
        f.min, f.median, f.max
    );
    let _ = writeln!(
        r,
        "| 10 groups | {:.0} | **{:.0}** | {:.0} | {ratio:.2}× |\n",
        g.min, g.median, g.max
    );
    goals.push((
        format!("{N} workers in {GROUPS} groups up ≤ 2× flat"),
        format!("{:.0} vs {:.0} ms = {ratio:.2}×", g.median, f.median),
        ratio <= 2.0,
    ));
    Ok(())
}

/// kill -9 the first of 10 RestForOne siblings; ms until all 10 started again.
fn rest_for_one(
    opts: &crate::Opts,
    root: &Path,
    worker: &Path,
    r: &mut String,
    goals: &mut Vec<(String, String, bool)>,
) -> Res<()> {
    const N: usize = 10;
    let trials = opts.trials.clamp(5, 30);
    // The siblings' own start time: the floor starting N workers, one after the other.
    let mut own = Vec::new();
    for t in 0..trials.min(10) {
        let mut floor = Supervised::floor(worker, &root.join(format!("groups-floor-{t}")), N)?;
        own.push(floor.all_up(Duration::from_secs(30))?);
    }
    let own = stats(&own);

    let dir = root.join("groups-rest-for-one");
    let file = dir.join("starts");
    let entries: String = (0..N)
        .map(|id| worker_entry(worker, &file, id, ""))
        .collect();
    let workers = format!(
        "        (name: \"chain\", kind: Group(strategy: RestForOne, backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), workers: [\n{entries}        ])),\n"
    );
    let mut vigil = Supervised::vigil_config(&dir, N, "vigil", "", &workers)?;
    vigil.all_up(Duration::from_secs(30))?;
    log(&format!(
        "groups: RestForOne restart of the first of {N}, {trials} trials"
    ));
    let mut took = Vec::with_capacity(trials);
    for _ in 0..trials {
        std::thread::sleep(opts.settle);
        took.push(restart_chain(&mut vigil, N)?);
    }
    vigil.stop(Duration::from_secs(30))?;
    let t = stats(&took);
    let _ = writeln!(
        r,
        "## Groups: RestForOne restart of the first of {N} siblings (kill -9 → all {N} started again, ms)\n"
    );
    let _ = writeln!(
        r,
        "| what | n | min | **median** | p95 | max |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        r,
        "| vigil: the group restart | {} | {:.1} | **{:.1}** | {:.1} | {:.1} |",
        t.n, t.min, t.median, t.p95, t.max
    );
    let _ = writeln!(
        r,
        "| floor: {N} workers' own start (launch → last START) | {} | {:.1} | **{:.1}** | {:.1} | {:.1} |\n",
        own.n, own.min, own.median, own.p95, own.max
    );
    goals.push((
        format!("RestForOne restart of the first of {N} ≤ 50 ms + the siblings' start"),
        format!(
            "{:.1} ms vs 50 + {:.1} ms = {:.1} ms",
            t.median,
            own.median,
            50.0 + own.median
        ),
        t.median <= 50.0 + own.median,
    ));
    Ok(())
}

/// One trial: kill worker 0; wait until every worker has a new START; ms from the kill.
fn restart_chain(vigil: &mut Supervised, n: usize) -> Res<f64> {
    vigil.starts.poll();
    let before: Vec<u32> = (0..n)
        .map(|id| vigil.starts.latest.get(&id).map(|s| s.pid).unwrap_or(0))
        .collect();
    if before.iter().any(|p| *p <= 1) {
        return Err("groups: a sibling never started".into());
    }
    let t0 = now_ns();
    vigil.kill_worker(before[0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        vigil.starts.poll();
        let fresh: Vec<i64> = (0..n)
            .filter_map(|id| {
                vigil
                    .starts
                    .latest
                    .get(&id)
                    .filter(|s| s.pid != before[id])
                    .map(|s| s.ns)
            })
            .collect();
        if fresh.len() == n {
            let last = fresh.into_iter().max().unwrap_or(t0);
            return Ok((last - t0) as f64 / 1e6);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "groups: only {} of {n} siblings restarted within 10 s",
                fresh.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
