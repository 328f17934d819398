//! Runs a client program with a hard time limit, keeping its stderr for the error message.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// More than any response a test produces (a few 60 KiB values), small enough to bound a runaway.
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

fn read_all<R: AsyncRead + Unpin + Send + 'static>(
    reader: Option<R>,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(r) = reader {
            // A read error only truncates what we show; the exit status tells what happened.
            let _ = r.take(MAX_OUTPUT).read_to_end(&mut buf).await;
        }
        buf
    })
}

/// Spawns `cmd`, writes `input` to its stdin (then closes it), and waits at most `timeout`.
/// On timeout the process is killed and the error includes what it wrote to stderr so far.
pub async fn run(mut cmd: Command, input: &[u8], timeout: Duration) -> anyhow::Result<Finished> {
    let shown = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let mut stdin = child.stdin.take();
    let input = input.to_vec();
    let work = async {
        if let Some(mut s) = stdin.take() {
            // A driver that exits early closes the pipe: its exit status and stderr explain why.
            let _ = s.write_all(&input).await;
            let _ = s.shutdown().await;
        }
        child.wait().await
    };
    let waited = tokio::time::timeout(timeout, work).await;
    match waited {
        Ok(status) => {
            let status = status.with_context(|| format!("waiting for {shown}"))?;
            let stdout = stdout.await.unwrap_or_default();
            let stderr = stderr.await.unwrap_or_default();
            Ok(Finished {
                status,
                stdout,
                stderr,
            })
        }
        Err(_) => {
            let _ = child.kill().await;
            let stderr = tokio::time::timeout(Duration::from_secs(2), stderr)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Err(anyhow!(
                "{shown} did not finish within {timeout:?} and was killed; stderr: {}",
                String::from_utf8_lossy(&stderr)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_stdin_and_collects_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let done = run(cmd, b"hello", Duration::from_secs(10)).await.unwrap();
        assert_eq!(done.stdout, b"hello");
        assert_eq!(done.stderr, b"oops\n");
        assert_eq!(done.status.code(), Some(3));
    }

    #[tokio::test]
    async fn kills_on_timeout_and_reports_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started >&2; exec sleep 30"]);
        let started = tokio::time::Instant::now();
        let err = run(cmd, b"", Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.contains("was killed"), "{err}");
        assert!(err.contains("started"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error() {
        let cmd = Command::new("/nonexistent/halley-client");
        assert!(run(cmd, b"", Duration::from_secs(1)).await.is_err());
    }
}
