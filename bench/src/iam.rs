//! `photon bench iam`: what checking a request costs a node, in one process.
//!
//! Every case runs against one [`Directory`] built from the same KV records
//! the control plane writes (a tenant, a project, `--tokens` users with
//! bindings, a signing key), beside its baseline in the same run:
//!
//! 1. raw floor: one PASETO v4.public parse + Ed25519 verify through
//!    `pasetors` alone (`token::Unverified::parse` + `verify` with the key);
//! 2. cold verify: [`Snapshot::verify`], the floor plus key lookup and claim
//!    checks (expiry, revocation, principal, sign-out);
//! 3. cached verify: [`Verifier::verify`] on tokens it verified before, the
//!    per-request path, cycling over `--tokens` distinct tokens;
//! 4. authorize: [`Verifier::authorize`] for a principal bound to the
//!    built-in `editor` role and for one bound to a custom role of
//!    `--statements` statements, each with an allowed and a refused action;
//! 5. the full cached request path: cached verify + authorize.
//!
//! Ops above ~1 us (1, 2) are timed one at a time. Ops below that are timed
//! in batches of `--batch`, and each batch records batch time / batch length
//! once per batch, so their percentiles are percentiles of batch averages.
//! The cases take turns in `--rounds` rounds, so that other work on a shared
//! machine slows every case alike. The clock read a server does per request (`now_ms`) is not part of any
//! case: every op gets the same fixed instant.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::Args;
use hdrhistogram::Histogram;
use photon_iam::directory::VERIFIED_TOKENS_MAX;
use photon_iam::model::{self, Effect, Principal, PrincipalKind, Role, Statement};
use photon_iam::policy::Decision;
use photon_iam::records::{self, Record};
use photon_iam::seal::ClusterKey;
use photon_iam::token::{KeyPair, Unverified, VerifyingKey};
use photon_iam::{Directory, Identity, Scope, Verifier};
use serde_json::json;

use crate::report::Table;

/// The instant every token is issued at (ms since the epoch; any value works).
const ISSUED_MS: u64 = 1_700_000_000_000;
/// The instant every op checks at: one second after issue.
const NOW_MS: u64 = ISSUED_MS + 1_000;
/// Token lifetime: the default of `[iam] token_ttl_default_s`.
const TOKEN_TTL_MS: u64 = 3_600_000;
/// Most rounds the ops of a case may be split into.
pub const ROUNDS_MAX: usize = 1_000;
/// Largest batch of sub-microsecond ops timed together.
pub const BATCH_MAX: usize = 4096;
/// Most measured ops of one case (bounds the run time and the histograms'
/// counters, not memory: histograms are fixed-size).
pub const ITERATIONS_MAX: usize = 1 << 30;
/// The target the full cached request path is held to.
const CACHED_PATH_TARGET_NS: f64 = 1_000.0;

const TENANT: &str = "bench";
const PROJECT: &str = "web";
const CUSTOM_ROLE: &str = "bench-role";
/// Bound to `editor` only.
const BUILTIN_PRINCIPAL: &str = "builtin-only";
/// Bound to the custom role only.
const CUSTOM_PRINCIPAL: &str = "custom-only";

#[derive(Debug, Clone, Args)]
pub struct IamArgs {
    /// Measured ops of every sub-microsecond case (cached verify, authorize,
    /// full path), after a 10% warm-up.
    #[arg(long, default_value_t = 2_000_000)]
    pub iterations: usize,
    /// Measured ops of the cold cases (raw floor, cold verify), each an
    /// Ed25519 verify of tens of microseconds, after a 10% warm-up.
    #[arg(long, default_value_t = 20_000)]
    pub cold_iterations: usize,
    /// Distinct tokens (one user each) the verify cases cycle over. At most
    /// the verifier's cache size, so the cached cases stay cached.
    #[arg(long, default_value_t = 1_000)]
    pub tokens: usize,
    /// Statements of the custom role (allow and deny, with wildcards); 2 to
    /// the per-role limit of the IAM API.
    #[arg(long, default_value_t = 16)]
    pub statements: usize,
    /// Rounds every case's ops are split into; the rounds of all cases
    /// alternate, so that noise from other work on the machine hits every
    /// case alike.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Ops per timed batch for the sub-microsecond cases.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Pin the measuring thread to this CPU.
    #[arg(long)]
    pub pin_cpu: Option<usize>,
    /// Print one JSON object instead of the table; with a path, print the
    /// table and write the JSON object to that file.
    #[arg(long, num_args = 0..=1, value_name = "PATH")]
    pub json: Option<Option<PathBuf>>,
}

pub fn run(args: IamArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    if let Some(cpu) = args.pin_cpu {
        crate::pin_current_thread(cpu)?;
    }
    let fixture = Fixture::build(args.tokens, args.statements)?;
    let results = measure_all(&args, &fixture)?;
    let summary = Summary::of(&results);
    let doc = to_json(&args, &results, &summary);
    match &args.json {
        Some(None) => println!("{}", serde_json::to_string_pretty(&doc)?),
        Some(Some(path)) => {
            print_report(&args, &results, &summary);
            std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => print_report(&args, &results, &summary),
    }
    Ok(())
}

fn check_args(args: &IamArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=ITERATIONS_MAX).contains(&args.iterations)
            && (1..=ITERATIONS_MAX).contains(&args.cold_iterations),
        "--iterations and --cold-iterations must be 1 to {ITERATIONS_MAX}"
    );
    ensure!(
        (1..=VERIFIED_TOKENS_MAX).contains(&args.tokens),
        "--tokens must be 1 to {VERIFIED_TOKENS_MAX} (the verifier's cache size)"
    );
    ensure!(
        (2..=model::STATEMENTS_PER_ROLE_MAX).contains(&args.statements),
        "--statements must be 2 to {} (the IAM API's per-role limit)",
        model::STATEMENTS_PER_ROLE_MAX
    );
    ensure!(
        (1..=ROUNDS_MAX).contains(&args.rounds) && args.rounds <= args.cold_iterations,
        "--rounds must be 1 to {ROUNDS_MAX} and at most --cold-iterations"
    );
    ensure!(
        (1..=BATCH_MAX).contains(&args.batch) && args.batch <= args.iterations / args.rounds,
        "--batch must be 1 to {BATCH_MAX} and at most --iterations / --rounds"
    );
    Ok(())
}

/// An authorization request of a case.
#[derive(Debug, Clone, Copy)]
struct Request {
    scope: Scope,
    action: &'static str,
    resource: &'static str,
}

/// Allowed by `editor` and by statement 0 of the custom role.
const ALLOWED: Request = Request {
    scope: Scope::Project,
    action: "kv:Put",
    resource: "kv/team0/config",
};
/// Refused by the custom role's last statement, an explicit deny (which
/// wins over `editor`'s allow).
const DENIED_BY_CUSTOM: Request = Request {
    scope: Scope::Project,
    action: "kv:Put",
    resource: "kv/secrets/db",
};
/// Refused to `editor` (it may only read IAM): default deny.
const DENIED_TO_EDITOR: Request = Request {
    scope: Scope::Tenant,
    action: "iam:CreateUser",
    resource: "iam/principal/mallory",
};

/// A directory fed with IAM records, and tokens for its principals.
pub struct Fixture {
    pub directory: Arc<Directory>,
    /// Tokens of `user-<i>`, each bound to `editor` and the custom role.
    pub tokens: Vec<String>,
    pub builtin_token: String,
    pub custom_token: String,
    /// The public key that signed every token, for the raw floor.
    pub key: VerifyingKey,
}

impl Fixture {
    pub fn build(users: usize, statements: usize) -> anyhow::Result<Self> {
        let directory = Directory::new(ClusterKey::generate());
        let pair = KeyPair::generate("k1".into());
        let mut all: Vec<Record> = vec![
            records::signing_key(directory.cluster_key(), &pair, ISSUED_MS - 1, None),
            records::cluster_key_check(directory.cluster_key()),
            records::tenant(TENANT, ISSUED_MS),
            records::project(TENANT, PROJECT, ISSUED_MS),
        ];
        let role = custom_role(statements);
        model::check_statements(&role.statements).map_err(anyhow::Error::msg)?;
        all.push(records::role(&role));
        let names: Vec<String> = (0..users).map(|i| format!("user-{i:05}")).collect();
        for name in &names {
            all.push(records::principal(&user(name)));
            all.push(records::binding(TENANT, name, PROJECT, "editor"));
            all.push(records::binding(TENANT, name, PROJECT, CUSTOM_ROLE));
        }
        all.push(records::principal(&user(BUILTIN_PRINCIPAL)));
        all.push(records::binding(
            TENANT,
            BUILTIN_PRINCIPAL,
            PROJECT,
            "editor",
        ));
        all.push(records::principal(&user(CUSTOM_PRINCIPAL)));
        all.push(records::binding(
            TENANT,
            CUSTOM_PRINCIPAL,
            PROJECT,
            CUSTOM_ROLE,
        ));
        directory.apply(all.iter().map(|(k, v)| (k.as_bytes(), Some(v.as_slice()))));
        ensure!(
            directory.snapshot().malformed_records == 0,
            "the fixture wrote malformed IAM records"
        );
        let issue = |name: &str| -> anyhow::Result<String> {
            let (token, _) =
                directory.issue_token(TENANT, name, PROJECT, ISSUED_MS, TOKEN_TTL_MS)?;
            Ok(token)
        };
        let tokens = names
            .iter()
            .map(|n| issue(n))
            .collect::<anyhow::Result<_>>()?;
        let key = VerifyingKey::from_bytes(pair.public_bytes()).context("public key")?;
        Ok(Self {
            tokens,
            builtin_token: issue(BUILTIN_PRINCIPAL)?,
            custom_token: issue(CUSTOM_PRINCIPAL)?,
            key,
            directory,
        })
    }
}

fn user(name: &str) -> Principal {
    Principal {
        tenant: TENANT.into(),
        name: name.into(),
        kind: PrincipalKind::User,
        // Logins are not measured: no password hash is needed.
        secret_hash: String::new(),
        cluster_admin: false,
        tokens_not_before_ms: 0,
        created_ms: ISSUED_MS,
    }
}

/// `statements` statements: allows on `kv/team<i>/*` with every fourth a
/// deny on a sub-path, and last a deny of `kv:*` on `kv/secrets/*`. An
/// allowed request matches statement 0 and must still be checked against
/// every deny; [`DENIED_BY_CUSTOM`] matches only the last statement.
fn custom_role(statements: usize) -> Role {
    let mut list: Vec<Statement> = (0..statements - 1)
        .map(|i| {
            if i % 4 == 3 {
                Statement {
                    effect: Effect::Deny,
                    actions: vec!["kv:Delete*".into(), "kv:Put".into()],
                    resources: vec![format!("kv/team{i}/locked/*")],
                }
            } else {
                Statement {
                    effect: Effect::Allow,
                    actions: vec!["kv:Get*".into(), "kv:Put".into(), "kv:Watch".into()],
                    resources: vec![format!("kv/team{i}/*"), format!("kv/shared/team{i}-*")],
                }
            }
        })
        .collect();
    list.push(Statement {
        effect: Effect::Deny,
        actions: vec!["kv:*".into()],
        resources: vec!["kv/secrets/*".into()],
    });
    Role {
        tenant: TENANT.into(),
        name: CUSTOM_ROLE.into(),
        statements: list,
    }
}

/// How a case was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// One `Instant` pair per op.
    PerOp,
    /// One `Instant` pair per batch of this many ops.
    Batch(usize),
}

impl Timing {
    fn describe(self) -> String {
        match self {
            Timing::PerOp => "per op".into(),
            Timing::Batch(n) => format!("batch/{n}"),
        }
    }
}

/// The measurements of one case, in nanoseconds per op.
pub struct Measured {
    pub timing: Timing,
    pub ops: u64,
    /// Sum of the timed intervals.
    pub total_ns: u128,
    /// Per-op nanoseconds: one value per op, or one batch average per batch.
    pub histogram: Histogram<u64>,
}

impl Measured {
    pub fn mean_ns(&self) -> f64 {
        self.total_ns as f64 / self.ops.max(1) as f64
    }
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 * 1e9 / (self.total_ns.max(1) as f64)
    }
    pub fn quantile_ns(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }
}

/// Nanoseconds, 1 ns to 60 s, 3 significant digits.
fn new_ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// Per-op nanoseconds of a batch of `batch_len` ops that took `batch_ns`,
/// rounded to the nearest nanosecond.
pub fn per_op_ns(batch_ns: u128, batch_len: usize) -> u64 {
    assert!(batch_len > 0, "a batch holds at least one op");
    let len = batch_len as u128;
    u64::try_from((batch_ns + len / 2) / len).unwrap_or(u64::MAX)
}

fn elapsed_ns(start: Instant) -> u128 {
    start.elapsed().as_nanos()
}

/// Runs `op(i)` for i in 0..iterations, each timed on its own.
pub fn time_each(iterations: usize, mut op: impl FnMut(usize)) -> Measured {
    let mut histogram = new_ns_histogram();
    let mut total_ns = 0u128;
    for i in 0..iterations {
        let start = Instant::now();
        op(i);
        let ns = elapsed_ns(start);
        total_ns += ns;
        histogram.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
    }
    Measured {
        timing: Timing::PerOp,
        ops: iterations as u64,
        total_ns,
        histogram,
    }
}

/// Runs `op(i)` for i in 0..(iterations rounded down to whole batches),
/// timing each batch of `batch` ops and recording its per-op average.
pub fn time_batches(iterations: usize, batch: usize, mut op: impl FnMut(usize)) -> Measured {
    assert!(batch > 0 && batch <= iterations, "1 <= batch <= iterations");
    let batches = iterations / batch;
    let mut histogram = new_ns_histogram();
    let mut total_ns = 0u128;
    for b in 0..batches {
        let first = b * batch;
        let start = Instant::now();
        for i in first..first + batch {
            op(i);
        }
        let ns = elapsed_ns(start);
        total_ns += ns;
        histogram.saturating_record(per_op_ns(ns, batch));
    }
    Measured {
        timing: Timing::Batch(batch),
        ops: (batches * batch) as u64,
        total_ns,
        histogram,
    }
}

impl Measured {
    /// Adds `other` (a later round of the same case) to this one.
    fn merge(&mut self, other: Measured) {
        assert_eq!(self.timing, other.timing, "rounds of one case time alike");
        self.histogram
            .add(&other.histogram)
            .expect("histograms of one case share their bounds");
        self.ops += other.ops;
        self.total_ns += other.total_ns;
    }
}

/// One measured case.
pub struct CaseResult {
    pub key: &'static str,
    pub name: String,
    pub measured: Measured,
}

/// A case to run: a closure that measures that many ops of it.
struct Case<'a> {
    key: &'static str,
    name: String,
    /// Timed one op at a time (else in batches).
    per_op: bool,
    run: Box<dyn FnMut(usize) -> Measured + 'a>,
}

/// A case above ~1 us per op: every op timed on its own.
fn per_op_case<'a>(key: &'static str, name: String, mut op: impl FnMut(usize) + 'a) -> Case<'a> {
    Case {
        key,
        name,
        per_op: true,
        run: Box::new(move |ops| time_each(ops, &mut op)),
    }
}

/// A sub-microsecond case: timed in batches of `batch` ops.
fn batch_case<'a>(
    key: &'static str,
    name: String,
    batch: usize,
    mut op: impl FnMut(usize) + 'a,
) -> Case<'a> {
    Case {
        key,
        name,
        per_op: false,
        run: Box::new(move |ops| time_batches(ops, batch, &mut op)),
    }
}

/// Runs every case for `--rounds` rounds, one round of each in turn, so
/// that a slow stretch of a shared machine hits every case alike; one
/// untimed warm-up pass of each case (10% of its ops) comes first.
fn run_rounds(args: &IamArgs, cases: Vec<Case<'_>>) -> Vec<CaseResult> {
    let ops = |case: &Case<'_>| {
        if case.per_op {
            args.cold_iterations / args.rounds
        } else {
            args.iterations / args.rounds
        }
    };
    let mut cases = cases;
    for case in &mut cases {
        let warmup = if case.per_op {
            (args.cold_iterations / 10).max(1)
        } else {
            (args.iterations / 10).max(args.batch)
        };
        let _ = (case.run)(warmup);
    }
    let mut totals: Vec<Option<Measured>> = cases.iter().map(|_| None).collect();
    for _ in 0..args.rounds {
        for (case, total) in cases.iter_mut().zip(&mut totals) {
            let ops = ops(case);
            let round = (case.run)(ops);
            match total {
                Some(total) => total.merge(round),
                None => *total = Some(round),
            }
        }
    }
    cases
        .into_iter()
        .zip(totals)
        .map(|(case, measured)| CaseResult {
            key: case.key,
            name: case.name,
            measured: measured.expect("at least one round runs"),
        })
        .collect()
}

/// A verifier that has verified every token of the fixture.
fn warmed_verifier(fixture: &Fixture) -> anyhow::Result<Verifier> {
    let mut verifier = Verifier::new(fixture.directory.clone());
    for token in &fixture.tokens {
        verifier.verify(token, NOW_MS)?;
    }
    Ok(verifier)
}

/// Checks, untimed, that every case's op gives the outcome its name claims,
/// so no case measures an error path by mistake.
fn check_outcomes(fixture: &Fixture, verifier: &mut Verifier) -> anyhow::Result<()> {
    let snapshot = fixture.directory.snapshot();
    for token in &fixture.tokens {
        snapshot
            .verify(token, NOW_MS)
            .context("a fixture token does not verify")?;
        Unverified::parse(token)?.verify(&fixture.key)?;
        let identity = verifier.verify(token, NOW_MS)?;
        ensure!(verifier
            .authorize(&identity, ALLOWED.scope, ALLOWED.action, ALLOWED.resource)
            .is_ok());
        let refused = snapshot.decide(
            &identity,
            DENIED_BY_CUSTOM.scope,
            DENIED_BY_CUSTOM.action,
            DENIED_BY_CUSTOM.resource,
        );
        ensure!(
            refused == Decision::ExplicitDeny,
            "the custom deny did not apply: {refused:?}"
        );
    }
    let builtin = verifier.verify(&fixture.builtin_token, NOW_MS)?;
    let custom = verifier.verify(&fixture.custom_token, NOW_MS)?;
    let decide = |id: &Identity, r: Request| snapshot.decide(id, r.scope, r.action, r.resource);
    ensure!(decide(&builtin, ALLOWED) == Decision::Allow);
    ensure!(decide(&builtin, DENIED_TO_EDITOR) == Decision::ImplicitDeny);
    ensure!(decide(&custom, ALLOWED) == Decision::Allow);
    ensure!(decide(&custom, DENIED_BY_CUSTOM) == Decision::ExplicitDeny);
    Ok(())
}

fn measure_all(args: &IamArgs, fixture: &Fixture) -> anyhow::Result<Vec<CaseResult>> {
    check_outcomes(fixture, &mut Verifier::new(fixture.directory.clone()))?;
    let snapshot = fixture.directory.snapshot();
    let tokens = &fixture.tokens;
    let token = |i: usize| tokens[i % tokens.len()].as_str();
    let (n, s, batch) = (tokens.len(), args.statements, args.batch);
    let mut cases = vec![
        per_op_case(
            "raw_floor",
            format!("raw floor: pasetors parse + Ed25519 verify ({n} tokens)"),
            move |i| {
                let parsed = Unverified::parse(black_box(token(i))).expect("checked");
                black_box(parsed.verify(&fixture.key).expect("checked"));
            },
        ),
        per_op_case(
            "verify_cold",
            format!("verify cold: Snapshot::verify ({n} tokens)"),
            move |i| {
                black_box(
                    snapshot
                        .verify(black_box(token(i)), NOW_MS)
                        .expect("checked"),
                );
            },
        ),
    ];
    let mut verifier = warmed_verifier(fixture)?;
    cases.push(batch_case(
        "verify_cached",
        format!("verify cached: Verifier::verify ({n} tokens)"),
        batch,
        move |i| {
            black_box(
                verifier
                    .verify(black_box(token(i)), NOW_MS)
                    .expect("checked"),
            );
        },
    ));

    let snapshot = fixture.directory.snapshot();
    let builtin = snapshot.verify(&fixture.builtin_token, NOW_MS)?;
    let custom = snapshot.verify(&fixture.custom_token, NOW_MS)?;
    let authorize_cases = [
        (
            "authorize_builtin_allowed",
            "authorize editor: allowed (kv:Put)".to_string(),
            builtin.clone(),
            ALLOWED,
        ),
        (
            "authorize_builtin_refused",
            "authorize editor: refused (iam:CreateUser, default deny)".to_string(),
            builtin,
            DENIED_TO_EDITOR,
        ),
        (
            "authorize_custom_allowed",
            format!("authorize custom {s} stmts: allowed (kv:Put)"),
            custom.clone(),
            ALLOWED,
        ),
        (
            "authorize_custom_refused",
            format!("authorize custom {s} stmts: refused (explicit deny)"),
            custom,
            DENIED_BY_CUSTOM,
        ),
    ];
    for (key, name, identity, r) in authorize_cases {
        let mut verifier = Verifier::new(fixture.directory.clone());
        cases.push(batch_case(key, name, batch, move |_| {
            let outcome = verifier.authorize(
                black_box(&identity),
                r.scope,
                black_box(r.action),
                black_box(r.resource),
            );
            black_box(outcome.is_ok());
        }));
    }

    for (key, outcome, r) in [
        ("full_path_allowed", "allowed", ALLOWED),
        ("full_path_refused", "refused", DENIED_BY_CUSTOM),
    ] {
        let name = format!("verify cached + authorize, editor + {s} stmts: {outcome} ({n} tokens)");
        let mut verifier = warmed_verifier(fixture)?;
        cases.push(batch_case(key, name, batch, move |i| {
            let identity = verifier
                .verify(black_box(token(i)), NOW_MS)
                .expect("checked");
            let outcome = verifier.authorize(
                &identity,
                r.scope,
                black_box(r.action),
                black_box(r.resource),
            );
            black_box(outcome.is_ok());
        }));
    }
    Ok(run_rounds(args, cases))
}

/// The comparisons printed under the table.
struct Summary {
    raw_mean_ns: f64,
    cold_mean_ns: f64,
    raw_p50_ns: u64,
    cold_p50_ns: u64,
    cached_mean_ns: f64,
    /// (mean, p99) of the full cached path, allowed and refused.
    full_allowed: (f64, u64),
    full_refused: (f64, u64),
}

impl Summary {
    fn of(results: &[CaseResult]) -> Self {
        let get = |key: &str| {
            &results
                .iter()
                .find(|r| r.key == key)
                .expect("every case runs")
                .measured
        };
        let full = |key: &str| (get(key).mean_ns(), get(key).quantile_ns(0.99));
        Self {
            raw_mean_ns: get("raw_floor").mean_ns(),
            cold_mean_ns: get("verify_cold").mean_ns(),
            raw_p50_ns: get("raw_floor").quantile_ns(0.5),
            cold_p50_ns: get("verify_cold").quantile_ns(0.5),
            cached_mean_ns: get("verify_cached").mean_ns(),
            full_allowed: full("full_path_allowed"),
            full_refused: full("full_path_refused"),
        }
    }

    /// What a cold verify adds over the crypto floor: (at p50, in the mean).
    /// The p50 is the steadier of the two: preemptions on a shared machine
    /// move the mean of a tens-of-microseconds op by more than the directory
    /// costs.
    fn directory_overhead_ns(&self) -> (i64, f64) {
        (
            self.cold_p50_ns as i64 - self.raw_p50_ns as i64,
            self.cold_mean_ns - self.raw_mean_ns,
        )
    }

    /// Whether both differences are under 2% of the floor, where this run
    /// cannot tell them from noise.
    fn overhead_within_noise(&self) -> bool {
        let (p50, mean) = self.directory_overhead_ns();
        let limit = 0.02 * self.raw_mean_ns;
        (p50 as f64).abs() < limit && mean.abs() < limit
    }

    /// Whether both full-path cases take under 1 us per op on average
    /// (the `ns/op` of the report).
    fn full_path_mean_under_target(&self) -> bool {
        [self.full_allowed, self.full_refused]
            .iter()
            .all(|&(mean, _)| mean < CACHED_PATH_TARGET_NS)
    }

    /// Whether their p99 (of batch averages) is under 1 us as well.
    fn full_path_p99_under_target(&self) -> bool {
        [self.full_allowed, self.full_refused]
            .iter()
            .all(|&(_, p99)| (p99 as f64) < CACHED_PATH_TARGET_NS)
    }
}

fn print_report(args: &IamArgs, results: &[CaseResult], summary: &Summary) {
    println!(
        "== IAM request checks, one thread: {} users' tokens, custom role of {} statements ==",
        args.tokens, args.statements
    );
    let mut table = Table::new(&[
        "case", "timing", "ops", "ops/s", "mean ns", "p50 ns", "p99 ns", "p999 ns",
    ]);
    for r in results {
        let m = &r.measured;
        table.row(vec![
            r.name.clone(),
            m.timing.describe(),
            m.ops.to_string(),
            format!("{:.0}", m.ops_per_s()),
            format!("{:.1}", m.mean_ns()),
            m.quantile_ns(0.5).to_string(),
            m.quantile_ns(0.99).to_string(),
            m.quantile_ns(0.999).to_string(),
        ]);
    }
    print!("{table}");
    println!(
        "timing: \"per op\" cases time every op with Instant; \"batch/{b}\" cases (sub-microsecond ops) \
         time batches of {b} ops and record batch time / {b} as the per-op value, so their \
         p50/p99/p999 are percentiles of {b}-op averages. Cases alternate in {} rounds.",
        args.rounds,
        b = args.batch
    );
    let (overhead_p50, overhead_mean) = summary.directory_overhead_ns();
    println!(
        "crypto floor p50 {} ns (mean {:.0}), cold verify p50 {} ns (mean {:.0}): the directory adds \
         {overhead_p50} ns at p50, {overhead_mean:.0} ns in the mean{}; a cached verify ({:.0} ns) \
         is {:.0}x faster than a cold one.",
        summary.raw_p50_ns,
        summary.raw_mean_ns,
        summary.cold_p50_ns,
        summary.cold_mean_ns,
        if summary.overhead_within_noise() {
            " (both under 2% of the floor: within this run's noise)"
        } else {
            ""
        },
        summary.cached_mean_ns,
        summary.cold_mean_ns / summary.cached_mean_ns
    );
    let (allowed_mean, allowed_p99) = summary.full_allowed;
    let (refused_mean, refused_p99) = summary.full_refused;
    let yes_no = |b: bool| if b { "yes" } else { "NO" };
    println!(
        "cached verify + authorize: allowed {allowed_mean:.0} ns/op, refused {refused_mean:.0} ns/op; \
         under 1 us per op: {}. (p99 of {b}-op batches: allowed {allowed_p99} ns, refused \
         {refused_p99} ns; under 1 us: {}.)",
        yes_no(summary.full_path_mean_under_target()),
        yes_no(summary.full_path_p99_under_target()),
        b = args.batch
    );
}

fn to_json(args: &IamArgs, results: &[CaseResult], summary: &Summary) -> serde_json::Value {
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let m = &r.measured;
            json!({
                "case": r.key,
                "name": r.name,
                "timing": match m.timing { Timing::PerOp => "per_op".to_string(), Timing::Batch(n) => format!("batch_{n}") },
                "ops": m.ops,
                "ops_per_s": m.ops_per_s(),
                "mean_ns": m.mean_ns(),
                "p50_ns": m.quantile_ns(0.5),
                "p99_ns": m.quantile_ns(0.99),
                "p999_ns": m.quantile_ns(0.999),
                "max_ns": m.histogram.max(),
            })
        })
        .collect();
    json!({
        "bench": "iam",
        "settings": {
            "iterations": args.iterations,
            "cold_iterations": args.cold_iterations,
            "tokens": args.tokens,
            "statements": args.statements,
            "rounds": args.rounds,
            "batch": args.batch,
            "pin_cpu": args.pin_cpu,
        },
        "cases": cases,
        "directory_overhead_ns": {
            "p50": summary.directory_overhead_ns().0,
            "mean": summary.directory_overhead_ns().1,
            "within_noise": summary.overhead_within_noise(),
        },
        "cached_verify_authorize_ns": {
            "allowed": {"mean": summary.full_allowed.0, "p99": summary.full_allowed.1},
            "refused": {"mean": summary.full_refused.0, "p99": summary.full_refused.1},
        },
        "cached_verify_authorize_mean_under_1us": summary.full_path_mean_under_target(),
        "cached_verify_authorize_p99_under_1us": summary.full_path_p99_under_target(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_tokens_verify_and_decide_as_the_cases_claim() {
        let fixture = Fixture::build(3, 6).unwrap();
        assert_eq!(fixture.tokens.len(), 3);
        let mut verifier = Verifier::new(fixture.directory.clone());
        check_outcomes(&fixture, &mut verifier).unwrap();
        let identity = fixture
            .directory
            .snapshot()
            .verify(&fixture.tokens[2], NOW_MS)
            .unwrap();
        assert_eq!(identity.principal(), "user-00002");
        assert_eq!(identity.project(), PROJECT);
        // A token of another key is refused by the floor and the directory.
        let stranger = Fixture::build(1, 2).unwrap();
        assert!(Unverified::parse(&stranger.tokens[0])
            .unwrap()
            .verify(&fixture.key)
            .is_err());
        assert!(fixture
            .directory
            .snapshot()
            .verify(&stranger.tokens[0], NOW_MS)
            .is_err());
    }

    #[test]
    fn custom_role_has_the_asked_statements_within_limits() {
        for statements in [2, 16, model::STATEMENTS_PER_ROLE_MAX] {
            let role = custom_role(statements);
            assert_eq!(role.statements.len(), statements);
            model::check_statements(&role.statements).unwrap();
            assert_eq!(role.statements.last().unwrap().effect, Effect::Deny);
        }
    }

    #[test]
    fn batch_time_is_divided_per_op_and_rounded() {
        assert_eq!(per_op_ns(6_400, 64), 100);
        assert_eq!(per_op_ns(6_431, 64), 100);
        assert_eq!(per_op_ns(6_432, 64), 101);
        assert_eq!(per_op_ns(31, 64), 0);
        assert_eq!(per_op_ns(777, 1), 777);
        assert_eq!(per_op_ns(u128::MAX, 1), u64::MAX);
    }

    #[test]
    fn batches_run_every_op_once_and_record_one_value_per_batch() {
        let mut seen = Vec::new();
        let measured = time_batches(200, 64, |i| seen.push(i));
        // 200 ops round down to 3 whole batches of 64.
        assert_eq!(seen, (0..192).collect::<Vec<_>>());
        assert_eq!(measured.ops, 192);
        assert_eq!(measured.histogram.len(), 3);
        assert_eq!(measured.timing, Timing::Batch(64));

        let mut count = 0;
        let measured = time_each(10, |_| count += 1);
        assert_eq!(
            (count, measured.ops, measured.histogram.len()),
            (10, 10, 10)
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let ok = IamArgs {
            iterations: 1_000,
            cold_iterations: 10,
            tokens: 4,
            statements: 4,
            rounds: 2,
            batch: 64,
            pin_cpu: None,
            json: None,
        };
        assert!(check_args(&ok).is_ok());
        for bad in [
            IamArgs {
                tokens: VERIFIED_TOKENS_MAX + 1,
                ..ok.clone()
            },
            IamArgs {
                statements: 1,
                ..ok.clone()
            },
            IamArgs {
                statements: model::STATEMENTS_PER_ROLE_MAX + 1,
                ..ok.clone()
            },
            IamArgs {
                batch: 0,
                ..ok.clone()
            },
            IamArgs {
                batch: 2_000,
                ..ok.clone()
            },
            IamArgs {
                iterations: 0,
                ..ok.clone()
            },
        ] {
            assert!(check_args(&bad).is_err());
        }
    }
}
