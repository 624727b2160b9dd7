//! The shopper's side of the hub over HTTP, in front of the fake WeChat: web sign-in through
//! the fake's authorize page, `/me` across mirrors and stores, "keep these in my photos",
//! deleting a photo, "forget me", and every sign-in error WeChat can answer.
//!
//! The browser here is reqwest with redirects off and a cookie jar kept by hand, so each hop
//! (and each cookie attribute) is asserted. The same journey in headless Chromium, with two
//! mirrors replaying real footage, is the workspace's `tests/shopper_e2e.rs`.
//!
//! `docs/screens/me.png` (the hub README's) is made by the ignored test at the end, from
//! frames of `assets/demo.mp4` (needs Chromium, `ffmpeg` and ImageMagick's `convert`):
//!
//! ```sh
//! cargo test --release -p mirrorsight-hub --test shopper -- --ignored docs_screenshot
//! ```

mod support {
    pub mod chromium;
    pub mod hub;
    pub mod shopper;
}

use mirrorsight_fake_backend::{FAKE_APPID, Fault, Route};
use mirrorsight_hub::store::BlobStore;
use reqwest::StatusCode;
use support::hub::{self, LocalHub, tags};
use support::shopper::{Browser, location, rows_mentioning, urlencode};

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const MIRROR_1: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const MIRROR_2: &str = "device-token-mirror-2-xxxxxxxxxxxx";

/// `/me` → WeChat's authorize page → `/oauth/callback` → `/me`, signed in as `openid`.
async fn sign_in(hub: &LocalHub, browser: &mut Browser, openid: &str) -> String {
    hub.fake.sign_in_as(Some(openid));
    let r = browser.get(&format!("{}/me", hub.base)).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let authorize = location(&r);
    let r = browser.get(&authorize).await;
    assert_eq!(r.status(), StatusCode::FOUND, "the fake's authorize page");
    let callback = location(&r);
    assert!(callback.starts_with(&format!("{}/oauth/callback?code=", hub.base)));
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
    assert_eq!(location(&r), "/me");
    let r = browser.get(&format!("{}/me", hub.base)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// A JPEG-ish payload unique to `n`.
fn jpeg(n: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend(std::iter::repeat_n(n, 2000 + usize::from(n)));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

/// A fresh nonce per push, as WeChat's: the hub refuses a timestamp and nonce it has seen
/// with another body.
fn nonce() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "n{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

async fn scan(hub: &LocalHub, openid: &str, scene: &str, create_time: i64) -> String {
    let xml = hub::scan_xml("gh_fake", openid, create_time, "SCAN", scene);
    let r = hub::push(&hub.http, &hub.base, CALLBACK_TOKEN, &nonce(), &xml).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

async fn start() -> LocalHub {
    LocalHub::start(
        hub::fake_wechat_secrets(CALLBACK_TOKEN),
        &[
            ("mirror-1", "shop-a", MIRROR_1),
            ("mirror-2", "shop-b", MIRROR_2),
        ],
        |_| {},
    )
    .await
}

/// The photo URLs `/me` shows, fetched.
async fn me_photos(hub: &LocalHub, html: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for url in hub::photo_urls(html, &hub.base) {
        let r = hub.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        out.push(r.bytes().await.unwrap().to_vec());
    }
    out
}

#[tokio::test]
async fn me_signs_in_through_wechat_and_shows_every_bound_session() {
    let hub = start().await;
    // The hub's sign-in goes to the fake's authorize page.
    let (p1, p2, p3) = (jpeg(1), jpeg(2), jpeg(3));
    hub::upload_photo(&hub, MIRROR_1, "sceneA1", "photoA1", &p1).await;
    hub::upload_photo(&hub, MIRROR_1, "sceneA2", "photoA2", &p2).await;
    hub::upload_photo(&hub, MIRROR_2, "sceneB1", "photoB1", &p3).await;
    let now = mirrorsight_hub::http::unix_now();
    for (i, scene) in ["sceneA1", "sceneA2", "sceneB1"].iter().enumerate() {
        scan(&hub, "oAlice", scene, now + i as i64).await;
    }

    let mut browser = Browser::new();
    let r = browser.get(&format!("{}/me", hub.base)).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let authorize = location(&r);
    let redirect = format!("{}/oauth/callback", hub.base);
    let expected_prefix = format!(
        "{}/connect/oauth2/authorize?appid={FAKE_APPID}&redirect_uri={}&response_type=code&scope=snsapi_base&state=",
        hub.fake_url,
        urlencode(&redirect)
    );
    assert!(
        authorize.starts_with(&expected_prefix),
        "{authorize}\n{expected_prefix}"
    );
    assert!(authorize.ends_with("#wechat_redirect"), "{authorize}");
    let oauth_cookie = browser
        .set_cookies
        .iter()
        .find(|c| c.starts_with("ms_oauth="))
        .expect("the state cookie");
    assert!(oauth_cookie.contains("HttpOnly") && oauth_cookie.contains("SameSite=Lax"));

    let html = sign_in(&hub, &mut browser, "oAlice").await;
    let signin = browser
        .set_cookies
        .iter()
        .find(|c| c.starts_with("ms_signin=") && !c.contains("Max-Age=0"))
        .expect("the sign-in cookie");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=2592000",
        "Path=/",
    ] {
        assert!(signin.contains(attribute), "{attribute} missing: {signin}");
    }
    // All three sessions, newest first, byte for byte, across both mirrors and shops.
    let sections: Vec<String> = tags(&html, "section")
        .into_iter()
        .map(|a| a["data-scene"].clone())
        .collect();
    assert_eq!(sections.len(), 3, "{html}");
    let mut shown = me_photos(&hub, &html).await;
    shown.sort();
    let mut want = vec![p1.clone(), p2.clone(), p3.clone()];
    want.sort();
    assert_eq!(shown, want);
    assert!(html.contains("shop-a") && html.contains("shop-b"));
    assert!(html.contains("我的照片") && html.contains("My photos"));

    // Another shopper sees none of them.
    let mut bob = Browser::new();
    let html = sign_in(&hub, &mut bob, "oBob").await;
    assert!(html.contains("id=\"empty\""), "{html}");
    assert!(hub::img_srcs(&html).is_empty());

    // A forged or tampered cookie is a sign-in, not a page.
    let mut mallory = Browser::new();
    let alice_cookie = browser.cookies["ms_signin"].clone();
    mallory.cookies.insert(
        "ms_signin".into(),
        alice_cookie.replacen("oAlice", "oAlicf", 1),
    );
    let r = mallory.get(&format!("{}/me", hub.base)).await;
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn sign_in_errors_are_friendly_pages() {
    let hub = start().await;
    let mut browser = Browser::new();
    hub.fake.sign_in_as(Some("oCarol"));
    // A callback this browser never started: refused.
    let r = browser
        .get(&format!("{}/oauth/callback?code=x&state=abc", hub.base))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("signin-failed"));

    // Start one, but come back with another state: refused.
    let r = browser.get(&format!("{}/me", hub.base)).await;
    let r = browser.get(&location(&r)).await;
    let callback = location(&r);
    let wrong_state = format!("{}X", callback);
    let r = browser.get(&wrong_state).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // 40029: an unknown code.
    let state = callback.rsplit_once("state=").unwrap().1.to_string();
    let r = browser
        .get(&format!(
            "{}/oauth/callback?code=bogus&state={state}",
            hub.base
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(text.contains("5 minutes"), "{text}");

    // The real code works once; reloading the callback with it again is 40163.
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = browser.get(&format!("{}/me", hub.base)).await;
    assert_eq!(r.status(), StatusCode::OK, "signed in");
    let mut again = Browser::new();
    let r = again.get(&format!("{}/me", hub.base)).await;
    let fresh_state = location(&r)
        .split("state=")
        .nth(1)
        .unwrap()
        .split('#')
        .next()
        .unwrap()
        .to_string();
    let used_code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let r = again
        .get(&format!(
            "{}/oauth/callback?code={used_code}&state={fresh_state}",
            hub.base
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("already used"));

    // -1: WeChat busy through every retry.
    let r = again.get(&format!("{}/me", hub.base)).await;
    let r = again.get(&location(&r)).await;
    let callback = location(&r);
    hub.fake
        .inject(Route::OauthAccessToken, Fault::Errcode(-1), 100);
    let r = again.get(&callback).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("WeChat is busy"));
    assert!(!again.cookies.contains_key("ms_signin"));
}

#[tokio::test]
async fn keep_delete_and_forget() {
    let hub = start().await;
    let (p1, p2, p3) = (jpeg(11), jpeg(12), jpeg(13));
    hub::upload_photo(&hub, MIRROR_1, "sceneK1", "photoK1", &p1).await;
    hub::upload_photo(&hub, MIRROR_1, "sceneK1", "photoK2", &p2).await;
    hub::upload_photo(&hub, MIRROR_2, "sceneK2", "photoK3", &p3).await;
    let now = mirrorsight_hub::http::unix_now();
    let reply = scan(&hub, "oDora", "sceneK1", now).await;
    // Someone else scanned the same session: their rows must survive Dora's "forget me".
    scan(&hub, "oEve", "sceneK1", now).await;
    let gallery = hub::news_article(&reply).url;

    // "Keep these in my photos" from a gallery the shopper opened without a scan.
    let record = hub.store.scene("sceneK2").unwrap().unwrap();
    let mut browser = Browser::new();
    let html = browser
        .get(&format!("{}/s/sceneK2?k={}", hub.base, record.gallery_key))
        .await
        .text()
        .await
        .unwrap();
    let keep = tags(&html, "form")
        .into_iter()
        .find(|f| f["action"].ends_with("/keep"))
        .expect("the keep form");
    assert_eq!(keep["action"], "/s/sceneK2/keep");
    let csrf = browser.csrf();
    assert!(!csrf.is_empty());
    // Without the CSRF token: refused.
    let r = browser
        .post(
            &format!("{}/s/sceneK2/keep", hub.base),
            &[("k", &record.gallery_key)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With a wrong key: nothing to keep.
    let r = browser
        .post(
            &format!("{}/s/sceneK2/keep", hub.base),
            &[("k", "wrongkeywrongkeywrongk"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    hub.fake.sign_in_as(Some("oDora"));
    let r = browser
        .post(
            &format!("{}/s/sceneK2/keep", hub.base),
            &[("k", &record.gallery_key), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND, "signs in first");
    let r = browser.get(&location(&r)).await;
    let r = browser.get(&location(&r)).await;
    assert_eq!(location(&r), "/me");
    let html = browser
        .get(&format!("{}/me", hub.base))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        me_photos(&hub, &html).await.len(),
        3,
        "the scan's two and the kept one"
    );
    let _ = gallery;

    // Delete one photo: a confirmation first, then gone, row and bytes.
    let delete = format!("{}/me/photos/photoK1/delete", hub.base);
    let r = browser.post(&delete, &[("csrf", "nope")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = browser.post(&delete, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("id=\"confirm\""));
    assert!(hub.store.photo("sceneK1", "photoK1").unwrap().is_some());
    // A shopper not bound to the session cannot delete it.
    let mut frank = Browser::new();
    sign_in(&hub, &mut frank, "oFrank").await;
    let frank_csrf = frank.csrf();
    frank
        .post(&delete, &[("csrf", &frank_csrf), ("confirm", "yes")])
        .await;
    let meta = hub
        .store
        .photo("sceneK1", "photoK1")
        .unwrap()
        .expect("still there");
    let r = browser
        .post(&delete, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(hub.store.photo("sceneK1", "photoK1").unwrap().is_none());
    assert!(hub.blobs.get(&meta.blob_key).unwrap().is_none());

    // Forget me: nothing of oDora stays, in any table; her photos' bytes are gone.
    let blob_keys: Vec<String> = ["photoK2", "photoK3"]
        .iter()
        .zip(["sceneK1", "sceneK2"])
        .map(|(p, s)| hub.store.photo(s, p).unwrap().unwrap().blob_key)
        .collect();
    let r = browser
        .post(&format!("{}/me/forget", hub.base), &[("csrf", &csrf)])
        .await;
    assert!(r.text().await.unwrap().contains("id=\"confirm\""));
    let r = browser
        .post(
            &format!("{}/me/forget", hub.base),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("id=\"forgotten\""));
    assert!(!browser.cookies.contains_key("ms_signin"), "signed out");
    for key in &blob_keys {
        assert!(hub.blobs.get(key).unwrap().is_none(), "{key} still stored");
    }
    assert_eq!(
        rows_mentioning(&hub.dir.path().join("hub.sqlite3"), "oDora"),
        Vec::<String>::new()
    );
    assert!(
        !rows_mentioning(&hub.dir.path().join("hub.sqlite3"), "oEve").is_empty(),
        "the check sees other shoppers' rows"
    );
}

/// Waits up to `within` for the fake to have delivered `n` customer-service messages.
async fn wait_for_messages(hub: &LocalHub, n: usize, within: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = hub.fake.custom_messages().len();
        if got >= n || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const BATCH_S: u64 = 1;

async fn start_pushing() -> LocalHub {
    LocalHub::start(
        hub::fake_wechat_secrets(CALLBACK_TOKEN),
        &[("mirror-1", "shop-a", MIRROR_1)],
        |config| {
            config.push.batch_s = BATCH_S;
            config.push.retry_s = 1;
        },
    )
    .await
}

#[tokio::test]
async fn photos_after_the_scan_follow_it_once_even_across_a_restart() {
    let hub = start_pushing().await;
    let within = std::time::Duration::from_secs(BATCH_S + 5);
    hub::upload_photo(&hub, MIRROR_1, "scenePush", "before", &jpeg(21)).await;
    let now = mirrorsight_hub::http::unix_now();
    let reply = scan(&hub, "oPia", "scenePush", now).await;
    let gallery = hub::news_article(&reply).url;
    // The photo before the scan came with the reply: nothing is pushed for it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(hub.fake.custom_messages().len(), 0);

    // Two photos after the scan, in one burst: one message.
    hub::upload_photo(&hub, MIRROR_1, "scenePush", "after1", &jpeg(22)).await;
    hub::upload_photo(&hub, MIRROR_1, "scenePush", "after2", &jpeg(23)).await;
    assert_eq!(wait_for_messages(&hub, 1, within).await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let messages = hub.fake.custom_messages();
    assert_eq!(messages.len(), 1, "one message per batch");
    assert_eq!(messages[0].touser, "oPia");
    assert_eq!(messages[0].msgtype, "news");
    let articles = messages[0].articles();
    assert_eq!(articles.len(), 1);
    assert_eq!(articles[0].2, gallery, "the message links to the gallery");

    // A photo, then the hub stops before the batch is due: after a restart on the same
    // database it is sent, once.
    hub::upload_photo(&hub, MIRROR_1, "scenePush", "after3", &jpeg(24)).await;
    let LocalHub {
        running,
        store,
        blobs,
        fake,
        fake_url,
        dir,
        http,
        ..
    } = hub;
    let _ = running.stop.send(());
    running.server.await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(BATCH_S + 1)).await;
    assert_eq!(fake.custom_messages().len(), 1, "nothing sent while down");
    let restarted = hub::start(
        &fake_url,
        hub::fake_wechat_secrets(CALLBACK_TOKEN),
        store.clone(),
        blobs.clone(),
        |config| {
            config.database = dir.path().join("hub.sqlite3");
            config.blob_dir = dir.path().join("photos");
            config.push.batch_s = BATCH_S;
            config.push.retry_s = 1;
        },
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + within;
    while fake.custom_messages().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        fake.custom_messages().len(),
        2,
        "sent after the restart, once"
    );
    let states: Vec<String> = store
        .pushes_of_scene("scenePush")
        .unwrap()
        .into_iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(states, ["sent", "sent"]);
    drop((restarted, http));
}

#[tokio::test]
async fn push_error_codes_stop_or_retry() {
    let hub = start_pushing().await;
    let within = std::time::Duration::from_secs(BATCH_S + 5);
    let now = mirrorsight_hub::http::unix_now();
    for scene in ["sLate", "sGone", "sBusy", "sUnfollow"] {
        hub::upload_photo(&hub, MIRROR_1, scene, &format!("{scene}0"), &jpeg(30)).await;
    }
    // 45015: the window passed; the row and the openid are stopped.
    hub.fake
        .set_follower("oLate", mirrorsight_fake_backend::Follower::WindowPassed);
    scan(&hub, "oLate", "sLate", now).await;
    // 43004: not following.
    hub.fake
        .set_follower("oGone", mirrorsight_fake_backend::Follower::Unsubscribed);
    scan(&hub, "oGone", "sGone", now + 1).await;
    // 45047 then success: retried.
    scan(&hub, "oBusy", "sBusy", now + 2).await;
    hub.fake.inject(Route::CustomSend, Fault::Errcode(45047), 1);
    // Unfollowed after scanning: nothing is sent.
    scan(&hub, "oUnfollow", "sUnfollow", now + 3).await;
    let unsubscribe = format!(
        "<xml><ToUserName>gh_fake</ToUserName><FromUserName>oUnfollow</FromUserName><CreateTime>{}</CreateTime><MsgType>event</MsgType><Event>unsubscribe</Event><EventKey></EventKey></xml>",
        now + 4
    );
    let r = hub::push(&hub.http, &hub.base, CALLBACK_TOKEN, &nonce(), &unsubscribe).await;
    assert_eq!(r.status(), StatusCode::OK);

    for scene in ["sLate", "sGone", "sBusy", "sUnfollow"] {
        hub::upload_photo(&hub, MIRROR_1, scene, &format!("{scene}1"), &jpeg(31)).await;
    }
    assert_eq!(
        wait_for_messages(&hub, 1, within + std::time::Duration::from_secs(3)).await,
        1
    );
    let state = |scene: &str| {
        hub.store
            .pushes_of_scene(scene)
            .unwrap()
            .into_iter()
            .map(|p| (p.state, p.attempts, p.last_error.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + within;
    while state("sLate").first().is_none_or(|s| s.0 == "pending")
        || state("sGone").first().is_none_or(|s| s.0 == "pending")
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", state("sLate"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (late, gone, busy) = (state("sLate"), state("sGone"), state("sBusy"));
    assert_eq!((late.len(), gone.len(), busy.len()), (1, 1, 1));
    assert_eq!(
        (late[0].0.as_str(), late[0].2.as_str()),
        ("stopped", "45015")
    );
    assert_eq!(
        (gone[0].0.as_str(), gone[0].2.as_str()),
        ("stopped", "43004")
    );
    assert_eq!(busy[0].0, "sent");
    // Whichever message met the one 45047 was tried again: one extra attempt in all.
    assert_eq!(
        late[0].1 + gone[0].1 + busy[0].1,
        4,
        "{late:?} {gone:?} {busy:?}"
    );
    assert!(
        state("sUnfollow").is_empty(),
        "nothing queued for an unfollower"
    );
    let delivered = hub.fake.custom_messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].touser, "oBusy");
    // A stopped openid gets nothing queued for later photos either.
    hub::upload_photo(&hub, MIRROR_1, "sLate", "sLate2", &jpeg(32)).await;
    assert_eq!(state("sLate").len(), 1);
}

/// `PUT /v1/scenes/{scene}` as a mirror with `qr.kind = "official_account"` sends it.
async fn register(
    hub: &LocalHub,
    token: &str,
    scene: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let r = hub
        .http
        .put(format!("{}/v1/scenes/{scene}", hub.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

const ADMIN: &str = "admin-token-for-the-stats-xxxxxxxx";

#[tokio::test]
async fn kiosk_minted_codes_bind_and_idle_codes_are_welcomed_and_counted() {
    let mut secrets = hub::fake_wechat_secrets(CALLBACK_TOKEN);
    secrets.admin_token = Some(mirrorsight_wechat::Secret::new(ADMIN));
    let hub = LocalHub::start(
        secrets,
        &[
            ("mirror-1", "shop-a", MIRROR_1),
            ("mirror-2", "shop-b", MIRROR_2),
        ],
        |_| {},
    )
    .await;
    let now = mirrorsight_hub::http::unix_now();
    let expires = u64::try_from(now + 3600).unwrap();
    // A code the mirror minted at WeChat itself, registered before its first photo.
    let code = serde_json::json!({"url": "http://weixin.qq.com/q/kiosk1", "ticket": "t1", "expires_at": expires});
    let (status, body) = register(&hub, MIRROR_1, "kiosk1", code.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["url"], "http://weixin.qq.com/q/kiosk1");
    assert_eq!(body["expires_at"], expires);
    // Again (a restart): 200; by another mirror: 403; unauthenticated: 401.
    assert_eq!(
        register(&hub, MIRROR_1, "kiosk1", code.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        register(&hub, MIRROR_2, "kiosk1", code.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        register(
            &hub,
            "not-a-device-token-xxxxxxxxxxxxxx",
            "kiosk1",
            code.clone()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    // One code per session must expire; an empty url is no code.
    let (status, body) = register(
        &hub,
        MIRROR_1,
        "kiosk2",
        serde_json::json!({"url": "http://weixin.qq.com/q/kiosk2"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("expires_at"),
        "{body}"
    );
    let (status, _) = register(
        &hub,
        MIRROR_1,
        "kiosk2",
        serde_json::json!({"url": "", "expires_at": expires}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Its scan binds and is answered with the gallery link (not "this code has expired").
    hub::upload_photo(&hub, MIRROR_1, "kiosk1", "kioskPhoto", &jpeg(41)).await;
    let reply = scan(&hub, "oKiosk", "kiosk1", now).await;
    let article = hub::news_article(&reply);
    let record = hub.store.scene("kiosk1").unwrap().unwrap();
    assert_eq!(
        article.url,
        format!("{}/s/kiosk1?k={}", hub.base, record.gallery_key)
    );
    let bound: Vec<String> = hub
        .store
        .bindings("kiosk1")
        .unwrap()
        .into_iter()
        .map(|b| b.openid)
        .collect();
    assert_eq!(bound, ["oKiosk"]);

    // The mirror's idle code: registered as permanent, welcomed, counted, binds nothing.
    let (status, body) = register(
        &hub,
        MIRROR_2,
        "idle-mirror-2",
        serde_json::json!({"url": "http://weixin.qq.com/q/idle2", "kind": "idle"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["expires_at"], 0);
    let reply = scan(&hub, "oWalker", "idle-mirror-2", now + 1).await;
    assert!(
        reply.contains("<MsgType><![CDATA[text]]></MsgType>"),
        "{reply}"
    );
    assert!(reply.contains("Welcome"), "{reply}");
    let xml = hub::scan_xml(
        "gh_fake",
        "oNewcomer",
        now + 2,
        "subscribe",
        "qrscene_idle-mirror-2",
    );
    let r = hub::push(&hub.http, &hub.base, CALLBACK_TOKEN, &nonce(), &xml).await;
    assert!(r.text().await.unwrap().contains("Welcome"));
    assert!(hub.store.bindings("idle-mirror-2").unwrap().is_empty());

    // Scans per scene and source.
    let r = hub
        .http
        .get(format!("{}/v1/stats/scenes", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let stats: serde_json::Value = hub
        .http
        .get(format!("{}/v1/stats/scenes", hub.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = stats["rows"].as_array().unwrap();
    let row = |scene: &str| {
        rows.iter()
            .find(|r| r["scene"] == scene)
            .unwrap_or_else(|| panic!("{scene} missing: {stats}"))
            .clone()
    };
    let idle = row("idle-mirror-2");
    assert_eq!(
        (&idle["source"], &idle["device"], &idle["store"]),
        (&"idle".into(), &"mirror-2".into(), &"shop-b".into())
    );
    assert_eq!(
        (&idle["scans_following"], &idle["scans_new_follower"]),
        (&1.into(), &1.into())
    );
    let kiosk = row("kiosk1");
    assert_eq!(
        (&kiosk["source"], &kiosk["scans_following"]),
        (&"session".into(), &1.into())
    );
    let r = hub
        .http
        .get(format!("{}/v1/stats/scenes?from=2026-13", hub.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn mp_login(hub: &LocalHub, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let r = hub
        .http
        .post(format!("{}/v1/mp/login", hub.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn mp_photos(hub: &LocalHub, token: &str) -> (StatusCode, serde_json::Value) {
    let r = hub
        .http
        .get(format!("{}/v1/mp/photos", hub.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_mini_program_logs_in_binds_the_scanned_scene_and_lists_the_photos() {
    use mirrorsight_fake_backend::{FAKE_MP_APPID, FAKE_MP_APPSECRET};
    // Without [mini_program] the endpoints are not there.
    let plain = start().await;
    let (status, _) = mp_login(&plain, serde_json::json!({"code": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(plain);

    let mut secrets = hub::fake_wechat_secrets(CALLBACK_TOKEN);
    secrets.mp_appsecret = Some(mirrorsight_wechat::Secret::new(FAKE_MP_APPSECRET));
    let hub = LocalHub::start(secrets, &[("mirror-1", "shop-a", MIRROR_1)], |config| {
        config.mini_program.appid = FAKE_MP_APPID.into();
    })
    .await;
    let (p1, p2) = (jpeg(51), jpeg(52));
    hub::upload_photo(&hub, MIRROR_1, "mpScene", "mpPhoto1", &p1).await;
    hub::upload_photo(&hub, MIRROR_1, "mpScene", "mpPhoto2", &p2).await;

    // The mini-program opened with the scene its code carried, and logs in.
    let code = hub.fake.mini_program_code("oMiniShopper");
    let (status, login) =
        mp_login(&hub, serde_json::json!({"code": code, "scene": "mpScene"})).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["bound"], true);
    let token = login["token"].as_str().unwrap().to_string();
    let (status, listed) = mp_photos(&hub, &token).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["scene"], "mpScene");
    let mut got = Vec::new();
    for photo in sessions[0]["photos"].as_array().unwrap() {
        let url = photo["url"].as_str().unwrap();
        got.push(
            hub.http
                .get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec(),
        );
    }
    got.sort();
    let mut want = vec![p1, p2];
    want.sort();
    assert_eq!(got, want, "full size, byte for byte");

    // The code is single use (40163), an unknown one is 40029, WeChat busy is 503.
    let (status, body) = mp_login(&hub, serde_json::json!({"code": code})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("40163"),
        "{body}"
    );
    let (status, body) = mp_login(&hub, serde_json::json!({"code": "never-issued"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("40029"),
        "{body}"
    );
    hub.fake
        .inject(Route::Jscode2session, Fault::Errcode(-1), 100);
    let code = hub.fake.mini_program_code("oMiniShopper");
    let (status, _) = mp_login(&hub, serde_json::json!({"code": code})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Another shopper's token sees nothing; a forged or a sign-in cookie's value is refused.
    hub.fake.clear_faults();
    let other = hub.fake.mini_program_code("oSomeoneElse");
    let (_, login) = mp_login(&hub, serde_json::json!({"code": other})).await;
    let (status, listed) = mp_photos(&hub, login["token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["sessions"], serde_json::json!([]));
    let forged = token.replacen("oMiniShopper", "oMiniShoppes", 1);
    assert_eq!(mp_photos(&hub, &forged).await.0, StatusCode::UNAUTHORIZED);
    let r = hub
        .http
        .get(format!("{}/v1/mp/photos", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Regenerates `docs/screens/me.png`: a shopper who scanned two mirrors in two shops, `/me` in
/// headless Chromium at phone size, signed in through the fake's authorize page. The photos are
/// portrait frames of `assets/demo.mp4` (the repository may show that clip, not the shared
/// footage).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes docs/screens/me.png; run with --ignored docs_screenshot"]
async fn docs_screenshot() {
    use support::chromium::{Capture, PHONE_H, browse, demo_frames, find_chromium};
    let chromium = find_chromium().expect("chromium (scripts/setup-test.sh installs it)");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let frames = demo_frames(&root, &[(4.0, 130), (6.5, 140), (9.0, 150)]);
    let hub = start().await;
    let now = mirrorsight_hub::http::unix_now();
    let uploads = [
        (MIRROR_1, "sceneA1", "photoA1AAAAAAAAAAAAAAA", &frames[0]),
        (MIRROR_1, "sceneA1", "photoA2AAAAAAAAAAAAAAA", &frames[1]),
        (MIRROR_2, "sceneB1", "photoB1AAAAAAAAAAAAAAA", &frames[2]),
    ];
    for (token, scene, photo, jpg) in uploads {
        hub::upload_photo(&hub, token, scene, photo, jpg).await;
    }
    scan(&hub, "oShopper", "sceneA1", now - 3600).await;
    scan(&hub, "oShopper", "sceneB1", now).await;
    hub.fake.sign_in_as(Some("oShopper"));
    let url = format!("{}/me", hub.base);
    let png = tokio::task::spawn_blocking(move || {
        browse(&chromium, &url, Capture::Screenshot { height: PHONE_H })
    })
    .await
    .unwrap();
    support::chromium::write_docs_screenshot(&root, &png, "me.png");
}
