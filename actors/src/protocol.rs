//! The control socket's wire format, shared by the server (`control.rs`) and the CLI client.
//!
//! Owns the request and reply types, the line size bound, the error kinds and the time bounds
//! both sides agree on. It must not do I/O or talk to actors: the server and the client do.
//!
//! # Wire format
//! Newline-delimited JSON over a Unix stream socket: one request object per line, answered by
//! one reply object per line, in order, on the same connection.
//!
//! ```text
//! → {"cmd":"dump"}
//! ← {"ok":true,"data":{"root":{...}}}
//! → {"cmd":"status","worker":null}
//! ← {"ok":true,"data":[{...},{...}]}
//! → {"cmd":"act","worker":"x","action":"restart"}
//! ← {"ok":false,"error":"no worker named \"x\"","kind":"unknown_worker"}
//! → {"cmd":"shutdown"}
//! ← {"ok":true,"data":null}
//! → {"cmd":"ping"}
//! ← {"ok":true,"data":{"pid":1234}}
//! → {"cmd":"events"}
//! ← {"ok":true,"data":{"workers":["a","b"]}}
//! ← {"time":"…","event":"started","worker":"a","generation":2,"pid":4321}
//! ← …                                  (one event per line until the server stops)
//! → {"cmd":"reload","dry_run":false}
//! ← {"ok":true,"data":{"added":["x"],"removed":[],"restarted":[],"updated":[],"unchanged":["a"],...}}
//! ```
//!
//! `events` turns the connection into a stream: after its reply, the server sends one
//! [`crate::events::Event`] object per line and reads nothing more but the hang-up.
//!
//! A request line longer than [`MAX_REQUEST_BYTES`] is answered with a `too_large` error and
//! the connection is closed; a line that is not a known request gets an error reply and the
//! connection stays usable.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What an operator can ask of one worker (`vigil start|stop|restart WORKER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerAction {
    /// Start a stopped (or failed, or backing-off) worker now; no-op when it runs.
    Start,
    /// Stop it gracefully and keep it stopped until `start`.
    Stop,
    /// Stop it gracefully (if running) and start a new process at once.
    Restart,
}

/// Why a request to the tree could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ControlError {
    /// No worker has that name.
    #[error("no worker named {0:?}")]
    UnknownWorker(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The worker could not be (re)started; the reason says why.
    #[error("{0}")]
    Failed(String),
    /// An actor did not answer in time.
    #[error("no answer from {0} in time")]
    Timeout(String),
    /// A reload's new config is invalid or changes what a running server cannot; nothing
    /// changed. The message is `vigil check`'s (`FILE:LINE:COL: message`).
    #[error("{0}")]
    InvalidConfig(String),
}

use crate::spec::TreeSpec;

/// The longest request line the server reads (newline excluded).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One request from a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is a server there? Answered without asking the tree: `{"pid": N}`.
    Ping,
    /// The live tree: answered with a [`crate::snapshot::Dump`].
    Dump,
    /// Worker snapshots: every worker (`worker: null`), or a list of one.
    Status {
        /// A worker's name, or `null` for all.
        #[serde(default)]
        worker: Option<String>,
    },
    /// Start, stop or restart one worker: answered with its snapshot once done.
    Act {
        /// The worker's name.
        worker: String,
        /// What to do.
        action: WorkerAction,
    },
    /// Stop every worker and the server: answered (`null`) once every worker is down.
    Shutdown,
    /// Subscribe to the event stream: answered with [`Subscribed`], then one event per line
    /// until the server stops.
    Events,
    /// Re-read the config file and apply the difference: answered with a
    /// [`crate::reload::ReloadReport`] once applied (with `dry_run`, what would change).
    Reload {
        /// Change nothing, say what would change.
        #[serde(default)]
        dry_run: bool,
    },
}

/// The reply to [`Request::Events`], before the first event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The workers there are now, in start order.
    pub workers: Vec<String>,
}

/// Why a request failed, as a stable machine-readable word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line is not JSON, or not a request object.
    BadRequest,
    /// The line is a JSON object whose `cmd` is not known.
    UnknownCommand,
    /// The line is longer than [`MAX_REQUEST_BYTES`]; the connection is closed.
    TooLarge,
    /// The peer's uid is neither the server's nor root's; the connection is closed.
    PermissionDenied,
    /// No worker has that name.
    UnknownWorker,
    /// The server is shutting down.
    ShuttingDown,
    /// The action could not be carried out.
    Failed,
    /// The tree did not answer in time.
    Timeout,
    /// The root supervisor is gone (the server is stopping).
    Unavailable,
    /// The server already serves as many connections as it allows; this one is closed.
    Busy,
    /// A reload's config is invalid (or changes what needs a server restart); nothing changed.
    InvalidConfig,
}

impl ErrorKind {
    /// The wire spelling (`"unknown_worker"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UnknownCommand => "unknown_command",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::UnknownWorker => "unknown_worker",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Busy => "busy",
            ErrorKind::Failed => "failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidConfig => "invalid_config",
        }
    }
}

/// An error reply's content: one sentence and its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// The sentence to show the user.
    pub message: String,
    /// What kind of failure it was.
    pub kind: ErrorKind,
}

impl From<ControlError> for RemoteError {
    fn from(err: ControlError) -> Self {
        let kind = match &err {
            ControlError::UnknownWorker(_) => ErrorKind::UnknownWorker,
            ControlError::ShuttingDown => ErrorKind::ShuttingDown,
            ControlError::Failed(_) => ErrorKind::Failed,
            ControlError::Timeout(_) => ErrorKind::Timeout,
            ControlError::InvalidConfig(_) => ErrorKind::InvalidConfig,
        };
        RemoteError {
            message: err.to_string(),
            kind,
        }
    }
}

/// One reply line: `{"ok":true,"data":...}` or `{"ok":false,"error":"...","kind":"..."}`.
///
/// `data` stays raw JSON text both ways: the server writes its answer once, straight from the
/// typed value, and a client decodes it once, straight into its typed value (a 1000-worker dump
/// is 430 KB; going through `serde_json::Value` on each side cost about 10 ms).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The answer, when `ok` (its shape depends on the request), as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// One sentence, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's kind, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
}

impl Reply {
    /// A success carrying `data` (serialised here; a value that cannot be becomes an error).
    pub fn success<T: Serialize>(data: &T) -> Reply {
        match serde_json::value::to_raw_value(data) {
            Ok(value) => Reply {
                ok: true,
                data: Some(value),
                error: None,
                kind: None,
            },
            Err(err) => Reply::failure(RemoteError {
                message: format!("the server could not encode its answer: {err}"),
                kind: ErrorKind::Failed,
            }),
        }
    }

    /// An error reply.
    pub fn failure(err: RemoteError) -> Reply {
        Reply {
            ok: false,
            data: None,
            error: Some(err.message),
            kind: Some(err.kind),
        }
    }

    /// An error reply from a kind and a sentence.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply::failure(RemoteError {
            message: message.into(),
            kind,
        })
    }

    /// The data of a success (`null` when absent) as JSON text, or the error of a failure.
    pub fn into_result(self) -> Result<Box<RawValue>, RemoteError> {
        if self.ok {
            Ok(self.data.unwrap_or_else(|| RawValue::NULL.to_owned()))
        } else {
            Err(RemoteError {
                message: self
                    .error
                    .unwrap_or_else(|| "the server gave no reason".to_string()),
                kind: self.kind.unwrap_or(ErrorKind::Failed),
            })
        }
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> String {
        // A `Reply` holds only strings, bools and JSON values: serialising it cannot fail, but
        // fall back to a fixed line rather than panic if it ever did.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"ok":false,"error":"the server could not encode its reply","kind":"failed"}"#
                .to_string()
        });
        line.push('\n');
        line
    }
}

/// Parse one request line (without its newline), or say why it is not one.
pub fn parse_request(line: &[u8]) -> Result<Request, RemoteError> {
    let bad = |message: String| RemoteError {
        message,
        kind: ErrorKind::BadRequest,
    };
    let text = std::str::from_utf8(line).map_err(|_| bad("the request is not UTF-8".into()))?;
    let value: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|err| bad(format!("the request is not valid JSON: {err}")))?;
    let Some(cmd) = value.get("cmd") else {
        return Err(bad("the request has no \"cmd\" field".into()));
    };
    let Some(cmd) = cmd.as_str().map(str::to_owned) else {
        return Err(bad("the request's \"cmd\" is not a string".into()));
    };
    if !KNOWN_COMMANDS.contains(&cmd.as_str()) {
        let shown: String = cmd.chars().take(40).collect();
        return Err(RemoteError {
            message: format!(
                "unknown command {shown:?} (known: {})",
                KNOWN_COMMANDS.join(", ")
            ),
            kind: ErrorKind::UnknownCommand,
        });
    }
    serde_json::from_value(value).map_err(|err| bad(format!("bad {cmd:?} request: {err}")))
}

/// The `cmd` values [`Request`] accepts.
const KNOWN_COMMANDS: [&str; 7] = [
    "ping", "dump", "status", "act", "shutdown", "events", "reload",
];

/// How long each side waits for each kind of request.
///
/// The server bounds its calls into the tree with these; the client waits a little longer
/// ([`Timeouts::client_margin`]) so that the server's own timeout sentence reaches the user.
/// Both sides derive them from the same config with [`Timeouts::for_tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `dump` and `status`.
    pub query: Duration,
    /// `act` (start, stop, restart): the root replies once the action is done.
    pub act: Duration,
    /// `shutdown`: the root replies once every worker is down.
    pub shutdown: Duration,
    /// `reload`: the root replies once the new config is applied (removed workers stopped one
    /// after the other, changed ones restarted).
    pub reload: Duration,
}

impl Default for Timeouts {
    /// 2 s for queries, 60 s for actions, 120 s for shutdown, 180 s for reload.
    fn default() -> Self {
        Timeouts {
            query: Duration::from_secs(2),
            act: Duration::from_secs(60),
            shutdown: Duration::from_secs(120),
            reload: Duration::from_secs(180),
        }
    }
}

impl Timeouts {
    /// Extra time the client waits beyond the server's bound.
    pub fn client_margin() -> Duration {
        Duration::from_secs(3)
    }

    /// Bounds that fit a tree: an action may take the slowest worker's grace plus its
    /// `start_secs`, a shutdown every worker's grace in turn; each with a margin, and never
    /// less than the defaults.
    pub fn for_tree(tree: &TreeSpec) -> Timeouts {
        let margin = Duration::from_secs(15);
        let slowest_act = tree
            .workers
            .iter()
            .map(|w| w.policy.shutdown.grace + w.policy.start_secs)
            .max()
            .unwrap_or_default();
        let all_graces: Duration = tree.workers.iter().map(|w| w.policy.shutdown.grace).sum();
        let defaults = Timeouts::default();
        Timeouts {
            query: defaults.query,
            act: (slowest_act + margin).max(defaults.act),
            shutdown: (all_graces + margin).max(defaults.shutdown),
            reload: (all_graces + slowest_act + margin).max(defaults.reload),
        }
    }

    /// The server's bound for one request.
    pub fn for_request(&self, request: &Request) -> Duration {
        match request {
            Request::Ping | Request::Dump | Request::Status { .. } | Request::Events => self.query,
            Request::Act { .. } => self.act,
            Request::Shutdown => self.shutdown,
            Request::Reload { .. } => self.reload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_shape() {
        let cases = [
            (r#"{"cmd":"dump"}"#, Request::Dump),
            (r#"{"cmd":"ping"}"#, Request::Ping),
            (r#"{"cmd":"shutdown"}"#, Request::Shutdown),
            (r#"{"cmd":"events"}"#, Request::Events),
            (r#"{"cmd":"reload"}"#, Request::Reload { dry_run: false }),
            (
                r#"{"cmd":"reload","dry_run":true}"#,
                Request::Reload { dry_run: true },
            ),
            (
                r#"{"cmd":"status","worker":null}"#,
                Request::Status { worker: None },
            ),
            (r#"{"cmd":"status"}"#, Request::Status { worker: None }),
            (
                r#"{"cmd":"status","worker":"a"}"#,
                Request::Status {
                    worker: Some("a".into()),
                },
            ),
            (
                r#"{"cmd":"act","worker":"x","action":"restart"}"#,
                Request::Act {
                    worker: "x".into(),
                    action: WorkerAction::Restart,
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_request(line.as_bytes()), Ok(want.clone()), "{line}");
            let back = serde_json::to_string(&want).unwrap();
            assert_eq!(parse_request(back.as_bytes()), Ok(want));
        }
    }

    #[test]
    fn bad_lines_get_a_kind_and_a_sentence() {
        let kind = |line: &[u8]| parse_request(line).unwrap_err().kind;
        assert_eq!(kind(b"not json"), ErrorKind::BadRequest);
        assert_eq!(kind(b"\xff\xfe"), ErrorKind::BadRequest);
        assert_eq!(kind(b"[1,2]"), ErrorKind::BadRequest);
        assert_eq!(kind(br#"{"cmd":7}"#), ErrorKind::BadRequest);
        assert_eq!(kind(br#"{"cmd":"reboot"}"#), ErrorKind::UnknownCommand);
        assert_eq!(
            kind(br#"{"cmd":"act","worker":"x"}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(br#"{"cmd":"act","worker":"x","action":"explode"}"#),
            ErrorKind::BadRequest
        );
        let err = parse_request(br#"{"cmd":"reboot"}"#).unwrap_err();
        assert!(
            err.message.starts_with("unknown command \"reboot\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn replies_round_trip() {
        let ok = Reply::success(&vec![1, 2]);
        assert_eq!(ok.to_line(), "{\"ok\":true,\"data\":[1,2]}\n");
        assert_eq!(ok.into_result().unwrap().get(), "[1,2]");
        let err = Reply::failure(ControlError::UnknownWorker("x".into()).into());
        let line = err.to_line();
        assert_eq!(
            line,
            "{\"ok\":false,\"error\":\"no worker named \\\"x\\\"\",\"kind\":\"unknown_worker\"}\n"
        );
        let parsed: Reply = serde_json::from_str(line.trim()).unwrap();
        let remote = parsed.into_result().unwrap_err();
        assert_eq!(remote.kind, ErrorKind::UnknownWorker);
        assert_eq!(remote.to_string(), "no worker named \"x\"");
        let null = Reply::success(&());
        assert_eq!(null.to_line(), "{\"ok\":true,\"data\":null}\n");
        let absent: Reply = serde_json::from_str(r#"{"ok":true}"#).unwrap();
        assert_eq!(absent.into_result().unwrap().get(), "null");
    }
}
