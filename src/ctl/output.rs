//! The one output layer of `photon ctl`: every command renders typed
//! values (the client library's structs), as a table or text for people or,
//! with `--json`, as the same structs serialized. Also the exit codes.

use std::fmt::Write as _;
use std::process::ExitCode;

use photon_control::client::{ClientError, Code};
use serde::Serialize;

/// Where a command's result goes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON, or what `human` makes of it.
    pub fn show<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            println!("{}", to_json(value));
        } else {
            let text = human(value);
            if !text.is_empty() {
                println!("{}", text.trim_end_matches('\n'));
            }
        }
    }

    /// Prints `rows` as a JSON list, or as a table with `headers` whose
    /// cells `cells` gives for each row.
    pub fn list<T: Serialize, const N: usize>(
        &self,
        rows: &[T],
        headers: [&str; N],
        cells: impl Fn(&T) -> [String; N],
    ) {
        self.show(rows, |rows| {
            let mut table = Table::new(headers);
            for row in rows {
                table.row(cells(row));
            }
            table.to_string()
        });
    }

    /// Reports an action that returns nothing worth a table: `json` with
    /// `--json`, else `text`.
    pub fn done(&self, json: serde_json::Value, text: impl std::fmt::Display) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("the client's structs serialize")
}

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded.
pub struct Table<const N: usize> {
    headers: [String; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    pub fn new(headers: [&str; N]) -> Self {
        Self {
            headers: headers.map(str::to_owned),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }
}

impl<const N: usize> std::fmt::Display for Table<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths = [0usize; N];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                if i + 1 == N {
                    out.push_str(cell);
                } else {
                    let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        f.write_str(&out)
    }
}

/// Exit codes of `photon ctl` (docs/control-plane.md lists them).
pub mod exit {
    /// Anything not below: a local failure (a file, bad input to the CLI
    /// itself), an internal or protocol error.
    pub const FAILURE: u8 = 1;
    // 2: the command line itself is wrong (clap's own code).
    /// The server refused a value of the request (`invalidArgument`).
    pub const INVALID_ARGUMENT: u8 = 3;
    /// No valid token, or the roles do not allow it.
    pub const DENIED: u8 = 4;
    pub const NOT_FOUND: u8 = 5;
    /// It exists already, or the state does not allow it (not empty, in use).
    pub const CONFLICT: u8 = 6;
    /// A limit or quota is reached, or the disk is full.
    pub const EXHAUSTED: u8 = 7;
    /// The cluster could not be reached or did not answer in time (no
    /// leader, busy, unreachable, outcome unknown): try again.
    pub const UNAVAILABLE: u8 = 8;
}

/// The exit code for a failed command.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    let code = match error.downcast_ref::<ClientError>() {
        Some(ClientError::Api(e)) => match e.code {
            Code::InvalidArgument => exit::INVALID_ARGUMENT,
            Code::Unauthenticated | Code::PermissionDenied => exit::DENIED,
            Code::NotFound => exit::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition => exit::CONFLICT,
            Code::ResourceExhausted => exit::EXHAUSTED,
            Code::NotLeader | Code::Unavailable => exit::UNAVAILABLE,
            Code::Internal => exit::FAILURE,
        },
        Some(ClientError::NoToken) => exit::DENIED,
        Some(
            ClientError::Unreachable { .. } | ClientError::Exhausted(_) | ClientError::Unknown(_),
        ) => exit::UNAVAILABLE,
        Some(ClientError::NoEndpoints | ClientError::Protocol(_)) | None => exit::FAILURE,
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let mut t = Table::new(["NAME", "SIZE", "CREATED"]);
        t.row(["a".into(), "1 GiB".into(), "2026-12-07T10:00:00Z".into()]);
        t.row(["longer-name".into(), "".into(), "".into()]);
        assert_eq!(
            t.to_string(),
            "NAME         SIZE   CREATED\n\
             a            1 GiB  2026-12-07T10:00:00Z\n\
             longer-name\n"
        );
    }

    #[test]
    fn server_codes_map_to_documented_exit_codes() {
        use photon_control::client::ApiError;
        let api = |code| anyhow::Error::new(ClientError::Api(ApiError::new(code, "x")));
        assert_eq!(
            exit_code(&api(Code::NotFound)),
            ExitCode::from(exit::NOT_FOUND)
        );
        assert_eq!(
            exit_code(&api(Code::PermissionDenied)),
            ExitCode::from(exit::DENIED)
        );
        assert_eq!(
            exit_code(&api(Code::AlreadyExists)),
            ExitCode::from(exit::CONFLICT)
        );
        let local = anyhow::anyhow!("cannot read file");
        assert_eq!(exit_code(&local), ExitCode::from(exit::FAILURE));
    }
}
