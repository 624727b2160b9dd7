//! The WeChat client, the relay client and the minter against the loopback fake.

use std::time::{Duration, Instant};

use mirrorsight_fake_backend::{
    FAKE_APPID, FAKE_APPSECRET, FAKE_DEVICE_TOKEN, FakeHandle, FakeServer, Fault, Route,
};
use mirrorsight_wechat::config::{BackendConfig, QrKind, Settings, TokenEndpoint, WechatConfig};
use mirrorsight_wechat::{
    ActionName, EnvVersion, Error, Minter, QrCodeRequest, RelayClient, Secret, Secrets,
    WechatClient, WxaCodeRequest,
};

fn wechat_config(url: &str) -> WechatConfig {
    WechatConfig {
        api_base: url.to_string(),
        mp_base: url.to_string(),
        appid: FAKE_APPID.to_string(),
        timeout_s: 2.0,
        busy_backoff_ms: 10,
        ..WechatConfig::default()
    }
}

fn client(url: &str) -> WechatClient {
    WechatClient::new(&wechat_config(url), Secret::new(FAKE_APPSECRET)).expect("client")
}

async fn fake() -> (String, FakeHandle) {
    FakeServer::start().await.expect("fake server")
}

fn str_request(scene: &str) -> QrCodeRequest {
    QrCodeRequest::from_scene(ActionName::QrStrScene, scene, Some(3600)).expect("valid request")
}

#[tokio::test]
async fn exact_request_bodies_for_each_action_name() {
    let (url, fake) = fake().await;
    let c = client(&url);
    let cases = [
        (
            ActionName::QrStrScene,
            "kJ3x_Zq8R0aUe-1mVbN4wA",
            Some(3600),
            r#"{"expire_seconds":3600,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"kJ3x_Zq8R0aUe-1mVbN4wA"}}}"#,
        ),
        (
            ActionName::QrScene,
            "123456",
            Some(600),
            r#"{"expire_seconds":600,"action_name":"QR_SCENE","action_info":{"scene":{"scene_id":123456}}}"#,
        ),
        (
            ActionName::QrLimitScene,
            "42",
            None,
            r#"{"action_name":"QR_LIMIT_SCENE","action_info":{"scene":{"scene_id":42}}}"#,
        ),
        (
            ActionName::QrLimitStrScene,
            "shelf-7",
            None,
            r#"{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"shelf-7"}}}"#,
        ),
    ];
    for (action, scene, expire, expected) in cases {
        let req = QrCodeRequest::from_scene(action, scene, expire).unwrap();
        let ticket = c.create_qrcode(&req).await.unwrap();
        assert!(ticket.url.starts_with("http://weixin.qq.com/q/"));
        assert_eq!(
            ticket.expire_seconds, expire,
            "{action:?}: permanent codes have no expire_seconds"
        );
        let sent = fake.requests_to(Route::QrcodeCreate).pop().unwrap();
        assert_eq!(sent.body_str(), expected, "{action:?}");
        assert_eq!(sent.header("content-type"), Some("application/json"));
    }
    // The token request, exactly, and once for all four calls.
    let token_requests = fake.requests_to(Route::StableToken);
    assert_eq!(token_requests.len(), 1);
    assert_eq!(
        token_requests[0].body_str(),
        format!(
            r#"{{"grant_type":"client_credential","appid":"{FAKE_APPID}","secret":"{FAKE_APPSECRET}","force_refresh":false}}"#
        )
    );
    let token = c.access_token().await.unwrap();
    for r in fake.requests_to(Route::QrcodeCreate) {
        assert_eq!(
            r.query_param("access_token").as_deref(),
            Some(token.expose())
        );
    }
}

#[tokio::test]
async fn token_fetched_once_for_50_concurrent_mints() {
    let (url, fake) = fake().await;
    // A slow token answer makes sure all 50 really wait on the same fetch.
    fake.inject(
        Route::StableToken,
        Fault::Delay(Duration::from_millis(300)),
        1,
    );
    let c = client(&url);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        set.spawn(async move { c.create_qrcode(&str_request(&format!("scene-{i}"))).await });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 50);
    assert_eq!(fake.count(Route::StableToken), 1);
    assert_eq!(fake.count(Route::QrcodeCreate), 50);
    assert_eq!(c.tokens().fetches_started(), 1);
}

#[tokio::test]
async fn each_token_error_leads_to_one_refresh_and_one_retry() {
    for code in [40001, 40014, 42001] {
        let (url, fake) = fake().await;
        let c = client(&url);
        let first = c.access_token().await.unwrap();
        fake.inject(Route::QrcodeCreate, Fault::Errcode(code), 1);
        c.create_qrcode(&str_request("s"))
            .await
            .unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(
            fake.count(Route::StableToken),
            2,
            "{code}: exactly one refresh"
        );
        let creates = fake.requests_to(Route::QrcodeCreate);
        assert_eq!(creates.len(), 2, "{code}: exactly one retry");
        assert_eq!(
            creates[0].query_param("access_token").as_deref(),
            Some(first.expose())
        );
        assert_ne!(
            creates[1].query_param("access_token").as_deref(),
            Some(first.expose()),
            "{code}: retried with the new token"
        );
    }
}

#[tokio::test]
async fn a_persistent_token_error_is_retried_once_only() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::QrcodeCreate, Fault::Errcode(40001), 100);
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(40001), "{err}");
    assert_eq!(fake.count(Route::QrcodeCreate), 2);
    assert_eq!(fake.count(Route::StableToken), 2);
}

#[tokio::test]
async fn invalidation_spares_a_newer_token() {
    let (url, fake) = fake().await;
    let c = client(&url);
    let a = c.access_token().await.unwrap();
    fake.expire_tokens();
    // One caller learns A is dead and refreshes to B...
    fake.inject(Route::QrcodeCreate, Fault::Errcode(42001), 1);
    c.create_qrcode(&str_request("s1")).await.unwrap();
    let b = c.access_token().await.unwrap();
    assert_ne!(a, b);
    // ...a straggler reporting A must not throw B away.
    assert!(!c.tokens().invalidate(&a));
    assert_eq!(c.access_token().await.unwrap(), b);
    assert_eq!(fake.count(Route::StableToken), 2);
}

#[tokio::test]
async fn busy_twice_then_success() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::QrcodeCreate, Fault::Errcode(-1), 2);
    let ticket = c.create_qrcode(&str_request("s")).await.unwrap();
    assert!(!ticket.ticket.is_empty());
    assert_eq!(fake.count(Route::QrcodeCreate), 3);
    assert_eq!(
        fake.count(Route::StableToken),
        1,
        "-1 is not a token problem"
    );
}

#[tokio::test]
async fn busy_forever_gives_up_after_bounded_retries() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::QrcodeCreate, Fault::Errcode(-1), 1000);
    let started = Instant::now();
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(-1));
    assert_eq!(
        fake.count(Route::QrcodeCreate),
        4,
        "1 try + busy_retries (3)"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn busy_token_endpoint_is_retried_too() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::StableToken, Fault::Errcode(-1), 2);
    c.create_qrcode(&str_request("s")).await.unwrap();
    assert_eq!(fake.count(Route::StableToken), 3);
    assert_eq!(fake.count(Route::QrcodeCreate), 1);
}

#[tokio::test]
async fn quota_errors_are_typed_and_not_retried() {
    for code in [45009, 45011] {
        let (url, fake) = fake().await;
        let c = client(&url);
        fake.inject(Route::QrcodeCreate, Fault::Errcode(code), 5);
        let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
        assert!(
            matches!(&err, Error::Quota { code: c, endpoint: "cgi-bin/qrcode/create", .. } if *c == code),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("injected fault"),
            "carries errmsg: {err}"
        );
        assert_eq!(fake.count(Route::QrcodeCreate), 1);
    }
}

#[tokio::test]
async fn other_errcodes_are_typed_with_code_and_message() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::QrcodeCreate, Fault::Errcode(48001), 1);
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Api { code: 48001, message, .. } if message.contains("injected fault")),
        "{err:?}"
    );
    assert_eq!(fake.count(Route::QrcodeCreate), 1);
}

#[tokio::test]
async fn html_502_is_a_clear_error() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::QrcodeCreate, Fault::Html502, 1);
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::HttpStatus {
                status: 502,
                endpoint: "cgi-bin/qrcode/create",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("cgi-bin/qrcode/create: HTTP 502: Bad Gateway (text/html): <html>"),
        "{text}"
    );
    assert_eq!(fake.count(Route::QrcodeCreate), 1);
}

#[tokio::test]
async fn malformed_json_is_a_clear_error() {
    let (url, fake) = fake().await;
    let c = client(&url);
    fake.inject(Route::QrcodeCreate, Fault::MalformedJson, 1);
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MalformedResponse {
                status: 200,
                endpoint: "cgi-bin/qrcode/create",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid JSON"), "{err}");

    // The token endpoint too.
    let (url, fake) = fake_server_with(Route::StableToken, Fault::MalformedJson).await;
    let err = client(&url).access_token().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MalformedResponse {
                endpoint: "cgi-bin/stable_token",
                ..
            }
        ),
        "{err:?}"
    );
    drop(fake);
}

async fn fake_server_with(route: Route, fault: Fault) -> (String, FakeHandle) {
    let (url, fake) = fake().await;
    fake.inject(route, fault, 1);
    (url, fake)
}

#[tokio::test]
async fn a_slow_answer_times_out_within_the_configured_timeout() {
    let (url, fake) = fake().await;
    let cfg = WechatConfig {
        timeout_s: 0.3,
        ..wechat_config(&url)
    };
    let c = WechatClient::new(&cfg, Secret::new(FAKE_APPSECRET)).unwrap();
    c.access_token().await.unwrap();
    fake.inject(Route::QrcodeCreate, Fault::Delay(Duration::from_secs(5)), 1);
    let started = Instant::now();
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            Error::Timeout {
                endpoint: "cgi-bin/qrcode/create",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_millis(800),
        "{elapsed:?}"
    );
    assert_eq!(
        fake.count(Route::QrcodeCreate),
        1,
        "a timeout is not retried"
    );

    // The token fetch has the same fence.
    let (url, fake) =
        fake_server_with(Route::StableToken, Fault::Delay(Duration::from_secs(5))).await;
    let c = WechatClient::new(
        &WechatConfig {
            timeout_s: 0.3,
            ..wechat_config(&url)
        },
        Secret::new(FAKE_APPSECRET),
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(
        c.access_token().await.unwrap_err(),
        Error::Timeout {
            endpoint: "cgi-bin/stable_token",
            ..
        }
    ));
    assert!(started.elapsed() < Duration::from_millis(800));
    drop(fake);
}

#[tokio::test]
async fn plain_token_endpoint_is_selectable() {
    let (url, fake) = fake().await;
    let cfg = WechatConfig {
        token_endpoint: TokenEndpoint::Token,
        ..wechat_config(&url)
    };
    let c = WechatClient::new(&cfg, Secret::new(FAKE_APPSECRET)).unwrap();
    c.create_qrcode(&str_request("s")).await.unwrap();
    assert_eq!(fake.count(Route::StableToken), 0);
    let reqs = fake.requests_to(Route::Token);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(
        reqs[0].query.as_deref(),
        Some(
            format!("grant_type=client_credential&appid={FAKE_APPID}&secret={FAKE_APPSECRET}")
                .as_str()
        )
    );
}

#[tokio::test]
async fn a_bad_appsecret_is_typed_not_retried_and_cools_down() {
    let (url, fake) = fake().await;
    let c = WechatClient::new(&wechat_config(&url), Secret::new("wrong-secret")).unwrap();
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Api {
                code: 40125,
                endpoint: "cgi-bin/stable_token",
                ..
            }
        ),
        "{err:?}"
    );
    // Right after, callers fail fast instead of hammering the token endpoint.
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(
        matches!(&err, Error::TokenCoolingDown { last, .. } if last.errcode() == Some(40125)),
        "{err:?}"
    );
    assert_eq!(fake.count(Route::StableToken), 1);
    assert_eq!(fake.count(Route::QrcodeCreate), 0);
    assert!(!err.to_string().contains("wrong-secret"));
}

#[tokio::test]
async fn showqrcode_url_encodes_the_ticket_and_404_is_typed() {
    let (url, fake) = fake().await;
    let c = client(&url);
    let ticket = c.create_qrcode(&str_request("s")).await.unwrap().ticket;
    assert!(
        ticket.contains('+') && ticket.contains('/') && ticket.contains('='),
        "the fake's tickets need escaping"
    );
    let image = c.show_qrcode(&ticket).await.unwrap();
    assert_eq!(&image[..3], &[0xFF, 0xD8, 0xFF]);
    let sent = fake.requests_to(Route::Showqrcode).pop().unwrap();
    let raw = sent.query.clone().unwrap();
    assert!(
        raw.contains("%2B") && raw.contains("%2F") && raw.contains("%3D") && !raw.contains('+'),
        "{raw}"
    );
    assert_eq!(sent.query_param("ticket"), Some(ticket));
    assert_eq!(
        c.show_qrcode("gQHunknown==").await.unwrap_err(),
        Error::TicketNotFound
    );
}

#[tokio::test]
async fn mini_program_image_versus_json_error_by_content_type() {
    let (url, fake) = fake().await;
    let c = client(&url);
    let req = WxaCodeRequest::new(
        "kJ3x_Zq8R0aUe-1mVbN4wA",
        Some("pages/photo/index"),
        430,
        EnvVersion::Release,
        true,
    )
    .unwrap();
    let code = c.get_wxacode_unlimit(&req).await.unwrap();
    assert_eq!(code.content_type, "image/png");
    assert_eq!(&code.image[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        fake.requests_to(Route::WxacodeUnlimit)[0].body_str(),
        r#"{"scene":"kJ3x_Zq8R0aUe-1mVbN4wA","page":"pages/photo/index","check_path":true,"env_version":"release","width":430,"auto_color":false,"line_color":{"r":0,"g":0,"b":0},"is_hyaline":false}"#
    );
    fake.inject(Route::WxacodeUnlimit, Fault::Errcode(41030), 1);
    let err = c.get_wxacode_unlimit(&req).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Api {
                code: 41030,
                endpoint: "wxa/getwxacodeunlimit",
                ..
            }
        ),
        "{err:?}"
    );
    fake.inject(Route::WxacodeUnlimit, Fault::Errcode(45009), 1);
    assert!(matches!(
        c.get_wxacode_unlimit(&req).await.unwrap_err(),
        Error::Quota { code: 45009, .. }
    ));
    // Token errors and -1 go through the same retry rules as qrcode/create.
    fake.inject(Route::WxacodeUnlimit, Fault::Errcode(40001), 1);
    fake.inject(Route::WxacodeUnlimit, Fault::Errcode(-1), 1);
    c.get_wxacode_unlimit(&req).await.unwrap();
    fake.inject(Route::WxacodeUnlimit, Fault::Html502, 1);
    assert!(matches!(
        c.get_wxacode_unlimit(&req).await.unwrap_err(),
        Error::HttpStatus { status: 502, .. }
    ));
}

#[tokio::test]
async fn limits_are_checked_before_anything_is_sent() {
    let (url, fake) = fake().await;
    let settings = Settings {
        qr: mirrorsight_wechat::QrConfig {
            kind: QrKind::OfficialAccount,
            ..Default::default()
        },
        wechat: wechat_config(&url),
        ..Default::default()
    };
    let secrets = Secrets {
        appsecret: Some(Secret::new(FAKE_APPSECRET)),
        device_token: None,
    };
    let minter = Minter::from_settings(&settings, &secrets).unwrap();
    let err = minter.mint(&"x".repeat(65)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "scene_str",
                ..
            }
        ),
        "{err:?}"
    );
    let mut mp_settings = settings.clone();
    mp_settings.qr.kind = QrKind::MiniProgram;
    let mp = Minter::from_settings(&mp_settings, &secrets).unwrap();
    let err = mp.mint("50%off").await.unwrap_err();
    assert!(
        matches!(err, Error::Invalid { field: "scene", .. }),
        "{err:?}"
    );
    let err = mp.mint(&"a".repeat(33)).await.unwrap_err();
    assert!(
        matches!(err, Error::Invalid { field: "scene", .. }),
        "{err:?}"
    );
    let relay = RelayClient::new(
        &BackendConfig {
            url: Some(url.clone()),
            ..Default::default()
        },
        Secret::new(FAKE_DEVICE_TOKEN),
    )
    .unwrap();
    assert!(matches!(
        relay.create_scene("s", 0).await.unwrap_err(),
        Error::Invalid {
            field: "expire_seconds",
            ..
        }
    ));
    assert!(matches!(
        relay.create_scene("", 60).await.unwrap_err(),
        Error::Invalid { field: "scene", .. }
    ));
    assert!(
        fake.requests().is_empty(),
        "nothing left the process: {:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn minter_kinds_produce_minted_codes() {
    let (url, fake) = fake().await;
    let secrets = Secrets {
        appsecret: Some(Secret::new(FAKE_APPSECRET)),
        device_token: Some(Secret::new(FAKE_DEVICE_TOKEN)),
    };
    let mut settings = Settings {
        wechat: wechat_config(&url),
        ..Default::default()
    };
    settings.backend.url = Some(url.clone());

    let code = Minter::from_settings(&settings, &secrets)
        .unwrap()
        .mint("sess1")
        .await
        .unwrap();
    assert_eq!(code.url.as_deref(), Some("https://mirror.example/s/sess1"));
    assert_eq!(
        (code.ticket, code.expires_at, code.expire_seconds),
        (None, None, None)
    );

    settings.qr.kind = QrKind::OfficialAccount;
    settings.qr.fetch_image = true;
    let before = mirrorsight_wechat_now();
    let code = Minter::from_settings(&settings, &secrets)
        .unwrap()
        .mint("sess2")
        .await
        .unwrap();
    assert_eq!(code.scene, "sess2");
    assert!(
        code.url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://weixin.qq.com/q/"))
    );
    assert!(code.ticket.is_some() && code.image.is_some());
    assert_eq!(code.expire_seconds, Some(3600));
    let at = code.expires_at.unwrap();
    assert!(at >= before + 3600 && at <= before + 3602);

    settings.qr.action_name = ActionName::QrScene;
    let minter = Minter::from_settings(&settings, &secrets).unwrap();
    let scene = minter.scene_for_id("kJ3x_Zq8R0aUe-1mVbN4wA");
    let code = minter.mint(&scene).await.unwrap();
    assert_eq!(code.scene, scene);
    let body = fake
        .requests_to(Route::QrcodeCreate)
        .pop()
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(
        body["action_info"]["scene"]["scene_id"]
            .as_u64()
            .map(|n| n.to_string()),
        Some(scene)
    );

    settings.qr.kind = QrKind::MiniProgram;
    let code = Minter::from_settings(&settings, &secrets)
        .unwrap()
        .mint("sess3")
        .await
        .unwrap();
    assert!(code.url.is_none() && code.image.is_some() && code.expires_at.is_none());
}

fn mirrorsight_wechat_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn relay_mint_with_the_device_token() {
    let (url, fake) = fake().await;
    let backend = BackendConfig {
        url: Some(url.clone()),
        timeout_s: 2.0,
        ..Default::default()
    };
    let minter = Minter::relay(
        RelayClient::new(&backend, Secret::new(FAKE_DEVICE_TOKEN)).unwrap(),
        3600,
    );
    let before = mirrorsight_wechat_now();
    let code = minter.mint("kJ3x_Zq8R0aUe-1mVbN4wA").await.unwrap();
    assert_eq!(code.scene, "kJ3x_Zq8R0aUe-1mVbN4wA");
    assert!(
        code.url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://weixin.qq.com/q/"))
    );
    assert!(code.ticket.is_some());
    assert!(
        code.expires_at
            .is_some_and(|t| t >= before + 3600 && t <= before + 3602)
    );
    assert_eq!(code.expire_seconds, Some(3600));
    let sent = fake.requests_to(Route::Scenes);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {FAKE_DEVICE_TOKEN}").as_str())
    );
    assert_eq!(
        sent[0].body_str(),
        r#"{"scene":"kJ3x_Zq8R0aUe-1mVbN4wA","expire_seconds":3600}"#
    );
    assert_eq!(
        fake.scene("kJ3x_Zq8R0aUe-1mVbN4wA").map(|s| s.device),
        Some("mirror-1".to_string())
    );

    // A retried request for the same scene gets the same code back.
    assert_eq!(minter.mint("kJ3x_Zq8R0aUe-1mVbN4wA").await.unwrap(), code);

    let stranger = RelayClient::new(&backend, Secret::new("not-a-device")).unwrap();
    let err = stranger.create_scene("other", 60).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { status: 401, code, .. } if code == "unauthorized"),
        "{err:?}"
    );
    assert!(!format!("{err:?}{err}").contains("not-a-device"));

    fake.inject(Route::Scenes, Fault::Status(503), 1);
    let err = minter.mint("s2").await.unwrap_err();
    assert!(
        matches!(err, Error::Backend { status: 503, retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.is_transient());
    fake.inject(Route::Scenes, Fault::Html502, 1);
    assert!(matches!(
        minter.mint("s2").await.unwrap_err(),
        Error::HttpStatus {
            status: 502,
            endpoint: "POST /v1/scenes",
            ..
        }
    ));
    fake.inject(Route::Scenes, Fault::Delay(Duration::from_secs(5)), 1);
    let quick = RelayClient::new(
        &BackendConfig {
            timeout_s: 0.2,
            ..backend.clone()
        },
        Secret::new(FAKE_DEVICE_TOKEN),
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(
        quick.create_scene("s3", 60).await.unwrap_err(),
        Error::Timeout { .. }
    ));
    assert!(started.elapsed() < Duration::from_millis(700));
}

#[tokio::test]
async fn secrets_never_show_in_errors_or_debug_output() {
    let (url, fake) = fake().await;
    let secret = "s3cr3t-appsecret-value-XYZ";
    let device = "d3v1c3-token-value-XYZ";
    // A refused connection on cgi-bin/token, whose URL carries the secret.
    fake.go_down().await;
    let cfg = WechatConfig {
        token_endpoint: TokenEndpoint::Token,
        ..wechat_config(&url)
    };
    let c = WechatClient::new(&cfg, Secret::new(secret)).unwrap();
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let relay = RelayClient::new(
        &BackendConfig {
            url: Some(url.clone()),
            ..Default::default()
        },
        Secret::new(device),
    )
    .unwrap();
    let relay_err = relay.create_scene("s", 60).await.unwrap_err();
    fake.come_back().await;

    let settings = Settings {
        wechat: cfg.clone(),
        ..Default::default()
    };
    let secrets = Secrets {
        appsecret: Some(Secret::new(secret)),
        device_token: Some(Secret::new(device)),
    };
    let minter = Minter::from_settings(
        &Settings {
            qr: mirrorsight_wechat::QrConfig {
                kind: QrKind::OfficialAccount,
                ..Default::default()
            },
            ..settings.clone()
        },
        &secrets,
    )
    .unwrap();
    let everything = format!(
        "{err:?} {err} {relay_err:?} {relay_err} {c:?} {relay:?} {settings:?} {secrets:?} {minter:?} {:?}",
        Secret::new(secret)
    );
    assert!(
        everything.contains("connect") || everything.contains("refused"),
        "{everything}"
    );
    assert!(
        !everything.contains(secret),
        "appsecret leaked: {everything}"
    );
    assert!(
        !everything.contains(device),
        "device token leaked: {everything}"
    );

    // An access token is a credential too: not in errors of calls that carried it.
    let c = client(&url);
    let token = c.access_token().await.unwrap();
    fake.inject(Route::QrcodeCreate, Fault::Html502, 1);
    let err = c.create_qrcode(&str_request("s")).await.unwrap_err();
    assert!(!format!("{err:?}{err}{c:?}").contains(token.expose()));
}
