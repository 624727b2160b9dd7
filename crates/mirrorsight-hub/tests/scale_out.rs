//! A chain's topology on loopback: two hub instances sharing one PostgreSQL database and one
//! blob store, behind no load balancer but addressed alternately, as one would spread them.
//! Either instance serves what the other stored, and only one of them ever asks WeChat for an
//! access token, also after WeChat expired it.

mod support {
    pub mod hub;
    pub mod pg;
}

use std::sync::Arc;

use mirrorsight_contract::backend::CreateSceneResponse;
use mirrorsight_fake_backend::{FAKE_APPID, FakeHandle, FakeServer, Route};
use mirrorsight_hub::http::unix_now;
use mirrorsight_hub::store::{BlobStore, LocalBlobStore, Store};
use mirrorsight_hub::{HubSecrets, token_digest};
use mirrorsight_wechat::Secret;
use reqwest::StatusCode;
use support::hub;
use tokio::task::block_in_place;

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const MIRROR: &str = "device-token-mirror-1-xxxxxxxxxxxx";
/// `/metrics` on the public listener needs it.
const ADMIN: &str = "admin-token-0123456789";

async fn start_instance(
    fake_url: &str,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
) -> hub::Running {
    let secrets = HubSecrets {
        admin_token: Some(Secret::new(ADMIN)),
        ..hub::fake_wechat_secrets(CALLBACK_TOKEN)
    };
    hub::start(fake_url, secrets, store, blobs, |_| {})
        .await
        .unwrap()
}

async fn mint(http: &reqwest::Client, base: &str, scene: &str) -> StatusCode {
    let resp = hub::mint_request(http, base, MIRROR, scene)
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
    // Each instance's /metrics says where its tokens came from: two fetches in the chain, and
    // b used a's refreshed token without one.
    let mut fetched = 0;
    for base in [&a.base, &b.base] {
        let metrics = http
            .get(format!("{base}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        fetched += metric(
            &metrics,
            "mirrorsight_hub_access_tokens_total{source=\"fetched\"}",
        );
        if *base == b.base {
            assert!(
                metric(
                    &metrics,
                    "mirrorsight_hub_access_tokens_total{source=\"shared\"}"
                ) >= 1,
                "{metrics}"
            );
        }
    }
    assert_eq!(fetched, 2);

    // A photo uploaded through one instance, a scan pushed to the other, the gallery read
    // through the first: stateless instances, one truth.
    let photo = b"\xFF\xD8\xFF\xE0scale-out photo\xFF\xD9".to_vec();
    let digest = hub::sha256_hex(&photo);
    let upload = hub::Upload {
        token: MIRROR,
        scene: &scenes[1],
        session: "session-1",
        photo: "photo-1",
        digest: &digest,
    };
    let resp = upload
        .request(&http, &a.base, 1_767_225_600_123, photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let push = hub::scan_xml("gh_store", "oShopper", 1_767_225_700, "SCAN", &scenes[1]);
    let reply = hub::push(&http, &b.base, CALLBACK_TOKEN, "42", &push)
        .await
        .text()
        .await
        .unwrap();
    let article = hub::news_article(&reply);
    assert!(article.url.starts_with(&b.base));
    let gallery_on_a = article.url.replacen(&b.base, &a.base, 1);
    let html = hub::page(&http, &gallery_on_a).await;
    let src = hub::photo_urls(&html, &a.base)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("a photo in {html}"));
    let served = http.get(&src).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.as_ref(), photo.as_slice());
    assert_eq!(
        block_in_place(|| store.bindings(&scenes[1])).unwrap().len(),
        1
    );
    block_in_place(move || drop(db));
}

/// The value of one Prometheus sample line.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} in {text}"))
}
