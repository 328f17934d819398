//! Which of the two literal readings (`literal.rs`) a statement gets. The rule exists because a driver's
//! escaping must never be undone: Node mysql2 (its `?` placeholders too) and PHP addslashes write `it\'s`
//! whatever the server announces, mysqli_real_escape_string, PDO and PyMySQL write `it''s` because the
//! server announces NO_BACKSLASH_ESCAPES. Read the wrong way, an end user's `hi'),(private_x,e,m)#`
//! escaped by one style is SQL in the other. So:
//!
//! 1. Without a backslash both readings are the same text: one reading.
//! 2. Both readings give the same statement (or the same refusal): that is the answer.
//! 3. Only one reading can be read (the other is a syntax error): that one. A value escaped in any style
//!    stays one literal in the reading of that style, so the style's reading is always readable; the
//!    statement also shows how this client escapes, which the session remembers for rule 5.
//! 4. Both can be read and the literals start or end in different places: refused (ERROR 3, ambiguous).
//!    This is the shape of every injection, and it is refused whatever the session has shown, because a
//!    session can mix escapers (legacy PHP using both mysqli_real_escape_string and addslashes).
//! 5. Both can be read with the same tokens and only the text inside literals differs (`\"`, `\n`,
//!    `\u00e9`): no reading can turn a value into SQL, so this is only about the bytes delivered. The
//!    NO_BACKSLASH_ESCAPES reading, as announced (json_encode output stays byte-exact), unless the
//!    session's statements have shown backslash escaping and nothing in this one rules it out.

use super::ast::Statement;
use super::error::ParseError;
use super::lexer::{scan, tokenize, Token};
use super::literal::Escapes;
use super::parser::parse_tokens;

/// How the client of one session escapes string literals, as far as its statements have shown (rule 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Escaping {
    /// Nothing shown yet: rule 5 takes the announced NO_BACKSLASH_ESCAPES reading.
    #[default]
    Unknown,
    /// The last statement readable only one way was readable only without backslash escapes.
    DoubledQuotes,
    /// The last statement readable only one way was readable only with backslash escapes.
    Backslashes,
}

/// Parses one statement of a session whose escaping so far is `escaping`, and updates it.
pub fn parse_in_session(sql: &str, escaping: &mut Escaping) -> Result<Statement, ParseError> {
    if !sql.contains('\\') {
        return read(sql, Escapes::NoBackslash);
    }
    let doubled = read(sql, Escapes::NoBackslash);
    let slashed = read(sql, Escapes::Backslash);
    if doubled == slashed {
        return doubled;
    }
    match (readable(&doubled), readable(&slashed)) {
        (true, false) => {
            *escaping = Escaping::DoubledQuotes;
            doubled
        }
        (false, true) => {
            *escaping = Escaping::Backslashes;
            slashed
        }
        (true, true) => match same_tokens_but_literals(sql) {
            None => Err(ParseError::ambiguous()),
            Some(escaper_could_write) => {
                if *escaping == Escaping::Backslashes && escaper_could_write {
                    slashed
                } else {
                    doubled
                }
            }
        },
        // Neither is readable: the same syntax error either way.
        (false, false) => doubled,
    }
}

fn read(sql: &str, escapes: Escapes) -> Result<Statement, ParseError> {
    parse_tokens(tokenize(sql, escapes)?)
}

/// Readable: a statement, or the refusal of a well-formed one (ERR 2, 13, 14, 18-20). A refusal counts
/// as readable so that a refused right reading never lets a wrong one through (an `IN` list over the
/// value limit, cut short by an injected `#` in the other reading, would otherwise run).
fn readable(result: &Result<Statement, ParseError>) -> bool {
    !matches!(result, Err(e) if e.is_syntax())
}

/// `Some` when both readings give the same tokens and comments apart from the text inside `'...'` and
/// `"..."`, carrying whether a backslash escaper could have written every literal; `None` when they differ.
fn same_tokens_but_literals(sql: &str) -> Option<bool> {
    let doubled = scan(sql, Escapes::NoBackslash).ok()?;
    let slashed = scan(sql, Escapes::Backslash).ok()?;
    let same = doubled.comments_after == slashed.comments_after
        && doubled.tokens.len() == slashed.tokens.len()
        && doubled
            .tokens
            .iter()
            .zip(&slashed.tokens)
            .all(|pair| match pair {
                (Token::Quoted(_), Token::Quoted(_)) => true,
                (a, b) => a == b,
            });
    same.then_some(slashed.escaper_could_write)
}
