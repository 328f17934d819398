//! The JSON spoken with the drivers in `tests/clients/` (documented in its README.md).

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

/// Where and as whom a client logs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Login {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `None`: connect without selecting a database.
    pub database: Option<String>,
    /// `None`: plaintext, as before. `Some`: the driver asks for TLS (SSLRequest) and fails rather than fall
    /// back to plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

/// How a driver uses TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientTls {
    /// A CA file (PEM): the driver verifies the server's certificate and host name against it. `None`:
    /// encrypted but unverified (mysqli `MYSQLI_CLIENT_SSL` alone, PyMySQL without a CA, mysql2
    /// `rejectUnauthorized: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

impl Login {
    /// 127.0.0.1 and database `CometQL_v1`, as users' code connects.
    pub fn new(port: u16, user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            password: password.into(),
            database: Some("CometQL_v1".into()),
            tls: None,
        }
    }

    /// TLS without checking the server's certificate.
    pub fn tls_unverified(mut self) -> Self {
        self.tls = Some(ClientTls { ca: None });
        self
    }

    /// TLS, verifying the server's certificate and host name against the CA in `ca_file`.
    pub fn tls_verified(mut self, ca_file: &std::path::Path) -> Self {
        self.tls = Some(ClientTls {
            ca: Some(ca_file.display().to_string()),
        });
        self
    }

    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    pub fn database(mut self, database: Option<&str>) -> Self {
        self.database = database.map(str::to_owned);
        self
    }

    /// A request with no steps yet; add them with the builder methods of [`Request`].
    pub fn request(&self) -> Request {
        Request {
            login: self.clone(),
            steps: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    #[serde(flatten)]
    pub login: Login,
    pub steps: Vec<Step>,
}

impl Request {
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub fn sql(self, sql: impl Into<String>) -> Self {
        self.step(Step::Sql { sql: sql.into() })
    }

    /// The driver escapes `value` with its own function and substitutes it for every `%s` in `template`.
    pub fn template(self, template: impl Into<String>, value: impl Into<String>) -> Self {
        self.step(Step::Template {
            template: template.into(),
            escape: value.into(),
        })
    }

    /// Like `template`, with a named escaping function instead of the driver's own (PHP: `addslashes`).
    pub fn template_with(
        self,
        escaper: &str,
        template: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.step(Step::TemplateWith {
            template: template.into(),
            escape: value.into(),
            escaper: escaper.to_owned(),
        })
    }

    /// A query with `?` placeholders filled by the driver's client-side parameters (Node mysql2
    /// `query(sql, values)`, PyMySQL `execute(sql, values)`, PHP PDO with emulated prepares).
    pub fn params(self, sql: impl Into<String>, values: &[&str]) -> Self {
        self.step(Step::Params {
            params: Params {
                sql: sql.into(),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            },
        })
    }

    pub fn init_db(self, database: impl Into<String>) -> Self {
        self.step(Step::InitDb {
            init_db: database.into(),
        })
    }

    pub fn change_user(
        self,
        user: impl Into<String>,
        password: impl Into<String>,
        database: Option<&str>,
    ) -> Self {
        self.step(Step::ChangeUser {
            change_user: ChangeUser {
                user: user.into(),
                password: password.into(),
                database: database.map(str::to_owned),
            },
        })
    }

    pub fn prepare(self, sql: impl Into<String>) -> Self {
        self.step(Step::Prepare {
            prepare: sql.into(),
        })
    }

    pub fn ping(self) -> Self {
        self.step(Step::Ping { ping: true })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Step {
    Sql {
        sql: String,
    },
    TemplateWith {
        template: String,
        escape: String,
        escaper: String,
    },
    Template {
        template: String,
        escape: String,
    },
    Params {
        params: Params,
    },
    InitDb {
        init_db: String,
    },
    ChangeUser {
        change_user: ChangeUser,
    },
    Prepare {
        prepare: String,
    },
    Ping {
        ping: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Params {
    pub sql: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeUser {
    pub user: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SqlError {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub server_version: Option<String>,
}

pub type Row = Vec<Option<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        affected_rows: u64,
        insert_id: u64,
    },
    Rows {
        columns: Vec<String>,
        rows: Vec<Row>,
    },
    Error(SqlError),
    /// The driver has no such operation (PyMySQL: change_user, prepare).
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawStepResult")]
pub struct StepResult {
    pub outcome: Outcome,
    /// For template steps: what the driver's escaping produced; for params steps (Node, Python): the
    /// query the driver sent.
    pub escaped: Option<String>,
}

impl StepResult {
    /// `(affected_rows, insert_id)` of an OK packet, or an error describing what came instead.
    pub fn ok(&self) -> anyhow::Result<(u64, u64)> {
        match &self.outcome {
            Outcome::Ok {
                affected_rows,
                insert_id,
            } => Ok((*affected_rows, *insert_id)),
            other => Err(anyhow!("expected an OK, got {other:?}")),
        }
    }

    pub fn rows(&self) -> anyhow::Result<&[Row]> {
        match &self.outcome {
            Outcome::Rows { rows, .. } => Ok(rows),
            other => Err(anyhow!("expected rows, got {other:?}")),
        }
    }

    pub fn columns(&self) -> anyhow::Result<&[String]> {
        match &self.outcome {
            Outcome::Rows { columns, .. } => Ok(columns),
            other => Err(anyhow!("expected rows, got {other:?}")),
        }
    }

    /// The first column of the first row, for one-value queries.
    pub fn scalar(&self) -> anyhow::Result<Option<&str>> {
        let row = self.rows()?.first().ok_or_else(|| anyhow!("no rows"))?;
        let cell = row.first().ok_or_else(|| anyhow!("empty row"))?;
        Ok(cell.as_deref())
    }

    pub fn error(&self) -> anyhow::Result<&SqlError> {
        match &self.outcome {
            Outcome::Error(e) => Ok(e),
            other => Err(anyhow!("expected an error, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawResponse")]
pub struct Response {
    pub connect: Result<Connected, SqlError>,
    /// One per step; empty when the connection failed.
    pub results: Vec<StepResult>,
    /// What the driver wrote to stderr (warnings); filled in by `clients::run`.
    #[serde(skip)]
    pub stderr: String,
}

impl Response {
    /// The step results, or an error if the login failed.
    pub fn connected(&self) -> anyhow::Result<&[StepResult]> {
        match &self.connect {
            Ok(_) => Ok(&self.results),
            Err(e) => Err(anyhow!(
                "connect failed: {} {} (stderr: {})",
                e.code,
                e.message,
                self.stderr
            )),
        }
    }

    pub fn connect_error(&self) -> anyhow::Result<&SqlError> {
        match &self.connect {
            Err(e) => Ok(e),
            Ok(c) => Err(anyhow!("expected the connect to fail, it succeeded: {c:?}")),
        }
    }

    /// The result of step `index`, with the whole response in the error when it is missing.
    pub fn step(&self, index: usize) -> anyhow::Result<&StepResult> {
        self.connected()?
            .get(index)
            .ok_or_else(|| anyhow!("no result for step {index}: {self:?}"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepResult {
    ok: Option<RawOk>,
    rows: Option<Vec<Row>>,
    columns: Option<Vec<String>>,
    error: Option<SqlError>,
    unsupported: Option<String>,
    escaped: Option<String>,
}

#[derive(Deserialize)]
struct RawOk {
    affected_rows: u64,
    insert_id: u64,
}

impl TryFrom<RawStepResult> for StepResult {
    type Error = anyhow::Error;

    fn try_from(raw: RawStepResult) -> anyhow::Result<Self> {
        let outcome = match (raw.ok, raw.rows, raw.columns, raw.error, raw.unsupported) {
            (Some(ok), None, None, None, None) => Outcome::Ok {
                affected_rows: ok.affected_rows,
                insert_id: ok.insert_id,
            },
            (None, Some(rows), Some(columns), None, None) => Outcome::Rows { columns, rows },
            (None, None, None, Some(e), None) => Outcome::Error(e),
            (None, None, None, None, Some(why)) => Outcome::Unsupported(why),
            _ => bail!("a step result needs exactly one of ok, rows+columns, error, unsupported"),
        };
        Ok(Self {
            outcome,
            escaped: raw.escaped,
        })
    }
}

#[derive(Deserialize)]
struct RawResponse {
    connect: RawConnect,
    #[serde(default)]
    results: Vec<StepResult>,
}

#[derive(Deserialize)]
struct RawConnect {
    ok: Option<bool>,
    server_version: Option<String>,
    error: Option<SqlError>,
}

impl TryFrom<RawResponse> for Response {
    type Error = anyhow::Error;

    fn try_from(raw: RawResponse) -> anyhow::Result<Self> {
        let connect = match (raw.connect.ok, raw.connect.error) {
            (Some(true), None) => Ok(Connected {
                server_version: raw.connect.server_version,
            }),
            (None, Some(e)) => Err(e),
            _ => bail!("connect needs exactly one of ok:true, error"),
        };
        Ok(Self {
            connect,
            results: raw.results,
            stderr: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_serializes_to_the_driver_format() {
        let req = Login::new(3300, "15", "key")
            .request()
            .sql("SELECT 1")
            .template("VALUES ('%s')", "it's")
            .init_db("db_2")
            .change_user("15", "k2", None)
            .prepare("SELECT 1")
            .ping()
            .template_with("addslashes", "VALUES ('%s')", "it's")
            .params("VALUES (?, ?)", &["a", "b"]);
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({"host":"127.0.0.1","port":3300,"user":"15","password":"key","database":"CometQL_v1",
                "steps":[{"sql":"SELECT 1"},{"template":"VALUES ('%s')","escape":"it's"},{"init_db":"db_2"},
                    {"change_user":{"user":"15","password":"k2"}},{"prepare":"SELECT 1"},{"ping":true},
                    {"template":"VALUES ('%s')","escape":"it's","escaper":"addslashes"},
                    {"params":{"sql":"VALUES (?, ?)","values":["a","b"]}}]})
        );
        let no_db = Login::new(1, "u", "p").database(None).request();
        assert_eq!(
            serde_json::to_value(&no_db).unwrap()["database"],
            json!(null)
        );
    }

    #[test]
    fn response_parses_every_result_shape() {
        let r: Response = serde_json::from_str(
            r#"{"connect":{"ok":true,"server_version":"5.7.99-Halley"},"results":[
                {"ok":{"affected_rows":2,"insert_id":7}},
                {"rows":[["it's",null]],"columns":["a","b"]},
                {"error":{"code":1064,"message":"bad"},"escaped":"it''s"},
                {"unsupported":"no"}]}"#,
        )
        .unwrap();
        assert_eq!(r.step(0).unwrap().ok().unwrap(), (2, 7));
        assert_eq!(r.step(1).unwrap().scalar().unwrap(), Some("it's"));
        assert_eq!(r.step(1).unwrap().columns().unwrap(), ["a", "b"]);
        assert_eq!(r.step(2).unwrap().error().unwrap().code, 1064);
        assert_eq!(r.step(2).unwrap().escaped.as_deref(), Some("it''s"));
        assert_eq!(
            r.step(3).unwrap().outcome,
            Outcome::Unsupported("no".into())
        );
        assert!(r.step(4).is_err());
        assert!(r.step(0).unwrap().rows().is_err());
    }

    #[test]
    fn response_parses_a_failed_connect() {
        let r: Response = serde_json::from_str(
            r#"{"connect":{"error":{"code":16,"message":"Authentication failure"}}}"#,
        )
        .unwrap();
        assert_eq!(r.connect_error().unwrap().message, "Authentication failure");
        assert!(r.connected().is_err());
    }

    #[test]
    fn ambiguous_results_are_rejected() {
        let both = r#"{"connect":{"ok":true},"results":[{"ok":{"affected_rows":0,"insert_id":0},"error":{"code":1,"message":"x"}}]}"#;
        assert!(serde_json::from_str::<Response>(both).is_err());
        let neither = r#"{"connect":{}}"#;
        assert!(serde_json::from_str::<Response>(neither).is_err());
        let rows_without_columns = r#"{"connect":{"ok":true},"results":[{"rows":[]}]}"#;
        assert!(serde_json::from_str::<Response>(rows_without_columns).is_err());
    }
}
