//! Results: a table for people and one `BENCH_JSON {...}` line with the same figures.

use serde_json::{json, Map, Value};

/// One scenario's results.
#[derive(Debug)]
pub struct Report {
    title: String,
    rows: Vec<Row>,
    json: Map<String, Value>,
    checks: Map<String, Value>,
}

#[derive(Debug)]
struct Row {
    key: String,
    label: String,
    value: String,
    target: String,
    verdict: &'static str,
}

/// How a value compares with its target.
#[derive(Debug, Clone, Copy)]
pub enum Cmp {
    /// At most.
    AtMost,
    /// At least.
    AtLeast,
}

impl Report {
    /// A report for `scenario`, with a title line.
    pub fn new(scenario: &str, title: impl Into<String>) -> Self {
        let mut json = Map::new();
        json.insert("scenario".into(), json!(scenario));
        Self {
            title: title.into(),
            rows: Vec::new(),
            json,
            checks: Map::new(),
        }
    }

    /// A number: a table row and a JSON field.
    pub fn num(&mut self, key: &str, label: &str, v: f64, unit: &str, decimals: usize) {
        let shown = if v.is_finite() {
            format!("{} {unit}", group(v, decimals))
        } else {
            "n/a".into()
        };
        self.rows.push(Row {
            key: key.into(),
            label: label.into(),
            value: shown.trim_end().to_owned(),
            target: String::new(),
            verdict: "",
        });
        let jv = if v.is_finite() {
            let f = 10f64.powi(i32::try_from(decimals.max(3)).unwrap_or(3));
            json!((v * f).round() / f)
        } else {
            Value::Null
        };
        self.json.insert(key.into(), jv);
    }

    /// A text row and JSON field.
    pub fn text(&mut self, key: &str, label: &str, v: impl Into<String>) {
        let v = v.into();
        self.rows.push(Row {
            key: key.into(),
            label: label.into(),
            value: v.clone(),
            target: String::new(),
            verdict: "",
        });
        self.json.insert(key.into(), json!(v));
    }

    /// A JSON-only field.
    pub fn field(&mut self, key: &str, v: Value) {
        self.json.insert(key.into(), v);
    }

    /// Sets the target of the row `key` and records pass/fail.
    pub fn target(&mut self, key: &str, cmp: Cmp, target: f64) {
        let Some(v) = self.json.get(key).and_then(Value::as_f64) else {
            return;
        };
        let pass = match cmp {
            Cmp::AtMost => v <= target,
            Cmp::AtLeast => v >= target,
        };
        let t = match cmp {
            Cmp::AtMost => format!(
                "<= {}",
                group(target, if target.fract() == 0.0 { 0 } else { 2 })
            ),
            Cmp::AtLeast => format!(
                ">= {}",
                group(target, if target.fract() == 0.0 { 0 } else { 2 })
            ),
        };
        if let Some(r) = self.rows.iter_mut().find(|r| r.key == key) {
            r.target = t.clone();
            r.verdict = if pass { "PASS" } else { "FAIL" };
        }
        self.checks
            .insert(key.into(), json!({"target": t, "pass": pass}));
    }

    /// Prints the table and the `BENCH_JSON` line.
    pub fn print(mut self) {
        let lw = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(10)
            .max(10);
        let vw = self
            .rows
            .iter()
            .map(|r| r.value.chars().count())
            .filter(|n| *n <= 24)
            .max()
            .unwrap_or(10)
            .max(10);
        println!();
        println!("== {} ==", self.title);
        for r in &self.rows {
            println!(
                "  {:<lw$}  {:>vw$}  {:<14} {}",
                r.label, r.value, r.target, r.verdict
            );
        }
        if !self.checks.is_empty() {
            self.json
                .insert("checks".into(), Value::Object(self.checks));
        }
        println!("BENCH_JSON {}", Value::Object(self.json));
    }
}

/// `1234567.8` → `1,234,567.80` (with `decimals` digits).
pub fn group(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_owned(), Some(f.to_owned())),
        None => (s.clone(), None),
    };
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(&f);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(1_234_567.891, 2), "1,234,567.89");
        assert_eq!(group(999.0, 0), "999");
        assert_eq!(group(-1000.0, 1), "-1,000.0");
    }
}
