//! The worker's identity and environment: who it runs as and which variables it gets.
//!
//! Owns [`EnvSpec`] (a worker's `user`, `group`, `umask`, `nice`, `env_file`, `clear_env`),
//! the lookups in the passwd and group databases, the `env_file` format, and [`prepare`], which
//! turns a spec into the [`Credentials`] and the variables of one spawn. Config loading calls
//! the same functions, so `vigil check` and a spawn agree on every rule. It must not spawn: the
//! spawner applies what [`prepare`] returns between fork and exec.
//!
//! # The environment a worker gets, lowest precedence first
//! 1. the server's environment, minus its systemd variables (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
//!    `WATCHDOG_PID`) — or, with `clear_env`, nothing but `PATH` (the server's, or
//!    [`SAFE_PATH`] when the server has none);
//! 2. with `user`: `HOME`, `USER`, `LOGNAME` and `SHELL` from the passwd entry;
//! 3. the `env_file`'s variables, as read when the config was loaded (`check`, `serve`, reload);
//! 4. the config's `env`;
//! 5. `VIGIL_WORKER`, `VIGIL_GENERATION`, `VIGIL_RUN_ID`, `VIGIL_NOTIFY_FD` (set by
//!    [`crate::process`], they always win).
//!
//! # `env_file` format
//! One `KEY=VALUE` per line; blank lines and lines whose first non-blank character is `#` are
//! skipped; a line may start with `export `. `KEY` is `[A-Za-z_][A-Za-z0-9_]*`. The value is
//! either the rest of the line with surrounding blanks removed (taken literally: a `#` inside
//! it is part of it), or one quoted string: `'…'` is literal, `"…"` knows the escapes `\"`,
//! `\\`, `\$`, `` \` ``, `\n` and `\t`; after the closing quote only blanks or a `# comment` may
//! follow. A later line wins over an earlier one with the same key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use crate::spawner::Credentials;

/// `PATH` of a worker with `clear_env` when the server itself has none (systemd's default).
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The lowest and highest nice values.
pub const NICE_RANGE: std::ops::RangeInclusive<i32> = -20..=19;

/// A worker's identity and environment settings, as configured (names are resolved again at
/// each spawn, see [`prepare`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSpec {
    /// Run as this user (a name, or a numeric uid); `None`: the server's.
    pub user: Option<String>,
    /// Run with this primary group (a name, or a numeric gid); `None`: the user's primary group.
    pub group: Option<String>,
    /// The file creation mask; `None`: the server's.
    pub umask: Option<u32>,
    /// The nice value, within [`NICE_RANGE`]; `None`: the server's.
    pub nice: Option<i32>,
    /// An absolute path to a file of `KEY=VALUE` lines (where `file_vars` came from).
    pub env_file: Option<PathBuf>,
    /// The `env_file`'s variables in file order, read when the config was loaded: a running
    /// server uses what it validated (edit the file, then reload), as for the config itself.
    pub file_vars: Vec<(String, String)>,
    /// Start from an empty environment (plus `PATH`) instead of the server's.
    pub clear_env: bool,
}

/// Why an [`EnvSpec`] cannot be applied (a config error at load time, a failed start later).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// No passwd entry for the user.
    #[error("unknown user {0:?} (no such entry in the passwd database)")]
    UnknownUser(String),
    /// No group entry for the group.
    #[error("unknown group {0:?} (no such entry in the group database)")]
    UnknownGroup(String),
    /// The passwd or group database could not be read.
    #[error("cannot look up {what}: {source}")]
    Lookup {
        /// `user "www-data"`, `the groups of "www-data"`.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The `env_file` could not be read.
    #[error("cannot read env_file {}: {source}", path.display())]
    ReadEnvFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A line of the `env_file` is not `KEY=VALUE`.
    #[error("{}:{}:{}: {}", path.display(), error.line, error.col, error.message)]
    BadEnvFile {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: EnvFileError,
    },
}

/// A bad line of an env file: where (from 1) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFileError {
    /// The line, from 1.
    pub line: usize,
    /// The column (in characters), from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// A user from the passwd database, with the groups it runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The login name (`USER`, `LOGNAME`).
    pub name: String,
    /// The user id.
    pub uid: libc::uid_t,
    /// The primary group: `group` when given, else the passwd entry's.
    pub gid: libc::gid_t,
    /// Supplementary groups: every group that lists the user, and the primary group
    /// (`initgroups` semantics).
    pub groups: Vec<libc::gid_t>,
    /// The home directory (`HOME`).
    pub home: PathBuf,
    /// The login shell (`SHELL`).
    pub shell: PathBuf,
}

fn lookup_error(what: String) -> impl FnOnce(nix::Error) -> EnvError {
    move |e| EnvError::Lookup {
        what,
        source: io::Error::from(e),
    }
}

/// The passwd entry of `user`: a name, or a numeric uid that has an entry.
pub fn find_user(user: &str) -> Result<User, EnvError> {
    if let Some(found) = User::from_name(user).map_err(lookup_error(format!("user {user:?}")))? {
        return Ok(found);
    }
    if let Ok(uid) = user.parse::<libc::uid_t>() {
        if let Some(found) =
            User::from_uid(Uid::from_raw(uid)).map_err(lookup_error(format!("uid {uid}")))?
        {
            return Ok(found);
        }
    }
    Err(EnvError::UnknownUser(user.to_string()))
}

/// The gid of `group`: a name, or a number (with or without a group entry, as `chgrp` takes).
pub fn find_group(group: &str) -> Result<libc::gid_t, EnvError> {
    if let Some(found) =
        Group::from_name(group).map_err(lookup_error(format!("group {group:?}")))?
    {
        return Ok(found.gid.as_raw());
    }
    if let Ok(gid) = group.parse::<libc::gid_t>() {
        if Group::from_gid(Gid::from_raw(gid))
            .map_err(lookup_error(format!("gid {gid}")))?
            .is_some()
        {
            return Ok(gid);
        }
    }
    Err(EnvError::UnknownGroup(group.to_string()))
}

/// `user` with its primary group (or `group`) and its supplementary groups.
pub fn find_account(user: &str, group: Option<&str>) -> Result<Account, EnvError> {
    let entry = find_user(user)?;
    let gid = match group {
        Some(g) => find_group(g)?,
        None => entry.gid.as_raw(),
    };
    let name = std::ffi::CString::new(entry.name.clone())
        .map_err(|_| EnvError::UnknownUser(user.to_string()))?;
    let mut groups: Vec<libc::gid_t> =
        nix::unistd::getgrouplist(&name, Gid::from_raw(entry.gid.as_raw()))
            .map_err(lookup_error(format!("the groups of {:?}", entry.name)))?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
    // `group` replaces the primary group; the passwd one stays a supplementary group (as
    // systemd's Group= does), and the chosen one is one too.
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    groups.sort_unstable();
    groups.dedup();
    Ok(Account {
        name: entry.name,
        uid: entry.uid.as_raw(),
        gid,
        groups,
        home: entry.dir,
        shell: entry.shell,
    })
}

/// An octal umask such as `"027"` or `"0022"`: 1 to 4 octal digits, at most `0777`.
pub fn parse_umask(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let valid = !digits.is_empty()
        && digits.len() <= 4
        && digits.bytes().all(|b| b.is_ascii_digit() && b < b'8');
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if valid && mask <= 0o777 => Ok(mask),
        _ => Err(format!(
            "invalid umask {s:?}: write it as an octal string from \"000\" to \"777\", e.g. \"027\""
        )),
    }
}

/// Whether `nice` is within [`NICE_RANGE`].
pub fn check_nice(nice: i32) -> Result<i32, String> {
    if NICE_RANGE.contains(&nice) {
        Ok(nice)
    } else {
        Err(format!(
            "nice {nice} is out of range: it must be between {} and {}",
            NICE_RANGE.start(),
            NICE_RANGE.end()
        ))
    }
}

/// Read and parse the env file at `path`.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnvError::ReadEnvFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_env_file(&text).map_err(|error| EnvError::BadEnvFile {
        path: path.to_path_buf(),
        error,
    })
}

/// Parse env-file text (see the module docs for the format), in file order.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut vars = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(kv) = parse_line(line).map_err(|(col, message)| EnvFileError {
            line: i + 1,
            col,
            message,
        })? {
            vars.push(kv);
        }
    }
    Ok(vars)
}

/// One line: `None` for a blank or comment line, or the error's column (in characters) and text.
fn parse_line(line: &str) -> Result<Option<(String, String)>, (usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut at = 0;
    let skip_blank = |at: &mut usize| {
        while *at < chars.len() && matches!(chars[*at], ' ' | '\t') {
            *at += 1;
        }
    };
    skip_blank(&mut at);
    if at == chars.len() || chars[at] == '#' {
        return Ok(None);
    }
    if chars[at..].starts_with(&['e', 'x', 'p', 'o', 'r', 't'])
        && matches!(chars.get(at + 6), Some(' ' | '\t'))
    {
        at += 6;
        skip_blank(&mut at);
    }
    let key_start = at;
    while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '_') {
        at += 1;
    }
    let key: String = chars[key_start..at].iter().collect();
    if key.is_empty() || chars[key_start].is_ascii_digit() {
        return Err((
            key_start + 1,
            "expected a variable name ([A-Za-z_][A-Za-z0-9_]*) followed by '='".into(),
        ));
    }
    skip_blank(&mut at);
    if chars.get(at) != Some(&'=') {
        let what = match chars.get(at) {
            None => "the line ends".to_string(),
            Some(c) => format!("found {c:?}"),
        };
        return Err((at + 1, format!("expected '=' after {key}, {what}")));
    }
    at += 1;
    skip_blank(&mut at);
    let value = match chars.get(at) {
        Some(&quote @ ('"' | '\'')) => {
            let open = at;
            at += 1;
            let mut value = String::new();
            loop {
                match chars.get(at) {
                    None => {
                        return Err((
                            open + 1,
                            format!("the {quote} quote opened here is not closed on this line"),
                        ));
                    }
                    Some(&c) if c == quote => {
                        at += 1;
                        break;
                    }
                    Some('\\') if quote == '"' => {
                        let escaped = match chars.get(at + 1) {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some(&c @ ('"' | '\\' | '$' | '`')) => c,
                            Some(other) => {
                                return Err((
                                    at + 1,
                                    format!(
                                        "unknown escape \\{other} (known: \\\" \\\\ \\$ \\` \\n \\t)"
                                    ),
                                ));
                            }
                            None => {
                                return Err((
                                    open + 1,
                                    "the \" quote opened here is not closed on this line".into(),
                                ));
                            }
                        };
                        value.push(escaped);
                        at += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        at += 1;
                    }
                }
            }
            skip_blank(&mut at);
            if at < chars.len() && chars[at] != '#' {
                return Err((
                    at + 1,
                    "unexpected text after the closing quote (only a # comment may follow)".into(),
                ));
            }
            value
        }
        _ => chars[at..]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string(),
    };
    if value.contains('\0') {
        return Err((
            key_start + 1,
            format!("the value of {key} contains a NUL byte"),
        ));
    }
    Ok(Some((key, value)))
}

/// A new run's identifier (`VIGIL_RUN_ID`): a UUIDv7, so ids sort by start time.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What one spawn applies: credentials, whether to start from an empty environment, and the
/// variables to set in order (a later one wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// uid, gid, groups, umask, nice.
    pub credentials: Credentials,
    /// Start from an empty environment instead of the server's.
    pub clear_env: bool,
    /// `PATH` (with `clear_env`), the user's variables, the env file's, then `env`'s.
    pub env: Vec<(OsString, OsString)>,
}

/// Resolve `spec` for one spawn: look the user and group up again (a user deleted since the
/// config was loaded is a failed start), then lay the env file's variables and `env` over it.
pub fn prepare(spec: &EnvSpec, env: &BTreeMap<String, String>) -> Result<Prepared, EnvError> {
    let mut vars: Vec<(OsString, OsString)> = Vec::new();
    if spec.clear_env {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(SAFE_PATH));
        vars.push(("PATH".into(), path));
    }
    let mut credentials = Credentials {
        umask: spec.umask.map(|m| m as libc::mode_t),
        nice: spec.nice,
        ..Credentials::default()
    };
    match (&spec.user, &spec.group) {
        (Some(user), group) => {
            let account = find_account(user, group.as_deref())?;
            vars.push(("HOME".into(), account.home.clone().into_os_string()));
            vars.push(("USER".into(), account.name.clone().into()));
            vars.push(("LOGNAME".into(), account.name.clone().into()));
            vars.push(("SHELL".into(), account.shell.clone().into_os_string()));
            credentials.uid = Some(account.uid);
            credentials.gid = Some(account.gid);
            credentials.groups = Some(account.groups);
        }
        (None, Some(group)) => {
            let gid = find_group(group)?;
            credentials.gid = Some(gid);
            credentials.groups = Some(vec![gid]);
        }
        (None, None) => {}
    }
    drop_needless_switch(&mut credentials);
    for (k, v) in spec.file_vars.iter().map(|(k, v)| (k, v)).chain(env) {
        vars.push((k.into(), v.into()));
    }
    Ok(Prepared {
        credentials,
        clear_env: spec.clear_env,
        env: vars,
    })
}

/// A server that is not root can only "switch" to itself: then skip the system calls that
/// would fail with EPERM (`setgroups` needs `CAP_SETGID` even to set the same list).
fn drop_needless_switch(c: &mut Credentials) {
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid == 0 {
        return;
    }
    if c.uid.is_none_or(|u| u == euid) && c.gid.is_none_or(|g| g == egid) {
        c.uid = None;
        c.gid = None;
        c.groups = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        parse_env_file(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_lines_comments_blanks_and_export() {
        let text = "# a comment\n\nA=1\n  B = two words  \nexport C=3\n\t# indented comment\r\nD=\nexport=4\n";
        assert_eq!(
            parse(text),
            kv(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "3"),
                ("D", ""),
                ("export", "4")
            ])
        );
    }

    #[test]
    fn unquoted_values_are_literal() {
        assert_eq!(
            parse("URL=http://x/#frag\nQ=it's\nE=a=b\n"),
            kv(&[("URL", "http://x/#frag"), ("Q", "it's"), ("E", "a=b")])
        );
    }

    #[test]
    fn quoted_values() {
        let text = r#"S='single $HOME \n "x"'
D="double \"q\" \\ \$HOME\tTAB\nNL"
T="trailing"   # a comment
E=""
SP="  spaces kept  "
"#;
        assert_eq!(
            parse(text),
            kv(&[
                ("S", r#"single $HOME \n "x""#),
                ("D", "double \"q\" \\ $HOME\tTAB\nNL"),
                ("T", "trailing"),
                ("E", ""),
                ("SP", "  spaces kept  "),
            ])
        );
    }

    #[test]
    fn a_later_line_wins_in_order() {
        let vars = parse("A=1\nA=2\n");
        assert_eq!(vars.last(), Some(&("A".to_string(), "2".to_string())));
    }

    #[test]
    fn bad_lines_name_line_and_column() {
        let cases: &[(&str, usize, usize, &str)] = &[
            ("A=1\nNOEQUALS\n", 2, 9, "expected '='"),
            ("1A=x\n", 1, 1, "variable name"),
            ("  -A=x\n", 1, 3, "variable name"),
            ("A-B=x\n", 1, 2, "expected '='"),
            ("A=\"open\n", 1, 3, "not closed"),
            ("A='open\n", 1, 3, "not closed"),
            ("A=\"x\" y\n", 1, 7, "after the closing quote"),
            ("A=\"\\q\"\n", 1, 4, "unknown escape"),
            ("export\n", 1, 7, "expected '=' after export"),
            ("é=1\n", 1, 1, "variable name"),
        ];
        for (text, line, col, what) in cases {
            let e = parse_env_file(text).expect_err(text);
            assert_eq!((e.line, e.col), (*line, *col), "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn umask_and_nice_rules() {
        assert_eq!(parse_umask("027"), Ok(0o027));
        assert_eq!(parse_umask("0022"), Ok(0o022));
        assert_eq!(parse_umask("0o077"), Ok(0o077));
        assert_eq!(parse_umask("7"), Ok(0o7));
        for bad in ["", "8", "0999", "1000", "abc", "-1", "00777x", "07777"] {
            assert!(parse_umask(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_nice(-20), Ok(-20));
        assert_eq!(check_nice(19), Ok(19));
        assert!(check_nice(20).is_err());
        assert!(check_nice(-21).is_err());
    }

    #[test]
    fn root_resolves_with_its_groups() {
        let root = find_account("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(find_account("0", None).unwrap().name, "root");
        assert!(matches!(
            find_account("no-such-user-vigil", None),
            Err(EnvError::UnknownUser(_))
        ));
        assert!(matches!(
            find_account("root", Some("no-such-group-vigil")),
            Err(EnvError::UnknownGroup(_))
        ));
    }

    #[test]
    fn prepare_orders_path_user_file_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.env");
        std::fs::write(&file, "HOME=/from-file\nFROM_FILE=1\nBOTH=file\n").unwrap();
        let spec = EnvSpec {
            user: Some("root".into()),
            file_vars: read_env_file(&file).unwrap(),
            env_file: Some(file.clone()),
            clear_env: true,
            ..EnvSpec::default()
        };
        let env = BTreeMap::from([("BOTH".to_string(), "env".to_string())]);
        let p = prepare(&spec, &env).unwrap();
        let names: Vec<_> = p.env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "USER",
                "LOGNAME",
                "SHELL",
                "HOME",
                "FROM_FILE",
                "BOTH",
                "BOTH"
            ]
        );
        assert_eq!(p.env.last().unwrap().1, "env");
        assert_eq!(p.credentials.uid, Some(0));
        std::fs::remove_file(&file).unwrap();
        let err = read_env_file(&file).unwrap_err();
        assert!(err.to_string().contains("cannot read env_file"), "{err}");
        let gone = EnvSpec {
            user: Some("no-such-user-vigil".into()),
            ..EnvSpec::default()
        };
        let err = prepare(&gone, &env).unwrap_err();
        assert!(err.to_string().contains("unknown user"), "{err}");
    }
}
