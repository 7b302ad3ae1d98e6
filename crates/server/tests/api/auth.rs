//! Every jobboard call needs a valid bearer token; the feed needs a role that sees everything.

use std::time::Duration;

use chrono::Utc;
use jobboard::auth::{Claims, Role, TokenKeys};
use jobboard_proto::v1::ReadAllRequest;
use tonic::Code;

use crate::support::{TestApp, caller};

async fn read_all_with(app: &TestApp, token: Option<String>) -> tonic::Status {
    app.feed(token.clone())
        .read_all(ReadAllRequest::default())
        .await
        .expect_err("the call is refused")
}

fn assert_unauthenticated(status: &tonic::Status, reason: &str, token: Option<&str>) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(reason),
        "message {:?} should say {reason:?}",
        status.message()
    );
    if let Some(token) = token {
        assert!(!status.message().contains(token), "the token is not echoed");
    }
}

#[tokio::test]
async fn calls_without_a_token_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let status = read_all_with(&app, None).await;
    assert_unauthenticated(&status, "missing", None);
}

#[tokio::test]
async fn malformed_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let token = "not.a.jwt-at-all".to_owned();
    let status = read_all_with(&app, Some(token.clone())).await;
    assert_unauthenticated(&status, "malformed", Some(&token));
}

#[tokio::test]
async fn tokens_signed_with_another_key_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let other = TokenKeys::from_secret(&[42u8; 32], app.keys.issuer());
    let token = other
        .issue(&caller(Role::Ops), Duration::from_secs(600))
        .unwrap();
    let status = read_all_with(&app, Some(token.clone())).await;
    assert_unauthenticated(&status, "signature", Some(&token));
}

#[tokio::test]
async fn expired_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
    let claims = Claims::new(
        &caller(Role::Ops),
        app.keys.issuer(),
        two_hours_ago,
        Duration::from_secs(3600),
    );
    let token = app.keys.sign(&claims).unwrap();
    let status = read_all_with(&app, Some(token.clone())).await;
    assert_unauthenticated(&status, "expired", Some(&token));
}

#[tokio::test]
async fn tokens_without_an_organisation_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let mut claims = Claims::new(
        &caller(Role::Ops),
        app.keys.issuer(),
        Utc::now(),
        Duration::from_secs(600),
    );
    claims.org = None;
    let token = app.keys.sign(&claims).unwrap();
    let status = read_all_with(&app, Some(token.clone())).await;
    assert_unauthenticated(&status, "token has no organisation", Some(&token));
}

#[tokio::test]
async fn employers_and_agencies_may_not_read_the_feed() {
    let app = TestApp::spawn().await;
    for role in [Role::Employer, Role::Agency] {
        let status = read_all_with(&app, Some(app.token(role))).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{role}: {status:?}");
    }
}

#[tokio::test]
async fn roles_that_see_everything_may_read_the_feed() {
    let app = TestApp::spawn().await;
    for role in [Role::Service, Role::Auditor, Role::Ops, Role::Operator] {
        app.feed(Some(app.token(role)))
            .read_all(ReadAllRequest::default())
            .await
            .unwrap_or_else(|status| panic!("{role}: {status:?}"));
    }
}
