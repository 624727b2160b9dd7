//! The whole chain on loopback: the mirror replays a clip with a photo gesture in relay mode
//! against the store hub (itself in front of the WeChat fake); a shopper's signed scan binds
//! the session and gets a gallery link that serves exactly the photos the mirror spooled.
//! Hub and fake listen on loopback, which a replay reaches without `--live` (README, command
//! line); a hub on another machine would need `--live`.

mod common;

use std::sync::Arc;

use common::*;
use mirrorsight::events::EventKind;
use mirrorsight_fake_backend::{FAKE_APPID, FAKE_APPSECRET, FakeServer};
use mirrorsight_hub::config::CallbackMode;
use mirrorsight_hub::store::{LocalBlobStore, SqliteStore, Store};
use mirrorsight_hub::wechat::signature;
use mirrorsight_hub::wechat::xml::parse_article;
use mirrorsight_hub::{Hub, HubConfig, HubSecrets, token_digest};
use mirrorsight_wechat::Secret;

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const MIRROR_1: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const MIRROR_2: &str = "device-token-mirror-2-yyyyyyyyyyyy";

fn scan_xml(openid: &str, create_time: u64, event: &str, key: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_store]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

/// The hub on SQLite in front of the WeChat fake, on loopback, with two mirrors registered.
struct LocalHub {
    base: String,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    _fake: mirrorsight_fake_backend::FakeHandle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_hub() -> LocalHub {
    let (fake_url, _fake) = FakeServer::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = HubConfig::with_base_url(&base);
    config.database = dir.path().join("hub.sqlite3");
    config.blob_dir = dir.path().join("photos");
    config.wechat.api_base = fake_url.clone();
    config.wechat.mp_base = fake_url;
    config.wechat.appid = FAKE_APPID.into();
    config.callback.mode = CallbackMode::Plaintext; // this test's pushes are plaintext
    let secrets = HubSecrets {
        appsecret: Secret::new(FAKE_APPSECRET),
        callback_token: Secret::new(CALLBACK_TOKEN),
        encoding_aes_key: None,
        admin_token: None,
        token_key: None,
        mp_appsecret: None,
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database).unwrap());
    store
        .add_device("mirror-1", "shop-1", &token_digest(MIRROR_1), 0)
        .unwrap();
    store
        .add_device("mirror-2", "shop-1", &token_digest(MIRROR_2), 0)
        .unwrap();
    let blobs = Arc::new(LocalBlobStore::open(&config.blob_dir).unwrap());
    let hub = Hub::with_stores(config, secrets, Arc::clone(&store), blobs).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hub.serve(listener, async move {
        let _ = stopped.await;
    }));

    LocalHub {
        base,
        store,
        dir,
        _fake,
        _stop: stop,
    }
}

/// The mirror replaying `clip` in relay mode against the hub: it holds no appsecret, only its
/// device token. Its events.
async fn replay_against(
    hub: &LocalHub,
    clip: std::path::PathBuf,
) -> Vec<mirrorsight::events::Event> {
    let base = hub.base.clone();
    let state = hub.dir.path().join("mirror");
    let out = tokio::task::spawn_blocking(move || {
        run_ok(
            bin()
                .arg("replay")
                .arg(&clip)
                .args(["--set", "qr.kind=\"relay\"", "--set"])
                .arg(format!("backend.url=\"{base}\""))
                .arg("--set")
                .arg(format!("storage.dir=\"{}\"", state.display()))
                .env("MIRRORSIGHT_DEVICE_TOKEN", MIRROR_1),
        )
    })
    .await
    .unwrap();
    parse_events(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_leads_the_shopper_to_exactly_the_photos_the_mirror_took() {
    let Some(clip) = footage("mediapipe_gesture_recognizer_test_video.mp4") else {
        return;
    };
    let hub = start_hub().await;
    let (base, store) = (hub.base.clone(), Arc::clone(&hub.store));

    let events = replay_against(&hub, clip).await;
    let Some(EventKind::QrMinted { scene, .. }) =
        of_type(&events, "qr_minted").first().map(|e| &e.kind)
    else {
        panic!("no code: {events:?}")
    };
    let saved: Vec<(String, Vec<u8>)> = of_type(&events, "photo_saved")
        .iter()
        .map(|e| match &e.kind {
            EventKind::PhotoSaved {
                photo,
                path,
                scene: s,
                ..
            } => {
                assert_eq!(s, scene, "photos are bound to the session's scene");
                (photo.clone(), std::fs::read(path).unwrap())
            }
            _ => unreachable!(),
        })
        .collect();
    assert!(!saved.is_empty(), "the thumbs up took a photo: {events:?}");
    assert_eq!(of_type(&events, "photo_uploaded").len(), saved.len());

    // The shopper scans: WeChat pushes a signed subscribe event to the hub.
    let http = reqwest::Client::new();
    // Signed now: the hub refuses pushes whose timestamp is far from its clock.
    let ts = mirrorsight_hub::http::unix_now().to_string();
    let (ts, nonce) = (ts.as_str(), "486452656");
    let push = |sig: String, xml: String| {
        http.post(format!(
            "{base}/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid=o"
        ))
        .body(xml)
        .send()
    };
    let subscribe = scan_xml(
        "oShopper",
        1_714_037_059,
        "subscribe",
        &format!("qrscene_{scene}"),
    );
    let forged = push(signature(&["wrong", ts, nonce]), subscribe.clone())
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a push with a wrong signature is refused"
    );
    assert_eq!(
        store.bindings(scene).unwrap().len(),
        0,
        "and records nothing"
    );
    let reply = push(signature(&[CALLBACK_TOKEN, ts, nonce]), subscribe.clone())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let again = push(signature(&[CALLBACK_TOKEN, ts, nonce]), subscribe)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(reply, again, "a retried push is answered identically");
    assert_eq!(store.bindings(scene).unwrap().len(), 1, "and recorded once");
    let article = parse_article(&reply)
        .unwrap()
        .expect("a news reply with one article");

    // The gallery lists exactly this session's photos, byte-identical to the mirror's spool.
    let page = http
        .get(&article.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let srcs: Vec<String> = page
        .split("<img src=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect();
    assert_eq!(srcs.len(), saved.len(), "{page}");
    for (photo, bytes) in &saved {
        let src = srcs
            .iter()
            .find(|s| s.contains(photo.as_str()))
            .unwrap_or_else(|| panic!("{photo} not in {srcs:?}"));
        let url = if src.starts_with("http") {
            src.clone()
        } else {
            format!("{base}{src}")
        };
        let served = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(
            served.as_ref(),
            bytes.as_slice(),
            "{photo} differs from the spooled copy"
        );
    }

    // Another mirror's token can neither delete nor add to this session's photos.
    let (photo, _) = &saved[0];
    let delete = http
        .delete(format!("{base}/v1/sessions/{scene}/photos/{photo}"))
        .bearer_auth(MIRROR_2)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
}

/// A palm hold in relay mode: the clip the mirror recorded reaches the hub byte-identical with
/// its poster, and the gallery plays it inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirrors_clip_plays_in_the_gallery_byte_identical() {
    let hub = start_hub().await;
    let Some(clip) = palm_hold(hub.dir.path(), 14) else {
        return;
    };
    let events = replay_against(&hub, clip).await;
    let saved = of_type(&events, "clip_saved");
    assert_eq!(saved.len(), 1, "{events:?}");
    let EventKind::ClipSaved {
        scene,
        clip,
        path,
        poster,
        ..
    } = &saved[0].kind
    else {
        unreachable!()
    };
    assert_eq!(of_type(&events, "clip_uploaded").len(), 1, "{events:?}");
    assert!(
        of_type(&events, "clip_upload_failed").is_empty(),
        "{events:?}"
    );
    let row = hub
        .store
        .photo(scene, clip)
        .unwrap()
        .expect("the clip at the hub");
    assert_eq!(row.media, mirrorsight_hub::store::Media::Clip);
    let record = hub.store.scene(scene).unwrap().unwrap();
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/s/{scene}?k={}", hub.base, record.gallery_key))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let attr = |name: &str| -> String {
        let video = page
            .split("<video")
            .nth(1)
            .unwrap_or_else(|| panic!("no <video>: {page}"));
        let tag = video.split('>').next().unwrap_or("");
        assert!(
            tag.contains(" playsinline") && tag.contains(" controls"),
            "{tag}"
        );
        let value = tag
            .split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_else(|| panic!("no {name} in {tag}"));
        value.replace("&amp;", "&")
    };
    for (name, file) in [("src", path), ("poster", poster)] {
        let served = http
            .get(attr(name))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            served.as_ref(),
            std::fs::read(file).unwrap().as_slice(),
            "the {name} differs from the mirror's spool"
        );
    }
}
