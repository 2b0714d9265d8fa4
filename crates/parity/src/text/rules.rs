//! Tolerances as the text cases state them (prose rules read from `case.json: tolerance`) and
//! element-wise checks that can skip rows the reference leaves undefined (padded queries).

use crate::fixtures::{expect_same_shape, values, Case};
use cadence_core::{Error, Result};
use candle_core::{DType, Tensor};
use serde_json::Value;

/// How one tensor is compared.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Rule {
    /// Identical values.
    Exact,
    /// `|got - want| <= abs + rel * |want|` for every compared element.
    Elementwise { abs: f64, rel: f64 },
    /// Reported, never gated (the case says so).
    Informational,
}

/// The `tolerance` object of a case.json: tensor-name patterns with their rules.
#[derive(Debug)]
pub(super) struct Tolerances(Vec<(String, Rule)>);

impl Tolerances {
    /// Reads `case.json: tolerance` (an object of "pattern / pattern (note)" -> rule text).
    pub(super) fn from_case(case: &Case) -> Result<Self> {
        let obj = case
            .get("/tolerance")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::Config(format!("{}: case.json has no tolerance", case.name)))?;
        let mut entries = Vec::new();
        for (key, text) in obj {
            let Some(rule) = text.as_str().and_then(parse_rule) else {
                continue;
            };
            for pattern in patterns(key) {
                entries.push((pattern, rule.clone()));
            }
        }
        if entries.is_empty() {
            return Err(Error::Config(format!(
                "{}: no usable tolerance in case.json",
                case.name
            )));
        }
        Ok(Self(entries))
    }

    /// The rule for tensor `name`: integer tensors are always exact; float tensors take the
    /// most specific matching pattern (exact name, then longest prefix, then same leaf name
    /// in another scenario, e.g. `out.long.x` under `out.x`).
    pub(super) fn rule_for(&self, name: &str, dtype: DType) -> Result<Rule> {
        if dtype.is_int() {
            return Ok(Rule::Exact);
        }
        self.0
            .iter()
            .filter_map(|(p, r)| match_score(p, name).map(|s| (s, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r.clone())
            .ok_or_else(|| {
                Error::Config(format!("case.json states no tolerance for tensor {name}"))
            })
    }
}

/// Tensor-name patterns of a tolerance key: `/`- or `,`-separated, notes in parentheses dropped.
fn patterns(key: &str) -> Vec<String> {
    let mut clean = String::new();
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    clean
        .split(['/', ','])
        .map(str::trim)
        .filter(|p| p.starts_with("out.") || p.starts_with("mid.") || p.starts_with("in."))
        .map(|p| p.trim_end_matches('*').trim_end_matches('.').to_string())
        .collect()
}

fn match_score(pattern: &str, name: &str) -> Option<usize> {
    if name == pattern {
        return Some(usize::MAX);
    }
    if name.starts_with(&format!("{pattern}.")) {
        return Some(1000 + pattern.len());
    }
    let (stage, leaf) = pattern.split_once('.')?;
    (name.starts_with(&format!("{stage}.")) && name.ends_with(&format!(".{leaf}")))
        .then_some(leaf.len())
}

/// Parses a rule text: "exact ...", "informational ... do not gate", or
/// "... |d| <= A + B*|ref| ..." (terms in any order, numbers like `1e-4` or `2^-9`).
fn parse_rule(text: &str) -> Option<Rule> {
    let lower = text.to_lowercase();
    if lower.contains("informational") || lower.contains("do not gate") {
        return Some(Rule::Informational);
    }
    if let Some(i) = text.find("|d| <=") {
        let expr = &text[i + "|d| <=".len()..];
        let end = expr.find(['(', ';', ',']).unwrap_or(expr.len());
        let (mut abs, mut rel) = (0.0, 0.0);
        for term in expr[..end].split('+') {
            if term.contains("|ref|") {
                rel += number(&term.replace("|ref|", "").replace('*', ""))?;
            } else {
                abs += number(term)?;
            }
        }
        return Some(Rule::Elementwise { abs, rel });
    }
    lower.trim().starts_with("exact").then_some(Rule::Exact)
}

fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    match s.split_once('^') {
        Some((b, e)) => Some(b.trim().parse::<f64>().ok()?.powf(e.trim().parse().ok()?)),
        None => s.parse().ok(),
    }
}

/// Compares `got` with `want` under `rule`. When `rows` is given (`rows[b][l]`), only rows
/// `(b, l)` with `true` are compared (tensors whose leading dims are `[B, L]`).
/// Returns a one-line summary (printed for informational checks).
pub(super) fn check(
    name: &str,
    got: &Tensor,
    want: &Tensor,
    rule: &Rule,
    rows: Option<&[Vec<bool>]>,
) -> Result<String> {
    expect_same_shape(name, got, want)?;
    let g = values(got)?;
    let w = values(want)?;
    let dims = want.dims();
    let keep: Vec<bool> = match rows {
        Some(rows)
            if dims.len() >= 2
                && dims[0] == rows.len()
                && rows.iter().all(|r| r.len() == dims[1]) =>
        {
            let width = g.len() / (dims[0] * dims[1]).max(1);
            rows.iter()
                .flatten()
                .flat_map(|&k| std::iter::repeat_n(k, width))
                .collect()
        }
        _ => vec![true; g.len()],
    };
    let (mut worst, mut max_abs, mut ref_max, mut n) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for ((&a, &b), _) in g.iter().zip(&w).zip(&keep).filter(|(_, &k)| k) {
        let d = (a - b).abs();
        let allowed = match rule {
            Rule::Exact => 0.0,
            Rule::Elementwise { abs, rel } => abs + rel * b.abs(),
            Rule::Informational => f64::INFINITY,
        };
        let ratio = if d.is_nan() {
            f64::INFINITY
        } else if allowed == 0.0 {
            if d == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            d / allowed
        };
        worst = worst.max(ratio);
        max_abs = max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
        ref_max = ref_max.max(b.abs());
        n += 1;
    }
    let summary = format!(
        "{name}: {n} elements, max_abs {max_abs:.3e} (ref max {ref_max:.3e}), \
         worst |d|/allowed {worst:.3} under {rule:?}"
    );
    if n == 0 {
        return Err(Error::InvalidInput(format!("{name}: nothing compared")));
    }
    if *rule != Rule::Informational && worst > 1.0 {
        return Err(Error::InvalidInput(summary));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_texts_parse() {
        assert_eq!(
            parse_rule("elementwise |d| <= 1e-4 + 1e-5*|ref| (an independent port passes); x"),
            Some(Rule::Elementwise {
                abs: 1e-4,
                rel: 1e-5
            })
        );
        assert_eq!(
            parse_rule("allow 1 fp16 ulp, i.e. |d| <= 2^-9 * |ref| + 1e-6 (a note)"),
            Some(Rule::Elementwise {
                abs: 1e-6,
                rel: 2f64.powi(-9)
            })
        );
        assert_eq!(parse_rule("exact"), Some(Rule::Exact));
        assert_eq!(
            parse_rule("informational only, do not gate: bf16"),
            Some(Rule::Informational)
        );
        assert_eq!(
            patterns("out.a / out.b.* / mid.* (f32 compute)"),
            vec!["out.a", "out.b", "mid"]
        );
        assert!(match_score("out.x", "out.long.x").is_some());
        assert!(match_score("out.x", "mid.long.x").is_none());
    }
}
