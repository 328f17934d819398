//! The layout rule of `server/src`, checked on every test run: three floors (protocols at the bottom, the
//! domain in the middle, the front doors on top) and `app.rs` wiring them. A module may use what is on its
//! own floor or below, never above; no two modules import each other (directly or round a cycle); the
//! protocol floor does no I/O (no tokio, sqlx, axum or hyper); and no front door touches storage (every rule
//! is in `commands/` or `tenant/`, shared by every door).
//!
//! Run alone with `cargo test -p halley-server --test it floors`; it prints every offending `use` with its
//! file and line.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Floors, bottom up. A unit is a top-level module, or one folder under `front/`.
const FLOORS: &[(&str, &[&str])] = &[
    ("base", &["config", "cidr", "logging"]),
    (
        "protocol",
        &["mysql", "cometql", "browser", "proxy", "pusher"],
    ),
    (
        "domain",
        &[
            "ids", "commands", "tenant", "hub", "cluster", "storage", "metrics", "stats", "usage",
        ],
    ),
    (
        "front",
        &[
            "front",
            "front/listen",
            "front/tls",
            "front/cometql",
            "front/websocket",
            "front/http",
        ],
    ),
    ("wiring", &["app", "lib", "main"]),
];

/// Crates the protocol floor may not name: it turns bytes into values and back, nothing else.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio_util",
    "sqlx",
    "libsqlite3_sys",
    "axum",
    "hyper",
    "hyper_util",
    "tower",
];

/// Units that may hold a storage handle: the domain's rule keepers and the composition root.
const STORAGE_USERS: &[&str] = &["commands", "tenant", "storage", "usage", "app", "main"];

fn floor_of(unit: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, units)| units.contains(&unit))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `front/http/dashboard/keys.rs` → `front/http`; `hub/registry.rs` → `hub`; `ids.rs` → `ids`.
fn unit_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts[0] == "front" && parts.len() > 2 {
        format!("front/{}", parts[1])
    } else {
        parts[0].clone()
    }
}

/// The unit a `crate::a::b...` path names: `a`, or `front/b` under `front`.
fn target_unit(path: &[&str]) -> Option<String> {
    let first = *path.first()?;
    if first == "front" {
        return Some(match path.get(1) {
            Some(sub) if !sub.is_empty() && *sub != "*" => format!("front/{sub}"),
            _ => "front".to_owned(),
        });
    }
    Some(first.to_owned())
}

/// Code without comments and string literals, so that a doc line or a message naming `crate::x` is not
/// taken for a use of it.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every `crate::` path in the code with its line: `crate::a::b` and each branch of `crate::{a::x, b}`.
fn crate_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 {
            let before = code[..at].chars().next_back().unwrap();
            if before.is_alphanumeric() || before == '_' || before == '$' {
                continue;
            }
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for branch in top_level_branches(&group[..end]) {
                found.push((line, segments(branch)));
            }
        } else {
            found.push((line, segments(rest)));
        }
    }
    found
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn top_level_branches(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|b| !b.is_empty()).collect()
}

/// `a::b::{c, d}` → ["a", "b"]: the leading names of a path, up to the first non-name.
fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map_while(|seg| {
            let name: String = seg
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let whole = name.len() == seg.trim_start().len();
            (!name.is_empty()).then_some((name, whole))
        })
        .scan(true, |go_on, (name, whole)| {
            if !*go_on {
                return None;
            }
            *go_on = whole;
            Some(name)
        })
        .collect()
}

struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn imports() -> Vec<Import> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut all = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src_dir()).unwrap().to_path_buf();
        let from = unit_of(&rel);
        let code = code_only(&fs::read_to_string(&path).unwrap());
        for (line, segs) in crate_paths(&code) {
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let Some(to) = target_unit(&segs) else {
                continue;
            };
            if to != from {
                all.push(Import {
                    file: rel.display().to_string(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
        if floor_of(&from) == floor_of("mysql") {
            for (n, text) in code.lines().enumerate() {
                for krate in IO_CRATES {
                    let named = text.contains(&format!("{krate}::"))
                        && !text.contains(&format!("_{krate}::"))
                        && !text.contains(&format!("{krate}_"));
                    if named {
                        all.push(Import {
                            file: rel.display().to_string(),
                            line: n + 1,
                            from: from.clone(),
                            to: format!("io crate {krate}"),
                        });
                    }
                }
            }
        }
    }
    all
}

#[test]
fn every_module_has_a_floor() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let lost: BTreeSet<String> = files
        .iter()
        .map(|p| unit_of(p.strip_prefix(src_dir()).unwrap()))
        .filter(|u| floor_of(u).is_none())
        .collect();
    assert!(
        lost.is_empty(),
        "modules on no floor (add them to FLOORS): {lost:?}"
    );
}

#[test]
fn no_import_runs_up_a_floor_and_the_protocols_do_no_io() {
    let bad: Vec<String> = imports()
        .into_iter()
        .filter(|i| {
            i.to.starts_with("io crate")
                || matches!((floor_of(&i.from), floor_of(&i.to)), (Some(f), Some(t)) if t > f)
        })
        .map(|i| format!("{}:{}: {} uses {}", i.file, i.line, i.from, i.to))
        .collect();
    assert!(
        bad.is_empty(),
        "imports that run up a floor:\n{}",
        bad.join("\n")
    );
}

/// Every `.storage` field reached outside the units that may hold it (`ctx.storage.read(..)`).
fn storage_handles() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src_dir()).unwrap().to_path_buf();
        if STORAGE_USERS.contains(&unit_of(&rel).as_str()) {
            continue;
        }
        let code = code_only(&fs::read_to_string(&path).unwrap());
        for (at, _) in code.match_indices(".storage") {
            let after = code[at + ".storage".len()..].chars().next();
            if after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '(') {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            found.push(format!("{}:{line}: a storage handle", rel.display()));
        }
    }
    found
}

#[test]
fn no_front_door_touches_storage() {
    let mut bad: Vec<String> = imports()
        .into_iter()
        .filter(|i| i.to == "storage" && !STORAGE_USERS.contains(&i.from.as_str()))
        .map(|i| format!("{}:{}: {} uses storage", i.file, i.line, i.from))
        .collect();
    bad.extend(storage_handles());
    assert!(
        bad.is_empty(),
        "storage used outside commands/ and tenant/:\n{}",
        bad.join("\n")
    );
}

/// The one file with unsafe code (SQLite called in place by the storage writer), and the one place that
/// allows it there: `unsafe_code` is denied everywhere else (the workspace's lints).
const UNSAFE_FILE: &str = "storage/sqlite_raw.rs";
const UNSAFE_ALLOWED: (&str, &str) = ("storage/mod.rs", "#[allow(unsafe_code)]\nmod sqlite_raw;");

/// Where `word` stands alone in `code` (not inside a longer identifier), by line.
fn word_lines(code: &str, word: &str) -> Vec<usize> {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    code.match_indices(word)
        .filter(|(at, _)| {
            !ident(code[..*at].chars().next_back())
                && !ident(code[at + word.len()..].chars().next())
        })
        .map(|(at, _)| code[..at].matches('\n').count() + 1)
        .collect()
}

#[test]
fn unsafe_code_lives_in_one_file() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut bad = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(src_dir())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let code = code_only(&text);
        if rel != UNSAFE_FILE {
            for line in word_lines(&code, "unsafe") {
                bad.push(format!("{rel}:{line}: unsafe"));
            }
        }
        let allows = code.matches("unsafe_code").count();
        let expected = usize::from(rel == UNSAFE_ALLOWED.0);
        if allows != expected || (expected == 1 && !code.contains(UNSAFE_ALLOWED.1)) {
            bad.push(format!("{rel}: names unsafe_code {allows} times"));
        }
    }
    assert!(
        bad.is_empty(),
        "unsafe code outside {UNSAFE_FILE} (or allowed elsewhere than on its module):\n{}",
        bad.join("\n")
    );
    assert_eq!(
        word_lines("unsafe { x }; unsafe_code; my_unsafe", "unsafe"),
        [1]
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut example: BTreeMap<(String, String), String> = BTreeMap::new();
    for i in imports()
        .into_iter()
        .filter(|i| !i.to.starts_with("io crate"))
    {
        // `front` (its mod.rs) only declares the doors: an edge into it is a path, not a dependency.
        if i.to == "front" {
            continue;
        }
        example
            .entry((i.from.clone(), i.to.clone()))
            .or_insert(format!("{}:{}", i.file, i.line));
        edges.entry(i.from).or_default().insert(i.to);
    }
    let mut cycles = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if let Some(path) = path_between(&edges, to, from) {
                let mut shown = vec![from.clone()];
                shown.extend(path);
                let at = &example[&(from.clone(), to.clone())];
                cycles.push(format!("{} (first edge at {at})", shown.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// A path of units from `from` to `to` (both included), if any.
fn path_between(
    edges: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.to_owned()]];
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap().clone();
        if last == to {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in edges.get(&last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

#[test]
fn the_scanner_reads_grouped_and_nested_paths() {
    let code = code_only(
        "use crate::{hub::Hub, front::listen::{A, B}};\n// crate::storage in a comment\nlet s = \"crate::storage\"; crate::ids::DevId(1);",
    );
    let found: Vec<(usize, Vec<String>)> = crate_paths(&code);
    let units: Vec<(usize, String)> = found
        .iter()
        .map(|(l, s)| {
            let segs: Vec<&str> = s.iter().map(String::as_str).collect();
            (*l, target_unit(&segs).unwrap())
        })
        .collect();
    assert_eq!(
        units,
        vec![
            (1, "hub".to_owned()),
            (1, "front/listen".to_owned()),
            (3, "ids".to_owned())
        ]
    );
}
