//! The WHERE clause. It is read as a full boolean expression (OR of ANDs, parentheses, SQL precedence),
//! then reduced to what CometQL can do: AND-joined conditions, each `col = v`, `col IN (...)`, or an OR
//! chain on one column, which works like IN. Anything else is refused by name rather than guessed at.

use std::collections::HashSet;

use super::ast::{Condition, Filter, Value};
use super::error::{ParseError, MAX_CONDITIONS, MAX_VALUES_PER_CONDITION};
use super::lexer::{Punct, Token};
use super::parser::Parser;

/// Parentheses nest at most this deep; deeper is a syntax error (keeps the recursion bounded).
const MAX_DEPTH: usize = 16;

enum Expr {
    Cond(Condition),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

type Parsed<T> = Result<T, ParseError>;

impl Parser {
    /// `[WHERE expr]`; a well-formed expression CometQL cannot run is deferred as a refusal.
    pub(super) fn opt_where(&mut self) -> Parsed<Filter> {
        if !self.eat_keyword("WHERE") {
            return Ok(Filter::default());
        }
        let expr = self.or_expr(0)?;
        match conditions(expr) {
            Ok(conditions) => Ok(Filter { conditions }),
            Err(refusal) => {
                self.defer(refusal);
                Ok(Filter::default())
            }
        }
    }

    fn or_expr(&mut self, depth: usize) -> Parsed<Expr> {
        let first = self.and_expr(depth)?;
        if !self.peek_keyword("OR") {
            return Ok(first);
        }
        let mut alternatives = vec![first];
        while self.eat_keyword("OR") {
            alternatives.push(self.and_expr(depth)?);
        }
        Ok(Expr::Or(alternatives))
    }

    fn and_expr(&mut self, depth: usize) -> Parsed<Expr> {
        let first = self.primary(depth)?;
        if !self.peek_keyword("AND") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_keyword("AND") {
            terms.push(self.primary(depth)?);
        }
        Ok(Expr::And(terms))
    }

    fn primary(&mut self, depth: usize) -> Parsed<Expr> {
        while self.eat_keyword("NOT") {
            self.defer(ParseError::operator("NOT"));
        }
        if self.eat_punct(Punct::LParen) {
            if depth >= MAX_DEPTH {
                return Err(ParseError::syntax());
            }
            let inner = self.or_expr(depth + 1)?;
            self.expect_punct(Punct::RParen)?;
            return Ok(inner);
        }
        self.comparison().map(Expr::Cond)
    }

    /// `col = v`, `col IN (...)`, or a comparison CometQL refuses (read in full, then deferred).
    fn comparison(&mut self) -> Parsed<Condition> {
        let column = self.name()?;
        let values = match self.advance() {
            Some(Token::Punct(Punct::Eq)) => vec![self.value()?],
            Some(Token::Punct(Punct::Cmp(op))) => {
                self.defer(ParseError::operator(op));
                vec![self.value()?]
            }
            Some(Token::Word(w)) => {
                let op = w.to_ascii_uppercase();
                if op == "NOT" {
                    let negated = match self.advance() {
                        Some(Token::Word(w)) if !w.eq_ignore_ascii_case("IS") => {
                            w.to_ascii_uppercase()
                        }
                        _ => return Err(ParseError::syntax()),
                    };
                    let values = self.keyword_operand(&negated)?;
                    self.defer(ParseError::operator(&format!("NOT {negated}")));
                    values
                } else {
                    let op = match op.as_str() {
                        "IS" if self.eat_keyword("NOT") => "IS NOT".to_string(),
                        _ => op,
                    };
                    let values = self.keyword_operand(&op)?;
                    if op != "IN" {
                        self.defer(ParseError::operator(&op));
                    }
                    values
                }
            }
            _ => return Err(ParseError::syntax()),
        };
        Ok(Condition { column, values })
    }

    /// The right-hand side of a keyword operator (`IN`, `LIKE`, `BETWEEN`, `IS`, ...).
    fn keyword_operand(&mut self, op: &str) -> Parsed<Vec<Value>> {
        match op {
            "IN" => self.value_list(),
            "LIKE" | "REGEXP" | "RLIKE" => Ok(vec![self.value()?]),
            "BETWEEN" => {
                let low = self.value()?;
                self.expect_keyword("AND")?;
                Ok(vec![low, self.value()?])
            }
            "IS" | "IS NOT" => match self.advance() {
                Some(Token::Word(w))
                    if ["NULL", "TRUE", "FALSE", "UNKNOWN"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(&w)) =>
                {
                    Ok(Vec::new())
                }
                _ => Err(ParseError::syntax()),
            },
            _ => Err(ParseError::syntax()),
        }
    }
}

/// Reduces a WHERE expression to AND-joined conditions, or says why CometQL cannot run it.
fn conditions(expr: Expr) -> Parsed<Vec<Condition>> {
    let mut terms = Vec::new();
    flatten_and(expr, &mut terms);
    let conditions = terms
        .into_iter()
        .map(|term| match term {
            Expr::Cond(condition) => Ok(condition),
            Expr::Or(alternatives) => merge_or(alternatives),
            // flatten_and never leaves an AND behind.
            Expr::And(_) => Err(ParseError::syntax()),
        })
        .collect::<Parsed<Vec<_>>>()?;
    if conditions.len() > MAX_CONDITIONS {
        return Err(ParseError::too_many_conditions());
    }
    if conditions
        .iter()
        .any(|c| c.values.len() > MAX_VALUES_PER_CONDITION)
    {
        return Err(ParseError::too_many_values());
    }
    let mut seen = HashSet::new();
    if !conditions.iter().all(|c| seen.insert(c.column.as_str())) {
        return Err(ParseError::duplicate_condition_column());
    }
    Ok(conditions.into_iter().map(distinct_values).collect())
}

/// `IN ('a', 'a', ...)` means each value once: a repeated value would repeat the work (and the rows) of
/// the statement for nothing. The first occurrence keeps its place.
fn distinct_values(mut condition: Condition) -> Condition {
    let mut seen = HashSet::new();
    condition.values.retain(|v| {
        let key = match v {
            Value::Str(s) => (0u8, Some(s.clone())),
            Value::Number(s) => (1, Some(s.clone())),
            Value::Ident(s) => (2, Some(s.clone())),
            Value::Null => (3, None),
        };
        seen.insert(key)
    });
    condition
}

fn flatten_and(expr: Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::And(terms) => terms.into_iter().for_each(|t| flatten_and(t, out)),
        other => out.push(other),
    }
}

/// `a = 1 OR a IN (2, 3) OR (a = 4)` is one condition on `a`; an OR across columns, or around an AND,
/// is not something CometQL can do.
fn merge_or(alternatives: Vec<Expr>) -> Parsed<Condition> {
    let mut leaves = Vec::new();
    flatten_or(alternatives, &mut leaves)?;
    let mut leaves = leaves.into_iter();
    let mut merged = leaves.next().ok_or_else(ParseError::syntax)?;
    for leaf in leaves {
        if leaf.column != merged.column {
            return Err(ParseError::operator("OR"));
        }
        merged.values.extend(leaf.values);
    }
    Ok(merged)
}

fn flatten_or(alternatives: Vec<Expr>, out: &mut Vec<Condition>) -> Parsed<()> {
    for alternative in alternatives {
        match alternative {
            Expr::Cond(condition) => out.push(condition),
            Expr::Or(inner) => flatten_or(inner, out)?,
            Expr::And(_) => return Err(ParseError::operator("OR")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cond, err, num, ok, select, str};
    use super::super::*;

    #[test]
    fn where_in_and_or_on_one_column() {
        let want = vec![cond("name", vec![str("a"), str("b"), str("c")])];
        for sql in [
            "SELECT * FROM pipes WHERE name IN ('a', 'b', 'c')",
            "SELECT * FROM pipes WHERE name = 'a' OR name = 'b' OR name = 'c'",
            "SELECT * FROM pipes WHERE name = 'a' or name in ('b', 'c')",
            "SELECT * FROM pipes WHERE (name = 'a' OR name = 'b') OR (name = 'c')",
        ] {
            assert_eq!(select(sql).filter.conditions, want, "{sql}");
        }
    }

    #[test]
    fn where_and_joins_conditions() {
        let d = match ok("DELETE FROM pipes_messages WHERE name = 'p' AND id IN ('u1', 'u2')") {
            Statement::Delete(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            d.filter.conditions,
            vec![
                cond("name", vec![str("p")]),
                cond("id", vec![str("u1"), str("u2")])
            ]
        );
        // AND binds tighter than OR, and parentheses group an OR chain inside an AND.
        let s = select("SELECT * FROM t WHERE id = 1 AND (name = 'a' OR name = 'b')");
        assert_eq!(
            s.filter.conditions,
            vec![
                cond("id", vec![num("1")]),
                cond("name", vec![str("a"), str("b")])
            ]
        );
        assert_eq!(
            err("SELECT * FROM t WHERE id = 1 AND name = 'a' OR name = 'b'"),
            (2, "Operator OR is not yet implemented".into())
        );
    }

    #[test]
    fn other_operators_are_refused_by_name() {
        for (op, sql) in [
            (">", "SELECT * FROM users_time WHERE id > 5"),
            ("<", "SELECT * FROM users_time WHERE id < 5"),
            (">=", "SELECT * FROM users_time WHERE id >= 5"),
            ("<=", "SELECT * FROM users_time WHERE id <= 5"),
            ("!=", "SELECT * FROM users_time WHERE id != 5"),
            ("<>", "SELECT * FROM users_time WHERE id <> 5"),
            ("<=>", "SELECT * FROM users_time WHERE id <=> 5"),
            ("LIKE", "SELECT * FROM pipes WHERE name like 'web%'"),
            ("NOT LIKE", "SELECT * FROM pipes WHERE name NOT LIKE 'web%'"),
            ("NOT IN", "SELECT * FROM pipes WHERE name not in ('a')"),
            (
                "BETWEEN",
                "SELECT * FROM users_time WHERE id BETWEEN 1 AND 5",
            ),
            ("IS", "SELECT * FROM users_time WHERE id IS NULL"),
            ("IS NOT", "SELECT * FROM users_time WHERE id IS NOT NULL"),
            ("NOT", "SELECT * FROM users_time WHERE NOT id = 5"),
            ("OR", "SELECT * FROM pipes WHERE name = 'a' OR users = 1"),
            ("REGEXP", "DELETE FROM pipes_messages WHERE name REGEXP 'x'"),
        ] {
            assert_eq!(
                err(sql),
                (2, format!("Operator {op} is not yet implemented")),
                "{sql}"
            );
        }
    }

    #[test]
    fn repeated_values_count_once() {
        assert_eq!(
            select(
                "SELECT * FROM pipes WHERE name IN ('a', 'b', 'a', \"a\", `b`, b) OR name = 'a'"
            )
            .filter
            .conditions,
            vec![cond(
                "name",
                vec![str("a"), str("b"), super::super::Value::Ident("b".into())]
            )]
        );
        let fives = vec!["5"; 4000].join(",");
        let s = select(&format!("SELECT * FROM users_time WHERE id IN ({fives})"));
        assert_eq!(s.filter.conditions, vec![cond("id", vec![num("5")])]);
    }

    #[test]
    fn limits_on_conditions_and_values() {
        let conds: Vec<String> = (0..11).map(|i| format!("c{i} = 1")).collect();
        let sql = format!("SELECT * FROM t WHERE {}", conds.join(" AND "));
        assert_eq!(err(&sql).0, 18);
        assert_eq!(
            select(&sql.replace(" AND c10 = 1", ""))
                .filter
                .conditions
                .len(),
            10
        );

        let values: Vec<String> = (0..4001).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT * FROM users_time WHERE id IN ({})",
            values.join(",")
        );
        assert_eq!(
            err(&sql),
            (
                19,
                "Too many values in the conditions (the limit is 4000)".into()
            )
        );
        let sql = format!(
            "SELECT * FROM users_time WHERE id IN ({})",
            values[1..].join(",")
        );
        assert_eq!(select(&sql).filter.conditions[0].values.len(), 4000);
        let ors: Vec<String> = (0..4001).map(|i| format!("id = {i}")).collect();
        assert_eq!(
            err(&format!("SELECT * FROM t WHERE {}", ors.join(" OR "))).0,
            19
        );
    }
}
