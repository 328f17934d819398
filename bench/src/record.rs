//! One scenario's figures against one server, and how they are printed.

use crate::redis_stats::Delta;
use crate::target::Kind;

pub struct Record {
    pub scenario: &'static str,
    pub target: Kind,
    pub values: Vec<(&'static str, f64)>,
    /// Text printed after the figures (a cluster's Redis commands by name).
    pub notes: Vec<String>,
    /// What Redis did during the measured phase, until `meter::redis_figures` turns it into figures.
    pub redis: Vec<Delta>,
}

impl Record {
    pub fn new(scenario: &'static str, target: Kind) -> Record {
        Record {
            scenario,
            target,
            values: Vec::new(),
            notes: Vec::new(),
            redis: Vec::new(),
        }
    }

    pub fn set(&mut self, name: &'static str, value: f64) {
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(v) => v.1 = value,
            None => self.values.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| *n == name).map(|v| v.1)
    }

    /// One line: `scenario target name=value ...`, then ` | note` for each note.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.scenario, self.target.name());
        for (n, v) in &self.values {
            s.push_str(&format!(" {n}={}", fmt(*v)));
        }
        for note in &self.notes {
            s.push_str(&format!(" | {note}"));
        }
        s
    }
}

/// Figures with as many digits as they deserve.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 || v == v.trunc() && a < 1e15 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_line_prints() {
        let mut r = Record::new("fanout-1k", Kind::Halley);
        r.set("lost", 1.0);
        r.set("lost", 0.0);
        r.set("p99_ms", 1.234);
        assert_eq!(r.get("lost"), Some(0.0));
        assert_eq!(r.line(), "fanout-1k halley lost=0 p99_ms=1.23");
        r.notes.push("redis per publish: evalsha=1.00".into());
        assert_eq!(
            r.line(),
            "fanout-1k halley lost=0 p99_ms=1.23 | redis per publish: evalsha=1.00"
        );
        assert_eq!(fmt(123456.7), "123457");
        assert_eq!(fmt(12.34), "12.3");
    }
}
