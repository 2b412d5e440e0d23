//! Tenant isolation and role enforcement of the control plane's IAM, driven
//! from the outside: two tenants (`acme`, `globex`), each with an
//! administrator, an editor (`ed`) and a viewer (`vi`), every one of them
//! logged in through `photon ctl` (one config dir each) against one
//! `photon dev`.
//!
//! * Every role of one tenant, against the other tenant's keys, leases,
//!   watches, users, bindings, access keys and tokens: refused, or reaching
//!   only its own data. The other tenant's key space is compared with a
//!   snapshot after every write attempt.
//! * Cluster-administrator calls are refused for every tenant role.
//! * In its own tenant each built-in role can do what it grants and no more;
//!   self-service (whoami, own access keys, password change) works for all.
//! * Bad tokens (tampered, garbage, expired, revoked, signed out, of a
//!   deleted principal) are refused as `unauthenticated`, with the reason.
//! * Logins of one user are rate limited; other users are unaffected.
//! * No error message carries a password, secret or token.
//!
//! Every check is recorded rather than asserted on the spot, so one run
//! reports every failing case; the test prints the outcome tables for the CI
//! log and then fails listing all failed checks.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{ctl_as, ctl_stdin_as, photon, Dev};
use serde_json::Value;

/// (tenant, its administrator's name).
const TENANTS: [(&str, &str); 2] = [("acme", "wile"), ("globex", "hank")];
const ROLES: [&str; 3] = ["admin", "editor", "viewer"];

const CROSS: &str = "cross-tenant: ROLE of one tenant against the other's resources";
const OWN: &str = "own tenant: what each role may do";
const TOKENS: &str = "bad tokens";
const LIMIT: &str = "login rate limit";
const FINAL: &str = "afterwards, as each tenant's administrator";

/// How long a change (revocation, password, binding) may take to reach the
/// node's IAM view.
const PROPAGATION: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    /// Fails, and stderr holds every one of these.
    Err(&'static [&'static str]),
}

const DENIED: Expect = Expect::Err(&["permission denied"]);
const NOT_FOUND: Expect = Expect::Err(&["not found"]);
const MUST_EXIST: Expect = Expect::Err(&["invalid argument", "must all exist in your tenant"]);

/// One `photon ctl` run.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }

    /// The outcome in a table cell.
    fn short(&self) -> &'static str {
        if self.ok {
            return "ok";
        }
        if self.stderr.contains("too many login attempts") {
            return "limited";
        }
        // The kind of error named first ("invalid argument: ... (unauthenticated: ...)").
        [
            ("permission denied", "denied"),
            ("unauthenticated", "unauth"),
            ("not found", "notfound"),
            ("invalid argument", "invalid"),
        ]
        .into_iter()
        .filter_map(|(needle, short)| self.stderr.find(needle).map(|at| (at, short)))
        .min()
        .map_or("error", |(_, short)| short)
    }

    fn said(&self) -> &str {
        if self.ok {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        }
    }

    fn values(&self) -> Vec<String> {
        self.json()["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| kv["value"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct User {
    tenant: &'static str,
    name: &'static str,
    role: &'static str,
    password: String,
    config: PathBuf,
}

impl User {
    fn col(&self) -> String {
        format!("{}/{}", self.tenant, self.role)
    }

    fn token(&self) -> String {
        stored_token(&self.config)
    }
}

/// What each tenant's administrator set up.
struct TenantInfo {
    name: &'static str,
    key_id: String,
    lease: String,
    /// Secret of its service account `svc`, whose tokens the other tenant
    /// tries to revoke.
    svc_secret: String,
}

fn stored_token(config: &Path) -> String {
    let path = config.join("credentials.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    stored["token"].as_str().unwrap().to_owned()
}

fn password(tenant: &str, user: &str, generation: u32) -> String {
    format!("Pw{generation}-{tenant}-{user}-q7Zx")
}

fn original(tenant: &str) -> String {
    format!("{tenant}:original")
}

fn cmd_line(args: &[&str]) -> String {
    if let [api] = args {
        if api.starts_with("(API)") {
            return (*api).to_owned();
        }
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(' ') {
                format!("{a:?}")
            } else if a.len() > 40 {
                format!("{}...", &a[..12])
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    format!("photon ctl {}", shown.join(" "))
}

/// Runs `photon ctl`, records every outcome and failed check, and draws
/// the summary tables.
struct Harness {
    endpoint: SocketAddr,
    dir: PathBuf,
    /// (command, stderr) of every run, for the secret scan.
    stderrs: RefCell<Vec<(String, String)>>,
    secrets: RefCell<Vec<String>>,
    failures: RefCell<Vec<String>>,
    /// (table, row) and (table, col) in first-seen order.
    rows: RefCell<Vec<(String, String)>>,
    cols: RefCell<Vec<(String, String)>>,
    cells: RefCell<BTreeMap<(String, String, String), String>>,
}

impl Harness {
    fn new(endpoint: SocketAddr, dir: PathBuf) -> Self {
        Self {
            endpoint,
            dir,
            stderrs: RefCell::default(),
            secrets: RefCell::default(),
            failures: RefCell::default(),
            rows: RefCell::default(),
            cols: RefCell::default(),
            cells: RefCell::default(),
        }
    }

    fn record(&self, args: &[&str], out: Output) -> Run {
        let run = Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.stderrs
            .borrow_mut()
            .push((cmd_line(args), run.stderr.clone()));
        run
    }

    fn run(&self, config: &Path, args: &[&str]) -> Run {
        self.record(args, ctl_as(config, self.endpoint, args))
    }

    fn run_stdin(&self, config: &Path, args: &[&str], stdin: &str) -> Run {
        self.record(args, ctl_stdin_as(config, self.endpoint, args, stdin))
    }

    /// `photon ctl` with extra environment (e.g. PHOTON_TOKEN).
    fn run_env(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = photon();
        command
            .env("PHOTON_CONFIG_DIR", config)
            .env_remove("PHOTON_TOKEN")
            .envs(env.iter().copied())
            .args(["ctl", "--endpoints", &self.endpoint.to_string()])
            .args(args);
        self.record(args, command.output().unwrap())
    }

    fn login(
        &self,
        config: &Path,
        tenant: &str,
        user: &str,
        password: &str,
        extra: &[&str],
    ) -> Run {
        let mut args = vec![
            "login",
            "--tenant",
            tenant,
            "--user",
            user,
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        self.run_stdin(config, &args, password)
    }

    /// Reruns until `done` (for changes that reach the IAM view a moment
    /// after the call that made them returned).
    fn eventually(&self, config: &Path, args: &[&str], done: impl Fn(&Run) -> bool) -> Run {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            let run = self.run(config, args);
            if done(&run) || Instant::now() > deadline {
                return run;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Set-up steps: no point going on without them.
    fn must(&self, who: &str, args: &[&str], run: Run) -> Run {
        assert!(
            run.ok,
            "set-up step failed: {who}: `{}`: {}",
            cmd_line(args),
            run.stderr
        );
        run
    }

    fn secret(&self, secret: &str) {
        self.secrets.borrow_mut().push(secret.to_owned());
    }

    fn fail(&self, message: String) {
        eprintln!("CHECK FAILED: {message}");
        self.failures.borrow_mut().push(message);
    }

    fn set(&self, table: &str, row: &str, col: &str, text: &str) {
        let key = (table.to_owned(), row.to_owned());
        if !self.rows.borrow().contains(&key) {
            self.rows.borrow_mut().push(key);
        }
        let key = (table.to_owned(), col.to_owned());
        if !self.cols.borrow().contains(&key) {
            self.cols.borrow_mut().push(key);
        }
        let mut cells = self.cells.borrow_mut();
        let cell = cells
            .entry((table.to_owned(), row.to_owned(), col.to_owned()))
            .or_default();
        if !cell.is_empty() && text != "!" {
            cell.push(',');
        }
        cell.push_str(text);
    }

    /// A check with a cell of its own: `ok`, or `FAIL` and a recorded failure.
    fn verdict(&self, table: &str, row: &str, col: &str, ok: bool, why: impl FnOnce() -> String) {
        self.set(table, row, col, if ok { "ok" } else { "FAIL" });
        if !ok {
            self.fail(format!("{col}: {row}: {}", why()));
        }
    }

    /// Whether `run` is what `expect` asks for; records a failure if not.
    fn expect(&self, who: &str, args: &[&str], run: &Run, expect: Expect) -> bool {
        let good = match expect {
            Expect::Ok => run.ok,
            Expect::Err(needles) => !run.ok && needles.iter().all(|n| run.stderr.contains(n)),
        };
        if !good {
            let wanted = match expect {
                Expect::Ok => "success".to_owned(),
                Expect::Err(needles) => format!("failure mentioning {needles:?}"),
            };
            self.fail(format!(
                "{who}: `{}`: expected {wanted}, got {}: {}",
                cmd_line(args),
                if run.ok { "success" } else { "failure" },
                run.said()
            ));
        }
        good
    }

    /// Runs `args` as the user of `config`, checks it against `expect` and
    /// fills the table cell.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        table: &str,
        row: &str,
        col: &str,
        config: &Path,
        args: &[&str],
        stdin: Option<&str>,
        expect: Expect,
    ) -> Run {
        let run = match stdin {
            Some(input) => self.run_stdin(config, args, input),
            None => self.run(config, args),
        };
        let good = self.expect(col, args, &run, expect);
        let cell = if good {
            run.short().to_owned()
        } else {
            format!("FAIL:{}", run.short())
        };
        self.set(table, row, col, &cell);
        run
    }

    /// A follow-up check of a cell: marks it with `!` and records why.
    fn check(&self, table: &str, row: &str, col: &str, ok: bool, why: impl FnOnce() -> String) {
        if !ok {
            self.fail(format!("{col}: {row}: {}", why()));
            self.set(table, row, col, "!");
        }
    }

    fn print_tables(&self) {
        let tables: Vec<String> = {
            let mut seen: Vec<String> = Vec::new();
            for (t, _) in self.rows.borrow().iter() {
                if !seen.contains(t) {
                    seen.push(t.clone());
                }
            }
            seen
        };
        let cells = self.cells.borrow();
        for table in tables {
            let rows: Vec<String> = self
                .rows
                .borrow()
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, r)| r.clone())
                .collect();
            let cols: Vec<String> = self
                .cols
                .borrow()
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, c)| c.clone())
                .collect();
            let row_width = rows.iter().map(String::len).max().unwrap_or(0);
            let widths: Vec<usize> = cols
                .iter()
                .map(|c| {
                    rows.iter()
                        .filter_map(|r| cells.get(&(table.clone(), r.clone(), c.clone())))
                        .map(String::len)
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut out = format!("\n== {table}\n{:row_width$}", "");
            for (c, w) in cols.iter().zip(&widths) {
                out.push_str(&format!(" | {c:w$}"));
            }
            out.push('\n');
            for r in &rows {
                out.push_str(&format!("{r:row_width$}"));
                for (c, w) in cols.iter().zip(&widths) {
                    let cell = cells
                        .get(&(table.clone(), r.clone(), c.clone()))
                        .map_or("-", String::as_str);
                    out.push_str(&format!(" | {cell:w$}"));
                }
                out.push('\n');
            }
            eprint!("{out}");
        }
        eprintln!(
            "(ok: allowed; denied: permission denied; notfound; invalid: invalid argument; \
             unauth: unauthenticated; limited: too many login attempts; FAIL: not what was \
             expected; !: a follow-up check failed)"
        );
    }
}

#[test]
fn tenants_are_isolated_and_roles_enforced() {
    let started = Instant::now();
    let dev = Dev::start("iam-isolation");
    let h = Harness::new(dev.control, dev.dir.clone());
    let root = dev.admin_config.clone();
    h.secret(&stored_token(&root));

    // ---- set-up ----
    let mut users: Vec<User> = Vec::new();
    for (tenant, admin) in TENANTS {
        for role in ROLES {
            let name = match role {
                "admin" => admin,
                "editor" => "ed",
                _ => "vi",
            };
            users.push(User {
                tenant,
                name,
                role,
                password: password(tenant, name, 1),
                config: h.dir.join(format!("config-{tenant}-{name}")),
            });
        }
    }
    for u in &users {
        h.secret(&u.password);
    }
    let mut tenants = Vec::new();
    for (t, (tenant, admin_name)) in TENANTS.into_iter().enumerate() {
        let admin = &users[t * 3];
        let args = [
            "iam",
            "tenant",
            "create",
            tenant,
            "--admin",
            admin_name,
            "--password-stdin",
        ];
        h.must(
            "cluster admin",
            &args,
            h.run_stdin(&root, &args, &admin.password),
        );
        h.must(
            admin_name,
            &["login"],
            h.login(&admin.config, tenant, admin_name, &admin.password, &[]),
        );
        for u in &users[t * 3 + 1..t * 3 + 3] {
            let args = ["iam", "user", "create", u.name, "--password-stdin"];
            h.must(
                admin_name,
                &args,
                h.run_stdin(&admin.config, &args, &u.password),
            );
            let args = ["iam", "bind", u.name, u.role, "--project", "default"];
            h.must(admin_name, &args, h.run(&admin.config, &args));
        }
        let value = original(tenant);
        let args = ["kv", "put", "shared/k", &value];
        h.must(admin_name, &args, h.run(&admin.config, &args));
        let args = ["--json", "iam", "access-key", "create"];
        let key = h
            .must(admin_name, &args, h.run(&admin.config, &args))
            .json();
        h.secret(key["secret_access_key"].as_str().unwrap());
        let args = ["--json", "lease", "grant", "600"];
        let lease = h
            .must(admin_name, &args, h.run(&admin.config, &args))
            .json()["id"]
            .to_string();
        let value = format!("{tenant}:leased");
        let args = ["kv", "put", "shared/leased", &value, "--lease", &lease];
        h.must(admin_name, &args, h.run(&admin.config, &args));
        let args = ["--json", "iam", "sa", "create", "svc"];
        let svc = h
            .must(admin_name, &args, h.run(&admin.config, &args))
            .json();
        let svc_secret = svc["secret"].as_str().unwrap().to_owned();
        h.secret(&svc_secret);
        tenants.push(TenantInfo {
            name: tenant,
            key_id: key["access_key_id"].as_str().unwrap().to_owned(),
            lease,
            svc_secret,
        });
    }
    for u in users.iter().filter(|u| u.role != "admin") {
        h.must(
            u.name,
            &["login"],
            h.login(&u.config, u.tenant, u.name, &u.password, &[]),
        );
    }
    for u in &users {
        h.secret(&u.token());
        // Bindings reach the node's IAM view a moment after they commit.
        let args = ["kv", "get", "shared/k"];
        let run = h.eventually(&u.config, &args, |r| r.ok);
        h.must(&u.col(), &args, run);
    }
    // The cluster administrator sees where tenant keys really live.
    let all = h.run(&root, &["--json", "kv", "get", "t/", "--prefix"]);
    let stored: BTreeMap<String, String> = all.json()["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default().to_owned(),
                kv["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (tenant, _) in TENANTS {
        let key = format!("t/{tenant}/default/shared/k");
        if stored.get(&key) != Some(&original(tenant)) {
            h.fail(format!(
                "cluster admin: `kv get t/ --prefix`: no {key} = {}: {}",
                original(tenant),
                all.said()
            ));
        }
    }
    eprintln!("set-up done after {:.1} s", started.elapsed().as_secs_f64());

    // ---- cross-tenant matrix ----
    for own in 0..2 {
        for role in 0..3 {
            attack(&h, &users, &tenants, own * 3 + role, 1 - own);
        }
    }
    eprintln!(
        "cross-tenant matrix done after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // ---- own tenant, per role ----
    for i in 0..users.len() {
        own_tenant(&h, &mut users, &tenants, i);
    }
    eprintln!(
        "own-tenant matrix done after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    bad_tokens(&h, &users);
    rate_limit(&h, &users);

    // ---- afterwards: every tenant still has all it had ----
    for (t, info) in tenants.iter().enumerate() {
        let admin = &users[t * 3];
        let col = info.name;
        let tokens_ok: Vec<String> = users[t * 3..t * 3 + 3]
            .iter()
            .map(|u| (u.name, h.run(&u.config, &["--json", "whoami"])))
            .filter(|(_, run)| !run.ok)
            .map(|(name, run)| format!("{name}: {}", run.said()))
            .collect();
        h.verdict(
            FINAL,
            "every user's token still works",
            col,
            tokens_ok.is_empty(),
            || format!("tokens refused: {tokens_ok:?}"),
        );
        let run = h.run(&admin.config, &["--json", "kv", "get", "shared/k"]);
        h.verdict(
            FINAL,
            "shared/k holds the tenant's own value",
            col,
            run.values() == [original(info.name)],
            || run.said().to_owned(),
        );
        let run = h.run(&admin.config, &["--json", "iam", "user", "ls"]);
        let listed = run.stdout.clone();
        h.verdict(
            FINAL,
            "its users are all there",
            col,
            [admin.name, "ed", "vi"]
                .iter()
                .all(|n| listed.contains(&format!("\"{n}\""))),
            || format!("`iam user ls`: {}", run.said()),
        );
        let run = h.run(
            &admin.config,
            &["--json", "iam", "access-key", "ls", "--all"],
        );
        h.verdict(
            FINAL,
            "its set-up access key is still there",
            col,
            run.stdout.contains(&info.key_id),
            || {
                format!(
                    "`iam access-key ls --all` lacks {}: {}",
                    info.key_id,
                    run.said()
                )
            },
        );
        let fresh = h.dir.join(format!("config-final-{}", admin.name));
        let run = h.login(&fresh, admin.tenant, admin.name, &admin.password, &[]);
        h.verdict(
            FINAL,
            "its administrator still logs in",
            col,
            run.ok,
            || run.said().to_owned(),
        );
        if run.ok {
            h.secret(&stored_token(&fresh));
        }
    }

    // ---- no error message carries a password, secret or token ----
    let secrets = h.secrets.borrow().clone();
    for (command, stderr) in h.stderrs.borrow().iter() {
        for secret in &secrets {
            if !secret.is_empty() && stderr.contains(secret.as_str()) {
                h.fail(format!(
                    "`{command}` printed a secret in its error: {stderr}"
                ));
            }
        }
    }
    eprintln!(
        "{} photon ctl runs, {} secrets scanned for in their errors",
        h.stderrs.borrow().len(),
        secrets.len()
    );

    h.print_tables();
    eprintln!(
        "iam_isolation took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let failures = h.failures.borrow();
    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The victim tenant's whole key space, as its administrator sees it.
fn key_space(h: &Harness, admin: &User) -> Result<Vec<(String, String, i64)>, String> {
    let run = h.run(&admin.config, &["--json", "kv", "get", "", "--prefix"]);
    if !run.ok {
        return Err(run.stderr);
    }
    Ok(run.json()["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default().to_owned(),
                kv["value"].as_str().unwrap_or_default().to_owned(),
                kv["mod_revision"].as_i64().unwrap_or_default(),
            )
        })
        .collect())
}

/// Every call of `users[me]` at the resources of tenant `victim`.
fn attack(h: &Harness, users: &[User], tenants: &[TenantInfo], me: usize, victim: usize) {
    let u = &users[me];
    let own_t = me / 3;
    let own = &tenants[own_t];
    let v = &tenants[victim];
    let v_admin = &users[victim * 3];
    let own_admin = &users[own_t * 3];
    let col = u.col();
    let writer = u.role != "viewer";
    let admin = u.role == "admin";
    let write = |e: Expect| if writer { e } else { DENIED };
    let iam_write = |e: Expect| if admin { e } else { DENIED };
    let call = |row: &str, args: &[&str], expect: Expect| {
        h.call(CROSS, row, &col, &u.config, args, None, expect)
    };
    let check = |row: &str, ok: bool, why: &dyn Fn() -> String| h.check(CROSS, row, &col, ok, why);
    let mine = |values: &[String]| {
        !values.is_empty()
            && values
                .iter()
                .all(|v| v.starts_with(&format!("{}:", own.name)))
    };

    // Taken again after the watch test, where the victim writes.
    let before = RefCell::new(key_space(h, v_admin));
    let intact = |row: &str| {
        let after = key_space(h, v_admin);
        let before = before.borrow();
        check(row, before.is_ok() && after == *before, &|| {
            format!(
                "{}'s key space changed: before {before:?}, after {after:?}",
                v.name
            )
        });
    };
    let victim_token_ok = |row: &str| {
        let run = h.run(&v_admin.config, &["--json", "whoami"]);
        check(row, run.ok, &|| {
            format!("{}'s administrator lost its token: {}", v.name, run.said())
        });
        if !run.ok {
            // Log it in again, so that the rows after this one still test
            // something.
            h.login(
                &v_admin.config,
                v_admin.tenant,
                v_admin.name,
                &v_admin.password,
                &[],
            );
        }
    };
    let victim_admin_bindings = |row: &str| {
        let run = h.run(
            &v_admin.config,
            &["--json", "iam", "bindings", v_admin.name],
        );
        let want =
            serde_json::json!([{"principal": v_admin.name, "project": "*", "role": "admin"}]);
        check(row, run.json() == want, &|| {
            format!(
                "{}'s bindings of {} changed: {}",
                v.name,
                v_admin.name,
                run.said()
            )
        });
    };

    // Reads reach only its own keys.
    let row = "kv get shared/k";
    let run = call(row, &["--json", "kv", "get", "shared/k"], Expect::Ok);
    check(row, run.values() == [original(own.name)], &|| {
        format!("read {:?}", run.values())
    });
    let row = "kv get shared/ --prefix";
    let run = call(
        row,
        &["--json", "kv", "get", "shared/", "--prefix"],
        Expect::Ok,
    );
    check(row, mine(&run.values()), &|| {
        format!("saw {:?}", run.values())
    });
    let row = "kv get \"\" --prefix (everything)";
    let run = call(row, &["--json", "kv", "get", "", "--prefix"], Expect::Ok);
    check(row, mine(&run.values()), &|| {
        format!("saw {:?}", run.values())
    });
    let row = "kv get \"\" --range-end ~ (everything)";
    let run = call(
        row,
        &["--json", "kv", "get", "", "--range-end", "~"],
        Expect::Ok,
    );
    check(row, mine(&run.values()), &|| {
        format!("saw {:?}", run.values())
    });
    let victim_path = format!("t/{}/default/shared/k", v.name);
    let row = "kv get t/VICTIM/default/shared/k";
    let run = call(row, &["--json", "kv", "get", &victim_path], Expect::Ok);
    check(row, run.values().is_empty(), &|| {
        format!("read {:?}", run.values())
    });
    let row = "kv get ../VICTIM/default/shared/k";
    let dotted = format!("../../{}/default/shared/k", v.name);
    let run = call(row, &["--json", "kv", "get", &dotted], Expect::Ok);
    check(row, run.values().is_empty(), &|| {
        format!("read {:?}", run.values())
    });
    let row = "kv txn --if shared/k==VICTIM's value";
    let condition = format!("shared/k=={}", original(v.name));
    let run = call(
        row,
        &[
            "--json",
            "kv",
            "txn",
            "--if",
            &condition,
            "--else",
            "get:shared/k",
        ],
        Expect::Ok,
    );
    check(row, run.json()["succeeded"] == false, &|| {
        format!("the compare saw the victim's value: {}", run.said())
    });
    // Naming the victim's key space in a compare names the caller's own
    // `t/VICTIM/...` path, which holds nothing.
    let row = "kv txn --if t/VICTIM/default/shared/k==VICTIM's value";
    let condition = format!("{victim_path}=={}", original(v.name));
    let run = call(
        row,
        &[
            "--json",
            "kv",
            "txn",
            "--if",
            &condition,
            "--else",
            "get:shared/k",
        ],
        Expect::Ok,
    );
    check(row, run.json()["succeeded"] == false, &|| {
        format!("the compare saw the victim's value: {}", run.said())
    });

    // Writes change only its own keys (or are refused).
    let value = format!("{}:put-by-{}", own.name, u.role);
    let row = "kv put shared/k";
    call(row, &["kv", "put", "shared/k", &value], write(Expect::Ok));
    intact(row);
    let row = "kv put t/VICTIM/default/shared/k";
    call(row, &["kv", "put", &victim_path, &value], write(Expect::Ok));
    intact(row);
    let row = "kv put ../VICTIM/default/shared/k";
    call(row, &["kv", "put", &dotted, &value], write(Expect::Ok));
    intact(row);
    let row = "kv txn --then put:shared/k=...";
    let op = format!("put:shared/k={value}");
    call(row, &["kv", "txn", "--then", &op], write(Expect::Ok));
    intact(row);
    // Nested transactions stay inside the caller's key space too.
    let row = "kv txn [txn [get], put shared/k] (API)";
    let run = nested_txn_put(h, u, "shared/k", &value);
    let args = ["(API) kv txn [txn [get shared/k], put shared/k]"];
    let good = h.expect(&col, &args, &run, write(Expect::Ok));
    h.set(CROSS, row, &col, if good { run.short() } else { "FAIL" });
    intact(row);
    let row = "kv del shared/k";
    call(row, &["kv", "del", "shared/k"], write(Expect::Ok));
    intact(row);
    let row = "kv del \"\" --prefix (everything)";
    call(row, &["kv", "del", "", "--prefix"], write(Expect::Ok));
    intact(row);
    // Put its own tenant back as it was.
    for args in [
        vec!["kv", "del", "", "--prefix"],
        vec!["kv", "put", "shared/k", &original(own.name)],
    ] {
        h.must(own_admin.name, &args, h.run(&own_admin.config, &args));
    }
    let leased = format!("{}:leased", own.name);
    let args = ["kv", "put", "shared/leased", &leased, "--lease", &own.lease];
    h.must(own_admin.name, &args, h.run(&own_admin.config, &args));

    // A watch sees none of the victim's writes.
    let (live, from) = live_watch(h, u, v_admin, own_admin);
    let row = "kv watch \"\" --prefix (live)";
    h.set(CROSS, row, &col, if live.ok { "ok" } else { "FAIL:error" });
    check(
        row,
        live.ok
            && live.stdout.starts_with("PUT\tshared/w\t")
            && live.stdout.contains(&format!("{}:watch", own.name)),
        &|| {
            format!(
                "expected its own tenant's PUT of shared/w first, got: {}",
                live.said()
            )
        },
    );
    let row = "kv watch \"\" --prefix --rev N (replay)";
    let run = call(
        row,
        &[
            "--json",
            "kv",
            "watch",
            "",
            "--prefix",
            "--rev",
            &from.to_string(),
            "--count",
            "1",
        ],
        Expect::Ok,
    );
    let event: Value =
        serde_json::from_str(run.stdout.lines().next().unwrap_or("null")).unwrap_or(Value::Null);
    check(
        row,
        event["kv"]["value"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("{}:", own.name))),
        &|| format!("replay from revision {from} gave {}", run.said()),
    );
    let leased = format!("{}:leased", own.name);
    let args = ["kv", "put", "shared/leased", &leased, "--lease", &own.lease];
    h.must(own_admin.name, &args, h.run(&own_admin.config, &args));
    *before.borrow_mut() = key_space(h, v_admin);

    // The victim's lease is not ours to see or use.
    let lease_alive = |row: &str| {
        let run = h.run(
            &v_admin.config,
            &["--json", "lease", "ttl", &v.lease, "--keys"],
        );
        check(
            row,
            run.ok && run.json()["keys"] == serde_json::json!(["shared/leased"]),
            &|| {
                format!(
                    "{}'s lease {} is gone or lost its key: {}",
                    v.name,
                    v.lease,
                    run.said()
                )
            },
        );
    };
    let row = "lease ttl VICTIM's lease";
    let run = call(
        row,
        &["--json", "lease", "ttl", &v.lease, "--keys"],
        NOT_FOUND,
    );
    check(row, !run.stdout.contains("shared/"), &|| {
        format!("saw the lease's keys: {}", run.stdout)
    });
    let row = "lease keep-alive VICTIM's lease --once";
    call(
        row,
        &["lease", "keep-alive", &v.lease, "--once"],
        write(NOT_FOUND),
    );
    let row = "lease revoke VICTIM's lease";
    call(row, &["lease", "revoke", &v.lease], write(NOT_FOUND));
    lease_alive(row);
    let row = "kv put --lease VICTIM's lease";
    call(
        row,
        &["kv", "put", "shared/x", "x", "--lease", &v.lease],
        write(NOT_FOUND),
    );
    intact(row);
    lease_alive(row);

    // IAM listings show only its own tenant.
    let row = "iam user ls";
    let run = call(row, &["--json", "iam", "user", "ls"], Expect::Ok);
    check(
        row,
        run.ok && !run.stdout.contains(&format!("\"{}\"", v_admin.name)),
        &|| format!("listed {}: {}", v_admin.name, run.said()),
    );
    let row = "iam bindings";
    let run = call(row, &["--json", "iam", "bindings"], Expect::Ok);
    check(
        row,
        run.ok && !run.stdout.contains(&format!("\"{}\"", v_admin.name)),
        &|| format!("listed {}: {}", v_admin.name, run.said()),
    );
    let row = "iam bindings VICTIM-ADMIN";
    let run = call(
        row,
        &["--json", "iam", "bindings", v_admin.name],
        Expect::Ok,
    );
    check(row, run.json() == serde_json::json!([]), &|| {
        format!("listed: {}", run.said())
    });
    let row = "iam access-key ls --all";
    let run = call(
        row,
        &["--json", "iam", "access-key", "ls", "--all"],
        Expect::Ok,
    );
    check(row, run.ok && !run.stdout.contains(&v.key_id), &|| {
        format!("listed {}: {}", v.key_id, run.said())
    });
    let row = "iam access-key ls --principal VICTIM-ADMIN";
    let run = call(
        row,
        &[
            "--json",
            "iam",
            "access-key",
            "ls",
            "--principal",
            v_admin.name,
        ],
        Expect::Ok,
    );
    check(row, run.json() == serde_json::json!([]), &|| {
        format!("listed: {}", run.said())
    });

    // IAM writes on the victim's principals fail and change nothing.
    let row = "iam access-key rm VICTIM's key";
    call(row, &["iam", "access-key", "rm", &v.key_id], NOT_FOUND);
    let run = h.run(
        &v_admin.config,
        &["--json", "iam", "access-key", "ls", "--all"],
    );
    check(row, run.stdout.contains(&v.key_id), &|| {
        format!("{}'s key {} is gone: {}", v.name, v.key_id, run.said())
    });
    let row = "iam access-key create --principal VICTIM-ADMIN";
    let run = call(
        row,
        &[
            "--json",
            "iam",
            "access-key",
            "create",
            "--principal",
            v_admin.name,
        ],
        iam_write(NOT_FOUND),
    );
    if let Some(secret) = run.json()["secret_access_key"].as_str() {
        h.secret(secret);
    }
    let row = "iam bind VICTIM-ADMIN viewer";
    call(
        row,
        &["iam", "bind", v_admin.name, "viewer"],
        iam_write(MUST_EXIST),
    );
    victim_admin_bindings(row);
    let row = "iam bind VICTIM-ADMIN admin --project '*'";
    call(
        row,
        &["iam", "bind", v_admin.name, "admin", "--project", "*"],
        iam_write(MUST_EXIST),
    );
    victim_admin_bindings(row);
    let row = "iam unbind VICTIM-ADMIN admin --project '*'";
    call(
        row,
        &["iam", "unbind", v_admin.name, "admin", "--project", "*"],
        iam_write(NOT_FOUND),
    );
    victim_admin_bindings(row);
    let row = "iam user rm VICTIM-ADMIN";
    call(
        row,
        &["iam", "user", "rm", v_admin.name],
        iam_write(NOT_FOUND),
    );
    victim_token_ok(row);
    let row = "iam user passwd VICTIM-ADMIN";
    h.call(
        CROSS,
        row,
        &col,
        &u.config,
        &["iam", "user", "passwd", v_admin.name, "--password-stdin"],
        Some("Pw-evil-1"),
        iam_write(NOT_FOUND),
    );
    victim_token_ok(row);
    let row = "iam sign-out VICTIM-ADMIN";
    call(
        row,
        &["iam", "sign-out", v_admin.name],
        iam_write(NOT_FOUND),
    );
    victim_token_ok(row);
    // The token on stdin: the call is made with the caller's own token.
    let row = "iam revoke-token (stdin) VICTIM-ADMIN's token";
    h.call(
        CROSS,
        row,
        &col,
        &u.config,
        &["iam", "revoke-token"],
        Some(&v_admin.token()),
        DENIED,
    );
    victim_token_ok(row);
    // The token as an argument, as `photon ctl iam revoke-token --help`
    // shows it; aimed at a throw-away token of the victim's service account.
    let row = "iam revoke-token VICTIM's token (as argument)";
    let scratch = h
        .dir
        .join(format!("config-svc-{}-{}-{}", v.name, u.tenant, u.role));
    let run = h.login(&scratch, v.name, "svc", &v.svc_secret, &[]);
    h.must("svc", &["login"], run);
    let svc_token = stored_token(&scratch);
    h.secret(&svc_token);
    call(row, &["iam", "revoke-token", &svc_token], DENIED);
    let run = h.run(&scratch, &["whoami"]);
    check(row, run.ok, &|| {
        format!(
            "{}'s service account lost its token: {}",
            v.name,
            run.said()
        )
    });

    // The cluster administrator's calls.
    let evil = format!("evil-{}-{}", u.tenant, u.role);
    let row = "iam tenant create";
    h.call(
        CROSS,
        row,
        &col,
        &u.config,
        &[
            "iam",
            "tenant",
            "create",
            &evil,
            "--admin",
            "x",
            "--password-stdin",
        ],
        Some("Pw-evil-2"),
        DENIED,
    );
    for (row, args) in [
        ("iam tenant ls", &["iam", "tenant", "ls"][..]),
        (
            "iam signing-key rotate",
            &["iam", "signing-key", "rotate"][..],
        ),
        ("iam signing-key ls", &["iam", "signing-key", "ls"][..]),
        ("cluster status", &["cluster", "status"][..]),
        ("kv compact 1", &["kv", "compact", "1"][..]),
    ] {
        call(row, args, DENIED);
    }
    intact("(all of the above)");
}

/// A live `kv watch "" --prefix --count 1` by `u`: the victim's
/// administrator writes first, then `u`'s own administrator; the watch must
/// deliver only the latter. Returns the watch's outcome and the revision it
/// started from.
fn live_watch(h: &Harness, u: &User, v_admin: &User, own_admin: &User) -> (Run, i64) {
    let args = ["kv", "watch", "", "--prefix", "--count", "1"];
    let mut child = photon()
        .env("PHOTON_CONFIG_DIR", &u.config)
        .env_remove("PHOTON_TOKEN")
        .args(["ctl", "--endpoints", &h.endpoint.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    // "watching from revision N (Ctrl-C to stop)"
    let from: i64 = first
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if first.contains("watching from revision") {
        let theirs = format!("{}:watch-{}", v_admin.tenant, u.col());
        let args = ["kv", "put", "shared/w", &theirs];
        h.must(v_admin.name, &args, h.run(&v_admin.config, &args));
        let ours = format!("{}:watch-{}", own_admin.tenant, u.col());
        let args = ["kv", "put", "shared/w", &ours];
        h.must(own_admin.name, &args, h.run(&own_admin.config, &args));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = Output {
        status: status.unwrap_or_else(failed_status),
        stdout: stdout.into_bytes(),
        stderr: format!(
            "{first}{rest}{}",
            if status.is_none() {
                "(no event within 10 s)"
            } else {
                ""
            }
        )
        .into_bytes(),
    };
    (h.record(&args, out), from)
}

fn failed_status() -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(1 << 8)
}

/// What `users[me]` may do in its own tenant.
fn own_tenant(h: &Harness, users: &mut [User], tenants: &[TenantInfo], me: usize) {
    let t = me / 3;
    let info = &tenants[t];
    let u = users[me].clone();
    let admin_user = users[t * 3].clone();
    let col = u.col();
    let writer = u.role != "viewer";
    let admin = u.role == "admin";
    let write = |e: Expect| if writer { e } else { DENIED };
    let iam_write = |e: Expect| if admin { e } else { DENIED };
    let call = |row: &str, args: &[&str], expect: Expect| {
        h.call(OWN, row, &col, &u.config, args, None, expect)
    };
    let check = |row: &str, ok: bool, why: &dyn Fn() -> String| h.check(OWN, row, &col, ok, why);
    // The principal the IAM writes below name: a throw-away user for the
    // administrator, a colleague for the others.
    let other = match u.role {
        "admin" => "tmp",
        "editor" => "vi",
        _ => "ed",
    };

    let row = "whoami";
    let run = call(row, &["--json", "whoami"], Expect::Ok);
    let who = run.json();
    let project = if admin { "*" } else { "default" };
    check(
        row,
        who["principal"] == u.name
            && who["tenant"] == u.tenant
            && who["project"] == "default"
            && who["cluster_admin"] == false
            && who["bindings"]
                == serde_json::json!([{"principal": u.name, "project": project, "role": u.role}]),
        &|| format!("whoami said {}", run.said()),
    );

    // KV.
    let row = "kv get shared/k";
    let run = call(row, &["--json", "kv", "get", "shared/k"], Expect::Ok);
    check(row, run.values() == [original(u.tenant)], &|| {
        format!("read {:?}", run.values())
    });
    // A compare against the caller's own current value holds: compares
    // are mapped under the caller's prefix like every other key.
    if let Some(current) = run.values().first() {
        let row = "kv txn --if shared/k==OWN value";
        let condition = format!("shared/k=={current}");
        let run = call(
            row,
            &[
                "--json",
                "kv",
                "txn",
                "--if",
                &condition,
                "--then",
                "get:shared/k",
            ],
            Expect::Ok,
        );
        check(row, run.json()["succeeded"] == true, &|| {
            format!("the compare missed the caller's own value: {}", run.said())
        });
    }
    let key = format!("own/{}", u.role);
    let value = format!("{}:{}", u.tenant, u.role);
    let row = "kv put own/ROLE";
    call(row, &["kv", "put", &key, &value], write(Expect::Ok));
    let row = "kv txn --then put:own/ROLE=...";
    let op = format!("put:{key}={value}");
    call(row, &["kv", "txn", "--then", &op], write(Expect::Ok));
    let row = "kv txn --then get:shared/k";
    call(row, &["kv", "txn", "--then", "get:shared/k"], Expect::Ok);
    let row = "kv get own/ --prefix";
    let run = call(
        row,
        &["--json", "kv", "get", "own/", "--prefix"],
        Expect::Ok,
    );
    if writer {
        check(row, run.values().contains(&value), &|| {
            format!("own/{} missing: {}", u.role, run.said())
        });
    }
    // `photon ctl kv txn` cannot nest transactions; the API can.
    let row = "kv txn [txn [get], put own/nested] (API)";
    let nested = format!("{}:nested-{}", u.tenant, u.role);
    let run = nested_txn_put(h, &u, "own/nested", &nested);
    let good = h.expect(
        &col,
        &["(API) kv txn [txn [get shared/k], put own/nested]"],
        &run,
        write(Expect::Ok),
    );
    h.set(OWN, row, &col, if good { run.short() } else { "FAIL" });
    let landed = h.run(&admin_user.config, &["--json", "kv", "get", "own/nested"]);
    check(row, writer || !landed.values().contains(&nested), &|| {
        format!("the refused put landed anyway: {}", landed.said())
    });
    if landed.ok && !landed.values().is_empty() {
        let args = ["kv", "del", "own/nested"];
        h.must(admin_user.name, &args, h.run(&admin_user.config, &args));
    }
    let row = "kv del own/ROLE";
    call(row, &["kv", "del", &key], write(Expect::Ok));
    let row = "kv watch shared/ --prefix --rev 1 --count 1";
    let run = call(
        row,
        &[
            "--json", "kv", "watch", "shared/", "--prefix", "--rev", "1", "--count", "1",
        ],
        Expect::Ok,
    );
    check(
        row,
        run.stdout.contains(&format!("\"{}:", u.tenant)),
        &|| format!("replayed {}", run.said()),
    );
    let row = "lease ttl (tenant's lease)";
    call(row, &["lease", "ttl", &info.lease], Expect::Ok);
    let row = "lease grant 60";
    let run = call(row, &["--json", "lease", "grant", "60"], write(Expect::Ok));
    if run.ok {
        let id = run.json()["id"].to_string();
        let row = "lease revoke (own lease)";
        call(row, &["lease", "revoke", &id], write(Expect::Ok));
    }

    // IAM reads.
    let row = "iam user ls";
    let run = call(row, &["--json", "iam", "user", "ls"], Expect::Ok);
    let listed = run.stdout.clone();
    check(
        row,
        [admin_user.name, "ed", "vi"]
            .iter()
            .all(|n| listed.contains(&format!("\"{n}\""))),
        &|| format!("listed {listed}"),
    );
    for (row, args) in [
        ("iam project ls", &["iam", "project", "ls"][..]),
        ("iam role ls", &["iam", "role", "ls"][..]),
        ("iam bindings", &["iam", "bindings"][..]),
    ] {
        call(row, args, Expect::Ok);
    }
    let row = "iam access-key ls --all";
    let run = call(
        row,
        &["--json", "iam", "access-key", "ls", "--all"],
        Expect::Ok,
    );
    check(row, run.stdout.contains(&info.key_id), &|| {
        format!("lacks {}: {}", info.key_id, run.said())
    });

    // Self-service access keys.
    let row = "iam access-key create (self)";
    let run = call(row, &["--json", "iam", "access-key", "create"], Expect::Ok);
    let id = run.json()["access_key_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(secret) = run.json()["secret_access_key"].as_str() {
        h.secret(secret);
    }
    let row = "iam access-key ls (self)";
    let run = call(row, &["--json", "iam", "access-key", "ls"], Expect::Ok);
    check(row, !id.is_empty() && run.stdout.contains(&id), &|| {
        format!("lacks {id:?}: {}", run.said())
    });
    let row = "iam access-key rm (own key)";
    call(row, &["iam", "access-key", "rm", &id], Expect::Ok);

    // IAM writes: the administrator's alone.
    let tmp_password = password(u.tenant, "tmp", 1);
    let tmp_password_2 = password(u.tenant, "tmp", 2);
    h.secret(&tmp_password);
    h.secret(&tmp_password_2);
    let tmp_a = h.dir.join(format!("config-{}-tmp-a", u.tenant));
    let tmp_b = h.dir.join(format!("config-{}-tmp-b", u.tenant));
    let created = if admin {
        "tmp".to_owned()
    } else {
        format!("tmp-{}", u.role)
    };
    let row = "iam user create";
    h.call(
        OWN,
        row,
        &col,
        &u.config,
        &["iam", "user", "create", &created, "--password-stdin"],
        Some(&tmp_password),
        iam_write(Expect::Ok),
    );
    let row = "iam user passwd OTHER";
    h.call(
        OWN,
        row,
        &col,
        &u.config,
        &["iam", "user", "passwd", other, "--password-stdin"],
        Some(&tmp_password_2),
        iam_write(Expect::Ok),
    );
    let row = "iam sign-out OTHER";
    call(row, &["iam", "sign-out", other], iam_write(Expect::Ok));
    if admin {
        for dir in [&tmp_a, &tmp_b] {
            let run = h.login(dir, u.tenant, "tmp", &tmp_password_2, &[]);
            check("iam user passwd OTHER", run.ok, &|| {
                format!("tmp cannot log in with its new password: {}", run.said())
            });
            if run.ok {
                h.secret(&stored_token(dir));
            }
        }
    }
    let row = "iam bind OTHER viewer";
    call(
        row,
        &["iam", "bind", other, "viewer"],
        iam_write(Expect::Ok),
    );
    if admin {
        let run = h.eventually(&tmp_a, &["kv", "get", "shared/k"], |r| r.ok);
        check(row, run.ok, &|| {
            format!("tmp, bound viewer, still cannot read: {}", run.said())
        });
    }
    let row = "iam unbind OTHER ROLE";
    let bound = if admin {
        "viewer"
    } else if other == "ed" {
        "editor"
    } else {
        "viewer"
    };
    call(row, &["iam", "unbind", other, bound], iam_write(Expect::Ok));
    if admin {
        let run = h.eventually(&tmp_a, &["kv", "get", "shared/k"], |r| !r.ok);
        check(row, run.stderr.contains("permission denied"), &|| {
            format!("tmp, unbound, is not refused: {}", run.said())
        });
    }
    let row = "iam project create";
    let project_name = format!("proj-{}", u.role);
    call(
        row,
        &["iam", "project", "create", &project_name],
        iam_write(Expect::Ok),
    );
    if admin {
        let run = h.run(&u.config, &["--json", "iam", "project", "ls"]);
        check(
            row,
            run.stdout.contains(&format!("\"{project_name}\"")),
            &|| format!("not listed: {}", run.said()),
        );
    }
    let row = "iam role put";
    let role_name = format!("reader-{}", u.role);
    let statements = r#"[{"effect":"allow","actions":["kv:Get"],"resources":["kv/app/*"]}]"#;
    call(
        row,
        &["iam", "role", "put", &role_name, statements],
        iam_write(Expect::Ok),
    );
    let row = "iam role rm";
    call(
        row,
        &["iam", "role", "rm", &role_name],
        iam_write(Expect::Ok),
    );
    let row = "iam sa create";
    let sa = format!("bot-{}", u.role);
    let run = call(
        row,
        &["--json", "iam", "sa", "create", &sa],
        iam_write(Expect::Ok),
    );
    if let Some(secret) = run.json()["secret"].as_str() {
        h.secret(secret);
        let row = "iam sa rm";
        call(row, &["iam", "sa", "rm", &sa], iam_write(Expect::Ok));
    }
    let row = "iam access-key create --principal OTHER";
    let run = call(
        row,
        &[
            "--json",
            "iam",
            "access-key",
            "create",
            "--principal",
            other,
        ],
        iam_write(Expect::Ok),
    );
    if let Some(secret) = run.json()["secret_access_key"].as_str() {
        h.secret(secret);
    }
    let other_key = run.json()["access_key_id"].as_str().map(str::to_owned);
    // Another principal's key: tmp's for the administrator, the
    // administrator's for the others.
    let row = "iam access-key rm OTHER's key";
    let target = if admin {
        other_key.clone().unwrap_or_default()
    } else {
        info.key_id.clone()
    };
    call(
        row,
        &["iam", "access-key", "rm", &target],
        iam_write(Expect::Ok),
    );
    if !admin {
        let run = h.run(
            &admin_user.config,
            &["--json", "iam", "access-key", "ls", "--all"],
        );
        check(row, run.stdout.contains(&info.key_id), &|| {
            format!("the administrator's key is gone: {}", run.said())
        });
    }
    let row = "iam revoke-token (stdin) OTHER's token";
    let token = if admin && tmp_a.join("credentials.json").exists() {
        stored_token(&tmp_a)
    } else {
        admin_user.token()
    };
    h.call(
        OWN,
        row,
        &col,
        &u.config,
        &["iam", "revoke-token"],
        Some(&token),
        iam_write(Expect::Ok),
    );
    if admin {
        let run = h.eventually(&tmp_a, &["whoami"], |r| !r.ok);
        check(
            row,
            run.stderr.contains("unauthenticated") && run.stderr.contains("revoked"),
            &|| format!("tmp's revoked token: {}", run.said()),
        );
    } else {
        let run = h.run(&admin_user.config, &["whoami"]);
        check(row, run.ok, &|| {
            format!("the administrator's token stopped working: {}", run.said())
        });
    }
    if admin {
        // A key the deletion of tmp must take along.
        let args = ["iam", "access-key", "create", "--principal", "tmp"];
        let run = h.must(u.name, &args, h.run(&u.config, &args));
        h.secret(
            run.stdout
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("AWS_SECRET_ACCESS_KEY="),
        );
    }
    let row = "iam user rm OTHER";
    call(row, &["iam", "user", "rm", other], iam_write(Expect::Ok));
    if admin {
        let run = h.eventually(&tmp_b, &["whoami"], |r| !r.ok);
        check(
            row,
            run.stderr.contains("unauthenticated") && run.stderr.contains("no longer exists"),
            &|| format!("the deleted user's token: {}", run.said()),
        );
        let run = h.run(&u.config, &["--json", "iam", "access-key", "ls", "--all"]);
        check(row, run.ok && !run.stdout.contains("\"tmp\""), &|| {
            format!("tmp's access keys outlived it: {}", run.said())
        });
    } else {
        let run = h.run(&admin_user.config, &["--json", "iam", "user", "ls"]);
        check(row, run.stdout.contains(&format!("\"{other}\"")), &|| {
            format!("{other} is gone: {}", run.said())
        });
    }

    // Self-service password change: the old token stops, a new login works.
    let row = "iam user passwd (self), then login";
    let new_password = password(u.tenant, u.name, 2);
    h.secret(&new_password);
    let old_token = u.token();
    h.call(
        OWN,
        row,
        &col,
        &u.config,
        &["iam", "user", "passwd", "--password-stdin"],
        Some(&new_password),
        Expect::Ok,
    );
    let run = h.eventually(&u.config, &["whoami"], |r| !r.ok);
    check(
        row,
        run.stderr.contains("unauthenticated")
            && run.stderr.contains("signed out or changed credentials"),
        &|| format!("the token from before the password change: {}", run.said()),
    );
    let run = h.run_env(&h.dir, &["whoami"], &[("PHOTON_TOKEN", &old_token)]);
    check(row, run.stderr.contains("unauthenticated"), &|| {
        format!("the old token via PHOTON_TOKEN: {}", run.said())
    });
    let run = h.login(&u.config, u.tenant, u.name, &new_password, &[]);
    check(row, run.ok, &|| {
        format!("login with the new password: {}", run.said())
    });
    users[me].password = new_password;
    h.secret(&users[me].token());
    let run = h.run(&u.config, &["whoami"]);
    check(row, run.ok, &|| format!("the new token: {}", run.said()));
}

/// A txn whose success branch is a nested txn (reading shared/k) and then a
/// put, through the client library with `u`'s token.
fn nested_txn_put(h: &Harness, u: &User, key: &str, value: &str) -> Run {
    use photon_control::client::Client;
    use photon_control::kv::{PutRequest, RangeRequest, RequestOp, TxnRequest};
    let token = u.token();
    let endpoint = h.endpoint;
    let request = TxnRequest {
        compare: Vec::new(),
        success: vec![
            RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Range(RangeRequest {
                    key: b"shared/k".to_vec(),
                    ..RangeRequest::default()
                })],
                ..TxnRequest::default()
            }),
            RequestOp::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..PutRequest::default()
            }),
        ],
        failure: Vec::new(),
    };
    let result = common::block_on(async move {
        let mut client = Client::with_token(vec![endpoint], token).map_err(|e| e.to_string())?;
        client.txn(request).await.map_err(|e| e.to_string())
    });
    let run = Run {
        ok: result.is_ok(),
        stdout: String::new(),
        stderr: result
            .err()
            .map(|e| format!("error: {e}"))
            .unwrap_or_default(),
    };
    h.stderrs.borrow_mut().push((
        "(API) kv txn [txn [get], put]".to_owned(),
        run.stderr.clone(),
    ));
    run
}

/// Tokens that are not (or no longer) valid.
fn bad_tokens(h: &Harness, users: &[User]) {
    let col = "outcome";
    let nobody = h.dir.join("config-nobody");
    let acme_ed = &users[1];
    let globex_ed = &users[4];
    let globex_vi = &users[5];

    // Started first: it has to be 2 s old.
    let expiring = h.dir.join("config-expiring");
    let run = h.login(
        &expiring,
        globex_ed.tenant,
        globex_ed.name,
        &globex_ed.password,
        &["--ttl", "1"],
    );
    h.must("globex/ed", &["login", "--ttl", "1"], run);
    let logged_in = Instant::now();
    let expired = stored_token(&expiring);
    h.secret(&expired);

    let token = acme_ed.token();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 4, "a v4.public token with a footer: {token}");
    let body = &mut parts[2];
    let at = body.len() / 2;
    let flipped = if &body[at..=at] == "A" { "B" } else { "A" };
    body.replace_range(at..=at, flipped);
    let tampered = parts.join(".");
    let truncated = token[..token.len() - 20].to_owned();
    h.secret(&tampered);

    let with_token = |row: &str, token: &str, needles: &'static [&'static str]| {
        h.call(
            TOKENS,
            &format!("{row}, via --token"),
            col,
            &nobody,
            &["whoami", "--token", token],
            None,
            Expect::Err(needles),
        );
        let run = h.run_env(
            &nobody,
            &["kv", "get", "shared/k"],
            &[("PHOTON_TOKEN", token)],
        );
        let args = ["kv", "get", "shared/k", "(PHOTON_TOKEN)"];
        let good = h.expect(
            &format!("{row}, via PHOTON_TOKEN"),
            &args,
            &run,
            Expect::Err(needles),
        );
        h.set(
            TOKENS,
            &format!("{row}, via PHOTON_TOKEN"),
            col,
            if good { run.short() } else { "FAIL" },
        );
    };
    with_token(
        "tampered (one char flipped)",
        &tampered,
        &["unauthenticated", "signature"],
    );
    with_token("garbage", "garbage", &["unauthenticated", "malformed"]);
    with_token("truncated", &truncated, &["unauthenticated"]);
    with_token(
        "another kind of token",
        "v2.local.AAAA",
        &["unauthenticated", "malformed"],
    );
    let row = "iam revoke-token garbage (stdin)";
    h.call(
        TOKENS,
        row,
        col,
        &acme_ed.config,
        &["iam", "revoke-token"],
        Some("garbage"),
        Expect::Err(&["invalid argument", "malformed"]),
    );
    let row = "iam revoke-token garbage (as argument)";
    h.call(
        TOKENS,
        row,
        col,
        &acme_ed.config,
        &["iam", "revoke-token", "garbage"],
        None,
        Expect::Err(&["invalid argument", "malformed"]),
    );

    // Revoked: a fresh token of globex/vi, revoked by itself (token on stdin).
    let revoking = h.dir.join("config-revoking");
    let run = h.login(
        &revoking,
        globex_vi.tenant,
        globex_vi.name,
        &globex_vi.password,
        &[],
    );
    h.must("globex/vi", &["login"], run);
    let revoked = stored_token(&revoking);
    h.secret(&revoked);
    let row = "iam revoke-token (own token, on stdin)";
    h.call(
        TOKENS,
        row,
        col,
        &revoking,
        &["iam", "revoke-token"],
        Some(&revoked),
        Expect::Ok,
    );
    let row = "revoked, via --token";
    let run = h.eventually(&nobody, &["whoami", "--token", &revoked], |r| !r.ok);
    let good = h.expect(
        row,
        &["whoami", "--token", "REVOKED"],
        &run,
        Expect::Err(&["unauthenticated", "revoked"]),
    );
    h.set(TOKENS, row, col, if good { run.short() } else { "FAIL" });
    let row = "revoked, stored";
    h.call(
        TOKENS,
        row,
        col,
        &revoking,
        &["kv", "get", "shared/k"],
        None,
        Expect::Err(&["unauthenticated", "revoked"]),
    );
    let row = "globex/vi's other token unaffected";
    h.call(
        TOKENS,
        row,
        col,
        &globex_vi.config,
        &["kv", "get", "shared/k"],
        None,
        Expect::Ok,
    );

    let wait = Duration::from_millis(2100).saturating_sub(logged_in.elapsed());
    std::thread::sleep(wait);
    let row = "expired (--ttl 1, 2 s later), via --token";
    h.call(
        TOKENS,
        row,
        col,
        &nobody,
        &["whoami", "--token", &expired],
        None,
        Expect::Err(&["unauthenticated", "expired"]),
    );
    let row = "expired, stored (refused by photon ctl itself)";
    h.call(
        TOKENS,
        row,
        col,
        &expiring,
        &["whoami"],
        None,
        Expect::Err(&["expired"]),
    );
    let row = "no token at all";
    h.call(
        TOKENS,
        row,
        col,
        &nobody,
        &["whoami"],
        None,
        Expect::Err(&["not logged in"]),
    );
}

/// Wrong passwords for acme/vi until the limiter answers; others unaffected.
fn rate_limit(h: &Harness, users: &[User]) {
    let col = "outcome";
    let target = &users[2];
    let config = h.dir.join("config-limited");
    let mut limited_after = None;
    for attempt in 1..=10 {
        let wrong = format!("Wrong{attempt}-not-the-password");
        h.secret(&wrong);
        let run = h.login(&config, target.tenant, target.name, &wrong, &[]);
        if run.ok {
            h.fail(format!(
                "acme/vi logged in with a wrong password: {}",
                run.stdout
            ));
            break;
        }
        if run.stderr.contains("too many login attempts") {
            let retry = run.stderr.contains("retry in");
            h.check(LIMIT, "wrong passwords until refused", col, retry, || {
                format!("the refusal does not say when to retry: {}", run.stderr)
            });
            limited_after = Some(attempt);
            break;
        }
        if !(run.stderr.contains("unauthenticated") && run.stderr.contains("login failed")) {
            h.fail(format!(
                "a wrong password for acme/vi: expected \"unauthenticated: login failed\", got: {}",
                run.stderr
            ));
        }
    }
    match limited_after {
        // 5 failed attempts in a burst, then refused (acme/vi's two earlier
        // successful logins cost nothing, or at most one each).
        Some(n) if n <= 6 => h.set(
            LIMIT,
            "wrong passwords until refused",
            col,
            &format!("limited after {n}"),
        ),
        other => {
            h.fail(format!("acme/vi: wrong passwords were never answered \"too many login attempts\" (limited after {other:?} attempts)"));
            h.set(LIMIT, "wrong passwords until refused", col, "FAIL");
        }
    }
    let args = [
        "login",
        "--tenant",
        target.tenant,
        "--user",
        target.name,
        "--password-stdin",
    ];
    let run = h.login(&config, target.tenant, target.name, &target.password, &[]);
    let good = h.expect(
        "acme/vi, right password while limited",
        &args,
        &run,
        Expect::Err(&["unauthenticated", "too many login attempts"]),
    );
    h.set(
        LIMIT,
        "right password while limited",
        col,
        if good { run.short() } else { "FAIL" },
    );
    for (row, u) in [
        ("another user of the tenant (acme/ed)", &users[1]),
        ("same name, other tenant (globex/vi)", &users[5]),
    ] {
        let config = h
            .dir
            .join(format!("config-unlimited-{}-{}", u.tenant, u.name));
        let run = h.login(&config, u.tenant, u.name, &u.password, &[]);
        let args = [
            "login",
            "--tenant",
            u.tenant,
            "--user",
            u.name,
            "--password-stdin",
        ];
        let good = h.expect(row, &args, &run, Expect::Ok);
        h.set(LIMIT, row, col, if good { run.short() } else { "FAIL" });
        if run.ok {
            h.secret(&stored_token(&config));
        }
    }
    let run = h.run(&target.config, &["whoami"]);
    let good = h.expect(
        "acme/vi's existing token while its logins are limited",
        &["whoami"],
        &run,
        Expect::Ok,
    );
    h.set(
        LIMIT,
        "acme/vi's existing token still works",
        col,
        if good { run.short() } else { "FAIL" },
    );
}
