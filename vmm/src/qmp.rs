//! A QMP client (the QEMU Machine Protocol: JSON objects, one per line, over
//! the VM's Unix socket). [`Qmp::connect`] reads the greeting and leaves
//! capabilities negotiation; [`Qmp::execute`] sends one command and waits for
//! its answer; the asynchronous events QEMU sends meanwhile (`STOP`,
//! `RESET`, `SHUTDOWN`, ...) are kept, at most [`EVENTS_QUEUED_MAX`], for
//! [`Qmp::next_event`].
//!
//! One controller per VM sends one command at a time, so the client is
//! sequential: commands carry an `id`, and a reply with another id is a
//! protocol error. Every read is bounded ([`LINE_BYTES_MAX`]) and every wait
//! has a deadline.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Longest line QEMU may send (a `query-*` answer of a large VM is a few KiB).
pub const LINE_BYTES_MAX: usize = 1 << 20;
/// Events kept while nobody asks for them; older ones are dropped (and
/// counted in [`Qmp::events_dropped`]).
pub const EVENTS_QUEUED_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP connection closed by QEMU")]
    Closed,
    #[error("QMP: no answer within {0:?}")]
    Timeout(Duration),
    #[error("QMP: a line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("QMP: malformed message: {0}")]
    Malformed(String),
    /// QEMU refused the command (`{"error": {"class", "desc"}}`).
    #[error("QEMU refused {command}: {class}: {desc}")]
    Refused {
        command: String,
        class: String,
        desc: String,
    },
}

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The first line: QEMU's version and capabilities.
    Greeting {
        version: Value,
        capabilities: Vec<String>,
    },
    /// A command's answer.
    Return {
        id: Option<Value>,
        value: Value,
    },
    /// A command's refusal.
    Error {
        id: Option<Value>,
        class: String,
        desc: String,
    },
    Event(Event),
}

/// An asynchronous event (`SHUTDOWN`, `STOP`, `RESUME`, `RESET`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
    /// When QEMU saw it, in microseconds since the epoch.
    pub timestamp_us: u64,
}

/// Parses one line of QMP.
pub fn parse_message(line: &[u8]) -> Result<Message, QmpError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| QmpError::Malformed(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(QmpError::Malformed("not a JSON object".into()));
    };
    let id = object.remove("id");
    if let Some(greeting) = object.remove("QMP") {
        let capabilities = greeting
            .get("capabilities")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let version = greeting.get("version").cloned().unwrap_or(Value::Null);
        return Ok(Message::Greeting {
            version,
            capabilities,
        });
    }
    if let Some(value) = object.remove("return") {
        return Ok(Message::Return { id, value });
    }
    if let Some(error) = object.remove("error") {
        let field = |name: &str| {
            error
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| QmpError::Malformed(format!("error without `{name}`")))
        };
        return Ok(Message::Error {
            id,
            class: field("class")?,
            desc: field("desc")?,
        });
    }
    if let Some(name) = object.remove("event") {
        let name = name
            .as_str()
            .ok_or_else(|| QmpError::Malformed("event name is not a string".into()))?
            .to_owned();
        if name.is_empty() {
            return Err(QmpError::Malformed("event with an empty name".into()));
        }
        let stamp = object.remove("timestamp").unwrap_or(Value::Null);
        let seconds = stamp.get("seconds").and_then(Value::as_u64).unwrap_or(0);
        let micros = stamp
            .get("microseconds")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        return Ok(Message::Event(Event {
            name,
            data: object.remove("data").unwrap_or(Value::Null),
            timestamp_us: seconds.saturating_mul(1_000_000).saturating_add(micros),
        }));
    }
    Err(QmpError::Malformed(
        "neither a greeting, a return, an error nor an event".into(),
    ))
}

/// Reads one line and returns it without its line end (`\n`, and any `\r`
/// before it); a line of more than `bytes_max` bytes, counting its `\n`, is
/// refused as soon as that many have come.
///
/// Cancel-safe: the bytes of a line not yet complete wait in `line`, which
/// the caller keeps between calls, so a read dropped at its deadline (as
/// [`Qmp::next_event`] does when no event comes) loses nothing and the next
/// call goes on where it stopped. After an error the connection is unusable.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    bytes_max: usize,
) -> Result<Vec<u8>, QmpError> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Err(QmpError::Closed);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > bytes_max {
            return Err(QmpError::LineTooLong(bytes_max));
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            return Ok(std::mem::take(line));
        }
    }
}

/// A connection to one QEMU's QMP socket, in command mode.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    /// The start of a line whose end has not come yet (see [`read_line`]).
    partial_line: Vec<u8>,
    writer: OwnedWriteHalf,
    events: VecDeque<Event>,
    dropped: u64,
    next_id: u64,
    timeout: Duration,
}

impl Qmp {
    /// Connects, reads the greeting and negotiates capabilities (none);
    /// every later wait is bounded by `timeout`. Returns QEMU's version.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<(Self, Value), QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(read),
            partial_line: Vec::new(),
            writer,
            events: VecDeque::new(),
            dropped: 0,
            next_id: 1,
            timeout,
        };
        let version = match qmp.read_message().await? {
            Message::Greeting { version, .. } => version,
            other => {
                return Err(QmpError::Malformed(format!(
                    "expected the greeting, got {other:?}"
                )))
            }
        };
        qmp.execute("qmp_capabilities", None).await?;
        Ok((qmp, version))
    }

    async fn read_message(&mut self) -> Result<Message, QmpError> {
        let read = read_line(&mut self.reader, &mut self.partial_line, LINE_BYTES_MAX);
        let line = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| QmpError::Timeout(self.timeout))??;
        parse_message(&line)
    }

    fn keep(&mut self, event: Event) {
        if self.events.len() == EVENTS_QUEUED_MAX {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = Map::new();
        request.insert("execute".into(), json!(command));
        if let Some(arguments) = arguments {
            request.insert("arguments".into(), arguments);
        }
        request.insert("id".into(), json!(id));
        let mut line = serde_json::to_vec(&Value::Object(request))
            .map_err(|e| QmpError::Malformed(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        loop {
            match self.read_message().await? {
                Message::Event(event) => self.keep(event),
                Message::Return {
                    id: answered,
                    value,
                } if answered == Some(json!(id)) => return Ok(value),
                Message::Error {
                    id: answered,
                    class,
                    desc,
                } if answered == Some(json!(id)) => {
                    return Err(QmpError::Refused {
                        command: command.to_owned(),
                        class,
                        desc,
                    })
                }
                other => {
                    return Err(QmpError::Malformed(format!(
                        "expected the answer to command {id}, got {other:?}"
                    )))
                }
            }
        }
    }

    /// The next event: a kept one, or the next QEMU sends within `wait`
    /// (`None` if none came).
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Event>, QmpError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        let read = read_line(&mut self.reader, &mut self.partial_line, LINE_BYTES_MAX);
        let read = tokio::time::timeout(wait, read).await;
        let Ok(line) = read else {
            return Ok(None);
        };
        match parse_message(&line?)? {
            Message::Event(event) => Ok(Some(event)),
            other => Err(QmpError::Malformed(format!(
                "expected an event, got {other:?}"
            ))),
        }
    }

    /// Events dropped because nobody asked for them in time.
    pub fn events_dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_message_parses() {
        let greeting = br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;
        assert!(matches!(
            parse_message(greeting).unwrap(),
            Message::Greeting { capabilities, .. } if capabilities == ["oob"]
        ));
        assert_eq!(
            parse_message(br#"{"return": {"status": "running"}, "id": 3}"#).unwrap(),
            Message::Return {
                id: Some(json!(3)),
                value: json!({"status": "running"})
            }
        );
        assert_eq!(
            parse_message(br#"{"id": 4, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#)
                .unwrap(),
            Message::Error {
                id: Some(json!(4)),
                class: "CommandNotFound".into(),
                desc: "The command nope has not been found".into()
            }
        );
        assert_eq!(
            parse_message(br#"{"timestamp": {"seconds": 2, "microseconds": 5}, "event": "STOP"}"#)
                .unwrap(),
            Message::Event(Event {
                name: "STOP".into(),
                data: Value::Null,
                timestamp_us: 2_000_005
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"[]",
            b"42",
            b"{}",
            b"{\"error\": {}}",
            b"{\"event\": 7}",
            b"{\"event\": \"\"}",
            b"{\"return\"",
        ] {
            assert!(
                matches!(parse_message(bad), Err(QmpError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut line = Vec::new();
        // The limit counts the `\n`: LINE_BYTES_MAX bytes in all pass, one more does not.
        let mut exact = vec![b'x'; LINE_BYTES_MAX - 1];
        exact.push(b'\n');
        let mut reader = BufReader::new(&exact[..]);
        let read = read_line(&mut reader, &mut line, LINE_BYTES_MAX).await;
        assert_eq!(read.unwrap().len(), LINE_BYTES_MAX - 1);
        let mut long = vec![b'x'; LINE_BYTES_MAX];
        long.push(b'\n');
        let mut reader = BufReader::new(&long[..]);
        assert!(matches!(
            read_line(&mut reader, &mut line, LINE_BYTES_MAX).await,
            Err(QmpError::LineTooLong(LINE_BYTES_MAX))
        ));
        line.clear();
        let mut reader = BufReader::new(&b"{\"return\": {}}\r\n"[..]);
        let read = read_line(&mut reader, &mut line, LINE_BYTES_MAX).await;
        assert_eq!(read.unwrap(), b"{\"return\": {}}");
        let mut reader = BufReader::new(&b"no newline"[..]);
        assert!(matches!(
            read_line(&mut reader, &mut line, LINE_BYTES_MAX).await,
            Err(QmpError::Closed)
        ));
    }

    /// A read dropped at its deadline in the middle of a line (what
    /// `next_event` does when it waits in vain) must not lose that line's
    /// start: the next read returns the whole line.
    #[tokio::test]
    async fn a_read_dropped_mid_line_loses_nothing() {
        let (mut qemu, ours) = tokio::io::duplex(64);
        let mut reader = BufReader::new(ours);
        let mut line = Vec::new();
        qemu.write_all(br#"{"event": "STOP", "#).await.unwrap();
        let wait = Duration::from_millis(20);
        let read = read_line(&mut reader, &mut line, LINE_BYTES_MAX);
        assert!(tokio::time::timeout(wait, read).await.is_err());
        qemu.write_all(b"\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n")
            .await
            .unwrap();
        let read = read_line(&mut reader, &mut line, LINE_BYTES_MAX).await;
        assert_eq!(
            parse_message(&read.unwrap()).unwrap(),
            Message::Event(Event {
                name: "STOP".into(),
                data: Value::Null,
                timestamp_us: 1_000_002
            })
        );
    }
}
