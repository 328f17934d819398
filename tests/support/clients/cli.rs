//! The `mariadb` command-line client, run the way users run it from scripts.

use std::time::Duration;

use tokio::process::Command;

use super::process;
use super::protocol::Login;

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit code (None when killed by a signal), stdout and stderr of one `mariadb` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// `(code, message)` from the `ERROR 16 (HY000): Authentication failure` line (also the
    /// `ERROR 1064 (42000) at line 1: ...` form printed for a failing statement).
    pub fn error(&self) -> Option<(u16, String)> {
        self.stderr.lines().find_map(parse_error_line)
    }

    /// Batch-mode rows (`-B -N`): one per line, tab-separated. Values stay as the CLI printed them
    /// (`\t`, `\n`, `\\` escaped and NULL as `NULL`, unless `-r` was given).
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

fn parse_error_line(line: &str) -> Option<(u16, String)> {
    let rest = line.strip_prefix("ERROR ")?;
    let (code, rest) = rest.split_once(' ')?;
    let code = code.parse().ok()?;
    let (_, message) = rest.split_once(": ")?;
    Some((code, message.to_owned()))
}

/// The arguments users pass: `--skip-ssl -h HOST -P PORT -u USER --password=PASS [-D DB] -N -B -e SQL`.
/// `--password=` rather than `-p`: a bare `-p` (empty password) prompts on the terminal. With TLS, `--ssl`
/// (and `--ssl-ca=CA --ssl-verify-server-cert` when a CA is given) instead of `--skip-ssl`.
pub fn query_args(login: &Login, sql: &str) -> Vec<String> {
    let mut args = match &login.tls {
        None => vec!["--skip-ssl".to_owned()],
        Some(tls) => {
            // TCP even for `-h localhost`, which the CLI would otherwise take as the Unix socket.
            let mut a = vec!["--protocol=TCP".to_owned(), "--ssl".to_owned()];
            match &tls.ca {
                Some(ca) => a.extend([
                    format!("--ssl-ca={ca}"),
                    "--ssl-verify-server-cert".to_owned(),
                ]),
                // MariaDB 11.4+ verifies by default; unverified must be asked for.
                None => a.push("--disable-ssl-verify-server-cert".to_owned()),
            }
            a
        }
    };
    args.extend([
        "--connect-timeout=10".to_owned(),
        "-h".to_owned(),
        login.host.clone(),
        "-P".to_owned(),
        login.port.to_string(),
        "-u".to_owned(),
        login.user.clone(),
        format!("--password={}", login.password),
    ]);
    if let Some(db) = &login.database {
        args.push("-D".to_owned());
        args.push(db.clone());
    }
    args.extend([
        "-N".to_owned(),
        "-B".to_owned(),
        "-e".to_owned(),
        sql.to_owned(),
    ]);
    args
}

/// Runs `mariadb` with exactly `args` (no stdin, 30 s limit, killed after that).
pub async fn mariadb<S: AsRef<str>>(args: &[S]) -> anyhow::Result<CliOutput> {
    let mut cmd =
        Command::new(std::env::var("HALLEY_TEST_MARIADB_CLI").unwrap_or("mariadb".into()));
    cmd.args(args.iter().map(AsRef::as_ref));
    let done = process::run(cmd, b"", CLI_TIMEOUT).await?;
    Ok(CliOutput {
        status: done.status.code(),
        stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
    })
}

/// `mariadb ... -N -B -e SQL` as [`query_args`] builds it.
pub async fn mariadb_query(login: &Login, sql: &str) -> anyhow::Result<CliOutput> {
    mariadb(&query_args(login, sql)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_login_and_statement_errors() {
        assert_eq!(
            parse_error_line("ERROR 16 (HY000): Authentication failure"),
            Some((16, "Authentication failure".into()))
        );
        assert_eq!(
            parse_error_line("ERROR 1064 (42000) at line 1: You have an error: near 'x'"),
            Some((1064, "You have an error: near 'x'".into()))
        );
        assert_eq!(parse_error_line("Warning: something"), None);
        assert_eq!(parse_error_line("ERROR x (HY000): y"), None);
        let out = CliOutput {
            status: Some(1),
            stdout: String::new(),
            stderr: "--------------\nbogus\n--------------\n\nERROR 2 (HY000) at line 1: no\n"
                .into(),
        };
        assert_eq!(out.error(), Some((2, "no".into())));
    }

    #[test]
    fn splits_batch_rows() {
        let out = CliOutput {
            status: Some(0),
            stdout: "a\tb\nc\tNULL\n".into(),
            stderr: String::new(),
        };
        assert_eq!(out.rows(), vec![vec!["a", "b"], vec!["c", "NULL"]]);
    }

    #[test]
    fn builds_the_documented_command_line() {
        let login = Login::new(3300, "15", "");
        assert_eq!(
            query_args(&login, "SHOW TABLES").join(" "),
            "--skip-ssl --connect-timeout=10 -h 127.0.0.1 -P 3300 -u 15 --password= -D CometQL_v1 -N -B -e SHOW TABLES"
        );
        let no_db = query_args(&login.database(None), "x");
        assert!(!no_db.contains(&"-D".to_owned()));
    }
}
