//! The results table: medians of repeated runs per server, and the medians of per-run ratios (Halley over
//! the raw baseline and over Nchan, each ratio taken within one repetition), then the targets.

use crate::record::{fmt, Record};
use crate::stats::median;
use crate::target::Kind;

/// The figures shown for a scenario, and whether more is better. A Pusher scenario shows what its CometQL
/// counterpart does.
fn shown(scenario: &str) -> &'static [(&'static str, bool)] {
    match scenario.strip_prefix("pusher-").unwrap_or(scenario) {
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
    ratio_of(records, (scenario, Kind::Halley), (scenario, other), name)
}

/// Median over repetitions of a[i] / b[i]: each ratio within one repetition.
fn ratio_of(records: &[Record], a: (&str, Kind), b: (&str, Kind), name: &str) -> Option<f64> {
    let h = values(records, a.0, a.1, name);
    let o = values(records, b.0, b.1, name);
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

/// The Pusher protocol scenarios (issue 16): Halley's `/app/{key}` against Sockudo and Soketi, medians and
/// the medians of per-run ratios, and which server did best on each figure.
pub fn pusher_table(records: &[Record], scenarios: &[&str]) -> String {
    let mut out = String::from(
        "| scenario | figure | Halley | Sockudo | Soketi | Halley / Sockudo | Halley / Soketi | best | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---|---:|\n",
    );
    let kinds = [Kind::HalleyPusher, Kind::Sockudo, Kind::Soketi];
    for &s in scenarios {
        for &(name, more_is_better) in shown(s) {
            let meds: Vec<Option<f64>> = kinds
                .iter()
                .map(|&k| median_of(&values(records, s, k, name)))
                .collect();
            let ratio_to = |other| {
                ratio_of(records, (s, Kind::HalleyPusher), (s, other), name)
                    .map_or("-".into(), |r| format!("{r:.2}"))
            };
            let best = kinds
                .iter()
                .zip(&meds)
                .filter_map(|(k, v)| Some((*k, (*v)?)))
                .reduce(|a, b| match (b.1 > a.1) == more_is_better && b.1 != a.1 {
                    true => b,
                    false => a,
                })
                .map_or("-", |(k, _)| k.name());
            out.push_str(&format!(
                "| {s} | {name} | {} | {} | {} | {} | {} | {best} | {} |\n",
                cell(meds[0]),
                cell(meds[1]),
                cell(meds[2]),
                ratio_to(Kind::Sockudo),
                ratio_to(Kind::Soketi),
                values(records, s, Kind::HalleyPusher, name)
                    .iter()
                    .flatten()
                    .count(),
            ));
        }
    }
    out
}

/// The durable-write scenarios (issue 17), per scenario and database: medians, and for history and queue
/// the rate in percent of the same number of connections publishing to a pipe without history (the goal:
/// >= 50%).
pub fn durable_table(records: &[Record], scenarios: &[&str]) -> String {
    let kinds = [(Kind::Halley, "SQLite"), (Kind::HalleyPg, "PostgreSQL")];
    let med = |s: &str, k: Kind, n: &str| cell(median_of(&values(records, s, k, n)));
    let mut out = String::from(
        "| scenario | backend | INSERT/s | p50 ms | p99 ms | server CPU-s per 1,000 | % of plain | errors | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut churn = String::from(
        "| scenario | backend | connects done | connects/s | p50 ms | p99 ms | max ms | errors | unauthorized | server CPU us/connect | runs |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &s in scenarios {
        for (k, backend) in kinds {
            let runs = values(records, s, k, "p50_ms").iter().flatten().count();
            if runs == 0 {
                continue;
            }
            if s.starts_with("auth-churn") {
                churn.push_str(&format!(
                    "| {s} | {backend} | {} | {} | {} | {} | {} | {} | {} | {} | {runs} |\n",
                    med(s, k, "done"),
                    med(s, k, "connects_per_s"),
                    med(s, k, "p50_ms"),
                    med(s, k, "p99_ms"),
                    med(s, k, "max_ms"),
                    med(s, k, "errors"),
                    med(s, k, "unauthorized"),
                    med(s, k, "server_cpu_us_per_connect"),
                ));
                continue;
            }
            let plain = s
                .strip_prefix("history-")
                .or_else(|| s.strip_prefix("queue-"))
                .map(|conns| format!("plain-{conns}"));
            let vs_plain = plain
                .and_then(|p| ratio_of(records, (s, k), (&p, k), "inserts_per_s"))
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
            out.push_str(&format!(
                "| {s} | {backend} | {} | {} | {} | {} | {vs_plain} | {} | {runs} |\n",
                med(s, k, "inserts_per_s"),
                med(s, k, "p50_ms"),
                med(s, k, "p99_ms"),
                med(s, k, "server_cpu_s_per_1k"),
                med(s, k, "errors"),
            ));
        }
    }
    format!("{out}\n{churn}")
}

/// What a cluster adds to a scenario's figures: Redis's work per publish and per subscriber, and for the
/// storm how many SUBSCRIBE commands the node sent for how many channels.
fn cluster_shown(scenario: &str) -> &'static [&'static str] {
    match scenario {
        s if s.starts_with("fanout") || s.starts_with("pipes") || s.starts_with("latency") => &[
            "redis_cmds_per_publish",
            "redis_scripts_per_publish",
            "redis_bytes_per_publish",
            "redis_cpu_us_per_publish",
            "redis_cmds_per_subscriber",
            "redis_mem_bytes_per_subscriber",
            "redis_subscribe_calls_setup",
        ],
        "publish-1conn" => &[
            "redis_cmds_per_publish",
            "redis_scripts_per_publish",
            "redis_bytes_per_publish",
            "redis_cpu_us_per_publish",
        ],
        s if s.starts_with("reconnect-storm") => &[
            "redis_cpu_s",
            "redis_calls",
            "redis_subscribe_calls",
            "redis_channels_added",
            "channels_per_subscribe_call",
            "resubscribe_calls",
            "resubscribe_channels",
            "resubscribe_s",
        ],
        s if s.starts_with("idle") => &[
            "redis_cmds_per_subscriber",
            "redis_mem_bytes_per_subscriber",
        ],
        _ => &[],
    }
}

/// Issue 15: two nodes and their Redis (halley-cluster) against one node (halley-pg), both on PostgreSQL,
/// medians and the median of per-run ratios; the cluster's Redis figures below each scenario's own.
pub fn cluster_table(records: &[Record], scenarios: &[&str]) -> String {
    let (one, two) = (Kind::HalleyPg, Kind::HalleyCluster);
    let mut out = String::from(
        "| scenario | figure | one node (halley-pg) | two nodes + Redis (halley-cluster) | cluster / one node | runs |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for &s in scenarios {
        let own = shown(s).iter().map(|&(n, _)| n);
        for name in own.chain(cluster_shown(s).iter().copied()) {
            let (o, c) = (values(records, s, one, name), values(records, s, two, name));
            if o.iter().chain(&c).flatten().count() == 0 {
                continue;
            }
            out.push_str(&format!(
                "| {s} | {name} | {} | {} | {} | {} |\n",
                cell(median_of(&o)),
                cell(median_of(&c)),
                ratio_of(records, (s, two), (s, one), name)
                    .map_or("-".into(), |r| format!("{r:.2}")),
                c.iter().flatten().count(),
            ));
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
    fn cluster_table_puts_redis_figures_under_the_scenarios() {
        let mut records = vec![rec(Kind::HalleyPg, 200.0), rec(Kind::HalleyCluster, 100.0)];
        records[1].set("redis_cmds_per_publish", 3.0);
        let t = cluster_table(&records, &["fanout-10k"]);
        assert!(
            t.contains("| fanout-10k | deliveries_per_cpu_s | 200 | 100 | 0.50 | 1 |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout-10k | redis_cmds_per_publish | - | 3 | - | 1 |"),
            "{t}"
        );
        assert!(
            !t.contains("redis_bytes_per_publish"),
            "rows nobody measured are left out: {t}"
        );
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

    #[test]
    fn pusher_rows_name_the_best_server_per_figure() {
        let mut records = Vec::new();
        for (kind, kb, p99) in [(Kind::HalleyPusher, 3.0, 2.0), (Kind::Sockudo, 6.0, 1.0)] {
            let mut r = Record::new("pusher-idle-10k", kind);
            r.set("kb_per_conn", kb);
            records.push(r);
            let mut r = Record::new("pusher-latency-1k", kind);
            r.set("p99_ms", p99);
            records.push(r);
        }
        let t = pusher_table(&records, &["pusher-idle-10k", "pusher-latency-1k"]);
        assert!(
            t.contains(
                "| pusher-idle-10k | kb_per_conn | 3 | 6 | - | 0.50 | - | halley-pusher | 1 |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| pusher-latency-1k | p99_ms | 2 | 1 | - | 2.00 | - | sockudo | 1 |"),
            "{t}"
        );
    }

    fn ins(scenario: &'static str, kind: Kind, rate: f64) -> Record {
        let mut r = Record::new(scenario, kind);
        r.set("inserts_per_s", rate);
        r.set("p50_ms", 1.0);
        r
    }

    #[test]
    fn durable_rows_compare_with_plain_on_the_same_backend_and_run() {
        let records = vec![
            ins("plain-1conn", Kind::Halley, 1000.0),
            ins("plain-1conn", Kind::HalleyPg, 2000.0),
            ins("history-1conn", Kind::Halley, 100.0),
            ins("history-1conn", Kind::HalleyPg, 1000.0),
            ins("plain-1conn", Kind::Halley, 500.0),
            ins("plain-1conn", Kind::HalleyPg, 2000.0),
            ins("history-1conn", Kind::Halley, 100.0),
            ins("history-1conn", Kind::HalleyPg, 1000.0),
        ];
        let t = durable_table(&records, &["plain-1conn", "history-1conn"]);
        // SQLite: per-run ratios 10% and 20%, median 15%; PostgreSQL 50% both times.
        assert!(
            t.contains("| history-1conn | SQLite | 100 | 1 | - | - | 15.0% | - | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| history-1conn | PostgreSQL | 1000 | 1 | - | - | 50.0% | - | 2 |"),
            "{t}"
        );
        assert!(
            t.contains("| plain-1conn | SQLite | 750 | 1 | - | - | - | - | 2 |"),
            "{t}"
        );
    }
}
