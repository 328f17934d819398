//! Bounded waiting: every wait in the tests goes through one of these, so that a missing event fails
//! with a message instead of hanging CI (a socket's close included).

use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The bound of every single wait in the integration tests (or less).
pub const WAIT: Duration = Duration::from_secs(10);

/// Pause between two polls of [`eventually`]: short enough to keep tests fast, long enough not to spin.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Runs `fut`, turning a hang longer than `timeout` into an error that names the caller's location.
#[track_caller]
pub fn within<F: Future>(
    timeout: Duration,
    fut: F,
) -> impl Future<Output = anyhow::Result<F::Output>> {
    // Captured here because `#[track_caller]` does not reach into the async body.
    let caller = Location::caller();
    async move {
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("timed out after {timeout:?} (waiting at {caller})"))
    }
}

/// Polls `f` until it returns `Ok`, for at most `timeout`; each attempt is itself bounded by the time
/// left. On timeout the error carries the last attempt's error, which usually says what was missing.
#[track_caller]
pub fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> impl Future<Output = anyhow::Result<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let caller = Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let last = match tokio::time::timeout(left, f()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(_) => anyhow!("the attempt itself did not finish"),
            };
            if tokio::time::Instant::now() + POLL_INTERVAL >= deadline {
                return Err(last.context(format!(
                    "condition not met within {timeout:?} after {attempts} attempts (waiting at {caller})"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Reads until the peer closes: the bytes received; an error if it is still open after `limit`.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> anyhow::Result<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => bail!("still open after {limit:?} ({} bytes received)", got.len()),
            Ok(Err(_)) | Ok(Ok(0)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn within_passes_the_value_through() {
        let v = within(Duration::from_secs(1), async { 7 }).await.unwrap();
        assert_eq!(v, 7);
    }

    #[tokio::test]
    async fn within_names_the_caller_on_timeout() {
        let err = within(Duration::from_millis(20), std::future::pending::<()>())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out after 20ms"), "{err}");
        assert!(err.contains("wait.rs"), "{err}");
    }

    #[tokio::test]
    async fn eventually_retries_until_ok() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let v = eventually(Duration::from_secs(2), move || {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 {
                    anyhow::bail!("only {n}")
                }
                Ok(n)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn eventually_reports_the_last_error() {
        let err = eventually(Duration::from_millis(100), || async {
            Err::<(), _>(anyhow!("pipe still empty"))
        })
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("pipe still empty"), "{text}");
        assert!(text.contains("not met within 100ms"), "{text}");
    }

    #[tokio::test]
    async fn eventually_bounds_a_hanging_attempt() {
        let started = tokio::time::Instant::now();
        let err = eventually(
            Duration::from_millis(100),
            std::future::pending::<anyhow::Result<()>>,
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(format!("{err:#}").contains("did not finish"));
    }
}
