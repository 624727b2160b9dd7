//! The fake follows the backend contract (docs/openapi.yaml) and its own control surface.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use mirrorsight_contract::backend::{PhotoUploadResponse, header, photo_path, photos_path};
use mirrorsight_fake_backend::{
    FAKE_DEVICE_TOKEN, FAKE_DEVICE_TOKEN_2, FakeConfig, FakeServer, Route,
};
use serde_json::Value;

const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, b'h', b'i', 0xFF, 0xD9];

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn upload(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    scene: &str,
    photo: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    upload_with(
        client,
        url,
        token,
        scene,
        photo,
        body,
        photo,
        &sha256_hex(body),
    )
}

#[allow(clippy::too_many_arguments)]
fn upload_with(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    scene: &str,
    photo: &str,
    body: &[u8],
    idempotency_key: &str,
    sha: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{url}{}", photos_path(scene)))
        .bearer_auth(token)
        .header("Content-Type", "image/jpeg")
        .header(header::IDEMPOTENCY_KEY, idempotency_key)
        .header(header::PHOTO_ID, photo)
        .header(header::SESSION_ID, "session-1")
        .header(header::TAKEN_AT, "1700000000123")
        .header(header::TRIGGER, "thumbs_up")
        .header(header::CONTENT_SHA256, sha)
        .body(body.to_vec())
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("ErrorBody JSON");
    assert!(body["message"].is_string(), "{status} {body}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn photo_upload_is_idempotent_by_photo_id() {
    let config = FakeConfig {
        max_photo_bytes: 64,
        ..FakeConfig::default()
    };
    let (url, fake) = FakeServer::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = reqwest::Client::new();

    let r = upload(&c, &url, FAKE_DEVICE_TOKEN, "sceneA", "photo1", JPEG)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let first: PhotoUploadResponse = r.json().await.unwrap();
    assert_eq!(
        first,
        PhotoUploadResponse {
            photo: "photo1".into(),
            sha256: sha256_hex(JPEG),
            bytes: JPEG.len() as u64
        }
    );

    let r = upload(&c, &url, FAKE_DEVICE_TOKEN, "sceneA", "photo1", JPEG)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "same id, same bytes");
    assert_eq!(r.json::<PhotoUploadResponse>().await.unwrap(), first);

    let other = [0xFF, 0xD8, 0xFF, 0xD9];
    let r = upload(&c, &url, FAKE_DEVICE_TOKEN, "sceneA", "photo1", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (409, "conflict".into()));

    let r = upload(&c, &url, "bogus", "sceneA", "photo2", JPEG)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (401, "unauthorized".into()));
    let r = upload(&c, &url, FAKE_DEVICE_TOKEN_2, "sceneA", "photo2", JPEG)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    let r = upload(&c, &url, FAKE_DEVICE_TOKEN, "sceneA", "big", &[0u8; 65])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()));
    let r = upload_with(
        &c,
        &url,
        FAKE_DEVICE_TOKEN,
        "sceneA",
        "photo3",
        JPEG,
        "photo3",
        &sha256_hex(b"other"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(error_code(r).await, (400, "digest_mismatch".into()));
    let r = upload_with(
        &c,
        &url,
        FAKE_DEVICE_TOKEN,
        "sceneA",
        "photo3",
        JPEG,
        "something-else",
        &sha256_hex(JPEG),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(error_code(r).await, (400, "bad_request".into()));

    let stored = fake.photo("sceneA", "photo1").unwrap();
    assert_eq!(
        (
            stored.bytes.as_slice(),
            stored.session.as_str(),
            stored.taken_at_ms,
            stored.trigger.as_str()
        ),
        (JPEG, "session-1", 1_700_000_000_123, "thumbs_up")
    );

    let del = |token: &'static str| {
        c.delete(format!("{url}{}", photo_path("sceneA", "photo1")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        error_code(del(FAKE_DEVICE_TOKEN_2).await.unwrap()).await,
        (403, "forbidden".into())
    );
    assert_eq!(del(FAKE_DEVICE_TOKEN).await.unwrap().status().as_u16(), 204);
    assert_eq!(
        error_code(del(FAKE_DEVICE_TOKEN).await.unwrap()).await,
        (404, "not_found".into())
    );
    assert!(fake.photo("sceneA", "photo1").is_none());
    assert_eq!(fake.count(Route::PhotoUpload), 8);
    assert_eq!(fake.count(Route::PhotoDelete), 3);
}

#[tokio::test]
async fn scenes_belong_to_the_device_that_minted_them() {
    let (url, fake) = FakeServer::start().await.unwrap();
    let c = reqwest::Client::new();
    let mint = |token: &'static str, body: &'static str| {
        c.post(format!("{url}/v1/scenes"))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let r = mint(FAKE_DEVICE_TOKEN, r#"{"scene":"s1","expire_seconds":60}"#)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["scene"], "s1");
    let r = mint(FAKE_DEVICE_TOKEN, r#"{"scene":"s1","expire_seconds":60}"#)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), created);
    assert_eq!(
        error_code(
            mint(FAKE_DEVICE_TOKEN_2, r#"{"scene":"s1","expire_seconds":60}"#)
                .await
                .unwrap()
        )
        .await,
        (403, "forbidden".into())
    );
    assert_eq!(
        error_code(
            mint(FAKE_DEVICE_TOKEN, r#"{"scene":"s2","expire_seconds":0}"#)
                .await
                .unwrap()
        )
        .await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_code(mint(FAKE_DEVICE_TOKEN, r#"{"scene":"s2"}"#).await.unwrap()).await,
        (400, "bad_request".into())
    );
    // A photo for a scene minted by another device is refused too.
    let r = upload(&c, &url, FAKE_DEVICE_TOKEN_2, "s1", "p", JPEG)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    assert_eq!(fake.scene("s1").unwrap().device, "mirror-1");
}

#[tokio::test]
async fn down_means_connection_refused_until_it_comes_back() {
    let (url, fake) = FakeServer::start().await.unwrap();
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{url}/nothing"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    fake.go_down().await;
    let err = c.get(format!("{url}/nothing")).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    fake.come_back().await;
    assert_eq!(
        c.get(format!("{url}/nothing"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        fake.requests().len(),
        2,
        "the refused request never arrived"
    );
}

#[tokio::test]
async fn admin_endpoints_script_faults_and_list_requests() {
    let (url, _fake) = FakeServer::start().await.unwrap();
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{url}/__fake/faults"))
        .body(r#"{"route":"qrcode_create","fault":{"errcode":45009},"times":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = c
        .post(format!("{url}/cgi-bin/qrcode/create?access_token=x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["errcode"], 45009);
    let r = c
        .post(format!("{url}/cgi-bin/qrcode/create?access_token=x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["errcode"],
        40014,
        "fault used up; unknown token"
    );
    let listed: Value = c
        .get(format!("{url}/__fake/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["route"], "qrcode_create");
    assert_eq!(listed[0]["query"], "access_token=x");
    assert_eq!(listed[0]["body"], "{}");
    let r = c
        .post(format!("{url}/__fake/faults"))
        .body(r#"{"route":"nope","fault":"html502"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn binary_listens_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorsight-fake-backend"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("announces its URL")
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let body = r#"{"grant_type":"client_credential","appid":"wxfake0123456789ab","secret":"fake-appsecret-0123456789abcdef","force_refresh":false}"#;
        let r = c.post(format!("{url}/cgi-bin/stable_token")).body(body).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        v["expires_in"].as_u64()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, Some(7200));
}

#[test]
fn blocking_variant_serves_synchronous_tests() {
    let fake = FakeServer::start_blocking().unwrap();
    assert!(fake.url().starts_with("http://127.0.0.1:"));
    fake.go_down();
    fake.come_back();
    assert_eq!(fake.count(Route::Scenes), 0);
}

/// `GET url` without following redirects.
async fn get_raw(url: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn web_sign_in_codes_work_once_for_the_signed_in_openid() {
    use mirrorsight_fake_backend::{FAKE_APPID, FAKE_APPSECRET};
    let (url, fake) = FakeServer::start().await.unwrap();
    let authorize = format!(
        "{url}/connect/oauth2/authorize?appid={FAKE_APPID}&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Foauth%2Fcallback&response_type=code&scope=snsapi_base&state=s1"
    );
    // Outside WeChat: a page, no redirect.
    let r = get_raw(&authorize).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Please open this link in WeChat")
    );
    fake.sign_in_as(Some("oShopperA"));
    let r = get_raw(&authorize).await;
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let prefix = "http://127.0.0.1:1/oauth/callback?code=";
    assert!(location.starts_with(prefix), "{location}");
    assert!(location.ends_with("&state=s1"), "{location}");
    let code = &location[prefix.len()..location.len() - "&state=s1".len()];
    let exchange = |appid: &str, secret: &str, code: &str| {
        format!(
            "{url}/sns/oauth2/access_token?appid={appid}&secret={secret}&code={code}&grant_type=authorization_code"
        )
    };
    let errcode = |v: &Value| v["errcode"].as_i64().unwrap_or(0);
    let answer: Value = get_raw(&exchange(FAKE_APPID, "wrong", code))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&answer), 40125);
    let answer: Value = get_raw(&exchange("wxother", FAKE_APPSECRET, code))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&answer), 40013);
    let answer: Value = get_raw(&exchange(FAKE_APPID, FAKE_APPSECRET, code))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["openid"], "oShopperA", "{answer}");
    assert_eq!(answer["scope"], "snsapi_base");
    let answer: Value = get_raw(&exchange(FAKE_APPID, FAKE_APPSECRET, code))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&answer), 40163, "a code works once");
    let answer: Value = get_raw(&exchange(FAKE_APPID, FAKE_APPSECRET, "unknown"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&answer), 40029);
    // A bad appid on the authorize page is WeChat's error page, not a redirect.
    let r = get_raw(&authorize.replace(FAKE_APPID, "wxnope")).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("10016"));
}

#[tokio::test]
async fn mini_program_login_codes_and_customer_service_errors() {
    use mirrorsight_fake_backend::{
        FAKE_APPID, FAKE_APPSECRET, FAKE_MP_APPID, FAKE_MP_APPSECRET, Follower,
    };
    let (url, fake) = FakeServer::start().await.unwrap();
    let c = reqwest::Client::new();
    let code = fake.mini_program_code("oMiniA");
    let login = |code: &str| {
        c.get(format!(
            "{url}/sns/jscode2session?appid={FAKE_MP_APPID}&secret={FAKE_MP_APPSECRET}&js_code={code}&grant_type=authorization_code"
        ))
        .send()
    };
    let answer: Value = login(&code).await.unwrap().json().await.unwrap();
    assert_eq!(answer["openid"], "oMiniA");
    let answer: Value = login(&code).await.unwrap().json().await.unwrap();
    assert_eq!(answer["errcode"], 40163);

    let token: Value = c
        .get(format!(
            "{url}/cgi-bin/token?grant_type=client_credential&appid={FAKE_APPID}&secret={FAKE_APPSECRET}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let send = |body: String| {
        c.post(format!(
            "{url}/cgi-bin/message/custom/send?access_token={token}"
        ))
        .body(body)
        .send()
    };
    let news = |to: &str| {
        format!(
            r#"{{"touser":"{to}","msgtype":"news","news":{{"articles":[{{"title":"t","description":"d","url":"https://hub/s/x","picurl":""}}]}}}}"#
        )
    };
    let errcode = |v: Value| v["errcode"].as_i64().unwrap_or(-99);
    assert_eq!(
        errcode(send(news("oA")).await.unwrap().json().await.unwrap()),
        0
    );
    fake.set_follower("oGone", Follower::Unsubscribed);
    fake.set_follower("oLate", Follower::WindowPassed);
    assert_eq!(
        errcode(send(news("oGone")).await.unwrap().json().await.unwrap()),
        43004
    );
    assert_eq!(
        errcode(send(news("oLate")).await.unwrap().json().await.unwrap()),
        45015
    );
    assert_eq!(
        errcode(send(news("")).await.unwrap().json().await.unwrap()),
        40003
    );
    assert_eq!(
        errcode(send("not json".into()).await.unwrap().json().await.unwrap()),
        47001
    );
    let two_articles = news("oA").replace("[{", "[{\"title\":\"x\"},{");
    assert_eq!(
        errcode(send(two_articles).await.unwrap().json().await.unwrap()),
        44002
    );
    let r = c
        .post(format!(
            "{url}/cgi-bin/message/custom/send?access_token=stale"
        ))
        .body(news("oA"))
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(r.json().await.unwrap()), 40014);
    let delivered = fake.custom_messages();
    assert_eq!(delivered.len(), 1, "only the accepted message is recorded");
    assert_eq!(delivered[0].touser, "oA");
    assert_eq!(delivered[0].articles()[0].2, "https://hub/s/x");
    // Faults reach the new routes like any other (45047 from the platform's send limit).
    fake.inject(
        Route::CustomSend,
        mirrorsight_fake_backend::Fault::Errcode(45047),
        1,
    );
    assert_eq!(
        errcode(send(news("oA")).await.unwrap().json().await.unwrap()),
        45047
    );
}

#[tokio::test]
async fn a_mirror_registers_the_scenes_it_minted_itself() {
    let (url, fake) = FakeServer::start().await.unwrap();
    let c = reqwest::Client::new();
    let put = |token: &'static str, scene: &str, body: &'static str| {
        c.put(format!("{url}/v1/scenes/{scene}"))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let body =
        r#"{"url":"http://weixin.qq.com/q/self1","ticket":"gQ+1==","expires_at":1900000000}"#;
    let r = put(FAKE_DEVICE_TOKEN, "self-1", body).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = put(FAKE_DEVICE_TOKEN, "self-1", body).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        error_code(put(FAKE_DEVICE_TOKEN_2, "self-1", body).await.unwrap()).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        error_code(
            put(FAKE_DEVICE_TOKEN, "self-2", r#"{"url":""}"#)
                .await
                .unwrap()
        )
        .await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_code(
            put(FAKE_DEVICE_TOKEN, "self-2", r#"{"url":"u","kind":"x"}"#)
                .await
                .unwrap()
        )
        .await,
        (400, "bad_request".into())
    );
    assert_eq!(
        fake.scene("self-1").unwrap().response.expires_at,
        1_900_000_000
    );
    // A permanent idle code minted through the relay never expires.
    let r = c
        .post(format!("{url}/v1/scenes"))
        .bearer_auth(FAKE_DEVICE_TOKEN)
        .body(r#"{"scene":"idle-mirror-1","expire_seconds":0,"kind":"idle"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["expires_at"], 0);
}
