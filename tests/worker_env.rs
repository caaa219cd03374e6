//! The worker's environment, end to end: a real `vigil serve` running workers as another user,
//! with a umask, a nice value, an env file and a cleared environment, checked from `/proc`.
//!
//! The user switch needs root (the tests skip loudly otherwise) and the `nobody` account.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use common::{FAST, Home, LONG, Server, control_wait_ready, control_worker, vigil_bin, wait_for};

/// Restart after 20 ms, no start delay: a failing worker loops, but not hot.
const SLOW_LOOP: &str = "backoff: (initial: \"20ms\", max: \"20ms\", jitter: 0.0), \
                         start_secs: \"0s\", intensity: (max_restarts: 1000, within: \"60s\")";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `nobody`'s passwd entry: (uid, gid, home, shell), or `None` when there is none.
fn nobody() -> Option<(u32, u32, String, String)> {
    let out = Command::new("getent")
        .args(["passwd", "nobody"])
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<&str> = line.trim_end().split(':').collect();
    Some((
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
        f.get(5)?.to_string(),
        f.get(6)?.to_string(),
    ))
}

/// Skip (loudly) unless we are root and `nobody` exists.
fn need_root_and_nobody(test: &str) -> Option<(u32, u32, String, String)> {
    if !is_root() {
        eprintln!("SKIP: {test}: not root, cannot switch a worker to another user");
        return None;
    }
    let found = nobody();
    if found.is_none() {
        eprintln!("SKIP: {test}: no passwd entry for nobody");
    }
    found
}

/// `vigil serve` on `home` with `env` laid over (`Some`) or removed from (`None`) the test's
/// environment.
fn serve_with(home: &Home, env: &[(&str, Option<&str>)]) -> Server {
    let stderr = std::fs::File::create(home.path().join("server.stderr")).expect("stderr file");
    let mut cmd = Command::new(vigil_bin());
    cmd.args(["serve", "--config"])
        .arg(home.config())
        .current_dir(home.path())
        .env("VIGIL_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    use std::os::unix::process::CommandExt;
    let child = cmd.process_group(0).spawn().expect("spawn vigil serve");
    Server::adopt(child, home.path())
}

/// The pid of `worker` once it is running.
fn running_pid(home: &Home, worker: &str) -> u32 {
    wait_for(LONG, &format!("{worker} to be running"), || {
        let node = control_worker(home, worker);
        (node["state"] == "running")
            .then(|| node["pid"].as_u64())
            .flatten()
            .map(|p| p as u32)
    })
}

/// `/proc/PID/environ` as a map.
fn environ(pid: u32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The value of `Key:` in `/proc/PID/status`, whitespace-separated.
fn status_field(pid: u32, key: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The nice value: field 19 of `/proc/PID/stat`.
fn nice_of(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    // Fields from 3 (state) on: nice is field 19.
    after.split(' ').nth(19 - 3).unwrap().parse().unwrap()
}

/// A home that another user can enter, with `out/` it can write to.
fn open_home(workers: &str) -> Home {
    let home = Home::new("", workers);
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = home.file("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    home
}

fn is_uuid_v7(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts[2].starts_with('7')
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[test]
fn a_worker_runs_as_nobody_with_its_groups_umask_nice_and_environment() {
    let Some((uid, gid, home_dir, shell)) =
        need_root_and_nobody("a_worker_runs_as_nobody_with_its_groups_umask_nice_and_environment")
    else {
        return;
    };
    let expected_groups: Vec<String> = {
        let out = Command::new("id").args(["-G", "nobody"]).output().unwrap();
        let mut g: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        g.sort();
        g
    };
    let script = ": > out/created; exec /bin/sleep 1000";
    let home = open_home(&format!(
        "        (name: \"probe\", kind: Command(argv: [\"/bin/sh\", \"-c\", \"{script}\"], \
         env: {{\"BOTH\": \"env\"}}), user: \"nobody\", umask: \"027\", nice: 7, \
         env_file: \"probe.env\", restart: Temporary, {FAST}),"
    ));
    std::fs::write(
        home.file("probe.env"),
        "# the probe's file\nexport FROM_FILE=\"from file\"\nBOTH=file\n",
    )
    .unwrap();
    let check = home.run(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let server = serve_with(
        &home,
        &[
            ("NOTIFY_SOCKET", Some("/nonexistent/vigil-test-notify")),
            ("SERVER_ONLY", Some("yes")),
        ],
    );
    control_wait_ready(&home);
    let pid = running_pid(&home, "probe");
    let mut server = server;
    server.track(pid);
    wait_for(LONG, "the probe to exec sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .filter(|c| c.trim() == "sleep")
    });

    // Credentials.
    assert_eq!(status_field(pid, "Uid"), vec![uid.to_string(); 4]);
    assert_eq!(status_field(pid, "Gid"), vec![gid.to_string(); 4]);
    let mut groups = status_field(pid, "Groups");
    groups.sort();
    assert_eq!(groups, expected_groups, "supplementary groups");
    // umask and nice.
    assert_eq!(status_field(pid, "Umask"), ["0027"]);
    assert_eq!(nice_of(pid), 7);
    let created = std::fs::metadata(home.file("out/created")).unwrap();
    assert_eq!(created.mode() & 0o777, 0o640, "0666 under umask 027");
    assert_eq!((created.uid(), created.gid()), (uid, gid));

    // Environment.
    let env = environ(pid);
    assert_eq!(env.get("HOME"), Some(&home_dir));
    assert_eq!(env.get("USER").map(String::as_str), Some("nobody"));
    assert_eq!(env.get("LOGNAME").map(String::as_str), Some("nobody"));
    assert_eq!(env.get("SHELL"), Some(&shell));
    assert_eq!(env.get("FROM_FILE").map(String::as_str), Some("from file"));
    assert_eq!(env.get("BOTH").map(String::as_str), Some("env"), "env wins");
    assert_eq!(env.get("SERVER_ONLY").map(String::as_str), Some("yes"));
    assert!(!env.contains_key("NOTIFY_SOCKET"), "{env:?}");
    let run_id = env.get("VIGIL_RUN_ID").expect("VIGIL_RUN_ID").clone();
    assert!(is_uuid_v7(&run_id), "{run_id}");

    // The log stays the server's; its marker names the run.
    let log = std::fs::metadata(home.log("probe")).unwrap();
    assert_eq!(log.uid(), 0, "the server owns the log");
    let text = std::fs::read_to_string(home.log("probe")).unwrap();
    assert!(
        text.contains(&format!("started generation 1, pid {pid}, run {run_id}")),
        "{text}"
    );

    // The EXIT record carries the same id.
    let stop = home.run(&["stop", "probe"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let history = wait_for(LONG, "the probe's exit in the history", || {
        let h = home.history(Some("probe"));
        (!h.is_empty()).then_some(h)
    });
    assert_eq!(history[0]["run_id"], run_id.as_str(), "{}", history[0]);
    drop(server);
}

#[test]
fn clear_env_keeps_only_path_the_vigil_variables_env_file_and_env() {
    let home = Home::new(
        "",
        &format!(
            "        (name: \"bare\", kind: Command(argv: [\"/bin/sleep\", \"1000\"], \
             env: {{\"B\": \"2\"}}), clear_env: true, env_file: \"bare.env\", {FAST}),"
        ),
    );
    std::fs::write(home.file("bare.env"), "A=1\n").unwrap();
    let expected_keys = [
        "A",
        "B",
        "PATH",
        "VIGIL_GENERATION",
        "VIGIL_NOTIFY_FD",
        "VIGIL_RUN_ID",
        "VIGIL_WORKER",
    ];
    // With the server's PATH, then without one (the safe default).
    for path in [Some("/opt/vigil-test/bin:/usr/bin:/bin"), None] {
        let mut server = serve_with(
            &home,
            &[
                ("PATH", path),
                ("SERVER_ONLY", Some("yes")),
                ("NOTIFY_SOCKET", Some("/nonexistent/vigil-test-notify")),
            ],
        );
        control_wait_ready(&home);
        let pid = running_pid(&home, "bare");
        server.track(pid);
        let env = environ(pid);
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(keys, expected_keys, "{env:?}");
        assert_eq!(
            env["PATH"],
            path.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        );
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "2"));
        assert_eq!(env["VIGIL_WORKER"], "bare");
        assert!(is_uuid_v7(&env["VIGIL_RUN_ID"]), "{env:?}");
        assert_eq!(server.terminate(LONG).map(|s| s.success()), Some(true));
    }
}

#[test]
fn every_run_gets_a_new_run_id_and_its_record_keeps_it() {
    let home = Home::new(
        "",
        &common::sh_worker(
            "flap",
            "echo \"$VIGIL_GENERATION $VIGIL_RUN_ID\" >> runs; exit 3",
            SLOW_LOOP,
        ),
    );
    let server = home.serve();
    let runs = wait_for(LONG, "three runs", || {
        let lines = home.lines("runs");
        (lines.len() >= 3).then_some(lines)
    });
    let mut server = server;
    assert_eq!(server.terminate(LONG).map(|s| s.success()), Some(true));
    let ids: Vec<&str> = runs
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert!(ids.iter().all(|id| is_uuid_v7(id)), "{runs:?}");
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{runs:?}");
    // Every record's run_id is the one its generation saw.
    let by_generation: BTreeMap<u64, String> = runs
        .iter()
        .filter_map(|l| {
            let (g, id) = l.split_once(' ')?;
            Some((g.parse().ok()?, id.to_string()))
        })
        .collect();
    let history = home.history(Some("flap"));
    assert!(!history.is_empty());
    for rec in &history {
        let generation = rec["generation"].as_u64().unwrap();
        if let Some(seen) = by_generation.get(&generation) {
            assert_eq!(rec["run_id"], seen.as_str(), "{rec}");
        }
    }
    let text = std::fs::read_to_string(home.log("flap")).unwrap();
    for (generation, id) in &by_generation {
        assert!(
            text.contains(&format!("started generation {generation}, pid ")) && text.contains(id),
            "{text}"
        );
    }
}

/// A temporary system account, removed on drop.
struct TempUser(String);

impl TempUser {
    fn create() -> Option<TempUser> {
        let name = format!("vigiltest{}", std::process::id());
        let ok = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", &name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(TempUser(name))
    }

    fn delete(&self) {
        let _ = Command::new("userdel")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        self.delete();
    }
}

#[test]
fn a_user_deleted_after_the_config_was_loaded_is_a_failed_start_that_says_so() {
    if !is_root() {
        eprintln!("SKIP: a_user_deleted_after_the_config_was_loaded: not root");
        return;
    }
    let Some(user) = TempUser::create() else {
        eprintln!("SKIP: a_user_deleted_after_the_config_was_loaded: useradd failed");
        return;
    };
    let home = open_home(&format!(
        "        (name: \"gone\", kind: Command(argv: [\"/bin/sleep\", \"1000\"]), \
         user: \"{}\", {SLOW_LOOP}),",
        user.0
    ));
    let mut server = home.serve();
    control_wait_ready(&home);
    let pid = running_pid(&home, "gone");
    server.track(pid);
    assert_eq!(status_field(pid, "Uid")[0], {
        let out = Command::new("id").args(["-u", &user.0]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    // userdel refuses a user that still runs processes: stop the worker first.
    let stop = home.run(&["stop", "gone"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    user.delete();
    assert!(
        !Command::new("id")
            .arg(&user.0)
            .output()
            .unwrap()
            .status
            .success(),
        "userdel did not remove {}",
        user.0
    );
    let start = home.run(&["start", "gone"]);
    eprintln!(
        "vigil start after userdel: {}",
        String::from_utf8_lossy(&start.stderr)
    );
    let failed = wait_for(LONG, "a spawn_failed record", || {
        home.history(Some("gone"))
            .into_iter()
            .find(|r| r["reason"] == "spawn_failed")
    });
    let tail = failed["log_tail"].to_string();
    assert!(
        tail.contains(&format!("unknown user \\\"{}\\\"", user.0)),
        "{failed}"
    );
    assert!(
        failed["run_id"].as_str().is_some_and(is_uuid_v7),
        "{failed}"
    );
    drop(server);
}

#[test]
fn a_worker_running_as_nobody_is_refused_by_the_control_socket() {
    let Some(_) =
        need_root_and_nobody("a_worker_running_as_nobody_is_refused_by_the_control_socket")
    else {
        return;
    };
    let script = format!(
        "while [ ! -S var/vigil.sock ]; do sleep 0.02; done; \
         {} status --config {{cfg}}; echo status-exit=$?; exec /bin/sleep 1000",
        vigil_bin()
    );
    let home = open_home("");
    let cfg = home.config();
    let script = script.replace("{cfg}", &cfg.display().to_string());
    home.write_config(
        "",
        &common::sh_worker("intruder", &script, &format!("user: \"nobody\", {FAST}")),
    );
    let mut server = home.serve();
    control_wait_ready(&home);
    let first = running_pid(&home, "intruder");
    server.track(first);
    let exit_line = |home: &Home, nth: usize| {
        wait_for(LONG, "the intruder's status attempt", || {
            let log = std::fs::read_to_string(home.log("intruder")).ok()?;
            let found: Vec<String> = log
                .lines()
                .filter(|l| l.contains("status-exit="))
                .map(str::to_string)
                .collect();
            (found.len() > nth).then(|| (found[nth].clone(), log))
        })
    };
    // As set up, the socket file (0600, the server's) already keeps the worker out.
    let (line, log) = exit_line(&home, 0);
    assert!(!line.ends_with("status-exit=0"), "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    // Even with the file opened to everyone, the peer-credential check refuses uid 65534.
    let socket = home.path().join("var/vigil.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let restart = home.run(&["restart", "intruder"]);
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let (line, log) = exit_line(&home, 1);
    assert!(!line.ends_with("status-exit=0"), "{log}");
    assert!(
        log.contains("uid 65534 may not control this server"),
        "{log}"
    );
    let second = running_pid(&home, "intruder");
    server.track(second);
    drop(server);
}

#[test]
fn a_working_directory_the_user_may_not_enter_is_a_failed_start() {
    if need_root_and_nobody("a_working_directory_the_user_may_not_enter_is_a_failed_start")
        .is_none()
    {
        return;
    }
    let home = open_home(&format!(
        "        (name: \"locked\", kind: Command(argv: [\"/bin/sleep\", \"1000\"], \
         cwd: \"private\"), user: \"nobody\", restart: Temporary, {FAST}),"
    ));
    let private = home.file("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _server = home.serve();
    let failed = wait_for(LONG, "a spawn_failed record", || {
        home.history(Some("locked"))
            .into_iter()
            .find(|r| r["reason"] == "spawn_failed")
    });
    let tail = failed["log_tail"].to_string();
    assert!(
        tail.contains("cannot change to the working directory") && tail.contains("ermission"),
        "{failed}"
    );
}
