//! String literal rules (docs/compatibility.md §2). A literal can be read two ways: the NO_BACKSLASH_ESCAPES way (a
//! backslash is an ordinary character, only a doubled quote is special), which is what the server announces
//! and what mysqli_real_escape_string, PDO and PyMySQL then write, and with MySQL's backslash escapes, which
//! Node mysql2 and PHP addslashes always write. `readings.rs` decides between the two for a statement.

/// How backslashes inside `'...'` and `"..."` are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escapes {
    /// NO_BACKSLASH_ESCAPES: a backslash is an ordinary character; only a doubled quote is special.
    NoBackslash,
    /// MySQL's default escape processing, on top of the doubled quote.
    Backslash,
}

/// A quoted text as read by [`read_quoted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Literal {
    pub(super) text: String,
    /// Index just past the closing quote.
    pub(super) end: usize,
    /// Read with backslash escapes: false when the literal holds something a backslash escaper (mysql2,
    /// addslashes) never writes: a doubled quote, the other quote character unescaped, or a backslash
    /// before a character such escapers do not escape (`\u`, `\/`, `\p`: json_encode output, paths).
    pub(super) escaper_could_write: bool,
}

/// Reads the quoted text whose opening quote (`'`, `"` or `` ` ``) is the byte at `open`, or `None`
/// when the input ends first.
pub(super) fn read_quoted(src: &str, open: usize, escapes: Escapes) -> Option<Literal> {
    let bytes = src.as_bytes();
    let quote = *bytes.get(open)?;
    let other_quote = if quote == b'"' { b'\'' } else { b'"' };
    let mut text = String::new();
    let mut escaper_could_write = true;
    // Quotes and backslashes are ASCII and never occur inside a multi-byte UTF-8 sequence, so scanning
    // bytes is safe and every slice boundary below falls between characters.
    let mut run = open + 1;
    let mut i = open + 1;
    while let Some(&b) = bytes.get(i) {
        if b == quote {
            text.push_str(src.get(run..i)?);
            if bytes.get(i + 1) == Some(&quote) {
                text.push(char::from(quote));
                escaper_could_write = false;
                i += 2;
                run = i;
                continue;
            }
            return Some(Literal {
                text,
                end: i + 1,
                escaper_could_write,
            });
        }
        if b == b'\\' && escapes == Escapes::Backslash {
            text.push_str(src.get(run..i)?);
            let escaped = src.get(i + 1..)?.chars().next()?;
            escaper_could_write &= ESCAPER_WRITES.contains(&escaped);
            push_escape(&mut text, escaped);
            i += 1 + escaped.len_utf8();
            run = i;
            continue;
        }
        if b == other_quote && quote != b'`' {
            escaper_could_write = false;
        }
        i += 1;
    }
    None
}

/// What follows a backslash in the output of mysql2's, addslashes' and mysql_real_escape_string's
/// backslash mode: every other backslash they write is itself escaped.
const ESCAPER_WRITES: &[char] = &['0', 'b', 'n', 'r', 't', 'Z', '\'', '"', '\\'];

/// MySQL's table of backslash sequences (`\%` and `\_` stay as written: they are LIKE escapes).
fn push_escape(text: &mut String, escaped: char) {
    match escaped {
        '0' => text.push('\0'),
        'b' => text.push('\u{8}'),
        'n' => text.push('\n'),
        'r' => text.push('\r'),
        't' => text.push('\t'),
        'Z' => text.push('\u{1a}'),
        '%' | '_' => {
            text.push('\\');
            text.push(escaped);
        }
        other => text.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::Escapes::{Backslash, NoBackslash};
    use super::*;

    fn read(src: &str, escapes: Escapes) -> Option<String> {
        let Literal { text, end, .. } = read_quoted(src, 0, escapes)?;
        assert_eq!(
            end,
            src.len(),
            "the literal must end at the last quote: {src}"
        );
        Some(text)
    }

    #[test]
    fn no_backslash_reading() {
        let cases: &[(&str, &str)] = &[
            ("''", ""),
            ("'abc'", "abc"),
            ("'it''s'", "it's"),
            ("''''", "'"),
            ("'abc\\'", "abc\\"),
            ("'a\\\\b'", "a\\\\b"),
            ("'\\n\\t\\0'", "\\n\\t\\0"),
            (
                r#"'{"a":"\"q\"","e":"\u00e9","u":"http:\/\/x"}'"#,
                r#"{"a":"\"q\"","e":"\u00e9","u":"http:\/\/x"}"#,
            ),
            ("'say \"hi\"'", "say \"hi\""),
            ("\"say \"\"hi\"\"\"", "say \"hi\""),
            ("\"it's\"", "it's"),
            ("\"abc\\\"", "abc\\"),
            ("'héllo wörld 日本語'", "héllo wörld 日本語"),
            ("'😀🎉 emoji''s'", "😀🎉 emoji's"),
            ("'\\😀'", "\\😀"),
            ("'line\nbreak\r\n'", "line\nbreak\r\n"),
            (
                "'/* not a comment */ -- nor # this'",
                "/* not a comment */ -- nor # this",
            ),
            ("`na``me`", "na`me"),
        ];
        for (src, want) in cases {
            assert_eq!(read(src, NoBackslash).as_deref(), Some(*want), "{src}");
        }
    }

    #[test]
    fn backslash_reading() {
        let cases: &[(&str, &str)] = &[
            ("'it\\'s'", "it's"),
            ("'it''s'", "it's"),
            ("'say \\\"hi\\\"'", "say \"hi\""),
            ("\"say \\\"hi\\\"\"", "say \"hi\""),
            ("'a\\\\b'", "a\\b"),
            ("'\\\\'", "\\"),
            ("'\\0'", "\0"),
            ("'\\n\\r\\t\\b\\Z'", "\n\r\t\u{8}\u{1a}"),
            ("'\\z\\N\\x'", "zNx"),
            ("'100\\% \\_x'", "100\\% \\_x"),
            ("'\\é\\😀'", "é😀"),
            ("'日本\\'語'", "日本'語"),
        ];
        for (src, want) in cases {
            assert_eq!(read(src, Backslash).as_deref(), Some(*want), "{src}");
        }
    }

    #[test]
    fn unterminated_literals() {
        for src in ["'", "'abc", "'it''", "\"abc", "`abc"] {
            assert_eq!(read_quoted(src, 0, NoBackslash), None, "{src}");
            assert_eq!(read_quoted(src, 0, Backslash), None, "{src}");
        }
        // Backslash reading only: the closing quote is escaped, or the input ends right after `\`.
        for src in ["'abc\\'", "'abc\\", "'\\😀"] {
            assert_eq!(read_quoted(src, 0, Backslash), None, "{src}");
        }
        assert_eq!(read_quoted("", 0, NoBackslash), None);
    }

    #[test]
    fn stops_at_the_first_closing_quote() {
        let at = |src: &str, open| read_quoted(src, open, NoBackslash).map(|l| (l.text, l.end));
        assert_eq!(at("'a''b' rest", 0), Some(("a'b".to_string(), 6)));
        assert_eq!(at("x 'é' y", 2), Some(("é".to_string(), 6)));
    }

    #[test]
    fn sixty_kib_literal() {
        let body = "é😀'\\\"x".repeat(60 * 1024 / 12);
        let nbe = format!("'{}'", body.replace('\'', "''"));
        assert_eq!(read(&nbe, NoBackslash).as_deref(), Some(body.as_str()));
        let slashed = format!(
            "'{}'",
            body.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('"', "\\\"")
        );
        assert_eq!(read(&slashed, Backslash).as_deref(), Some(body.as_str()));
    }
}
