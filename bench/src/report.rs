//! The results table: medians of repeated runs per server, and the medians of per-run ratios (Halley over
//! the raw baseline and over Nchan, each ratio taken within one repetition), then the targets.

use crate::record::{fmt, Record};
use crate::stats::median;
use crate::target::Kind;

/// The figures shown for a scenario, and whether more is better.
fn shown(scenario: &str) -> &'static [(&'static str, bool)] {
    match scenario {
        s if s.starts_with("connect") || s.starts_with("cometql-connect") => {
            &[("conns_per_s", true), ("server_cpu_us_per_conn", false)]
        }
        s if s.starts_with("idle") => &[
            ("kb_per_conn", false),
            ("server_mem_after_mb", false),
            ("idle_cpu_pct", false),
        ],
        s if s.starts_with("fanout") || s.starts_with("pipes") => &[
            ("deliveries_per_s", true),
            ("deliveries_per_cpu_s", true),
            ("lost", false),
            ("p50_ms", false),
            ("p99_ms", false),
        ],
        "latency-1k" => &[
            ("p50_ms", false),
            ("p99_ms", false),
            ("max_ms", false),
            ("lost", false),
            ("deliveries_per_cpu_s", true),
        ],
        "publish-1conn" => &[
            ("publishes_per_s", true),
            ("server_cpu_us_per_publish", false),
            ("p50_ms", false),
            ("p99_ms", false),
        ],
        s if s.starts_with("reconnect-storm") => &[
            ("all_recovered_s", false),
            ("p99_ms", false),
            ("server_cpu_s", false),
            ("server_peak_mb", false),
            ("recovered_false", false),
        ],
        s if s.starts_with("windows") => &[
            ("kb_per_window", false),
            ("bytes_per_message", false),
            ("server_cpu_us_per_publish", false),
        ],
        _ => &[],
    }
}

fn values(records: &[Record], scenario: &str, kind: Kind, name: &str) -> Vec<Option<f64>> {
    records
        .iter()
        .filter(|r| r.scenario == scenario && r.target == kind)
        .map(|r| r.get(name).filter(|_| r.get("failed").is_none()))
        .collect()
}

fn median_of(v: &[Option<f64>]) -> Option<f64> {
    median(&v.iter().flatten().copied().collect::<Vec<_>>())
}

/// Median over repetitions of halley[i] / other[i].
fn ratio(records: &[Record], scenario: &str, name: &str, other: Kind) -> Option<f64> {
    let h = values(records, scenario, Kind::Halley, name);
    let o = values(records, scenario, other, name);
    let per_run: Vec<f64> = h
        .iter()
        .zip(&o)
        .filter_map(|(a, b)| Some(a.as_ref()? / b.as_ref()?))
        .collect();
    median(&per_run)
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), fmt)
}

pub fn table(records: &[Record], scenarios: &[&str]) -> String {
    let mut out = String::from(
        "| scenario | figure | Halley | raw baseline | Nchan | Halley / raw | Halley / Nchan | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for &s in scenarios {
        for &(name, _) in shown(s) {
            let h = values(records, s, Kind::Halley, name);
            let line = format!(
                "| {s} | {name} | {} | {} | {} | {} | {} | {} |\n",
                cell(median_of(&h)),
                cell(median_of(&values(records, s, Kind::Raw, name))),
                cell(median_of(&values(records, s, Kind::Nchan, name))),
                ratio(records, s, name, Kind::Raw).map_or("-".into(), |r| format!("{r:.2}")),
                ratio(records, s, name, Kind::Nchan).map_or("-".into(), |r| format!("{r:.2}")),
                h.iter().flatten().count(),
            );
            out.push_str(&line);
        }
    }
    let failures = records.iter().filter(|r| r.get("failed").is_some()).count();
    if failures > 0 {
        out.push_str(&format!("\n{failures} run(s) failed: see the log.\n"));
    }
    out
}

/// The targets, each judged on the medians above.
pub fn targets(records: &[Record]) -> String {
    let med = |s: &str, k: Kind, n: &str| median_of(&values(records, s, k, n));
    let checks: Vec<(String, Option<f64>, f64, bool)> = vec![
        (
            "idle-10k: KB per idle subscribed connection <= 3.5".into(),
            med("idle-10k", Kind::Halley, "kb_per_conn"),
            3.5,
            false,
        ),
        (
            "idle-18k: KB per idle subscribed connection <= 3.5".into(),
            med("idle-18k", Kind::Halley, "kb_per_conn"),
            3.5,
            false,
        ),
        (
            "fanout-10k: deliveries per server CPU-s, Halley / Nchan >= 1.1".into(),
            ratio(records, "fanout-10k", "deliveries_per_cpu_s", Kind::Nchan),
            1.1,
            true,
        ),
        (
            "fanout-10k-pipelined: deliveries per server CPU-s, Halley / Nchan >= 1.1".into(),
            ratio(
                records,
                "fanout-10k-pipelined",
                "deliveries_per_cpu_s",
                Kind::Nchan,
            ),
            1.1,
            true,
        ),
        (
            "fanout-10k: deliveries per server CPU-s, Halley / raw >= 0.9".into(),
            ratio(records, "fanout-10k", "deliveries_per_cpu_s", Kind::Raw),
            0.9,
            true,
        ),
        (
            "fanout-10k-pipelined: deliveries per server CPU-s, Halley / raw >= 0.9".into(),
            ratio(
                records,
                "fanout-10k-pipelined",
                "deliveries_per_cpu_s",
                Kind::Raw,
            ),
            0.9,
            true,
        ),
        (
            "pipes-10k: deliveries per second, Halley (CometQL) / Nchan (HTTP) >= 1.2".into(),
            ratio(records, "pipes-10k", "deliveries_per_s", Kind::Nchan),
            1.2,
            true,
        ),
        (
            "pipes-10k: deliveries per server CPU-s, Halley / Nchan >= 1.2".into(),
            ratio(records, "pipes-10k", "deliveries_per_cpu_s", Kind::Nchan),
            1.2,
            true,
        ),
        (
            "latency-1k at 20 publishes/s: p99 ms <= 10".into(),
            med("latency-1k", Kind::Halley, "p99_ms"),
            10.0,
            false,
        ),
        (
            "publish-1conn: CometQL INSERTs per second >= 20000".into(),
            med("publish-1conn", Kind::Halley, "publishes_per_s"),
            20_000.0,
            true,
        ),
        (
            "connect-5k: connections accepted per second >= 25000".into(),
            med("connect-5k", Kind::Halley, "conns_per_s"),
            25_000.0,
            true,
        ),
    ];
    let mut out = String::from("| target | Halley | verdict |\n|---|---:|---|\n");
    for (what, v, limit, more_is_better) in checks {
        let verdict = match v {
            None => "not measured",
            Some(x) if (more_is_better && x >= limit) || (!more_is_better && x <= limit) => "met",
            Some(_) => "NOT met",
        };
        let shown = v.map_or_else(
            || "-".into(),
            |x| {
                if limit < 100.0 {
                    format!("{x:.2}")
                } else {
                    fmt(x)
                }
            },
        );
        out.push_str(&format!("| {what} | {shown} | {verdict} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, v: f64) -> Record {
        let mut r = Record::new("fanout-10k", kind);
        r.set("deliveries_per_cpu_s", v);
        r
    }

    #[test]
    fn ratios_are_taken_per_run_then_medianed() {
        let records = vec![
            rec(Kind::Halley, 100.0),
            rec(Kind::Nchan, 50.0),
            rec(Kind::Halley, 90.0),
            rec(Kind::Nchan, 100.0),
            rec(Kind::Halley, 300.0),
            rec(Kind::Nchan, 100.0),
        ];
        // Per-run ratios 2.0, 0.9, 3.0: median 2.0 (the ratio of medians would be 1.5).
        assert_eq!(
            ratio(&records, "fanout-10k", "deliveries_per_cpu_s", Kind::Nchan),
            Some(2.0)
        );
        let t = table(&records, &["fanout-10k"]);
        assert!(
            t.contains("| fanout-10k | deliveries_per_cpu_s | 100 | - | 100 | - | 2.00 | 3 |"),
            "{t}"
        );
        assert!(targets(&records).contains("Halley / Nchan >= 1.1 | 2.00 | met |"));
    }
}
