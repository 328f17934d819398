//! CometQL as a tenant's backend writes it: statements written by hand (quoted the way a PHP developer
//! quotes), the login (user = dev_id, password = key, database CometQL_v1), sessions through PHP mysqli
//! (the client most users run) with their results read cell by cell, and reads of what a pipe holds
//! through the raw client.

use crate::clients::{self, Client, Login, StepResult};
use crate::mysql_raw::RawMysql;
use crate::{Tenant, TestServer};

/// A CometQL string literal the way a PHP developer writes one by hand: single quotes, quotes doubled
/// (the server reads NO_BACKSLASH_ESCAPES first).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Publishes `message` (quoted here) on `pipe`.
pub fn insert_sql(pipe: &str, event: &str, message: &str) -> String {
    insert_literal_sql(pipe, event, &quote(message))
}

/// Publishes a message written as the literal `message_literal`, for tests that escape it themselves
/// (or break it on purpose).
pub fn insert_literal_sql(pipe: &str, event: &str, message_literal: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ({}, {}, {message_literal})",
        quote(pipe),
        quote(event)
    )
}

/// One INSERT with a row per message.
pub fn multi_insert_sql<'a>(
    pipe: &str,
    event: &str,
    messages: impl IntoIterator<Item = &'a str>,
) -> String {
    let rows: Vec<String> = messages
        .into_iter()
        .map(|m| format!("({}, {}, {})", quote(pipe), quote(event), quote(m)))
        .collect();
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES {}",
        rows.join(", ")
    )
}

/// The messages of `pipe`'s history, oldest first, read through a raw session.
pub async fn history(q: &mut RawMysql, pipe: &str) -> Vec<String> {
    q.query(&format!(
        "SELECT message FROM pipes_messages WHERE name = {}",
        quote(pipe)
    ))
    .await
    .rows()
    .iter()
    .map(|r| r[0].clone())
    .collect()
}

/// How many messages are queued for `user`, read through a raw session.
pub async fn queued(q: &mut RawMysql, user: u64) -> usize {
    q.query(&format!(
        "SELECT message FROM users_messages WHERE id = {user}"
    ))
    .await
    .rows()
    .len()
}

/// How the tenant's backend logs in through the real clients.
pub fn login(server: &TestServer, tenant: &Tenant) -> Login {
    Login::new(
        server.cometql_port(),
        tenant.dev_id.to_string(),
        tenant.key.clone(),
    )
}

/// A tenant's CometQL backend, one real-client connection per [`Cql::run`].
pub struct Cql {
    pub login: Login,
}

impl Cql {
    pub fn new(server: &TestServer, tenant: &Tenant) -> Cql {
        Cql {
            login: login(server, tenant),
        }
    }

    /// Runs the statements in order on one PHP mysqli connection; one result per statement.
    pub async fn run<S: Into<String>>(
        &self,
        statements: impl IntoIterator<Item = S>,
    ) -> Vec<StepResult> {
        self.run_with(Client::Php, statements).await
    }

    pub async fn run_with<S: Into<String>>(
        &self,
        client: Client,
        statements: impl IntoIterator<Item = S>,
    ) -> Vec<StepResult> {
        let mut req = self.login.request();
        for s in statements {
            req = req.sql(s);
        }
        let resp = clients::run(client, &req)
            .await
            .unwrap_or_else(|e| panic!("{client} driver: {e:#}"));
        resp.connected()
            .unwrap_or_else(|e| panic!("{client} login: {e:#}"))
            .to_vec()
    }

    /// One statement.
    pub async fn one(&self, statement: impl Into<String>) -> StepResult {
        self.run([statement.into()]).await.remove(0)
    }
}

/// The OK packet's `(affected_rows, insert_id)`.
#[track_caller]
pub fn ok(r: &StepResult) -> (u64, u64) {
    r.ok().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The ERR packet's `(code, message)`.
#[track_caller]
pub fn err(r: &StepResult) -> (i64, String) {
    let e = r.error().unwrap_or_else(|e| panic!("{e:#}"));
    (e.code, e.message.clone())
}

#[track_caller]
pub fn assert_err(r: &StepResult, code: i64, message: &str) {
    assert_eq!(err(r), (code, message.to_string()));
}

/// Column names of a result set.
#[track_caller]
pub fn columns(r: &StepResult) -> Vec<String> {
    r.columns().unwrap_or_else(|e| panic!("{e:#}")).to_vec()
}

/// Rows of a result set; CometQL never sends NULL, so a NULL cell fails the test.
#[track_caller]
pub fn rows(r: &StepResult) -> Vec<Vec<String>> {
    r.rows()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| c.clone().expect("CometQL never sends NULL"))
                .collect()
        })
        .collect()
}

/// Rows as `&str`s, for comparing with literals.
pub fn strs(rows: &[Vec<String>]) -> Vec<Vec<&str>> {
    rows.iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}
