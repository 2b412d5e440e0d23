//! Binary operators: arithmetic, comparison (with and without `bool`),
//! `atan2` and the set operators, with Prometheus' vector matching.

use std::collections::{HashMap, HashSet};

use photon_tsdb::{Labels, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::eval::Evaluator;
use crate::value::{check_unique, drop_name, Elem, StepValue};
use crate::QueryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn from_token(token: &str) -> Result<Op, QueryError> {
        Ok(match token {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => {
                return Err(QueryError::bad(format!(
                    "unsupported binary operator {other:?}"
                )))
            }
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Arithmetic changes what a value means, so the name goes; comparisons
    /// filter and keep it. Prometheus' `shouldDropMetricName` does not list
    /// `atan2`, so it keeps the name too.
    fn drops_name(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow
        )
    }
}

/// Prometheus' `vectorElemBinop`: the value, and for comparisons whether
/// the element is kept (the value is then the left operand).
pub(crate) fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        // Rust's `%` on floats is C's fmod, like Go's math.Mod.
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (f64::NAN, false),
    }
}

/// How the two sides' series are matched.
struct Matching<'a> {
    on: bool,
    names: &'a [String],
    card: &'a VectorMatchCardinality,
}

impl Matching<'_> {
    /// The labels two series must share to match.
    fn signature(&self, labels: &Labels) -> Labels {
        if self.on {
            labels.retain(|n| self.names.iter().any(|x| x == n))
        } else {
            labels.retain(|n| n != METRIC_NAME && !self.names.iter().any(|x| x == n))
        }
    }
}

const ONE_TO_ONE: VectorMatchCardinality = VectorMatchCardinality::OneToOne;

pub(crate) fn eval(ev: &mut Evaluator, b: &BinaryExpr, ts: i64) -> Result<StepValue, QueryError> {
    let op = Op::from_token(&b.op.to_string())?;
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let (on, names): (bool, &[String]) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref())
    {
        Some(LabelModifier::Include(ls)) => (true, &ls.labels),
        Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
        None => (false, &[]),
    };
    let card = b.modifier.as_ref().map_or(&ONE_TO_ONE, |m| &m.card);
    let matching = Matching { on, names, card };
    match (lhs, rhs) {
        (StepValue::Scalar(l), StepValue::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            Ok(StepValue::Scalar(if op.is_comparison() {
                f64::from(u8::from(keep))
            } else {
                v
            }))
        }
        (StepValue::Vector(l), StepValue::Scalar(r)) => vector_scalar(op, l, r, false, return_bool),
        (StepValue::Scalar(l), StepValue::Vector(r)) => vector_scalar(op, r, l, true, return_bool),
        (StepValue::Vector(l), StepValue::Vector(r)) => {
            let out = match op {
                Op::And => and(l, r, &matching),
                Op::Or => or(l, r, &matching),
                Op::Unless => unless(l, r, &matching),
                _ => vector_vector(op, l, r, &matching, return_bool)?,
            };
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        (l, r) => Err(QueryError::exec(format!(
            "binary operator not allowed between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: Op,
    vector: Vec<Elem>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<StepValue, QueryError> {
    if matches!(op, Op::And | Op::Or | Op::Unless) {
        return Err(QueryError::exec(
            "set operator not allowed in binary scalar expression",
        ));
    }
    let mut out = Vec::with_capacity(vector.len());
    for mut e in vector {
        let (l, r) = if scalar_left {
            (scalar, e.v)
        } else {
            (e.v, scalar)
        };
        let (mut value, mut keep) = apply(op, l, r);
        // A comparison keeps the vector's value even when it is on the right.
        if op.is_comparison() && scalar_left {
            value = r;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            e.v = value;
            if op.drops_name() || return_bool {
                e.labels = drop_name(&e.labels);
            }
            out.push(e);
        }
    }
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

/// Prometheus' `labels.String()`: `{a="1", b="2"}` with the name as a label.
fn labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn vector_vector(
    op: Op,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Elem>, QueryError> {
    let (include, one_to_many): (&[String], bool) = match m.card {
        VectorMatchCardinality::ManyToOne(ls) => (&ls.labels, false),
        VectorMatchCardinality::OneToMany(ls) => (&ls.labels, true),
        _ => (&[], false),
    };
    // Prometheus answers nothing when a side is empty, before it looks for
    // duplicate match groups on the other.
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    // The "one" side goes right; one-to-many swaps the sides.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_sigs: HashMap<Labels, &Elem> = HashMap::with_capacity(one.len());
    for e in &one {
        let sig = m.signature(&e.labels);
        if let Some(dup) = one_sigs.get(&sig) {
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_string(&sig),
                if one_to_many { "left" } else { "right" },
                labels_string(&e.labels),
                labels_string(&dup.labels),
            )));
        }
        one_sigs.insert(sig, e);
    }
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for e in &many {
        let sig = m.signature(&e.labels);
        let Some(other) = one_sigs.get(&sig) else {
            continue;
        };
        let (l, r) = if one_to_many {
            (other.v, e.v)
        } else {
            (e.v, other.v)
        };
        let (mut value, keep) = apply(op, l, r);
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(&e.labels, &other.labels, op, m, one_to_one, include);
        if return_bool {
            labels = drop_name(&labels);
        }
        let inserted = matched.entry(sig).or_default();
        if one_to_one && !inserted.is_empty() {
            return Err(QueryError::exec(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
        if !inserted.insert(labels.clone()) {
            return Err(QueryError::exec(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Elem {
            labels,
            t: e.t,
            v: value,
        });
    }
    Ok(out)
}

/// Prometheus' `resultMetric`: the "many" side's labels, reduced to the
/// matching labels for one-to-one, plus `group_x` labels from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: Op,
    m: &Matching,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut labels = if op.drops_name() {
        drop_name(many)
    } else {
        many.clone()
    };
    if one_to_one {
        labels = if m.on {
            labels.retain(|n| m.names.iter().any(|x| x == n))
        } else {
            labels.retain(|n| !m.names.iter().any(|x| x == n))
        };
    }
    for name in include {
        labels.set(name, one.get(name).unwrap_or(""));
    }
    labels
}

fn and(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<Labels> = rhs.iter().map(|e| m.signature(&e.labels)).collect();
    lhs.into_iter()
        .filter(|e| right.contains(&m.signature(&e.labels)))
        .collect()
}

fn or(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    let left: HashSet<Labels> = lhs.iter().map(|e| m.signature(&e.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|e| !left.contains(&m.signature(&e.labels))),
    );
    out
}

fn unless(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let right: HashSet<Labels> = rhs.iter().map(|e| m.signature(&e.labels)).collect();
    lhs.into_iter()
        .filter(|e| !right.contains(&m.signature(&e.labels)))
        .collect()
}
