//! Docs that cannot rot: every page of the documentation (README.md and
//! docs/*.md) is a walkthrough that works in order on a fresh `photon dev`,
//! and this test runs it that way.
//!
//! For each page it starts a `photon dev` of its own (a temporary directory,
//! free ports, never the defaults, so pages run in parallel; one shard and
//! 16 MiB S3 segments to stay small) and waits, as a reader would, until it
//! has written its administrator's credentials and `s3.env`. Then it runs the
//! page's ```sh / ```bash blocks in order, all in one `bash -euo pipefail`
//! (as if pasted into one terminal: variables carry from block to block), in
//! a working directory that holds the node's data as `./photon-data`, with
//! the `photon` this build made first on PATH. The environment is the one
//! the pages document: `PHOTON_CONFIG_DIR` (where `photon ctl login` keeps
//! its token) points into the test's directory, every other `PHOTON_*` and
//! `AWS_*` variable is removed, and the aws CLI reads no config file of the
//! machine. A failure prints the page, the block, the command that failed,
//! the block's output and the tail of the node's log.
//!
//! Convention: a shell block that must not run here (it starts `photon dev`
//! itself, needs root or a second machine, starts a VM, runs a benchmark or
//! the test suite) says so on the line right before its opening fence:
//!
//! ```text
//! <!-- no-run: starts photon dev, which runs until Ctrl-C -->
//! ```bash
//! photon dev
//! ```
//! ```
//!
//! The reason is required. Nothing is skipped otherwise: a marker that is not
//! right before a shell block fails the test, and so does a page with
//! runnable blocks that no test below walks. A runnable block may not chain
//! commands with `&&` outside a subshell: `set -e` ignores a failure on the
//! left of `&&`, so a broken step would pass unseen (write one command per
//! line, or `(a && b)`). A tool a page needs (aws, qemu-io, jq, ...) that is
//! missing fails the test; it is never a reason to skip.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{dev_command, log_tail, temp_dir, wait_endpoints, Proc};

/// How long one page may run (below nextest's 300 s limit for a test).
const PAGE_TIMEOUT: Duration = Duration::from_secs(240);
/// How long `photon dev` may take to serve, bootstrap IAM and write s3.env.
const DEV_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks a shell block that does not run here; a reason follows the colon.
const NO_RUN: &str = "<!-- no-run:";
/// Lines the generated script prints to find its place in the output.
const BLOCK_MARK: &str = "@@photon-docs block ";
const FAILED_MARK: &str = "@@photon-docs failed ";
const DONE_MARK: &str = "@@photon-docs done@@";

/// The pages this test walks, with the tools their blocks use besides bash
/// and photon.
const PAGES: &[(&str, &[&str])] = &[
    ("README.md", &["curl", "jq", "aws", "qemu-io"]),
    ("docs/running.md", &["curl", "jq", "timeout"]),
    ("docs/control-plane.md", &["jq", "openssl", "timeout"]),
    ("docs/iam.md", &["jq", "openssl"]),
    ("docs/s3.md", &["aws", "python3", "curl", "jq"]),
    (
        "docs/volumes.md",
        &["qemu-img", "qemu-io", "nbdinfo", "nbdcopy", "fio", "jq"],
    ),
    ("docs/loadbalancer.md", &[]),
    ("docs/metrics.md", &["curl", "jq", "prometheus"]),
    (
        "docs/vms.md",
        &["qemu-system-x86_64", "qemu-img", "jq", "timeout", "aws"],
    ),
];

#[test]
fn readme() {
    walk("README.md");
}

#[test]
fn running() {
    walk("docs/running.md");
}

#[test]
fn control_plane() {
    walk("docs/control-plane.md");
}

#[test]
fn iam() {
    walk("docs/iam.md");
}

#[test]
fn s3() {
    walk("docs/s3.md");
}

#[test]
fn volumes() {
    walk("docs/volumes.md");
}

#[test]
fn metrics() {
    walk("docs/metrics.md");
}

#[test]
fn loadbalancer() {
    walk("docs/loadbalancer.md");
}

#[test]
fn vms() {
    walk("docs/vms.md");
}

/// The test guest of docs/vms.md: `$PHOTON_TEST_GUEST` (scripts/test.sh
/// builds it), else built now (cached).
fn test_guest() -> String {
    if let Ok(dir) = std::env::var("PHOTON_TEST_GUEST") {
        return dir;
    }
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/build-test-guest.sh"
        ))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/build-test-guest.sh failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().last().unwrap_or_default().trim().to_owned()
}

/// Every page with a runnable shell block is walked above, and every no-run
/// marker of every page stands right before a shell block.
#[test]
fn every_page_with_shell_blocks_is_walked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    pages.sort();
    let mut problems = Vec::new();
    for page in &pages {
        let blocks = match parse(&root.join(page)) {
            Ok(blocks) => blocks,
            Err(e) => {
                problems.push(format!("{page}: {e}"));
                continue;
            }
        };
        let runnable = blocks.iter().filter(|b| b.no_run.is_none()).count();
        let walked = PAGES.iter().any(|(p, _)| p == page);
        if runnable > 0 && !walked {
            problems.push(format!(
                "{page} has {runnable} runnable shell blocks but no test walks it: add it to PAGES and a #[test]"
            ));
        }
        if runnable == 0 && walked {
            problems.push(format!("{page} is walked but has no runnable block"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A shell block of a page.
#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    /// Its lines, without the fence's indentation.
    body: Vec<String>,
    /// The reason it does not run here, if marked so.
    no_run: Option<String>,
}

fn is_shell(info: &str) -> bool {
    matches!(
        info.split_whitespace().next(),
        Some("sh" | "bash" | "shell")
    )
}

/// The shell blocks of a page, checking the no-run markers and, in runnable
/// blocks, that no `&&` hides a failure from `set -e`.
fn parse(path: &Path) -> Result<Vec<Block>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut marker: Option<(usize, String)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some((at, _)) = &marker {
            if *at + 1 != i {
                return Err(format!(
                    "line {}: a no-run marker must stand on the line right before a ```sh or ```bash fence",
                    at + 1
                ));
            }
        }
        if let Some(rest) = trimmed.strip_prefix(NO_RUN) {
            let reason = rest.trim().trim_end_matches("-->").trim();
            if reason.is_empty() || !rest.trim_end().ends_with("-->") {
                return Err(format!(
                    "line {}: write a no-run marker as `{NO_RUN} REASON -->`",
                    i + 1
                ));
            }
            marker = Some((i, reason.to_owned()));
            i += 1;
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = line.len() - trimmed.len();
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let l = lines[i];
            let strip = l.len() - l.trim_start().len();
            body.push(l[strip.min(indent)..].to_owned());
            i += 1;
        }
        if i == lines.len() {
            return Err(format!("line {}: the fence is never closed", start + 1));
        }
        i += 1;
        let no_run = marker.take().map(|(_, reason)| reason);
        if !is_shell(info) {
            if no_run.is_some() {
                return Err(format!(
                    "line {}: a no-run marker before a block that is not ```sh or ```bash",
                    start + 1
                ));
            }
            continue;
        }
        if no_run.is_none() {
            if let Some(at) = hidden_failures(&body) {
                return Err(format!(
                    "line {}: `&&` outside a subshell: set -e ignores a failure on its left; use one command per line or (a && b)",
                    start + 2 + at
                ));
            }
        }
        blocks.push(Block {
            line: start + 1,
            body,
            no_run,
        });
    }
    if let Some((at, _)) = marker {
        return Err(format!(
            "line {}: a no-run marker at the end of the page",
            at + 1
        ));
    }
    Ok(blocks)
}

/// The first line (index in `body`) with `&&` outside quotes, comments,
/// subshells and here-documents.
fn hidden_failures(body: &[String]) -> Option<usize> {
    let mut heredoc_end: Option<String> = None;
    for (n, line) in body.iter().enumerate() {
        if let Some(end) = &heredoc_end {
            if line.trim() == end {
                heredoc_end = None;
            }
            continue;
        }
        let (mut single, mut double, mut depth) = (false, false, 0i32);
        let chars: Vec<char> = line.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            match c {
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                '\\' if !single => k += 1,
                '#' if !single && !double && (k == 0 || chars[k - 1].is_whitespace()) => break,
                '(' if !single && !double => depth += 1,
                ')' if !single && !double => depth -= 1,
                '&' if !single && !double && depth == 0 && chars.get(k + 1) == Some(&'&') => {
                    return Some(n);
                }
                _ => {}
            }
            k += 1;
        }
        heredoc_end = heredoc_terminator(line);
    }
    None
}

/// The word that ends a here-document opened on `line` (`<<'EOF'`, `<<EOF`).
fn heredoc_terminator(line: &str) -> Option<String> {
    let at = line.find("<<")?;
    let rest = line[at + 2..].trim_start_matches('-').trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// One script of every runnable block, with markers between them; also the
/// page line each script line came from (index = script line - 1).
fn script(page: &str, blocks: &[Block]) -> (String, Vec<Option<usize>>) {
    let mut text = String::new();
    let mut origins = Vec::new();
    let mut push = |line: &str, origin: Option<usize>| {
        text.push_str(line);
        text.push('\n');
        origins.push(origin);
    };
    push(
        &format!("# {page}, generated by tests/docs_walkthrough.rs"),
        None,
    );
    push(
        &format!(r#"trap 'printf "\n{FAILED_MARK}%s %s %s\n" "$?" "$LINENO" "$BASH_COMMAND"' ERR"#),
        None,
    );
    for (n, block) in blocks.iter().enumerate() {
        if block.no_run.is_some() {
            continue;
        }
        push(&format!("printf '\\n{BLOCK_MARK}{n}@@\\n'"), None);
        for (k, line) in block.body.iter().enumerate() {
            push(line, Some(block.line + 1 + k));
        }
    }
    push(&format!("printf '\\n{DONE_MARK}\\n'"), None);
    (text, origins)
}

/// A `photon dev` in `walk/photon-data`, on free ports, logging to `log`,
/// once it serves, has its administrator and has written s3.env.
fn start_dev(walk: &Path, log: &Path) -> Proc {
    let data = walk.join("photon-data");
    let out = File::create(log).unwrap();
    let mut child = dev_command(&data)
        .current_dir(walk)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_endpoints(&data, &mut child, log, DEV_START_TIMEOUT);
    // What a reader waits for before the next terminal: the administrator's
    // credentials, then its S3 key (photon dev prints both).
    for file in ["control/admin.credentials", "s3.env"] {
        let path = data.join(file);
        let deadline = Instant::now() + DEV_START_TIMEOUT;
        while !path.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("photon dev exited early: {status}\n{}", log_tail(log));
            }
            assert!(
                Instant::now() < deadline,
                "photon dev wrote no {}\n{}",
                path.display(),
                log_tail(log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Proc(child)
}

/// Fails unless `tool` is an executable file on PATH.
fn require_tool(page: &str, tool: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    assert!(
        found,
        "{page} needs `{tool}`, which is not on PATH: install it (./scripts/test.sh installs what the tests need)"
    );
}

/// Kills what the page left running (its background jobs), by process group.
fn kill_group(child: &Child) {
    // SAFETY: kill(2) on the process group of our own child; no memory is
    // involved. The group holds only processes the page started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
}

/// Runs `page`'s shell blocks against a fresh `photon dev`.
fn walk(page: &str) {
    let tools = PAGES
        .iter()
        .find(|(p, _)| *p == page)
        .map(|(_, tools)| *tools)
        .unwrap_or_else(|| panic!("{page} is not in PAGES"));
    for tool in ["bash"].iter().chain(tools) {
        require_tool(page, tool);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let blocks = parse(&repo.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
    let (text, origins) = script(page, &blocks);

    let root = temp_dir(&format!("docs-{}", page.replace(['/', '.'], "-")));
    let walk = root.join("walk");
    std::fs::create_dir_all(&walk).unwrap();
    let script_path = root.join("page.sh");
    std::fs::write(&script_path, &text).unwrap();
    let dev_log = root.join("dev.log");
    // Declared before the node, so dropped after it: VMs a page started
    // (docs/vms.md) run detached from photon.
    let _qemus = common::QemuGuard(root.clone());
    let dev = start_dev(&walk, &dev_log);

    let bin = PathBuf::from(env!("CARGO_BIN_EXE_photon"));
    let path = std::env::join_paths(std::iter::once(bin.parent().unwrap().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out_path = root.join("output.log");
    let out = File::create(&out_path).unwrap();
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail"])
        .arg(&script_path)
        .current_dir(&walk)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("PHOTON_") || key_text.starts_with("AWS_") {
            command.env_remove(&key);
        }
    }
    if page == "docs/vms.md" {
        command.env("PHOTON_TEST_GUEST", test_guest());
    }
    command
        .env("PATH", path)
        .env("PHOTON_CONFIG_DIR", root.join("config"))
        .env("AWS_CONFIG_FILE", root.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", root.join("aws-credentials"));
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > PAGE_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    kill_group(&child);
    let _ = child.wait();
    let elapsed = started.elapsed();
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let finished = output.contains(DONE_MARK);
    if status.is_some_and(|s| s.success()) && finished {
        drop(dev);
        let _ = std::fs::remove_dir_all(&root);
        let skipped = blocks.iter().filter(|b| b.no_run.is_some()).count();
        eprintln!(
            "{page}: {} blocks ran in {:.1} s ({skipped} marked no-run)",
            blocks.len() - skipped,
            elapsed.as_secs_f64()
        );
        return;
    }
    drop(dev);
    panic!(
        "{}",
        failure_report(page, &blocks, &origins, &output, status, finished, &root, &dev_log)
    );
}

/// Says where the walkthrough stopped and why.
#[allow(clippy::too_many_arguments)]
fn failure_report(
    page: &str,
    blocks: &[Block],
    origins: &[Option<usize>],
    output: &str,
    status: Option<ExitStatus>,
    finished: bool,
    root: &Path,
    dev_log: &Path,
) -> String {
    let mut report = String::new();
    let how = match status {
        None => format!("timed out after {} s", PAGE_TIMEOUT.as_secs()),
        Some(s) if s.success() && !finished => "exited before its end (exit 0)".to_owned(),
        Some(s) => format!("failed ({s})"),
    };
    // The block that ran last, and its output.
    let (block, block_output) = match output.rfind(BLOCK_MARK) {
        Some(at) => {
            let rest = &output[at + BLOCK_MARK.len()..];
            let n: usize = rest
                .split("@@")
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let body = rest.split_once('\n').map_or("", |(_, b)| b);
            (Some(n), body)
        }
        None => (None, output),
    };
    report.push_str(&format!("{page}: the walkthrough {how}"));
    if let Some(n) = block {
        let b = &blocks[n];
        report.push_str(&format!(" in the block at {page}:{}\n", b.line));
        if let Some(failed) = output.rfind(FAILED_MARK).map(|at| &output[at..]) {
            let line = failed.lines().next().unwrap_or("");
            let mut parts = line[FAILED_MARK.len()..].splitn(3, ' ');
            let code = parts.next().unwrap_or("?");
            let script_line: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            let command = parts.next().unwrap_or("");
            let at = origins
                .get(script_line.wrapping_sub(1))
                .copied()
                .flatten()
                .map_or(String::new(), |line| format!(" ({page}:{line})"));
            report.push_str(&format!(
                "failed command{at}: {command} (exit status {code})\n"
            ));
        }
        report.push_str("--- the block:\n");
        for (k, line) in b.body.iter().enumerate() {
            report.push_str(&format!("{:>5} | {line}\n", b.line + 1 + k));
        }
    } else {
        report.push('\n');
    }
    report.push_str("--- its output:\n");
    let shown: String = block_output
        .lines()
        .filter(|l| !l.starts_with(FAILED_MARK))
        .collect::<Vec<_>>()
        .join("\n");
    report.push_str(&shown);
    report.push('\n');
    report.push_str(&log_tail(dev_log));
    report.push_str(&format!(
        "\n--- kept for a look: {} (page.sh is the script that ran, walk/ its directory)",
        root.display()
    ));
    report
}

fn parse_text(text: &str) -> Result<Vec<Block>, String> {
    let dir = temp_dir("docs-parse");
    let path = dir.join("page.md");
    std::fs::write(&path, text).unwrap();
    let result = parse(&path);
    let _ = std::fs::remove_dir_all(dir);
    result
}

#[test]
fn markers_and_chains_are_checked() {
    let ok = "# t\n\n<!-- no-run: starts a server -->\n```sh\nphoton dev\n```\n\n  ```bash\n  (umask 077 && echo a) # b && c\n  cat > f <<'EOF'\n  x && y\n  EOF\n  ```\n\n```json\n{}\n```\n";
    let blocks = parse_text(ok).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].no_run.as_deref(), Some("starts a server"));
    assert_eq!(blocks[1].line, 8);
    assert_eq!(blocks[1].body[3], "EOF");
    assert!(parse_text("<!-- no-run: x -->\n\n```sh\ntrue\n```\n").is_err());
    assert!(parse_text("<!-- no-run: -->\n```sh\ntrue\n```\n").is_err());
    assert!(parse_text("<!-- no-run: x -->\n```json\n{}\n```\n").is_err());
    assert!(parse_text("```sh\ntrue && false\n```\n").is_err());
    assert!(parse_text("```sh\necho 'a && b' \"c && d\"\n```\n").is_ok());
    assert!(parse_text("```sh\ntrue\n").is_err());
}
