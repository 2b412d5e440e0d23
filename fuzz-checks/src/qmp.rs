//! Feeds arbitrary bytes to the QMP client's two readers of what QEMU sends:
//! the bounded line reader and the message parser.
//!
//! - The whole input is one line for `parse_message`: it returns a message
//!   or `Malformed`, never panics. What it accepts is a JSON object whose
//!   first key in the order `QMP`, `return`, `error`, `event` decides the
//!   kind, with the fields copied verbatim, an event named by a non-empty
//!   string and its timestamp the saturating sum of its parts; an object with
//!   `QMP` or `return` is always accepted. Every accepted message, written
//!   back as QMP, parses to itself.
//! - The input is also a stream for `read_line`, read through a small
//!   buffer, with reads that stall at points picked from the input and a
//!   read dropped at each stall, as a deadline drops it. The lines must be
//!   the input split at `\n` with the line ends cut, each refused once it
//!   passes the limit, whatever the stalls and the buffer size; every line
//!   goes to `parse_message` as well.
//!
//! `Qmp` itself owns a Unix socket and is not driven here: the two readers
//! are all it does with QEMU's bytes.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use photon_vmm::qmp::{parse_message, read_line, Event, Message, QmpError, LINE_BYTES_MAX};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    check_message(data);
    check_lines(data);
}

/// The object `line` holds, if it is a JSON object.
fn as_object(line: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(line) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

fn check_message(line: &[u8]) {
    let object = as_object(line);
    let message = match parse_message(line) {
        Ok(message) => message,
        Err(QmpError::Malformed(_)) => {
            if let Some(object) = object {
                assert!(
                    !object.contains_key("QMP") && !object.contains_key("return"),
                    "refused a greeting or an answer: {object:?}"
                );
            }
            return;
        }
        Err(other) => panic!("a line can only be malformed, got {other:?}"),
    };
    let object = object.expect("accepted a line that is not a JSON object");
    let has = |key: &str| object.contains_key(key);
    match &message {
        Message::Greeting {
            version,
            capabilities,
        } => {
            let greeting = &object["QMP"];
            assert_eq!(
                *version,
                greeting.get("version").cloned().unwrap_or_default()
            );
            let strings: Vec<&str> = greeting
                .get("capabilities")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert_eq!(*capabilities, strings);
        }
        Message::Return { id, value } => {
            assert!(!has("QMP"));
            assert_eq!(Some(value), object.get("return"));
            assert_eq!(id.as_ref(), object.get("id"));
        }
        Message::Error { id, class, desc } => {
            assert!(!has("QMP") && !has("return"));
            assert_eq!(object["error"]["class"].as_str(), Some(class.as_str()));
            assert_eq!(object["error"]["desc"].as_str(), Some(desc.as_str()));
            assert_eq!(id.as_ref(), object.get("id"));
        }
        Message::Event(event) => {
            assert!(!has("QMP") && !has("return") && !has("error"));
            assert!(!event.name.is_empty(), "an event without a name");
            assert_eq!(object["event"].as_str(), Some(event.name.as_str()));
            assert_eq!(Some(&event.data), object.get("data").or(Some(&Value::Null)));
            let timestamp = object.get("timestamp").unwrap_or(&Value::Null);
            let part = |name: &str| timestamp[name].as_u64().unwrap_or(0);
            let expected = part("seconds")
                .saturating_mul(1_000_000)
                .saturating_add(part("microseconds"));
            assert_eq!(event.timestamp_us, expected);
        }
    }
    let value = message_value(&message);
    let written = serde_json::to_vec(&value).expect("a JSON value serialises");
    assert!(!written.contains(&b'\n'), "one message, one line");
    let again = message_value(&parse_message(&written).unwrap());
    assert!(
        same(&again, &value),
        "round trip: {again:?} is not {value:?}"
    );
}

/// Equal, but for floating-point numbers a few units in the last place
/// apart: serde_json (without its `float_roundtrip` feature) may read a
/// float back one ULP off the one it wrote. QMP's numbers are integers,
/// which it reads exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.is_sign_negative() == y.is_sign_negative() && x.to_bits().abs_diff(y.to_bits()) <= 4
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, x)| y.get(k).is_some_and(|y| same(x, y)))
        }
        _ => a == b,
    }
}

/// `message` as QEMU would send it.
fn message_value(message: &Message) -> Value {
    let with_id = |mut object: Value, id: &Option<Value>| {
        if let Some(id) = id {
            object["id"] = id.clone();
        }
        object
    };
    match message {
        Message::Greeting {
            version,
            capabilities,
        } => json!({"QMP": {"version": version, "capabilities": capabilities}}),
        Message::Return { id, value } => with_id(json!({ "return": value }), id),
        Message::Error { id, class, desc } => {
            with_id(json!({"error": {"class": class, "desc": desc}}), id)
        }
        Message::Event(Event {
            name,
            data,
            timestamp_us,
        }) => {
            let timestamp = json!({
                "seconds": timestamp_us / 1_000_000,
                "microseconds": timestamp_us % 1_000_000,
            });
            let mut event = json!({"event": name, "timestamp": timestamp});
            if !data.is_null() {
                event["data"] = data.clone();
            }
            event
        }
    }
}

/// How one stream is read, picked from a hash of the input so that every
/// input also gets its own buffer size, read sizes, stalls and limit.
struct Schedule {
    buffer_bytes: usize,
    read_bytes_max: usize,
    /// Bit `i % 64` set: the `i`-th read of the socket stalls (once).
    stalls: u64,
    line_bytes_max: usize,
}

impl Schedule {
    fn of(data: &[u8]) -> Self {
        // FNV-1a, then a splitmix finaliser to spread every bit.
        let mut hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        let byte = |i: u32| (hash >> (8 * i)) as u8 as usize;
        Self {
            buffer_bytes: 1 + byte(0) % 32,
            read_bytes_max: 1 + byte(1) % 64,
            stalls: hash.rotate_left(17) & hash.rotate_left(41),
            // Mostly the real limit; a small one to reach the refusal.
            line_bytes_max: if byte(2) < 192 {
                LINE_BYTES_MAX
            } else {
                1 + byte(3) % 96
            },
        }
    }
}

/// A socket whose reads return at most `read_bytes_max` bytes and stall at
/// the reads the schedule names.
struct Socket<'a> {
    data: &'a [u8],
    read_bytes_max: usize,
    stalls: u64,
    reads: u64,
    stalled: bool,
}

impl AsyncRead for Socket<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = self.get_mut();
        socket.reads += 1;
        if !socket.stalled && socket.stalls & (1 << (socket.reads % 64)) != 0 {
            // Nobody is woken: the reader is dropped instead, as at a deadline.
            socket.stalled = true;
            return Poll::Pending;
        }
        socket.stalled = false;
        let n = socket
            .data
            .len()
            .min(buf.remaining())
            .min(socket.read_bytes_max);
        buf.put_slice(&socket.data[..n]);
        socket.data = &socket.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// What `read_line` must return for `data`: its lines, then how it ends
/// (`Some(limit)` for a line over the limit, `None` for the end of input).
fn model_lines(data: &[u8], bytes_max: usize) -> (Vec<&[u8]>, Option<usize>) {
    let mut lines = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.iter().position(|&b| b == b'\n') {
        if at + 1 > bytes_max {
            return (lines, Some(bytes_max));
        }
        let mut line = &rest[..at];
        while let [head @ .., b'\r'] = line {
            line = head;
        }
        lines.push(line);
        rest = &rest[at + 1..];
    }
    (lines, (rest.len() > bytes_max).then_some(bytes_max))
}

fn check_lines(data: &[u8]) {
    let schedule = Schedule::of(data);
    let socket = Socket {
        data,
        read_bytes_max: schedule.read_bytes_max,
        stalls: schedule.stalls,
        reads: 0,
        stalled: false,
    };
    let mut reader = BufReader::with_capacity(schedule.buffer_bytes, socket);
    let mut partial = Vec::new();
    let mut context = Context::from_waker(Waker::noop());
    let mut lines = Vec::new();
    // Each poll either makes progress or stalls once, so this is plenty.
    let mut polls_left = 4 * data.len() + 16;
    let end = loop {
        polls_left = polls_left
            .checked_sub(1)
            .expect("read_line makes no progress");
        let mut read = pin!(read_line(
            &mut reader,
            &mut partial,
            schedule.line_bytes_max
        ));
        match read.as_mut().poll(&mut context) {
            // Dropping `read` here is the deadline passing.
            Poll::Pending => continue,
            Poll::Ready(Ok(line)) => lines.push(line),
            Poll::Ready(Err(QmpError::Closed)) => break None,
            Poll::Ready(Err(QmpError::LineTooLong(limit))) => break Some(limit),
            Poll::Ready(Err(other)) => panic!("read_line failed with {other:?}"),
        }
    };
    let (expected, expected_end) = model_lines(data, schedule.line_bytes_max);
    assert_eq!(lines, expected, "lines read");
    assert_eq!(end, expected_end, "how the stream ended");
    for line in &lines {
        check_message(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_splits_lines_as_qemu_writes_them() {
        let (lines, end) = model_lines(b"a\r\nb\n\r\r\nc", 16);
        assert_eq!(lines, [&b"a"[..], b"b", b""]);
        assert_eq!(end, None);
        assert_eq!(model_lines(b"abc\n", 3), (vec![], Some(3)));
        assert_eq!(model_lines(b"ab\nabcd", 3), (vec![&b"ab"[..]], Some(3)));
    }

    #[test]
    fn stalls_and_small_buffers_lose_no_line() {
        let stream = b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n\
            {\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n";
        for seed in 0..64u8 {
            let mut input = stream.to_vec();
            input.push(seed);
            check(&input);
        }
    }
}
