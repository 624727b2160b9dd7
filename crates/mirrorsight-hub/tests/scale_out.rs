//! A chain's topology on loopback: two hub instances sharing one PostgreSQL database and one
//! blob store, behind no load balancer but addressed alternately, as one would spread them.
//! Either instance serves what the other stored, and only one of them ever asks WeChat for an
//! access token, also after WeChat expired it.

mod support {
    pub mod pg;
}

use std::sync::Arc;

use mirrorsight_contract::backend::{CreateSceneResponse, SCENES_PATH, header as h, photos_path};
use mirrorsight_fake_backend::{FAKE_APPID, FAKE_APPSECRET, FakeHandle, FakeServer, Route};
use mirrorsight_hub::http::unix_now;
use mirrorsight_hub::store::{BlobStore, LocalBlobStore, Store};
use mirrorsight_hub::wechat::signature;
use mirrorsight_hub::wechat::xml::parse_article;
use mirrorsight_hub::{Hub, HubConfig, HubSecrets, token_digest};
use mirrorsight_wechat::Secret;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::task::block_in_place;

const CALLBACK_TOKEN: &str = "callback-token-AAAAA";
const MIRROR: &str = "device-token-mirror-1-xxxxxxxxxxxx";

struct Instance {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_instance(
    fake_url: &str,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
) -> Instance {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = HubConfig::with_base_url(&base);
    config.wechat.api_base = fake_url.to_string();
    config.wechat.mp_base = fake_url.to_string();
    config.wechat.appid = FAKE_APPID.into();
    let secrets = HubSecrets {
        appsecret: Secret::new(FAKE_APPSECRET),
        callback_token: Secret::new(CALLBACK_TOKEN),
        encoding_aes_key: None,
        admin_token: None,
    };
    let hub = Hub::with_stores(config, secrets, store, blobs).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hub.serve(listener, async move {
        let _ = stopped.await;
    }));
    Instance { base, _stop: stop }
}

async fn mint(http: &reqwest::Client, base: &str, scene: &str) -> StatusCode {
    let resp = http
        .post(format!("{base}{SCENES_PATH}"))
        .bearer_auth(MIRROR)
        .json(&serde_json::json!({"scene": scene, "expire_seconds": 3600}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    if status.is_success() {
        let minted: CreateSceneResponse = resp.json().await.unwrap();
        assert_eq!(minted.scene, scene);
    }
    status
}

fn token_fetches(fake: &FakeHandle) -> usize {
    fake.count(Route::StableToken) + fake.count(Route::Token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_state_and_one_token() {
    // The store is blocking, like the hub's own calls (which go through spawn_blocking).
    let Some(db) = block_in_place(|| support::pg::TestDb::create("scale_out")) else {
        return;
    };
    let (fake_url, fake) = FakeServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = db.store();
    let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path()).unwrap());
    block_in_place(|| store.add_device("mirror-1", "shop-1", &token_digest(MIRROR), 0)).unwrap();
    let a = start_instance(&fake_url, Arc::clone(&store), Arc::clone(&blobs)).await;
    let b = start_instance(&fake_url, Arc::clone(&store), Arc::clone(&blobs)).await;
    let http = reqwest::Client::new();

    // Both instances mint at once: one token fetch for the chain, not one per instance.
    let scenes: Vec<String> = (0..8)
        .map(|i| format!("scene-{i:02}-abcdefghijkl"))
        .collect();
    let mut mints = tokio::task::JoinSet::new();
    for (i, scene) in scenes.iter().enumerate() {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let (http, base, scene) = (http.clone(), base.clone(), scene.clone());
        mints.spawn(async move { mint(&http, &base, &scene).await });
    }
    for status in mints.join_all().await {
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(
        token_fetches(&fake),
        1,
        "one instance fetched; the other used it"
    );
    assert_eq!(fake.count(Route::QrcodeCreate), 8);
    // A retry on the other instance is answered from the database: no second code.
    assert_eq!(mint(&http, &b.base, &scenes[0]).await, StatusCode::OK);
    assert_eq!(fake.count(Route::QrcodeCreate), 8);

    // WeChat expires the token. The instance that notices refreshes; the other one, told
    // `42001` too, takes the refreshed token from the database instead of fetching again.
    fake.expire_tokens();
    assert_eq!(
        mint(&http, &a.base, "scene-after-expiry-a1").await,
        StatusCode::CREATED
    );
    assert_eq!(token_fetches(&fake), 2);
    assert_eq!(
        mint(&http, &b.base, "scene-after-expiry-b1").await,
        StatusCode::CREATED
    );
    assert_eq!(token_fetches(&fake), 2, "instance b reused a's refresh");
    let shared = block_in_place(|| store.shared_token(&format!("wechat:{FAKE_APPID}")))
        .unwrap()
        .unwrap();
    assert!(shared.expires_at > unix_now());

    // A photo uploaded through one instance, a scan pushed to the other, the gallery read
    // through the first: stateless instances, one truth.
    let photo = b"\xFF\xD8\xFF\xE0scale-out photo\xFF\xD9".to_vec();
    let digest = hex::encode(Sha256::digest(&photo));
    let resp = http
        .post(format!("{}{}", a.base, photos_path(&scenes[1])))
        .bearer_auth(MIRROR)
        .header("Content-Type", "image/jpeg")
        .header(h::IDEMPOTENCY_KEY, "photo-1")
        .header(h::PHOTO_ID, "photo-1")
        .header(h::SESSION_ID, "session-1")
        .header(h::TAKEN_AT, "1767225600123")
        .header(h::TRIGGER, "thumbs_up")
        .header(h::CONTENT_SHA256, &digest)
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let ts = unix_now().to_string();
    let sig = signature(&[CALLBACK_TOKEN, &ts, "42"]);
    let push = format!(
        "<xml><ToUserName><![CDATA[gh_store]]></ToUserName><FromUserName><![CDATA[oShopper]]></FromUserName><CreateTime>1767225700</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[{}]]></EventKey></xml>",
        scenes[1]
    );
    let reply = http
        .post(format!(
            "{}/wechat?signature={sig}&timestamp={ts}&nonce=42&openid=o",
            b.base
        ))
        .body(push)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let article = parse_article(&reply)
        .unwrap_or_else(|e| panic!("news reply: {e:?}: {reply}"))
        .unwrap_or_else(|| panic!("an article in {reply}"));
    assert!(article.url.starts_with(&b.base));
    let gallery_on_a = article.url.replacen(&b.base, &a.base, 1);
    let html = http
        .get(&gallery_on_a)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let src = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a photo in {html}"))
        .replace("&amp;", "&");
    let src = if src.starts_with("http") {
        src
    } else {
        format!("{}{src}", a.base)
    };
    let served = http.get(&src).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.as_ref(), photo.as_slice());
    assert_eq!(
        block_in_place(|| store.bindings(&scenes[1])).unwrap().len(),
        1
    );
    block_in_place(move || drop(db));
}
