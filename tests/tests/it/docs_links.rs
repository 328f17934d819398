//! Every relative link in the repository's Markdown (README.md, docs/, the other `.md` files) resolves to a
//! file inside the repository and, when it names a heading (`page.md#heading`), to a heading of that page.
//! The docs are what users read first and cite each other (`docs/compatibility.md §5`); a page moved or a
//! heading renamed must fail here, not on GitHub. Pure file reading: no server is started.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Directories never searched for Markdown: build output, dependencies, VCS data.
const SKIP_DIRS: &[&str] = &["target", "node_modules", ".git"];

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let pages = markdown_files(&root);
    let must_have = [
        "README.md",
        "docs/compatibility.md",
        "docs/reference-cppcomet.md",
    ];
    for page in must_have {
        assert!(
            pages.contains(&root.join(page)),
            "{page} is missing or not found by the walk"
        );
    }
    let problems = check(&root, &pages);
    assert!(
        problems.is_empty(),
        "broken links in the docs:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: each kind of broken link in a throw-away tree is reported, and the good ones are not.
#[test]
fn the_checker_reports_each_kind_of_broken_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("repo");
    fs::create_dir_all(root.join("docs")).expect("mkdir");
    fs::write(
        root.join("docs/a.md"),
        "# Title\n\n## 5. Limits\n\n## Same\n\n## Same\n\n## `GET /x` (session)\n",
    )
    .expect("write a.md");
    fs::write(dir.path().join("outside.md"), "# Outside\n").expect("write outside.md");
    let good = "[a](docs/a.md) [l](docs/a.md#5-limits) [s](docs/a.md#same-1) [g](docs/a.md#get-x-session) \
                [d](docs/) [web](https://example.com/x.md) [top](#readme) ![img](docs/a.md \"title\")\n\
                `[not a link](missing.md)`\n\n```\n[in a fence](missing.md)\n```\n\n# Readme\n\n[r]: docs/a.md\n";
    let bad =
        "[1](docs/missing.md) [2](docs/a.md#no-such-heading) [3](../outside.md) [4](#nowhere) \
               [`docs/a.md`]\n\n[5]: docs/gone.md\n";
    fs::write(root.join("README.md"), format!("{good}\n{bad}")).expect("write README");
    let problems = check(&root, &markdown_files(&root));
    let expected = [
        "docs/missing.md",
        "#no-such-heading",
        "../outside.md",
        "#nowhere",
        "[`docs/a.md`]",
        "docs/gone.md",
    ];
    for needle in expected {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle} not reported; problems: {problems:#?}"
        );
    }
    assert_eq!(
        problems.len(),
        expected.len(),
        "only the broken links are reported: {problems:#?}"
    );
}

/// The `.md` files under `root`, sorted, skipping [`SKIP_DIRS`].
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !SKIP_DIRS.contains(&name) {
                    dirs.push(path);
                }
            } else if name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// One line per broken link: `page: link: why`.
fn check(root: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    for page in pages {
        let text = fs::read_to_string(page).expect("read page");
        let shown = page
            .strip_prefix(root)
            .unwrap_or(page)
            .display()
            .to_string();
        let prose = prose(&text);
        for unlinked in unlinked_paths(&prose) {
            problems.push(format!(
                "{shown}: {unlinked}: looks like a link to a page but has no (target)"
            ));
        }
        for dest in link_destinations(&prose) {
            if let Err(why) = resolve(root, page, &dest) {
                problems.push(format!("{shown}: {dest}: {why}"));
            }
        }
    }
    problems
}

/// The text with fenced code blocks and inline code spans blanked out (their brackets are not links).
/// Inline code is kept as `` ` `` pairs so that `[`path`]` can still be recognised.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) => {
                if trimmed.starts_with(marker) {
                    fence = None;
                }
                out.push('\n');
                continue;
            }
            None if trimmed.starts_with("```") || trimmed.starts_with("~~~") => {
                fence = Some(&trimmed[..3]);
                out.push('\n');
                continue;
            }
            None => {}
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                out.push('`');
            } else if in_code && matches!(c, '[' | ']' | '(' | ')') {
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Destinations of inline links and images (`[text](dest)`, `![alt](dest "title")`) and of reference
/// definitions (`[label]: dest`).
fn link_destinations(prose: &str) -> Vec<String> {
    let mut dests = Vec::new();
    for line in prose.lines() {
        if let Some(dest) = definition(line) {
            dests.push(dest);
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let inside = after[..end].trim();
            let inside = inside.strip_prefix('<').unwrap_or(inside);
            let dest = inside.split([' ', '>']).next().unwrap_or("");
            dests.push(dest.to_string());
            rest = &after[end + 1..];
        }
    }
    dests
}

/// `[label]: dest` at the start of a line.
fn definition(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line.strip_prefix('[')?;
    let close = rest.find("]:")?;
    if close == 0 || rest[..close].contains(['[', ']']) {
        return None;
    }
    let dest = rest[close + 2..].split_whitespace().next()?;
    Some(dest.trim_matches(['<', '>']).to_string())
}

/// `[`some/page.md`]` not followed by `(`, `[` or `:`: a path written as a link whose target was left out,
/// which renders as plain bracketed text.
fn unlinked_paths(prose: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose.lines() {
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            let Some(close) = after.find(']') else { break };
            let label = after[..close].trim_matches('`');
            let next = after[close + 1..].chars().next();
            let path_like = label.ends_with(".md") || label.contains(".md#");
            if path_like && !matches!(next, Some('(' | '[' | ':')) {
                found.push(format!("[{}]", &after[..close]));
            }
            rest = &after[close + 1..];
        }
    }
    found
}

/// Checks one destination of a link found in `page`.
fn resolve(root: &Path, page: &Path, dest: &str) -> Result<(), String> {
    if dest.is_empty() {
        return Err("empty link".into());
    }
    if has_scheme(dest) {
        return Ok(());
    }
    let (path, fragment) = match dest.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (dest, None),
    };
    let target = if path.is_empty() {
        page.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(from_root)
    } else {
        page.parent().expect("a page has a directory").join(path)
    };
    let target = normalize(&target).ok_or("climbs above the file system root")?;
    if !target.starts_with(root) {
        return Err("points outside the repository".into());
    }
    if !target.exists() {
        return Err("no such file in the repository".into());
    }
    let Some(fragment) = fragment else {
        return Ok(());
    };
    if target.extension().and_then(|e| e.to_str()) != Some("md") {
        return Ok(());
    }
    let text = fs::read_to_string(&target).map_err(|e| e.to_string())?;
    if anchors(&text).contains(fragment) {
        Ok(())
    } else {
        Err(format!("no heading #{fragment} in that page"))
    }
}

/// `https:`, `mailto:` and the like: not checked (nothing outside the repository is).
fn has_scheme(dest: &str) -> bool {
    match dest.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system; None past the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// The anchors GitHub gives a page's ATX headings (`## ...`), plus explicit `id="..."` / `name="..."`.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        for attr in ["id=\"", "name=\""] {
            if let Some(at) = line.find(attr) {
                let rest = &line[at + attr.len()..];
                if let Some(end) = rest.find('"') {
                    seen.insert(rest[..end].to_string());
                }
            }
        }
        let hashes = trimmed.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let title = trimmed[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(title);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// GitHub's heading slug: the heading's text (link targets dropped), lower-cased, with every character
/// other than letters, digits, `_`, `-` and spaces removed, then spaces turned into `-`.
fn slug(title: &str) -> String {
    let mut text = String::new();
    let mut rest = title;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        match rest[at..].find(')') {
            Some(end) => rest = &rest[at + end + 1..],
            None => {
                rest = "";
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}
