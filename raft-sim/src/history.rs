//! Recorded client histories in the JSON-lines format of `shared/history-format.md`.
//!
//! ```
//! use raft_sim::history::{Operation, Outcome, Command};
//! let put = Operation {
//!     client_id: 1,
//!     key: "k1".into(),
//!     command: Command::Put { value: "v".into() },
//!     call_ns: 120,
//!     return_ns: Some(300),
//!     outcome: Outcome::Ok,
//! };
//! let line = put.to_json_line();
//! assert_eq!(Operation::from_json_line(&line)?, put);
//! # Ok::<(), raft_sim::history::HistoryError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};
use thiserror::Error;

/// What an operation asked for and, where it completed, what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A read; `output` is the value read (`None`: absent). Ignored unless the outcome is `Ok`.
    Get {
        /// The value read.
        output: Option<String>,
    },
    /// A write.
    Put {
        /// The value written.
        value: String,
    },
    /// An append (to an absent key: the appended value).
    Append {
        /// The suffix.
        value: String,
    },
    /// Compare-and-swap: set `value` if the key holds `expected` (`None`: absent).
    Cas {
        /// The value the key must hold.
        expected: Option<String>,
        /// The value to set.
        value: String,
        /// Whether the swap happened. Ignored unless the outcome is `Ok`.
        swapped: bool,
    },
}

/// Whether an operation took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It completed (`"ok": true`).
    Ok,
    /// It certainly did not take effect (`"ok": false`).
    Failed,
    /// It may have taken effect at any time after its call, or never (`"ok": "unknown"`).
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it.
    pub client_id: u64,
    /// The key.
    pub key: String,
    /// The operation and its result.
    pub command: Command,
    /// Nanoseconds on the run's shared monotonic clock, taken just before the request was sent.
    pub call_ns: u64,
    /// Just after the reply arrived; `None` when the outcome is unknown.
    pub return_ns: Option<u64>,
    /// Whether it took effect.
    pub outcome: Outcome,
}

/// A history line that does not follow the format.
#[derive(Debug, Error)]
pub enum HistoryError {
    /// Not JSON.
    #[error("line {line}: not JSON: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// JSON, but not an operation.
    #[error("line {line}: {what}")]
    Format {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Operation {
    /// The operation as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        let mut object = json!({
            "client_id": self.client_id,
            "key": self.key,
            "call_ns": self.call_ns,
            "return_ns": self.return_ns,
            "ok": match self.outcome {
                Outcome::Ok => json!(true),
                Outcome::Failed => json!(false),
                Outcome::Unknown => json!("unknown"),
            },
        });
        let completed = self.outcome == Outcome::Ok;
        match &self.command {
            Command::Get { output } => {
                object["op"] = json!("get");
                if completed {
                    object["output"] = json!(output);
                }
            }
            Command::Put { value } => {
                object["op"] = json!("put");
                object["value"] = json!(value);
            }
            Command::Append { value } => {
                object["op"] = json!("append");
                object["value"] = json!(value);
            }
            Command::Cas {
                expected,
                value,
                swapped,
            } => {
                object["op"] = json!("cas");
                object["expected"] = json!(expected);
                object["value"] = json!(value);
                if completed {
                    object["output"] = json!(swapped);
                }
            }
        }
        object.to_string()
    }

    /// Parses one JSON line.
    pub fn from_json_line(text: &str) -> Result<Self, HistoryError> {
        Self::parse(text, 1)
    }

    fn parse(text: &str, line: usize) -> Result<Self, HistoryError> {
        let value: Value =
            serde_json::from_str(text).map_err(|source| HistoryError::Json { line, source })?;
        let bad = |what: &str| HistoryError::Format {
            line,
            what: what.to_string(),
        };
        let string = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_string);
        let optional_string = |field: &str| -> Result<Option<String>, HistoryError> {
            match value.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("{field} must be a string or null"))),
            }
        };
        let outcome = match value.get("ok") {
            Some(Value::Bool(true)) => Outcome::Ok,
            Some(Value::Bool(false)) => Outcome::Failed,
            Some(Value::String(s)) if s == "unknown" => Outcome::Unknown,
            _ => return Err(bad("ok must be true, false or \"unknown\"")),
        };
        let completed = outcome == Outcome::Ok;
        let command = match value.get("op").and_then(Value::as_str) {
            Some("get") => Command::Get {
                output: optional_string("output")?,
            },
            Some("put") => Command::Put {
                value: string("value").ok_or_else(|| bad("put needs a string value"))?,
            },
            Some("append") => Command::Append {
                value: string("value").ok_or_else(|| bad("append needs a string value"))?,
            },
            Some("cas") => Command::Cas {
                expected: optional_string("expected")?,
                value: string("value").ok_or_else(|| bad("cas needs a string value"))?,
                swapped: match value.get("output") {
                    Some(Value::Bool(b)) => *b,
                    _ if !completed => false,
                    _ => return Err(bad("a completed cas needs a boolean output")),
                },
            },
            _ => return Err(bad("op must be get, put, append or cas")),
        };
        Ok(Operation {
            client_id: value
                .get("client_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("client_id"))?,
            key: string("key").ok_or_else(|| bad("key must be a string"))?,
            command,
            call_ns: value
                .get("call_ns")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("call_ns"))?,
            return_ns: value.get("return_ns").and_then(Value::as_u64),
            outcome,
        })
    }
}

/// Writes a history, one line per operation.
pub fn write_history(path: &Path, operations: &[Operation]) -> Result<(), HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = String::new();
    for op in operations {
        text.push_str(&op.to_json_line());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(io)
}

/// Reads a history written by [`write_history`] or any tool that follows the format.
pub fn read_history(path: &Path) -> Result<Vec<Operation>, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Operation::parse(l, i + 1))
        .collect()
}

/// Where a run's history goes: `$RAFT_HISTORY_DIR/<name>.jsonl`, or
/// `target/histories/<name>.jsonl` under the workspace.
pub fn history_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("RAFT_HISTORY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/histories"));
    dir.join(format!("{name}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_examples_parse() {
        let lines = [
            r#"{"client_id":1,"op":"put","key":"k1","value":"v","call_ns":120,"return_ns":300,"ok":true}"#,
            r#"{"client_id":3,"op":"get","key":"k1","output":"v","call_ns":100,"return_ns":250,"ok":true}"#,
            r#"{"client_id":2,"op":"append","key":"k1","value":"x","call_ns":130,"return_ns":null,"ok":"unknown"}"#,
            r#"{"client_id":0,"op":"cas","key":"k1","expected":"v","value":"z","output":true,"call_ns":140,"return_ns":400,"ok":true}"#,
        ];
        for line in lines {
            let op = Operation::from_json_line(line).unwrap();
            assert_eq!(Operation::from_json_line(&op.to_json_line()).unwrap(), op);
        }
        let get = Operation::from_json_line(lines[1]).unwrap();
        assert_eq!(
            get.command,
            Command::Get {
                output: Some("v".into())
            }
        );
    }

    #[test]
    fn malformed_lines_are_typed_errors() {
        assert!(matches!(
            Operation::from_json_line("{"),
            Err(HistoryError::Json { .. })
        ));
        let no_ok = r#"{"client_id":1,"op":"put","key":"k","value":"v","call_ns":1,"return_ns":2}"#;
        assert!(matches!(
            Operation::from_json_line(no_ok),
            Err(HistoryError::Format { .. })
        ));
    }
}

/// Collects the operations of concurrent clients on one monotonic clock, for a history file.
///
/// ```
/// use raft_sim::history::{Command, Operation, Outcome, Recorder};
/// let recorder = Recorder::new();
/// let call_ns = recorder.now();
/// recorder.record(Operation {
///     client_id: 0,
///     key: "k".into(),
///     command: Command::Get { output: None },
///     call_ns,
///     return_ns: Some(recorder.now()),
///     outcome: Outcome::Ok,
/// });
/// assert_eq!(recorder.take().len(), 1);
/// ```
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    operations: Mutex<Vec<Operation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            operations: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was made.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Adds a completed (or abandoned) operation.
    pub fn record(&self, operation: Operation) {
        self.operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(operation);
    }

    /// The operations recorded so far, leaving none.
    pub fn take(&self) -> Vec<Operation> {
        std::mem::take(&mut *self.operations.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
