//! Recursive-descent parser over the token list, one method per statement form (WHERE is in `filter`).
//! Syntax errors return at once (ERR 3). Refusals of well-formed SQL (ERR 2, 13, 14, 18-20) are deferred
//! until the whole statement has been read, the first one found winning: so ERR 3 always means "this
//! reading could not be parsed", which the two-readings rule in `readings.rs` relies on.

use std::collections::HashSet;

use super::ast::{Columns, Delete, Insert, Limit, Select, Show, Statement, Value};
use super::error::{ParseError, MAX_COLUMNS};
use super::lexer::{Punct, Token};

/// Words that cannot be a bare name or value (backquote them to use them as names).
const RESERVED: &[&str] = &[
    "AND", "BETWEEN", "DELETE", "FROM", "IN", "INSERT", "INTO", "IS", "LIKE", "LIMIT", "NOT",
    "NULL", "OFFSET", "OR", "ORDER", "REGEXP", "RLIKE", "SELECT", "SET", "SHOW", "VALUES", "WHERE",
    "XOR",
];

pub(super) struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    deferred: Option<ParseError>,
}

type Parsed<T> = Result<T, ParseError>;

pub(super) fn parse_tokens(tokens: Vec<Token>) -> Parsed<Statement> {
    let mut p = Parser {
        tokens,
        pos: 0,
        deferred: None,
    };
    p.skip_semicolons();
    if p.at_end() {
        return Ok(Statement::Empty);
    }
    let statement = p.statement()?;
    p.skip_semicolons();
    if !p.at_end() {
        // Trailing garbage, or a second statement: one statement per query.
        return Err(ParseError::syntax());
    }
    match p.deferred {
        Some(refusal) => Err(refusal),
        None => Ok(statement),
    }
}

pub(super) fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

fn is_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// Cursor.
impl Parser {
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    pub(super) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead)
    }

    /// Takes the next token out (the parser never looks back, so the slot can be emptied).
    pub(super) fn advance(&mut self) -> Option<Token> {
        let slot = self.tokens.get_mut(self.pos)?;
        self.pos += 1;
        Some(std::mem::replace(slot, Token::Punct(Punct::Semicolon)))
    }

    pub(super) fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    pub(super) fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        if found {
            self.pos += 1;
        }
        found
    }

    pub(super) fn expect_keyword(&mut self, keyword: &str) -> Parsed<()> {
        match self.eat_keyword(keyword) {
            true => Ok(()),
            false => Err(ParseError::syntax()),
        }
    }

    pub(super) fn eat_punct(&mut self, punct: Punct) -> bool {
        let found = self.peek() == Some(&Token::Punct(punct));
        if found {
            self.pos += 1;
        }
        found
    }

    pub(super) fn expect_punct(&mut self, punct: Punct) -> Parsed<()> {
        match self.eat_punct(punct) {
            true => Ok(()),
            false => Err(ParseError::syntax()),
        }
    }

    fn skip_semicolons(&mut self) {
        while self.eat_punct(Punct::Semicolon) {}
    }

    /// Remembers a refusal of otherwise well-formed SQL; the first one is reported.
    pub(super) fn defer(&mut self, refusal: ParseError) {
        self.deferred.get_or_insert(refusal);
    }
}

// Pieces shared by the statements.
impl Parser {
    /// A table or column name: a bare word, a backquoted name, or (as in the reference) a quoted string
    /// that looks like an identifier.
    pub(super) fn name(&mut self) -> Parsed<String> {
        match self.advance() {
            Some(Token::Word(w)) if !is_reserved(&w) => Ok(w),
            Some(Token::Backquoted(name)) => Ok(name),
            Some(Token::Quoted(text)) if is_identifier(&text) => Ok(text),
            _ => Err(ParseError::syntax()),
        }
    }

    /// `name, name, ...`, checked for duplicates and length.
    fn name_list(&mut self, duplicate: fn() -> ParseError) -> Parsed<Vec<String>> {
        let mut names = vec![self.name()?];
        while self.eat_punct(Punct::Comma) {
            names.push(self.name()?);
        }
        let mut seen = HashSet::new();
        if names.len() > MAX_COLUMNS {
            self.defer(ParseError::too_many_columns());
        } else if !names.iter().all(|n| seen.insert(n.as_str())) {
            self.defer(duplicate());
        }
        Ok(names)
    }

    pub(super) fn value(&mut self) -> Parsed<Value> {
        match self.advance() {
            Some(Token::Quoted(text)) => Ok(Value::Str(text)),
            Some(Token::Number(n)) => Ok(Value::Number(n)),
            Some(Token::Punct(Punct::Minus)) => match self.advance() {
                Some(Token::Number(n)) => Ok(Value::Number(format!("-{n}"))),
                _ => Err(ParseError::syntax()),
            },
            Some(Token::Punct(Punct::Plus)) => match self.advance() {
                Some(Token::Number(n)) => Ok(Value::Number(n)),
                _ => Err(ParseError::syntax()),
            },
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("NULL") => Ok(Value::Null),
            Some(Token::Word(w)) if !is_reserved(&w) => Ok(Value::Ident(w)),
            Some(Token::Backquoted(name)) => Ok(Value::Ident(name)),
            _ => Err(ParseError::syntax()),
        }
    }

    /// `( value, ... )`
    pub(super) fn value_list(&mut self) -> Parsed<Vec<Value>> {
        self.expect_punct(Punct::LParen)?;
        let mut values = vec![self.value()?];
        while self.eat_punct(Punct::Comma) {
            values.push(self.value()?);
        }
        self.expect_punct(Punct::RParen)?;
        Ok(values)
    }

    /// `[LIMIT n | LIMIT offset, n | LIMIT n OFFSET offset]`
    pub(super) fn opt_limit(&mut self) -> Parsed<Option<Limit>> {
        if !self.eat_keyword("LIMIT") {
            return Ok(None);
        }
        let first = self.count()?;
        let limit = if self.eat_punct(Punct::Comma) {
            Limit {
                offset: first,
                count: self.count()?,
            }
        } else if self.eat_keyword("OFFSET") {
            Limit {
                offset: self.count()?,
                count: first,
            }
        } else {
            Limit {
                offset: 0,
                count: first,
            }
        };
        Ok(Some(limit))
    }

    /// An unsigned integer; quoted digits are accepted too, as the reference does.
    fn count(&mut self) -> Parsed<u64> {
        let text = match self.advance() {
            Some(Token::Number(n) | Token::Quoted(n)) => n,
            _ => return Err(ParseError::syntax()),
        };
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::syntax());
        }
        text.parse().map_err(|_| ParseError::syntax())
    }

    /// `[ORDER BY col [ASC|DESC], ...]`: read so that it gets its own refusal rather than ERR 3.
    fn opt_order_by(&mut self) -> Parsed<()> {
        if !self.eat_keyword("ORDER") {
            return Ok(());
        }
        self.expect_keyword("BY")?;
        loop {
            match self.peek() {
                Some(Token::Number(_)) => {
                    self.advance();
                }
                _ => {
                    self.name()?;
                }
            }
            if !self.eat_keyword("ASC") {
                self.eat_keyword("DESC");
            }
            if !self.eat_punct(Punct::Comma) {
                break;
            }
        }
        self.defer(ParseError::order_by());
        Ok(())
    }
}

// Statements.
impl Parser {
    fn statement(&mut self) -> Parsed<Statement> {
        let keyword = match self.advance() {
            Some(Token::Word(w)) => w.to_ascii_uppercase(),
            _ => return Err(ParseError::syntax()),
        };
        match keyword.as_str() {
            "SELECT" => self.select(),
            "INSERT" => self.insert(),
            "DELETE" => self.delete(),
            "SHOW" => self.show().map(Statement::Show),
            "DESCRIBE" | "DESC" => Ok(Statement::Show(Show::Columns {
                table: self.name()?,
            })),
            "SET" => self.set(),
            _ => Err(ParseError::syntax()),
        }
    }

    fn select(&mut self) -> Parsed<Statement> {
        if matches!(self.peek(), Some(Token::SysVar(_))) {
            return self.select_variables();
        }
        if self.peek_keyword("DATABASE") && self.peek_at(1) == Some(&Token::Punct(Punct::LParen)) {
            self.pos += 1;
            self.expect_punct(Punct::LParen)?;
            self.expect_punct(Punct::RParen)?;
            return Ok(Statement::SelectDatabase);
        }
        let columns = match self.eat_punct(Punct::Star) {
            true => Columns::All,
            false => Columns::Named(self.name_list(ParseError::duplicate_select_column)?),
        };
        self.expect_keyword("FROM")?;
        let table = self.name()?;
        let filter = self.opt_where()?;
        self.opt_order_by()?;
        let limit = self.opt_limit()?;
        Ok(Statement::Select(Select {
            columns,
            table,
            filter,
            limit,
        }))
    }

    fn insert(&mut self) -> Parsed<Statement> {
        self.expect_keyword("INTO")?;
        let table = self.name()?;
        let columns = match self.eat_punct(Punct::LParen) {
            true => {
                let names = self.name_list(ParseError::duplicate_insert_column)?;
                self.expect_punct(Punct::RParen)?;
                Some(names)
            }
            false => None,
        };
        self.expect_keyword("VALUES")?;
        let mut rows = vec![self.value_list()?];
        while self.eat_punct(Punct::Comma) {
            rows.push(self.value_list()?);
        }
        if let Some(names) = &columns {
            if rows.iter().any(|row| row.len() != names.len()) {
                self.defer(ParseError::columns_list());
            }
        }
        Ok(Statement::Insert(Insert {
            table,
            columns,
            rows,
        }))
    }

    fn delete(&mut self) -> Parsed<Statement> {
        self.expect_keyword("FROM")?;
        let table = self.name()?;
        let filter = self.opt_where()?;
        self.opt_order_by()?;
        let limit = self.opt_limit()?;
        Ok(Statement::Delete(Delete {
            table,
            filter,
            limit,
        }))
    }
}
