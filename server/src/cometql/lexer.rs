//! Splits a statement into tokens. Whitespace and comments are dropped; any other character that starts no
//! token is a syntax error (the reference skipped such characters, which read `!=` as `=` and `-5` as 5).
//! Keywords are not recognised here: the parser compares words case-insensitively where it expects them.

use super::error::ParseError;
use super::literal::{read_quoted, Escapes, Literal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// `[A-Za-z_][A-Za-z0-9_]*` as written: a keyword or a name, depending on where it stands.
    Word(String),
    /// The text of a `'...'` or `"..."` literal, with the literal rules applied.
    Quoted(String),
    /// The text of a `` `...` `` name (never empty).
    Backquoted(String),
    /// `[0-9]+(\.[0-9]+)?` as written; a sign is a separate token.
    Number(String),
    /// `@@name` or `@@scope.name`, as written (the `@@` included).
    SysVar(String),
    /// `@name` (only meaningful in SET).
    UserVar(String),
    Punct(Punct),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Punct {
    Comma,
    LParen,
    RParen,
    Star,
    Semicolon,
    Eq,
    Minus,
    Plus,
    /// `:=`
    Assign,
    /// A comparison CometQL does not implement, as written: `<`, `>`, `<=`, `>=`, `<>`, `!=`, `<=>`.
    Cmp(&'static str),
}

pub(super) fn tokenize(sql: &str, escapes: Escapes) -> Result<Vec<Token>, ParseError> {
    scan(sql, escapes).map(|scan| scan.tokens)
}

/// What `readings.rs` compares between the two readings of a statement.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) tokens: Vec<Token>,
    /// For each comment, how many tokens came before it: a comment in one reading only is text of a
    /// literal in the other.
    pub(super) comments_after: Vec<usize>,
    /// Whether every `'...'` and `"..."` literal could have been written by a backslash escaper (see
    /// [`Literal::escaper_could_write`]; meaningful with [`Escapes::Backslash`]).
    pub(super) escaper_could_write: bool,
}

pub(super) fn scan(sql: &str, escapes: Escapes) -> Result<Scan, ParseError> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut comments_after = Vec::new();
    let mut escaper_could_write = true;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        let (token, end) = match b {
            b' ' | b'\t' | b'\n' | b'\r' => (None, i + 1),
            b'#' => {
                comments_after.push(tokens.len());
                (None, line_end(bytes, i))
            }
            // As in MySQL, `--` opens a comment only when followed by whitespace or a control character.
            b'-' if next == Some(b'-')
                && bytes
                    .get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                comments_after.push(tokens.len());
                (None, line_end(bytes, i))
            }
            b'/' if next == Some(b'*') => {
                comments_after.push(tokens.len());
                (None, block_comment_end(bytes, i)?)
            }
            b'\'' | b'"' => {
                let literal = read_quoted(sql, i, escapes).ok_or_else(ParseError::syntax)?;
                escaper_could_write &= literal.escaper_could_write;
                (Some(Token::Quoted(literal.text)), literal.end)
            }
            b'`' => match read_quoted(sql, i, Escapes::NoBackslash) {
                Some(Literal { text, end, .. }) if !text.is_empty() => {
                    (Some(Token::Backquoted(text)), end)
                }
                _ => return Err(ParseError::syntax()),
            },
            b'@' if next == Some(b'@') => {
                let end = sys_var_end(bytes, i + 2).ok_or_else(ParseError::syntax)?;
                (Some(Token::SysVar(slice(sql, i, end)?)), end)
            }
            b'@' => {
                let end = word_end(bytes, i + 1);
                if end == i + 1 {
                    return Err(ParseError::syntax());
                }
                (Some(Token::UserVar(slice(sql, i, end)?)), end)
            }
            b'0'..=b'9' => {
                let end = number_end(bytes, i);
                (Some(Token::Number(slice(sql, i, end)?)), end)
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let end = word_end(bytes, i);
                (Some(Token::Word(slice(sql, i, end)?)), end)
            }
            _ => {
                let rest = bytes.get(i..).unwrap_or_default();
                let (punct, len) = punct(rest).ok_or_else(ParseError::syntax)?;
                (Some(Token::Punct(punct)), i + len)
            }
        };
        tokens.extend(token);
        i = end;
    }
    Ok(Scan {
        tokens,
        comments_after,
        escaper_could_write,
    })
}

fn punct(rest: &[u8]) -> Option<(Punct, usize)> {
    let (punct, len) = match rest {
        [b'<', b'=', b'>', ..] => (Punct::Cmp("<=>"), 3),
        [b':', b'=', ..] => (Punct::Assign, 2),
        [b'!', b'=', ..] => (Punct::Cmp("!="), 2),
        [b'<', b'>', ..] => (Punct::Cmp("<>"), 2),
        [b'<', b'=', ..] => (Punct::Cmp("<="), 2),
        [b'>', b'=', ..] => (Punct::Cmp(">="), 2),
        [b'<', ..] => (Punct::Cmp("<"), 1),
        [b'>', ..] => (Punct::Cmp(">"), 1),
        [b',', ..] => (Punct::Comma, 1),
        [b'(', ..] => (Punct::LParen, 1),
        [b')', ..] => (Punct::RParen, 1),
        [b'*', ..] => (Punct::Star, 1),
        [b';', ..] => (Punct::Semicolon, 1),
        [b'=', ..] => (Punct::Eq, 1),
        [b'-', ..] => (Punct::Minus, 1),
        [b'+', ..] => (Punct::Plus, 1),
        _ => return None,
    };
    Some((punct, len))
}

fn slice(sql: &str, start: usize, end: usize) -> Result<String, ParseError> {
    sql.get(start..end)
        .map(str::to_owned)
        .ok_or_else(ParseError::syntax)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn word_end(bytes: &[u8], start: usize) -> usize {
    let len = bytes.get(start..).map_or(0, |rest| {
        rest.iter().take_while(|&&b| is_word_byte(b)).count()
    });
    start + len
}

fn digits_end(bytes: &[u8], start: usize) -> usize {
    let len = bytes.get(start..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_digit()).count()
    });
    start + len
}

fn number_end(bytes: &[u8], start: usize) -> usize {
    let end = digits_end(bytes, start);
    match bytes.get(end) {
        Some(b'.') if digits_end(bytes, end + 1) > end + 1 => digits_end(bytes, end + 1),
        _ => end,
    }
}

/// `name` or `scope.name` after the `@@`, each part an identifier.
fn sys_var_end(bytes: &[u8], start: usize) -> Option<usize> {
    let ident_end = |at: usize| match bytes.get(at) {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => Some(word_end(bytes, at)),
        _ => None,
    };
    let end = ident_end(start)?;
    if bytes.get(end) == Some(&b'.') {
        return ident_end(end + 1);
    }
    Some(end)
}

/// Index of the line break ending a `#` or `--` comment (the break itself is whitespace), or the end.
fn line_end(bytes: &[u8], start: usize) -> usize {
    let rest = bytes.get(start..).unwrap_or_default();
    start
        + rest
            .iter()
            .take_while(|&&b| b != b'\n' && b != b'\r')
            .count()
}

/// Index just past the `*/` closing a comment opened at `start`; an unclosed comment is an error.
fn block_comment_end(bytes: &[u8], start: usize) -> Result<usize, ParseError> {
    let body = bytes.get(start + 2..).unwrap_or_default();
    body.windows(2)
        .position(|w| w == b"*/")
        .map(|at| start + 2 + at + 2)
        .ok_or_else(ParseError::syntax)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(sql: &str) -> Result<Vec<Token>, ParseError> {
        tokenize(sql, Escapes::NoBackslash)
    }

    fn word(w: &str) -> Token {
        Token::Word(w.to_string())
    }

    #[test]
    fn words_numbers_and_punctuation() {
        let got = lex("SeLeCt a_1,`b c`,(3.25)*=-+ := 'x' \"y\" 12ab").unwrap();
        let want = vec![
            word("SeLeCt"),
            word("a_1"),
            Token::Punct(Punct::Comma),
            Token::Backquoted("b c".into()),
            Token::Punct(Punct::Comma),
            Token::Punct(Punct::LParen),
            Token::Number("3.25".into()),
            Token::Punct(Punct::RParen),
            Token::Punct(Punct::Star),
            Token::Punct(Punct::Eq),
            Token::Punct(Punct::Minus),
            Token::Punct(Punct::Plus),
            Token::Punct(Punct::Assign),
            Token::Quoted("x".into()),
            Token::Quoted("y".into()),
            Token::Number("12".into()),
            word("ab"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn comparison_operators_are_kept_as_written() {
        let got = lex("< > <= >= <> != <=>").unwrap();
        let ops: Vec<_> = got
            .iter()
            .map(|t| match t {
                Token::Punct(Punct::Cmp(op)) => *op,
                Token::Punct(Punct::Eq) => "=",
                _ => "?",
            })
            .collect();
        assert_eq!(ops, ["<", ">", "<=", ">=", "<>", "!=", "<=>"]);
    }

    #[test]
    fn variables() {
        let got = lex("@@version_comment @@SESSION.auto_increment_increment @x").unwrap();
        assert_eq!(
            got,
            vec![
                Token::SysVar("@@version_comment".into()),
                Token::SysVar("@@SESSION.auto_increment_increment".into()),
                Token::UserVar("@x".into()),
            ]
        );
        for bad in ["@@", "@@1x", "@@a.", "@", "@ x"] {
            assert_eq!(lex(bad), Err(ParseError::syntax()), "{bad}");
        }
    }

    #[test]
    fn comments_and_whitespace_are_dropped() {
        let got = lex("/* c1 */a\t-- c2\r\nb # c3\n/*!40101 x */c--\n").unwrap();
        assert_eq!(got, vec![word("a"), word("b"), word("c")]);
        assert_eq!(lex("a --").unwrap(), vec![word("a")]);
        // `--5` is not a comment: two minus signs and a number.
        assert_eq!(lex("--5").unwrap().len(), 3);
    }

    #[test]
    fn stray_and_unterminated_input_is_an_error() {
        for bad in [
            "!",
            "?",
            ".",
            "a.b",
            "1.",
            "$x",
            "\\",
            "é",
            "a /* open",
            "'open",
            "\"open",
            "`open",
            "``",
            ":",
            "|",
            "&",
            "\u{0}",
            "\u{a0}",
        ] {
            assert_eq!(lex(bad), Err(ParseError::syntax()), "{bad:?}");
        }
    }
}
