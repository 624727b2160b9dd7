//! The shopper-facing calls (web sign-in, mini-program login, customer-service messages)
//! against the loopback fake, one test per WeChat error code the hub acts on.

use mirrorsight_fake_backend::{
    FAKE_APPID, FAKE_APPSECRET, FAKE_MP_APPID, FAKE_MP_APPSECRET, FakeHandle, FakeServer, Fault,
    Follower, Route,
};
use mirrorsight_wechat::client::{ERRCODE_SEND_LIMIT, ERRCODE_UNSUBSCRIBED, ERRCODE_WINDOW_PASSED};
use mirrorsight_wechat::sns::{ERRCODE_CODE_USED, ERRCODE_INVALID_CODE};
use mirrorsight_wechat::{NewsArticle, Secret, SnsClient, WechatClient, WechatConfig};

fn config(url: &str) -> WechatConfig {
    WechatConfig {
        api_base: url.to_string(),
        mp_base: url.to_string(),
        oauth_base: url.to_string(),
        appid: FAKE_APPID.to_string(),
        timeout_s: 2.0,
        busy_backoff_ms: 10,
        ..WechatConfig::default()
    }
}

async fn fake() -> (String, FakeHandle) {
    FakeServer::start().await.expect("fake server")
}

/// The code the fake's authorize page hands back for the signed-in shopper.
async fn oauth_code(sns: &SnsClient) -> String {
    let authorize = sns.authorize_url("http://127.0.0.1:9/oauth/callback", "st");
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(authorize.trim_end_matches("#wechat_redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    let query = location.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn oauth_code_gives_the_openid_once() {
    let (url, fake) = fake().await;
    fake.sign_in_as(Some("oShopper1"));
    let sns = SnsClient::new(&config(&url), Secret::new(FAKE_APPSECRET)).unwrap();
    let code = oauth_code(&sns).await;
    let identity = sns.exchange_oauth_code(&code).await.unwrap();
    assert_eq!(identity.openid, "oShopper1");
    assert_eq!(identity.scope, "snsapi_base");
    let used = sns.exchange_oauth_code(&code).await.unwrap_err();
    assert_eq!(used.errcode(), Some(ERRCODE_CODE_USED), "{used}");
    let invalid = sns.exchange_oauth_code("nonsense").await.unwrap_err();
    assert_eq!(invalid.errcode(), Some(ERRCODE_INVALID_CODE), "{invalid}");
    assert!(sns.exchange_oauth_code("has space").await.is_err());
    // 40163 and 40029 are final: one request each, no retry.
    let sent = fake
        .requests()
        .iter()
        .filter(|r| r.route == Some(Route::OauthAccessToken))
        .count();
    assert_eq!(
        sent, 3,
        "one request per exchange, nothing for a malformed code"
    );
}

#[tokio::test]
async fn oauth_busy_is_retried_and_then_succeeds() {
    let (url, fake) = fake().await;
    fake.sign_in_as(Some("oShopper2"));
    let sns = SnsClient::new(&config(&url), Secret::new(FAKE_APPSECRET)).unwrap();
    let code = oauth_code(&sns).await;
    fake.inject(Route::OauthAccessToken, Fault::Errcode(-1), 2);
    let identity = sns.exchange_oauth_code(&code).await.unwrap();
    assert_eq!(identity.openid, "oShopper2");
    // Busy forever: a bounded number of tries, then the typed -1.
    let code = oauth_code(&sns).await;
    fake.inject(Route::OauthAccessToken, Fault::Errcode(-1), 100);
    let busy = sns.exchange_oauth_code(&code).await.unwrap_err();
    assert_eq!(busy.errcode(), Some(-1), "{busy}");
}

#[tokio::test]
async fn mini_program_login_uses_its_own_app() {
    let (url, fake) = fake().await;
    let mp =
        SnsClient::for_app(&config(&url), FAKE_MP_APPID, Secret::new(FAKE_MP_APPSECRET)).unwrap();
    let code = fake.mini_program_code("oMini1");
    assert_eq!(mp.jscode2session(&code).await.unwrap().openid, "oMini1");
    assert_eq!(
        mp.jscode2session(&code).await.unwrap_err().errcode(),
        Some(ERRCODE_CODE_USED)
    );
    // The official account's secret is not the mini-program's.
    let wrong =
        SnsClient::for_app(&config(&url), FAKE_MP_APPID, Secret::new(FAKE_APPSECRET)).unwrap();
    let code = fake.mini_program_code("oMini1");
    assert_eq!(
        wrong.jscode2session(&code).await.unwrap_err().errcode(),
        Some(40125)
    );
}

fn article() -> NewsArticle {
    NewsArticle {
        title: "Your fitting photos".into(),
        description: "2 new photos".into(),
        url: "https://hub.example/s/abc?k=def".into(),
        picurl: String::new(),
    }
}

#[tokio::test]
async fn customer_service_news_and_its_error_codes() {
    let (url, fake) = fake().await;
    let client = WechatClient::new(&config(&url), Secret::new(FAKE_APPSECRET)).unwrap();
    client
        .send_custom_news("oFollower", &article())
        .await
        .unwrap();
    let delivered = fake.custom_messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].touser, "oFollower");
    assert_eq!(delivered[0].msgtype, "news");
    assert_eq!(
        delivered[0].articles()[0].2,
        "https://hub.example/s/abc?k=def"
    );

    fake.set_follower("oGone", Follower::Unsubscribed);
    let e = client
        .send_custom_news("oGone", &article())
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(ERRCODE_UNSUBSCRIBED), "{e}");
    fake.set_follower("oLate", Follower::WindowPassed);
    let e = client
        .send_custom_news("oLate", &article())
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(ERRCODE_WINDOW_PASSED), "{e}");
    fake.inject(Route::CustomSend, Fault::Errcode(ERRCODE_SEND_LIMIT), 1);
    let e = client
        .send_custom_news("oFollower", &article())
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(ERRCODE_SEND_LIMIT), "{e}");
    // -1 is retried inside the call.
    fake.inject(Route::CustomSend, Fault::Errcode(-1), 1);
    client
        .send_custom_news("oFollower", &article())
        .await
        .unwrap();
    assert!(client.send_custom_news("", &article()).await.is_err());
    assert_eq!(fake.custom_messages().len(), 2);
}
