//! Browser users' JWT login (issue 3; docs/compatibility.md §4): HS256 only, key = a tenant secret key followed by
//! the decimal dev_id, numeric `exp` in the future, numeric `user_id` equal to the URL's, not revoked. And the
//! revoked_tokens table: revoking a valid token closes that user's connections.

use halley::ids::DevId;
use halley_tests::browser::{hs256, unix_now, Browser};
use halley_tests::cometql::{assert_err, columns, ok, rows, strs, Cql};
use halley_tests::deploy::{Deployment, Target};
use halley_tests::frames::{json, pin, server_info};
use halley_tests::on_every_target;
use halley_tests::wait::WAIT;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn token(alg: Algorithm, secret: &str, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The same claims with `{"alg":"none"}` and no signature.
fn alg_none(claims: &Value) -> String {
    const HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let signed = hs256("whatever", claims.clone());
    let payload = signed.split('.').nth(1).unwrap();
    format!("{HEADER}.{payload}.")
}

fn later() -> i64 {
    unix_now() + 3600
}

async fn jwt_login(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("jwt@example.com").await;
    let other = d.tenant("jwt-other@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let secret = format!("{}{}", t.key, t.dev_id);
    let claims = json!({"user_id": 5, "exp": later()});

    // Valid: authorized, and a hash is generated and stored for the user (serverInfo data).
    let valid = hs256(&secret, claims.clone());
    let b = Browser::connect(d.ws(0), t.dev_id, 5, &valid, "valid").await;
    let hello = json(&b.hello);
    assert_eq!(hello["authorized"], true, "{}", b.hello);
    let hash = hello["data"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 32, "{hash}");
    assert_eq!(pin(&b.hello), server_info(true, &hash));
    let stored = rows(&cql.one("SELECT hash FROM users_auth WHERE id = 5").await);
    assert_eq!(stored, [[hash.clone()]]);
    // The same token again: the stored hash is returned, not a new one; the hash logs in too.
    let again = Browser::connect(d.ws(1), t.dev_id, 5, &valid, "again").await;
    assert_eq!(pin(&again.hello), server_info(true, &hash));
    let by_hash = Browser::connect(d.ws(2), t.dev_id, 5, &hash, "byhash").await;
    assert!(by_hash.authorized());
    // A user with a hash already gets that hash back.
    ok(&cql
        .one("INSERT INTO users_auth (id, hash) VALUES (7, 'preset7')")
        .await);
    let seven = hs256(&secret, json!({"user_id": 7, "exp": later()}));
    let b7 = Browser::connect(d.ws(3), t.dev_id, 7, &seven, "seven").await;
    assert_eq!(pin(&b7.hello), server_info(true, "preset7"));
    // Any active key of the tenant signs (rotation without downtime).
    let second_key = d
        .cql()
        .ctx()
        .tenants
        .add_key(DevId(t.dev_id), "second")
        .await
        .unwrap();
    let rotated = hs256(
        &format!("{second_key}{}", t.dev_id),
        json!({"user_id": 8, "exp": later()}),
    );
    let b8 = Browser::connect(d.ws(4), t.dev_id, 8, &rotated, "rotated").await;
    assert!(b8.authorized(), "{}", b8.hello);

    let refused = [
        (
            "expired",
            hs256(&secret, json!({"user_id": 5, "exp": unix_now() - 10})),
        ),
        ("missing exp", hs256(&secret, json!({"user_id": 5}))),
        (
            "string exp",
            hs256(&secret, json!({"user_id": 5, "exp": later().to_string()})),
        ),
        (
            "wrong user",
            hs256(&secret, json!({"user_id": 6, "exp": later()})),
        ),
        (
            "string user_id",
            hs256(&secret, json!({"user_id": "5", "exp": later()})),
        ),
        ("missing user_id", hs256(&secret, json!({"exp": later()}))),
        (
            "wrong key",
            hs256(&format!("not-the-key{}", t.dev_id), claims.clone()),
        ),
        ("key without dev_id", hs256(&t.key, claims.clone())),
        (
            "another tenant's key",
            hs256(&format!("{}{}", other.key, other.dev_id), claims.clone()),
        ),
        ("alg none", alg_none(&claims)),
        ("HS512", token(Algorithm::HS512, &secret, claims.clone())),
        ("HS384", token(Algorithm::HS384, &secret, claims.clone())),
    ];
    for (what, key) in &refused {
        let b = Browser::connect(d.ws(5), t.dev_id, 5, key, "refused").await;
        assert_eq!(pin(&b.hello), server_info(false, ""), "{what}");
        b.close().await;
    }
    // A valid token of this tenant does not log in on another tenant.
    let cross = Browser::connect(d.ws(6), other.dev_id, 5, &valid, "cross").await;
    assert_eq!(pin(&cross.hello), server_info(false, ""));

    // Revoked: refused from then on.
    let revoked = hs256(&secret, json!({"user_id": 5, "exp": later() + 1}));
    let before = Browser::connect(d.ws(7), t.dev_id, 5, &revoked, "before").await;
    assert!(before.authorized());
    ok(&cql
        .one(format!(
            "INSERT INTO revoked_tokens (token) VALUES ('{revoked}')"
        ))
        .await);
    let after = Browser::connect(d.ws(8), t.dev_id, 5, &revoked, "after").await;
    assert_eq!(pin(&after.hello), server_info(false, ""), "revoked");

    for b in [b7, b8, cross, after] {
        b.close().await;
    }
    drop((b, again, by_hash, before));
    d.stop().await;
}

async fn revoked_tokens(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("revoke@example.com").await;
    let other = d.tenant("revoke-other@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let secret = format!("{}{}", t.key, t.dev_id);
    let t1 = hs256(&secret, json!({"user_id": 5, "exp": later()}));
    ok(&cql
        .one("INSERT INTO users_auth (id, hash) VALUES (6, 'h6')")
        .await);
    let mut tab1 = Browser::connect(d.ws(0), t.dev_id, 5, &t1, "tab1").await;
    let mut tab2 = Browser::connect(d.ws(1), t.dev_id, 5, &t1, "tab2").await;
    let mut six = Browser::connect(d.ws(2), t.dev_id, 6, "h6", "six").await;
    assert!(tab1.authorized() && tab2.authorized() && six.authorized());

    let r = cql
        .run([
            format!("INSERT INTO revoked_tokens (token) VALUES ('{t1}')"),
            "SELECT * FROM users_auth WHERE id = 5".into(),
            // Anything may be listed; only a valid token of the tenant affects a user.
            "INSERT INTO revoked_tokens VALUES ('not-a-jwt')".into(),
            "INSERT INTO revoked_tokens (token) VALUES ('')".into(),
            "INSERT INTO revoked_tokens (token) VALUES ('x', 'y')".into(),
            "SELECT * FROM revoked_tokens".into(),
            "SELECT token FROM revoked_tokens WHERE token = 'not-a-jwt'".into(),
            format!("SELECT * FROM revoked_tokens WHERE token IN ('{t1}', 'unknown')"),
            "DELETE FROM revoked_tokens".into(),
        ])
        .await;
    assert_eq!(ok(&r[0]), (1, 1), "the reference answers OK(1, 1)");
    assert!(rows(&r[1]).is_empty(), "the user's hash is removed");
    assert_eq!(ok(&r[2]), (1, 1));
    assert_err(&r[3], 12, "Error in token");
    assert_err(&r[4], 14, "Error in columns list");
    assert_eq!(columns(&r[5]), ["token"]);
    let mut all = rows(&r[5]);
    all.sort();
    let mut want = vec![vec!["not-a-jwt".to_string()], vec![t1.clone()]];
    want.sort();
    assert_eq!(
        all, want,
        "SELECT without WHERE lists every revoked token of the tenant"
    );
    assert_eq!(strs(&rows(&r[6])), [["not-a-jwt"]]);
    assert_eq!(rows(&r[7]), [[t1.clone()]]);
    assert_err(
        &r[8],
        13,
        "Deleting without transferring the requested values of the primary key is not supported",
    );

    // Every connection of the revoked user is closed; other users stay.
    for b in [&mut tab1, &mut tab2] {
        assert_eq!(
            b.ws.expect_closed(WAIT).await.unwrap(),
            Some((1008, "closed by the server".to_string()))
        );
    }
    six.expect_nothing().await;
    let refused = Browser::connect(d.ws(3), t.dev_id, 5, &t1, "refused").await;
    assert!(!refused.authorized());
    // Another tenant sees none of these.
    let theirs = Cql::new(d.cql(), &other)
        .one("SELECT * FROM revoked_tokens")
        .await;
    assert!(rows(&theirs).is_empty());

    // Un-revoking lets the token log in again (with a new hash).
    let r = cql
        .run([
            format!("DELETE FROM revoked_tokens WHERE token = '{t1}'"),
            "SELECT * FROM revoked_tokens".into(),
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 0));
    assert_eq!(strs(&rows(&r[1])), [["not-a-jwt"]]);
    let back = Browser::connect(d.ws(4), t.dev_id, 5, &t1, "back").await;
    assert!(back.authorized(), "{}", back.hello);
    for b in [six, refused, back] {
        b.close().await;
    }
    d.stop().await;
}

on_every_target!(jwt_login, revoked_tokens);
