//! Policy evaluation: does a set of statements allow `action` on `resource`?
//!
//! Evaluation runs on every request on every node, so it allocates nothing
//! and matches patterns with an iterative glob that never recurses.
//!
//! The rules follow the usual cloud IAM shape: a statement *applies* when one
//! of its action patterns matches the action and one of its resource patterns
//! matches the resource; an applying `Deny` always wins; otherwise an applying
//! `Allow` allows; otherwise the request is refused (default deny).

use std::sync::OnceLock;

use crate::model::{Effect, Statement};

/// Matches `text` against a byte-wise glob `pattern`.
///
/// `*` matches any run of bytes (empty, and `/` included), `?` matches exactly
/// one byte, every other byte matches itself (case-sensitive). There is no
/// escape: a pattern cannot ask for a literal `*` or `?`, and action and
/// resource names never contain them. Matching bytes rather than characters
/// keeps the loop trivial; names are ASCII, where the two agree.
///
/// This is the classic iterative matcher that remembers only the last `*`:
/// when a literal fails after a star, the star swallows one more byte and the
/// match resumes from there. Remembering only the last star is enough because
/// a later star can absorb anything an earlier one could, so the cost stays
/// within `pattern.len() * text.len()` steps (and near linear in practice),
/// with no recursion to blow the stack and no allocation.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let mut pattern_index = 0;
    let mut text_index = 0;
    // (pattern index just after the last star, text index where that star's
    // match currently ends).
    let mut last_star: Option<(usize, usize)> = None;

    while text_index < text.len() {
        match pattern.get(pattern_index) {
            Some(b'*') => {
                // Try the star as empty first; widen it on a later mismatch.
                pattern_index += 1;
                last_star = Some((pattern_index, text_index));
            }
            Some(&byte) if byte == b'?' || byte == text[text_index] => {
                pattern_index += 1;
                text_index += 1;
            }
            _ => match last_star {
                Some((after_star, star_end)) => {
                    pattern_index = after_star;
                    text_index = star_end + 1;
                    last_star = Some((after_star, star_end + 1));
                }
                None => return false,
            },
        }
    }
    // The text is used up: only stars (matching empty) may remain.
    pattern[pattern_index..].iter().all(|&byte| byte == b'*')
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An applying statement allows it and none denies it.
    Allow,
    /// An applying statement denies it (deny wins over any allow).
    ExplicitDeny,
    /// No statement applies: refused by default.
    ImplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

fn statement_applies(statement: &Statement, action: &str, resource: &str) -> bool {
    statement
        .actions
        .iter()
        .any(|pattern| pattern_matches(pattern, action))
        && statement
            .resources
            .iter()
            .any(|pattern| pattern_matches(pattern, resource))
}

/// Decides whether `statements` allow `action` on `resource`.
///
/// Any applying `Deny` gives [`Decision::ExplicitDeny`], whatever the order of
/// the statements; otherwise any applying `Allow` gives [`Decision::Allow`];
/// otherwise [`Decision::ImplicitDeny`].
pub fn evaluate<'a, I: IntoIterator<Item = &'a Statement>>(
    statements: I,
    action: &str,
    resource: &str,
) -> Decision {
    let mut allowed = false;
    for statement in statements {
        // Skip the pattern work when this statement could not change the
        // outcome: once allowed, only a deny matters.
        if allowed && statement.effect == Effect::Allow {
            continue;
        }
        if !statement_applies(statement, action, resource) {
            continue;
        }
        match statement.effect {
            Effect::Deny => return Decision::ExplicitDeny,
            Effect::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Roles present in every tenant. They are never stored, so they cannot be
/// edited or deleted, and a stored role may not take one of these names.
pub const BUILTIN_ROLES: [&str; 3] = ["admin", "editor", "viewer"];

/// Actions of the `editor` role (see [`builtin_role`]).
const EDITOR_ACTIONS: [&str; 10] = [
    "kv:*",
    "s3:*",
    "volume:*",
    "vm:*",
    "image:*",
    "dns:*",
    "lb:*",
    "metrics:*",
    "iam:Get*",
    "iam:List*",
];

/// Actions of the `viewer` role (see [`builtin_role`]).
const VIEWER_ACTIONS: [&str; 5] = ["*:Get*", "*:List*", "*:Head*", "*:Watch*", "*:Describe*"];

struct BuiltinRoles {
    admin: Vec<Statement>,
    editor: Vec<Statement>,
    viewer: Vec<Statement>,
}

fn allow_everywhere(actions: &[&str]) -> Vec<Statement> {
    vec![Statement {
        effect: Effect::Allow,
        actions: actions.iter().map(|action| action.to_string()).collect(),
        resources: vec!["*".to_string()],
    }]
}

/// The statements of a built-in role, or `None` if `name` is not one.
///
/// | role | effect | actions | resources |
/// |---|---|---|---|
/// | `admin` | Allow | `*` | `*` |
/// | `editor` | Allow | `kv:*`, `s3:*`, `volume:*`, `vm:*`, `image:*`, `dns:*`, `lb:*`, `metrics:*`, `iam:Get*`, `iam:List*` | `*` |
/// | `viewer` | Allow | `*:Get*`, `*:List*`, `*:Head*`, `*:Watch*`, `*:Describe*` | `*` |
///
/// `editor` may change every resource but not IAM (it can only read it) nor
/// the cluster; `viewer` may only read. The statements are built once, on
/// first use, and shared for the life of the process.
pub fn builtin_role(name: &str) -> Option<&'static [Statement]> {
    static ROLES: OnceLock<BuiltinRoles> = OnceLock::new();
    let roles = ROLES.get_or_init(|| BuiltinRoles {
        admin: allow_everywhere(&["*"]),
        editor: allow_everywhere(&EDITOR_ACTIONS),
        viewer: allow_everywhere(&VIEWER_ACTIONS),
    });
    match name {
        "admin" => Some(&roles.admin),
        "editor" => Some(&roles.editor),
        "viewer" => Some(&roles.viewer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (pattern, text, expected)
    const MATCH_CASES: &[(&str, &str, bool)] = &[
        ("", "", true),
        ("", "a", false),
        ("a", "", false),
        ("*", "", true),
        ("*", "anything/at/all", true),
        ("**", "", true),
        ("**", "abc", true),
        ("?", "", false),
        ("?", "a", true),
        ("?", "ab", false),
        ("??", "ab", true),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("abc", "abc", true),
        ("abc", "abd", false),
        ("abc", "ABC", false),
        ("abc", "abcd", false),
        ("*c", "abc", true),
        ("*c", "abd", false),
        ("a*", "abc", true),
        ("a*", "bac", false),
        ("*b*", "abc", true),
        ("*b*", "acd", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("a*b", "ab", true),
        ("a*b", "abxb", true),
        ("a*b", "abxc", false),
        ("*a", "bbb", false),
        ("*a", "bba", true),
        ("*?", "", false),
        ("*?", "x", true),
        ("a*?b", "ab", false),
        ("a*?b", "axb", true),
        ("*ab*ab*", "xabyyab", true),
        ("*ab*ab*", "xabyyb", false),
        ("kv/app/*", "kv/app/x/y", true),
        ("kv/app/*", "kv/app/", true),
        ("kv/app/*", "kv/ap", false),
        ("kv/app/*", "kv/application", false),
        ("s3:Get*", "s3:GetObject", true),
        ("s3:Get*", "s3:PutObject", false),
        ("*:List*", "iam:ListUsers", true),
        ("*", "*", true),
        ("a*", "a*", true),
    ];

    #[test]
    fn pattern_matches_table() {
        for &(pattern, text, expected) in MATCH_CASES {
            assert_eq!(
                pattern_matches(pattern, text),
                expected,
                "pattern {pattern:?} against {text:?}"
            );
        }
    }

    type StatementSpec = (Effect, &'static [&'static str], &'static [&'static str]);

    struct EvaluateCase {
        name: &'static str,
        statements: &'static [StatementSpec],
        action: &'static str,
        resource: &'static str,
        expected: Decision,
    }

    const ALLOW_KV_GET: StatementSpec = (Effect::Allow, &["kv:Get"], &["kv/app/*"]);
    const DENY_KV_GET: StatementSpec = (Effect::Deny, &["kv:Get"], &["kv/app/*"]);

    const EVALUATE_CASES: &[EvaluateCase] = &[
        EvaluateCase {
            name: "allow match",
            statements: &[ALLOW_KV_GET],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::Allow,
        },
        EvaluateCase {
            name: "action mismatch",
            statements: &[ALLOW_KV_GET],
            action: "kv:Put",
            resource: "kv/app/key",
            expected: Decision::ImplicitDeny,
        },
        EvaluateCase {
            name: "resource mismatch",
            statements: &[ALLOW_KV_GET],
            action: "kv:Get",
            resource: "kv/other/key",
            expected: Decision::ImplicitDeny,
        },
        EvaluateCase {
            name: "wildcard action allows",
            statements: &[(Effect::Allow, &["s3:Get*"], &["*"])],
            action: "s3:GetObject",
            resource: "s3/bucket/key",
            expected: Decision::Allow,
        },
        EvaluateCase {
            name: "wildcard action refuses other verbs",
            statements: &[(Effect::Allow, &["s3:Get*"], &["*"])],
            action: "s3:PutObject",
            resource: "s3/bucket/key",
            expected: Decision::ImplicitDeny,
        },
        EvaluateCase {
            name: "deny after allow wins",
            statements: &[ALLOW_KV_GET, DENY_KV_GET],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::ExplicitDeny,
        },
        EvaluateCase {
            name: "deny before allow wins",
            statements: &[DENY_KV_GET, ALLOW_KV_GET],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::ExplicitDeny,
        },
        EvaluateCase {
            name: "deny of everything wins over admin",
            statements: &[
                (Effect::Allow, &["*"], &["*"]),
                (Effect::Deny, &["*"], &["*"]),
            ],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::ExplicitDeny,
        },
        EvaluateCase {
            name: "no statements is default deny",
            statements: &[],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::ImplicitDeny,
        },
        EvaluateCase {
            name: "deny on another resource leaves the allow",
            statements: &[
                (Effect::Allow, &["kv:*"], &["kv/*"]),
                (Effect::Deny, &["kv:*"], &["kv/secret/*"]),
            ],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::Allow,
        },
        EvaluateCase {
            name: "deny on another resource still denies its own",
            statements: &[
                (Effect::Allow, &["kv:*"], &["kv/*"]),
                (Effect::Deny, &["kv:*"], &["kv/secret/*"]),
            ],
            action: "kv:Get",
            resource: "kv/secret/key",
            expected: Decision::ExplicitDeny,
        },
        EvaluateCase {
            name: "deny of another action leaves the allow",
            statements: &[
                (Effect::Allow, &["kv:*"], &["*"]),
                (Effect::Deny, &["kv:Delete"], &["*"]),
            ],
            action: "kv:Put",
            resource: "kv/app/key",
            expected: Decision::Allow,
        },
        EvaluateCase {
            name: "second action pattern of a statement",
            statements: &[(Effect::Allow, &["kv:Get", "kv:Put"], &["kv/a/*", "kv/b/*"])],
            action: "kv:Put",
            resource: "kv/a/key",
            expected: Decision::Allow,
        },
        EvaluateCase {
            name: "second resource pattern of a statement",
            statements: &[(Effect::Allow, &["kv:Get", "kv:Put"], &["kv/a/*", "kv/b/*"])],
            action: "kv:Get",
            resource: "kv/b/key",
            expected: Decision::Allow,
        },
        EvaluateCase {
            name: "no pattern of a multi-pattern statement",
            statements: &[(Effect::Allow, &["kv:Get", "kv:Put"], &["kv/a/*", "kv/b/*"])],
            action: "kv:Delete",
            resource: "kv/a/key",
            expected: Decision::ImplicitDeny,
        },
        EvaluateCase {
            name: "allow from a later statement",
            statements: &[(Effect::Allow, &["s3:*"], &["*"]), ALLOW_KV_GET],
            action: "kv:Get",
            resource: "kv/app/key",
            expected: Decision::Allow,
        },
    ];

    fn build(specs: &[StatementSpec]) -> Vec<Statement> {
        specs
            .iter()
            .map(|&(effect, actions, resources)| Statement {
                effect,
                actions: actions.iter().map(|s| s.to_string()).collect(),
                resources: resources.iter().map(|s| s.to_string()).collect(),
            })
            .collect()
    }

    #[test]
    fn evaluate_table() {
        for case in EVALUATE_CASES {
            let statements = build(case.statements);
            let decision = evaluate(&statements, case.action, case.resource);
            assert_eq!(decision, case.expected, "case {:?}", case.name);
            assert_eq!(decision.is_allowed(), case.expected == Decision::Allow);
        }
    }

    fn role_allows(role: &str, action: &str) -> bool {
        let statements = builtin_role(role).expect("built-in role");
        evaluate(statements, action, "kv/app/key").is_allowed()
    }

    #[test]
    fn every_builtin_role_is_defined() {
        for name in BUILTIN_ROLES {
            assert!(builtin_role(name).is_some(), "{name}");
        }
        assert!(builtin_role("owner").is_none());
        assert!(builtin_role("Admin").is_none());
    }

    #[test]
    fn admin_allows_everything() {
        for action in [
            "kv:Put",
            "iam:CreateUser",
            "cluster:AddLearner",
            "s3:DeleteBucket",
        ] {
            assert!(role_allows("admin", action), "{action}");
        }
    }

    #[test]
    fn editor_changes_resources_but_only_reads_iam() {
        for action in [
            "kv:Put",
            "s3:PutObject",
            "volume:Create",
            "vm:Start",
            "dns:PutRecord",
            "lb:Create",
            "metrics:Query",
            "iam:ListUsers",
            "iam:GetRole",
        ] {
            assert!(role_allows("editor", action), "{action}");
        }
        for action in ["iam:CreateUser", "iam:DeleteRole", "cluster:AddLearner"] {
            assert!(!role_allows("editor", action), "{action}");
        }
    }

    #[test]
    fn viewer_only_reads() {
        for action in [
            "kv:Get",
            "s3:ListBucket",
            "s3:HeadObject",
            "kv:Watch",
            "vm:Describe",
            "iam:ListUsers",
        ] {
            assert!(role_allows("viewer", action), "{action}");
        }
        for action in [
            "kv:Put",
            "iam:CreateUser",
            "s3:DeleteObject",
            "cluster:AddLearner",
        ] {
            assert!(!role_allows("viewer", action), "{action}");
        }
    }

    /// The obvious recursive matcher, to check the iterative one against.
    fn reference_matches(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => {
                reference_matches(rest, text)
                    || (!text.is_empty() && reference_matches(pattern, &text[1..]))
            }
            Some((b'?', rest)) => !text.is_empty() && reference_matches(rest, &text[1..]),
            Some((&byte, rest)) => {
                text.first() == Some(&byte) && reference_matches(rest, &text[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn literal_matches_itself(literal in "[^*?]{0,40}") {
            prop_assert!(pattern_matches(&literal, &literal));
        }

        #[test]
        fn star_matches_anything(text in ".{0,40}") {
            prop_assert!(pattern_matches("*", &text));
        }

        #[test]
        fn agrees_with_reference(pattern in "[ab*?]{0,10}", text in "[ab]{0,12}") {
            prop_assert_eq!(
                pattern_matches(&pattern, &text),
                reference_matches(pattern.as_bytes(), text.as_bytes()),
                "pattern {:?} against {:?}", pattern, text
            );
        }
    }
}
