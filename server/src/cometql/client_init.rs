//! The statements drivers and tools send about the session and the server rather than a table: SHOW,
//! DESCRIBE, SET, `SELECT @@var` and `SELECT DATABASE()` (docs/reference-cppcomet.md 1.5;
//! docs/compatibility.md §2, what drivers send at connect).

use super::ast::{Show, Statement, StatusScope};
use super::error::ParseError;
use super::lexer::{Punct, Token};
use super::parser::{is_reserved, Parser};

type Parsed<T> = Result<T, ParseError>;

/// Words that cannot appear inside a SET: seeing one means a second statement or a typo, which a silent
/// OK would hide (`SET a = 1 SELECT ...`).
const NOT_IN_SET: &[&str] = &[
    "DELETE", "DESCRIBE", "FROM", "INSERT", "INTO", "LIMIT", "ORDER", "REPLACE", "SELECT", "SHOW",
    "UPDATE", "USE", "VALUES", "WHERE",
];

impl Parser {
    /// `SELECT @@a [[AS] alias], @@b ... [LIMIT n]`
    pub(super) fn select_variables(&mut self) -> Parsed<Statement> {
        let mut names = Vec::new();
        let mut aliases = Vec::new();
        loop {
            match self.advance() {
                Some(Token::SysVar(name)) => names.push(name),
                _ => return Err(ParseError::syntax()),
            }
            let alias = match self.peek() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("AS") => {
                    self.advance();
                    Some(self.alias()?)
                }
                Some(Token::Word(w)) if !is_reserved(w) => Some(self.alias()?),
                Some(Token::Backquoted(_) | Token::Quoted(_)) => Some(self.alias()?),
                _ => None,
            };
            aliases.push(alias);
            if !self.eat_punct(Punct::Comma) {
                break;
            }
        }
        let limit = self.opt_limit()?;
        Ok(Statement::SelectVariables {
            names,
            aliases,
            limit,
        })
    }

    /// A result column name: any word, backquoted name or string (MySQL allows `AS 'x'`).
    fn alias(&mut self) -> Parsed<String> {
        match self.advance() {
            Some(Token::Word(w)) if !is_reserved(&w) => Ok(w),
            Some(Token::Backquoted(text) | Token::Quoted(text)) => Ok(text),
            _ => Err(ParseError::syntax()),
        }
    }

    pub(super) fn show(&mut self) -> Parsed<Show> {
        let full = self.eat_keyword("FULL");
        let show = match self.advance() {
            Some(Token::Word(w)) => match w.to_ascii_uppercase().as_str() {
                "PROCESSLIST" => Show::Processlist,
                "COLUMNS" | "FIELDS" => {
                    if !self.eat_keyword("FROM") {
                        self.expect_keyword("IN")?;
                    }
                    Show::Columns {
                        table: self.name()?,
                    }
                }
                _ if full => return Err(ParseError::syntax()),
                "DATABASES" | "SCHEMAS" => Show::Databases,
                "TABLES" => Show::Tables,
                "TABLE" => {
                    self.expect_keyword("STATUS")?;
                    Show::TableStatus
                }
                "STATUS" => Show::Status(StatusScope::Session),
                "VARIABLES" => self.show_variables()?,
                scope => self.show_scoped(scope)?,
            },
            _ => return Err(ParseError::syntax()),
        };
        Ok(show)
    }

    /// `SHOW <scope> STATUS` and `SHOW GLOBAL|SESSION VARIABLES ...`
    fn show_scoped(&mut self, scope: &str) -> Parsed<Show> {
        let status = match scope {
            "SESSION" => StatusScope::Session,
            "GLOBAL" => StatusScope::Global,
            "FILESYSTEM" => StatusScope::Filesystem,
            "RAM" => StatusScope::Ram,
            "AVG" => StatusScope::Avg,
            "UPTIME" => StatusScope::Uptime,
            _ => return Err(ParseError::syntax()),
        };
        if matches!(status, StatusScope::Session | StatusScope::Global)
            && self.eat_keyword("VARIABLES")
        {
            return self.show_variables();
        }
        self.expect_keyword("STATUS")?;
        Ok(Show::Status(status))
    }

    fn show_variables(&mut self) -> Parsed<Show> {
        if !self.eat_keyword("LIKE") {
            return Ok(Show::Variables { like: None });
        }
        match self.advance() {
            Some(Token::Quoted(pattern)) => Ok(Show::Variables {
                like: Some(pattern),
            }),
            _ => Err(ParseError::syntax()),
        }
    }

    /// Every SET form is accepted and ignored, but it must still look like assignments: comma-separated
    /// items, each a name or variable followed by at least one token, with balanced parentheses
    /// (`SET NAMES x COLLATE y`, `SET a = 1, @@b := DEFAULT`, `SET sql_mode = CONCAT(@@sql_mode, ',X')`,
    /// `SET CHARACTER SET utf8`).
    pub(super) fn set(&mut self) -> Parsed<Statement> {
        loop {
            match self.advance() {
                Some(Token::Word(_) | Token::SysVar(_) | Token::UserVar(_)) => {}
                _ => return Err(ParseError::syntax()),
            }
            let mut depth = 0usize;
            let mut rest = 0usize;
            loop {
                match self.peek() {
                    None | Some(Token::Punct(Punct::Semicolon)) => break,
                    Some(Token::Punct(Punct::Comma)) if depth == 0 => break,
                    Some(Token::Punct(Punct::LParen)) => depth += 1,
                    Some(Token::Punct(Punct::RParen)) => {
                        depth = depth.checked_sub(1).ok_or_else(ParseError::syntax)?;
                    }
                    Some(Token::Word(w))
                        if NOT_IN_SET.iter().any(|k| k.eq_ignore_ascii_case(w)) =>
                    {
                        return Err(ParseError::syntax());
                    }
                    Some(_) => {}
                }
                self.advance();
                rest += 1;
            }
            if depth != 0 || rest == 0 {
                return Err(ParseError::syntax());
            }
            if !self.eat_punct(Punct::Comma) {
                return Ok(Statement::Set);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ok, syntax};
    use super::super::*;

    #[test]
    fn set_statements() {
        for sql in [
            "SET NAMES utf8mb4",
            "SET NAMES utf8",
            "set names 'utf8mb4' collate 'utf8mb4_unicode_ci'",
            "SET autocommit=1",
            "SET AUTOCOMMIT = 0",
            "SET x = y",
            "SET @@x = y",
            "SET @@session.autocommit = OFF",
            "SET SESSION x = y",
            "SET GLOBAL max_connections = 10",
            "SET x y",
            "SET section name value",
            "SET character_set_results = NULL",
            "SET character_set_results NULL",
            "SET a = 1, b = 'two', @c := -3",
            "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET x 1;",
            "SET CHARACTER SET utf8mb4",
        ] {
            assert_eq!(ok(sql), Statement::Set, "{sql}");
        }
        for sql in [
            "SET",
            "SET x",
            "SET = 1",
            "SET a = 1,",
            "SET a = (1",
            "SET a = 1)",
            "SET 'a' = 1",
        ] {
            syntax(sql);
        }
    }

    #[test]
    fn select_variables_and_database() {
        assert_eq!(
            ok("SELECT @@version_comment LIMIT 1"),
            Statement::SelectVariables {
                names: vec!["@@version_comment".into()],
                aliases: vec![None],
                limit: Some(Limit {
                    offset: 0,
                    count: 1
                }),
            }
        );
        // Connector/J's init query: a comment first, `@@session.` names, aliases.
        assert_eq!(
            ok(
                "/* mysql-connector-j-8.4.0 */SELECT @@session.auto_increment_increment AS \
                auto_increment_increment, @@character_set_client AS character_set_client, @@x y, \
                @@Max_Allowed_Packet"
            ),
            Statement::SelectVariables {
                names: vec![
                    "@@session.auto_increment_increment".into(),
                    "@@character_set_client".into(),
                    "@@x".into(),
                    "@@Max_Allowed_Packet".into(),
                ],
                aliases: vec![
                    Some("auto_increment_increment".into()),
                    Some("character_set_client".into()),
                    Some("y".into()),
                    None,
                ],
                limit: None,
            }
        );
        assert_eq!(ok("SELECT DATABASE()"), Statement::SelectDatabase);
        assert_eq!(ok("select database ( ) ;"), Statement::SelectDatabase);
        syntax("SELECT @@a, name FROM t");
        syntax("SELECT @@a FROM t");
        syntax("SELECT DATABASE() FROM t");
    }

    #[test]
    fn show_and_describe() {
        let show = |sql| match ok(sql) {
            Statement::Show(s) => s,
            other => panic!("{sql} gave {other:?}"),
        };
        let columns = Show::Columns {
            table: "users_auth".into(),
        };
        assert_eq!(show("SHOW FULL COLUMNS FROM users_auth"), columns);
        assert_eq!(show("show columns in `users_auth`"), columns);
        assert_eq!(show("SHOW FIELDS FROM users_auth"), columns);
        assert_eq!(show("DESCRIBE users_auth"), columns);
        assert_eq!(show("desc users_auth;"), columns);
        assert_eq!(
            show("SHOW GLOBAL STATUS"),
            Show::Status(StatusScope::Global)
        );
        assert_eq!(show("SHOW STATUS"), Show::Status(StatusScope::Session));
        assert_eq!(
            show("SHOW SESSION STATUS"),
            Show::Status(StatusScope::Session)
        );
        assert_eq!(
            show("SHOW FILESYSTEM STATUS"),
            Show::Status(StatusScope::Filesystem)
        );
        assert_eq!(show("SHOW RAM STATUS"), Show::Status(StatusScope::Ram));
        assert_eq!(show("SHOW AVG STATUS"), Show::Status(StatusScope::Avg));
        assert_eq!(
            show("SHOW UPTIME STATUS"),
            Show::Status(StatusScope::Uptime)
        );
        let like = |p: &str| Show::Variables {
            like: Some(p.into()),
        };
        assert_eq!(
            show("SHOW SESSION VARIABLES LIKE 'sql_mode'"),
            like("sql_mode")
        );
        assert_eq!(
            show("SHOW VARIABLES LIKE 'lower_case_table_names'"),
            like("lower_case_table_names")
        );
        assert_eq!(show("SHOW GLOBAL VARIABLES LIKE '%char%'"), like("%char%"));
        assert_eq!(show("SHOW VARIABLES"), Show::Variables { like: None });
        assert_eq!(show("show databases"), Show::Databases);
        assert_eq!(show("show tables"), Show::Tables);
        assert_eq!(show("SHOW TABLE STATUS"), Show::TableStatus);
        assert_eq!(show("SHOW PROCESSLIST"), Show::Processlist);
        for sql in [
            "SHOW CREATE TABLE pipes",
            "SHOW FULL TABLES",
            "SHOW RAM VARIABLES",
            "SHOW VARIABLES LIKE x",
            "SHOW COLUMNS users_auth",
            "SHOW",
            "DESCRIBE",
        ] {
            syntax(sql);
        }
    }
}
