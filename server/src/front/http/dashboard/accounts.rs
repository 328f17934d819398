//! Sign up, log in, log out, who am I, change password.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::session::{session_token, Claims, Owner, SecureCookie};
use super::Api;
use crate::config::Signup;
use crate::tenant::account::normalize_email;
use crate::tenant::Account;

#[derive(Deserialize)]
pub(super) struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub(super) struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// What the page needs to know about the logged-in owner (answer of signup, login and /me).
fn me_body(api: &Api, account: &Account, claims: &Claims) -> serde_json::Value {
    json!({
        "dev_id": account.dev_id.0,
        "email": account.email,
        "app_key": account.app_key,
        "created_at": account.created_at,
        "csrf_token": claims.csrf,
        "session_expires_at": claims.exp,
        "cometql_port": api.0.cometql_addr.port(),
    })
}

fn with_cookie(status: StatusCode, cookie: HeaderValue, body: serde_json::Value) -> Response {
    (status, [(header::SET_COOKIE, cookie)], Json(body)).into_response()
}

const SIGNUP_CLOSED: &str =
    "Sign-up is closed on this server: accounts are created by its operator \
                             (halley tenant create). Log in if you have one.";

fn signup_open(api: &Api) -> bool {
    api.ctx().config.dashboard.signup == Signup::Open
}

/// Whether the page should offer the sign-up form (`[dashboard] signup`).
pub(super) async fn sign_up_status(State(api): State<Api>) -> Json<serde_json::Value> {
    Json(if signup_open(&api) {
        json!({"signup": "open"})
    } else {
        json!({"signup": "closed", "message": SIGNUP_CLOSED})
    })
}

pub(super) async fn sign_up(
    State(api): State<Api>,
    secure: SecureCookie,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    // Before the throttle and argon2: a closed door costs nothing and counts against nobody.
    if !signup_open(&api) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "signup_closed",
            SIGNUP_CLOSED,
        ));
    }
    api.0.throttle.sign_up_attempt(peer.ip())?;
    let (account, _first_key) = api.ctx().tenants.sign_up(&c.email, &c.password).await?;
    tracing::info!(dev_id = %account.dev_id, "new tenant signed up");
    let (claims, cookie) = api.sessions().issue(&account, secure)?;
    Ok(with_cookie(
        StatusCode::CREATED,
        cookie,
        me_body(&api, &account, &claims),
    ))
}

pub(super) async fn log_in(
    State(api): State<Api>,
    secure: SecureCookie,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    api.0
        .throttle
        .login_attempt(peer.ip(), &normalize_email(&c.email))?;
    let account = api
        .ctx()
        .tenants
        .check_password(&c.email, &c.password)
        .await?;
    let (claims, cookie) = api.sessions().issue(&account, secure)?;
    Ok(with_cookie(
        StatusCode::OK,
        cookie,
        me_body(&api, &account, &claims),
    ))
}

/// Always succeeds, logged in or not: the browser forgets the cookie, and a valid session is recorded as
/// ended so that a copy of the cookie is refused from now on.
pub(super) async fn log_out(
    State(api): State<Api>,
    secure: SecureCookie,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(claims) = session_token(&headers).and_then(|t| api.sessions().decode(t).ok()) {
        api.ctx()
            .tenants
            .end_session(&claims.sid, claims.exp)
            .await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, api.sessions().clear(secure))],
    )
        .into_response())
}

pub(super) async fn me(State(api): State<Api>, owner: Owner) -> Json<serde_json::Value> {
    Json(me_body(&api, &owner.account, &owner.claims))
}

/// Every other session of the account ends (they carry the old password's stamp); this one is renewed.
pub(super) async fn change_password(
    State(api): State<Api>,
    secure: SecureCookie,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    owner: Owner,
    JsonBody(p): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    api.0.throttle.password_attempt(peer.ip(), owner.dev_id)?;
    let account = api
        .ctx()
        .tenants
        .change_password(owner.dev_id, &p.current_password, &p.new_password)
        .await
        .map_err(|e| match e {
            crate::tenant::AccountError::BadCredentials => ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_password",
                "The current password is wrong.",
            ),
            other => other.into(),
        })?;
    let (claims, cookie) = api.sessions().issue(&account, secure)?;
    Ok(with_cookie(
        StatusCode::OK,
        cookie,
        me_body(&api, &account, &claims),
    ))
}
