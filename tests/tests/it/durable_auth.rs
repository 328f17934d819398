//! A JWT user's first login mints a users_auth hash through the storage writer (issue 17), so that a burst
//! of first logins is a group commit, not one pool write each (on SQLite, each a fight with the writer for
//! the write lock). Many first logins at once, two of them for the same user: each is authorized with the
//! hash it was given, the writer wrote them all, and the one hash stored for the doubled user logs in (the
//! later login's: a user's changes in one batch go in the order they came). Both backends.

use std::sync::atomic::Ordering;

use halley_tests::browser::{jwt, Browser};
use halley_tests::frames::json;
use halley_tests::{on_both_backends, Backend, TestServer};

const USERS: u64 = 8;
const TWICE: u64 = 200;

async fn stored_hash(server: &TestServer, dev_id: u64, user: u64) -> Option<(String, Option<i64>)> {
    let pool = server.database().await;
    let row: Option<(String, Option<i64>)> = sqlx::query_as(
        "SELECT hash, expires_at FROM users_auth WHERE dev_id = $1 AND user_id = $2",
    )
    .bind(dev_id as i64)
    .bind(user as i64)
    .fetch_optional(&pool)
    .await
    .expect("read users_auth");
    pool.close().await;
    row
}

async fn first_logins_are_written_by_the_writer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("firstlogin@example.com").await;
    let writes = || {
        server
            .ctx()
            .storage
            .writer_stats()
            .writes
            .load(Ordering::Relaxed)
    };
    let before = writes();
    let users: Vec<u64> = (1..=USERS).chain([TWICE, TWICE]).collect();
    let logins = users.iter().enumerate().map(|(i, &user)| {
        let (server, t) = (&server, &t);
        async move {
            let b =
                Browser::connect(server, t.dev_id, user, &jwt(t, user), &format!("first{i}")).await;
            assert!(b.authorized(), "user {user}: {}", b.hello);
            let hash = json(&b.hello)["data"].as_str().unwrap().to_string();
            b.close().await;
            (user, hash)
        }
    });
    let minted = futures_util::future::join_all(logins).await;
    assert!(
        writes() - before >= users.len() as u64,
        "{backend:?}: every first login went through the writer ({} writes)",
        writes() - before
    );
    for (user, hash) in &minted {
        let (stored, expires) = stored_hash(&server, t.dev_id, *user)
            .await
            .expect("a hash stored");
        assert!(expires.is_some(), "a minted hash expires with its token");
        if *user != TWICE {
            assert_eq!(&stored, hash, "user {user}");
        }
        let again = Browser::connect(&server, t.dev_id, *user, &stored, "again").await;
        assert!(again.authorized(), "user {user}: the stored hash logs in");
        again.close().await;
    }
    let (stored, _) = stored_hash(&server, t.dev_id, TWICE).await.unwrap();
    assert!(
        minted.iter().any(|(u, h)| *u == TWICE && *h == stored),
        "the doubled user's stored hash is one it was given"
    );
    server.stop().await;
}

on_both_backends!(first_logins_are_written_by_the_writer);
