//! End to end on loopback: the hub in front of the fake WeChat; a mirror mints a scene and
//! uploads photos over the contract; signed pushes bind scanners and get a `news` reply whose
//! gallery serves exactly those photos.

mod support {
    pub mod hub;
}

use mirrorsight_contract::backend::{
    CreateSceneResponse, ErrorBody, PhotoUploadResponse, error_code, photo_path,
};
use mirrorsight_fake_backend::{FAKE_APPID, Route};
use mirrorsight_hub::config::CallbackMode;
use mirrorsight_hub::http::unix_now;
use mirrorsight_hub::wechat::xml::parse_article;
use mirrorsight_hub::wechat::{Incoming, MessageCrypt, signature};
use mirrorsight_hub::{HubSecrets, sweep_expired};
use mirrorsight_wechat::Secret;
use reqwest::StatusCode;
use support::hub::{self, LocalHub, img_srcs, sha256_hex as sha};

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const ADMIN: &str = "admin-token-0123456789";
const MIRROR_1: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const MIRROR_2: &str = "device-token-mirror-2-yyyyyyyyyyyy";
const SCENE: &str = "kJ3x_Zq8R0aUe-1mVbN4wA";
const SESSION: &str = "kJ3x_Zq8R0aUe-1mVbN4wA";
/// The nonce of the next plaintext push: each gets its own, as WeChat's do (the hub refuses a
/// timestamp and nonce that already came with another body).
static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(486_452_656);

fn fresh_nonce() -> String {
    NONCE
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string()
}

/// The hub on SQLite, in front of the fake WeChat, with this test's requests below.
type Env = LocalHub;

async fn start() -> Env {
    let secrets = HubSecrets {
        encoding_aes_key: Some(Secret::new(AES_KEY)),
        admin_token: Some(Secret::new(ADMIN)),
        token_key: None,
        ..hub::fake_wechat_secrets(CALLBACK_TOKEN)
    };
    let devices = [
        ("mirror-1", "shop-1", MIRROR_1),
        ("mirror-2", "shop-1", MIRROR_2),
    ];
    LocalHub::start(secrets, &devices, |config| {
        config.photos.max_bytes = 64 * 1024;
        // Both kinds of push are exercised here, on purpose.
        config.callback.mode = CallbackMode::Compatible;
    })
    .await
}

fn jpeg(label: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend_from_slice(label.as_bytes());
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

impl Env {
    async fn mint(&self, token: &str, scene: &str) -> reqwest::Response {
        hub::mint_request(&self.http, &self.base, token, scene)
            .send()
            .await
            .unwrap()
    }

    /// An upload with the contract headers, as the mirror sends it.
    async fn upload(
        &self,
        token: &str,
        scene: &str,
        photo: &str,
        bytes: &[u8],
        digest: &str,
    ) -> reqwest::Response {
        let upload = hub::Upload {
            token,
            scene,
            session: SESSION,
            photo,
            digest,
        };
        upload
            .request(&self.http, &self.base, 1_767_225_600_123, bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn delete(&self, token: &str, scene: &str, photo: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{}", self.base, photo_path(scene, photo)))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A plaintext push signed with `token`, now.
    async fn push(&self, token: &str, xml: &str) -> reqwest::Response {
        hub::push(&self.http, &self.base, token, &fresh_nonce(), xml).await
    }

    /// A plaintext push signed with `token` at timestamp `ts`.
    async fn push_at(&self, token: &str, xml: &str, ts: &str) -> reqwest::Response {
        hub::push_at(&self.http, &self.base, token, ts, &fresh_nonce(), xml).await
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    fn events(&self) -> u64 {
        self.store.wechat_event_count().unwrap()
    }

    fn bindings(&self) -> usize {
        self.store.bindings(SCENE).unwrap().len()
    }
}

/// A scan push to the store's official account.
fn scan_xml(openid: &str, create_time: i64, event: &str, key: &str) -> String {
    hub::scan_xml("gh_store", openid, create_time, event, key)
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body: ErrorBody = resp.json().await.unwrap();
    (status, body.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_to_gallery_end_to_end() {
    let env = start().await;

    // --- The mirror mints a scene through the hub, which asks WeChat. ---
    let resp = env.mint(MIRROR_1, SCENE).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let minted: CreateSceneResponse = resp.json().await.unwrap();
    assert_eq!(minted.scene, SCENE);
    assert!(
        minted.url.starts_with("http://weixin.qq.com/q/"),
        "{}",
        minted.url
    );
    assert!(minted.ticket.is_some());
    let sent = env.fake.requests_to(Route::QrcodeCreate);
    assert_eq!(sent.len(), 1);
    let body = sent[0].body_json().unwrap();
    assert_eq!(body["action_name"], "QR_STR_SCENE");
    assert_eq!(body["action_info"]["scene"]["scene_str"], SCENE);
    assert_eq!(body["expire_seconds"], 3600);
    // A retry gets the stored answer and costs no second code; another mirror is refused.
    let resp = env.mint(MIRROR_1, SCENE).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<CreateSceneResponse>().await.unwrap(), minted);
    assert_eq!(env.fake.count(Route::QrcodeCreate), 1);
    assert_eq!(
        error_of(env.mint(MIRROR_2, SCENE).await).await,
        (StatusCode::FORBIDDEN, error_code::FORBIDDEN.into())
    );
    assert_eq!(
        error_of(env.mint("nope", SCENE).await).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        error_of(env.mint(MIRROR_1, "a b").await).await,
        (StatusCode::BAD_REQUEST, error_code::BAD_REQUEST.into())
    );

    // --- Two photos, with the contract's headers; retries are idempotent. ---
    let photos = [
        ("photoAAAAAAAAAAAAAAAAA", jpeg("first")),
        ("photoBBBBBBBBBBBBBBBBB", jpeg("second")),
    ];
    for (id, bytes) in &photos {
        let resp = env.upload(MIRROR_1, SCENE, id, bytes, &sha(bytes)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let first: PhotoUploadResponse = resp.json().await.unwrap();
        assert_eq!(
            (first.photo.as_str(), first.bytes),
            (*id, bytes.len() as u64)
        );
        assert_eq!(first.sha256, sha(bytes));
        let resp = env.upload(MIRROR_1, SCENE, id, bytes, &sha(bytes)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.json::<PhotoUploadResponse>().await.unwrap(), first);
    }
    let (id0, bytes0) = (&photos[0].0, &photos[0].1);
    let other = jpeg("different");
    assert_eq!(
        error_of(env.upload(MIRROR_1, SCENE, id0, &other, &sha(&other)).await).await,
        (StatusCode::CONFLICT, error_code::CONFLICT.into())
    );
    assert_eq!(
        error_of(
            env.upload(
                MIRROR_1,
                SCENE,
                "photoCCCCCCCCCCCCCCCCC",
                &other,
                &sha(bytes0)
            )
            .await
        )
        .await,
        (StatusCode::BAD_REQUEST, error_code::DIGEST_MISMATCH.into())
    );
    let huge = vec![0u8; 64 * 1024 + 1];
    assert_eq!(
        error_of(
            env.upload(
                MIRROR_1,
                SCENE,
                "photoDDDDDDDDDDDDDDDDD",
                &huge,
                &sha(&huge)
            )
            .await
        )
        .await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::PAYLOAD_TOO_LARGE.into()
        )
    );
    // Another device can neither upload to nor delete from this scene.
    assert_eq!(
        error_of(
            env.upload(
                MIRROR_2,
                SCENE,
                "photoEEEEEEEEEEEEEEEEE",
                &other,
                &sha(&other)
            )
            .await
        )
        .await,
        (StatusCode::FORBIDDEN, error_code::FORBIDDEN.into())
    );
    assert_eq!(
        error_of(env.delete(MIRROR_2, SCENE, id0).await).await,
        (StatusCode::FORBIDDEN, error_code::FORBIDDEN.into())
    );
    assert_eq!(
        error_of(env.upload("wrong", SCENE, id0, bytes0, &sha(bytes0)).await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(env.store.photos_of_scene(SCENE).unwrap().len(), 2);

    // --- A wrong signature is refused and records nothing. ---
    let subscribe = scan_xml(
        "oShopperA",
        1_767_225_700,
        "subscribe",
        &format!("qrscene_{SCENE}"),
    );
    let resp = env.push("not-the-token", &subscribe).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let unsigned = env
        .http
        .post(format!("{}/wechat", env.base))
        .body(subscribe.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    assert_eq!((env.events(), env.bindings()), (0, 0));

    // --- A new follower scans: bound, and answered with the gallery. ---
    let resp = env.push(CALLBACK_TOKEN, &subscribe).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reply = resp.text().await.unwrap();
    let parsed = Incoming::parse(&reply).unwrap();
    assert_eq!(parsed.msg_type(), "news");
    assert_eq!(
        (parsed.to_user(), parsed.from_user()),
        ("oShopperA", "gh_store")
    );
    assert_eq!(parsed.field("ArticleCount"), "1");
    let article = parse_article(&reply).unwrap().expect("one article");
    assert!(
        article
            .url
            .starts_with(&format!("{}/s/{SCENE}?k=", env.base)),
        "{}",
        article.url
    );
    assert!(
        article
            .pic_url
            .contains(&format!("/s/{SCENE}/photos/{id0}.jpg?k=")),
        "{}",
        article.pic_url
    );
    assert!(!article.title.is_empty() && !article.description.is_empty());
    assert_eq!((env.events(), env.bindings()), (1, 1));
    let bound = env.store.bindings(SCENE).unwrap();
    assert_eq!(
        (bound[0].openid.as_str(), bound[0].event.as_str()),
        ("oShopperA", "subscribe")
    );

    // The same push again (WeChat's retry) is answered identically and changes nothing.
    let again = env
        .push(CALLBACK_TOKEN, &subscribe)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(again, reply);
    assert_eq!((env.events(), env.bindings()), (1, 1));

    // --- The gallery lists exactly this session's photos, byte-identical. ---
    let page = env.get(&article.url).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Your fitting photos") && html.contains("你的试衣照片"));
    let srcs = img_srcs(&html);
    assert_eq!(srcs.len(), 2, "{html}");
    for ((id, bytes), src) in photos.iter().zip(&srcs) {
        assert!(src.contains(&format!("/photos/{id}.jpg?k=")), "{src}");
        let resp = env.get(src).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "image/jpeg");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
    // Knowing the scene is not enough.
    let wrong_key = article.url.replace("?k=", "?k=x");
    assert_eq!(env.get(&wrong_key).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        env.get(&format!("{}/s/{SCENE}", env.base)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get(&srcs[0].replace("?k=", "?k=x")).await.status(),
        StatusCode::NOT_FOUND
    );

    // --- An already-following shopper scans (SCAN, bare scene). ---
    let scan = scan_xml("oShopperB", 1_767_225_800, "SCAN", SCENE);
    let reply_b = env.push(CALLBACK_TOKEN, &scan).await.text().await.unwrap();
    assert_eq!(
        parse_article(&reply_b).unwrap().map(|a| a.url),
        Some(article.url.clone())
    );
    assert_eq!((env.events(), env.bindings()), (2, 2));

    // --- Safe mode: encrypted push, encrypted reply. ---
    let crypt = MessageCrypt::new(AES_KEY, FAKE_APPID).unwrap();
    let inner = scan_xml("oShopperC", 1_767_225_900, "SCAN", SCENE);
    let encrypted = crypt.encrypt(&inner).unwrap();
    let envelope = format!(
        "<xml><ToUserName><![CDATA[gh_store]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    let ts = unix_now().to_string();
    let (ts, nonce) = (ts.as_str(), "1234567");
    let signed = hub::signed_query(CALLBACK_TOKEN, ts, nonce);
    let safe_url = |msg_sig: &str| {
        format!(
            "{}/wechat?{signed}&encrypt_type=aes&msg_signature={msg_sig}",
            env.base
        )
    };
    let bad = env
        .http
        .post(safe_url(&signature(&[CALLBACK_TOKEN, ts, nonce, "forged"])))
        .body(envelope.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
    assert_eq!(env.events(), 2);
    let msg_sig = signature(&[CALLBACK_TOKEN, ts, nonce, &encrypted]);
    let resp = env
        .http
        .post(safe_url(&msg_sig))
        .body(envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let outer = Incoming::parse(&resp.text().await.unwrap()).unwrap();
    let reply_enc = outer.field("Encrypt");
    assert_eq!(
        outer.field("MsgSignature"),
        signature(&[
            CALLBACK_TOKEN,
            outer.field("TimeStamp"),
            outer.field("Nonce"),
            reply_enc
        ])
    );
    let decrypted = crypt.decrypt(reply_enc).unwrap();
    assert_eq!(Incoming::parse(&decrypted).unwrap().to_user(), "oShopperC");
    assert_eq!(
        parse_article(&decrypted).unwrap().map(|a| a.url),
        Some(article.url.clone())
    );
    assert_eq!((env.events(), env.bindings()), (3, 3));

    // --- Other pushes: unknown scene gets a short text; anything else `success`. ---
    let unknown = env
        .push(
            CALLBACK_TOKEN,
            &scan_xml("oShopperD", 1, "SCAN", "no-such-scene"),
        )
        .await
        .text()
        .await
        .unwrap();
    let unknown = Incoming::parse(&unknown).unwrap();
    assert_eq!(unknown.msg_type(), "text");
    assert!(!unknown.field("Content").is_empty());
    let text = "<xml><ToUserName>gh_store</ToUserName><FromUserName>oShopperA</FromUserName><CreateTime>5</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>";
    assert_eq!(
        env.push(CALLBACK_TOKEN, text).await.text().await.unwrap(),
        "success"
    );
    let follow = scan_xml("oShopperE", 6, "subscribe", "");
    assert_eq!(
        env.push(CALLBACK_TOKEN, &follow)
            .await
            .text()
            .await
            .unwrap(),
        "success"
    );
    let dtd = format!("<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{subscribe}");
    assert_eq!(
        env.push(CALLBACK_TOKEN, &dtd).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Correctly signed, but an hour old: a captured push replayed later is refused.
    let events_before = env.store.wechat_event_count().unwrap();
    let hour_ago = (unix_now() - 3600).to_string();
    assert_eq!(
        env.push_at(
            CALLBACK_TOKEN,
            &scan_xml("o-replayed", 1_767_225_990, "SCAN", SCENE),
            &hour_ago
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(env.store.wechat_event_count().unwrap(), events_before);
    let oversized = format!("<xml><A>{}</A></xml>", "x".repeat(70 * 1024));
    assert_eq!(
        env.push(CALLBACK_TOKEN, &oversized).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(env.bindings(), 3);

    // --- URL handshake. ---
    let now = unix_now().to_string();
    let nonce = fresh_nonce();
    let hs = |token: &str| {
        let signed = hub::signed_query(token, &now, &nonce);
        format!("{}/wechat?{signed}&echostr=echo+%E4%BD%A0123", env.base)
    };
    let ok = env.get(&hs(CALLBACK_TOKEN)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "echo 你123");
    assert_eq!(env.get(&hs("wrong")).await.status(), StatusCode::FORBIDDEN);

    // --- Statistics. ---
    let stats_url = format!("{}/v1/stats", env.base);
    assert_eq!(env.get(&stats_url).await.status(), StatusCode::UNAUTHORIZED);
    let wrong_admin = env
        .http
        .get(&stats_url)
        .bearer_auth(MIRROR_1)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_admin.status(), StatusCode::UNAUTHORIZED);
    let stats: serde_json::Value = env
        .http
        .get(&stats_url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = stats["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{stats}");
    let row = &rows[0];
    assert_eq!(
        (row["store"].as_str(), row["mirror"].as_str()),
        (Some("shop-1"), Some("mirror-1"))
    );
    for (field, want) in [
        ("sessions", 1),
        ("codes_minted", 1),
        ("scans", 3),
        ("new_followers", 1),
        ("already_following", 2),
        ("photos_delivered", 2),
        ("galleries_opened", 1),
    ] {
        assert_eq!(row[field].as_u64(), Some(want), "{field}: {stats}");
    }
    let metrics = env
        .http
        .get(format!("{}/metrics", env.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mirrorsight_hub_activity_total{kind=\"scan_new_follower\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mirrorsight_hub_photos_stored 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mirrorsight_hub_callback_rejected_signature_total 5"),
        "{metrics}"
    );
    assert_eq!(
        env.get(&format!("{}/healthz", env.base)).await.status(),
        StatusCode::OK
    );

    // --- The shopper asks the mirror to delete a photo. ---
    let (id1, _) = &photos[1];
    assert_eq!(
        env.delete(MIRROR_1, SCENE, id1).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        error_of(env.delete(MIRROR_1, SCENE, id1).await).await,
        (StatusCode::NOT_FOUND, error_code::NOT_FOUND.into())
    );
    let html = env.get(&article.url).await.text().await.unwrap();
    assert_eq!(img_srcs(&html).len(), 1);
    assert_eq!(env.get(&srcs[1]).await.status(), StatusCode::NOT_FOUND);

    // --- Retention: after the sweep the gallery says the photos expired. ---
    let later = mirrorsight_hub::http::unix_now() + 8 * 86_400;
    let report = sweep_expired(env.store.as_ref(), env.blobs.as_ref(), 7, later).unwrap();
    assert_eq!(report.expired, 1);
    let html = env.get(&article.url).await.text().await.unwrap();
    assert!(
        img_srcs(&html).is_empty() && html.contains("id=\"expired\""),
        "{html}"
    );
    assert_eq!(env.get(&srcs[0]).await.status(), StatusCode::GONE);
    let late = env
        .push(CALLBACK_TOKEN, &scan_xml("oShopperF", 7, "SCAN", SCENE))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(Incoming::parse(&late).unwrap().msg_type(), "text");
    assert_eq!(env.bindings(), 3, "an expired scene binds nobody");
}
