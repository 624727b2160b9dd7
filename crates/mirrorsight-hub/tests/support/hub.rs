#![allow(dead_code)] // Each test crate uses part of this module.

//! Scaffolding the hub's integration tests share: a hub started in-process in front of the
//! fake WeChat (`mirrorsight_fake_backend::FakeServer`), the relay requests a mirror sends,
//! the signed pushes WeChat sends, and what a gallery page shows.
//!
//! ```ignore
//! mod support {
//!     pub mod hub;
//! }
//! use support::hub;
//! ```
//!
//! `tests/support/load.rs` uses it as `crate::support::hub`, so whoever includes that file
//! (`tests/load.rs`, `benches/load.rs`) declares this module as `support::hub` too.

use std::collections::HashMap;
use std::sync::Arc;

use mirrorsight_contract::backend::{SCENES_PATH, header as h, photos_path};
use mirrorsight_fake_backend::{FAKE_APPID, FAKE_APPSECRET, FakeHandle, FakeServer};
use mirrorsight_hub::config::CallbackMode;
use mirrorsight_hub::http::unix_now;
use mirrorsight_hub::store::{BlobStore, LocalBlobStore, SqliteStore, Store};
use mirrorsight_hub::wechat::signature;
use mirrorsight_hub::wechat::xml::{Article, parse_article};
use mirrorsight_hub::{Hub, HubConfig, HubSecrets, token_digest};
use mirrorsight_wechat::Secret;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// The hub

/// A free loopback port to serve on, and the hub's base URL there.
pub async fn listen() -> Result<(TcpListener, String), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("listen: {e}"))?;
    Ok((listener, format!("http://{addr}")))
}

/// The config of a hub at `base` that asks the fake WeChat at `fake_url`, as the fake's app.
pub fn fake_wechat_config(base: &str, fake_url: &str) -> HubConfig {
    let mut config = HubConfig::with_base_url(base);
    // The pushes these tests send are plaintext, as [`fake_wechat_secrets`] has no AES key.
    config.callback.mode = CallbackMode::Plaintext;
    config.wechat.api_base = fake_url.to_string();
    config.wechat.mp_base = fake_url.to_string();
    config.wechat.oauth_base = fake_url.to_string();
    config.wechat.appid = FAKE_APPID.into();
    config
}

/// The fake WeChat's app secret and the callback Token pushes are signed with; no AES key
/// (plaintext pushes only) and no admin token.
pub fn fake_wechat_secrets(callback_token: &str) -> HubSecrets {
    HubSecrets {
        appsecret: Secret::new(FAKE_APPSECRET),
        callback_token: Secret::new(callback_token),
        encoding_aes_key: None,
        admin_token: None,
        token_key: None,
        mp_appsecret: None,
    }
}

/// A hub serving at `base` in a task, until `stop` is sent or dropped (dropping this does);
/// `server` ends when it has shut down.
pub struct Running {
    pub base: String,
    pub stop: oneshot::Sender<()>,
    pub server: JoinHandle<std::io::Result<()>>,
}

/// `Hub::with_stores` on `config`, `secrets`, `store` and `blobs`, serving on `listener`
/// (which `base` names) in a task.
pub fn serve(
    listener: TcpListener,
    base: String,
    config: HubConfig,
    secrets: HubSecrets,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
) -> Result<Running, String> {
    let hub = Hub::with_stores(config, secrets, store, blobs).map_err(|e| format!("hub: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(hub.serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running { base, stop, server })
}

/// A hub on `store` and `blobs` in front of the fake WeChat at `fake_url`, serving on a free
/// loopback port; `configure` adjusts its config (see [`fake_wechat_config`]) first.
pub async fn start(
    fake_url: &str,
    secrets: HubSecrets,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    configure: impl FnOnce(&mut HubConfig),
) -> Result<Running, String> {
    let (listener, base) = listen().await?;
    let mut config = fake_wechat_config(&base, fake_url);
    configure(&mut config);
    serve(listener, base, config, secrets, store, blobs)
}

/// A hub on SQLite and a local photo directory in a temporary directory, in front of a fake
/// WeChat of its own. Dropping it stops the hub and removes the directory.
pub struct LocalHub {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<LocalBlobStore>,
    pub fake: FakeHandle,
    /// The fake WeChat's base URL.
    pub fake_url: String,
    pub dir: tempfile::TempDir,
    pub running: Running,
}

impl LocalHub {
    /// Registers `devices`, each `(device id, shop, bearer token)`, then starts the hub;
    /// `configure` adjusts its config (database and photo directory already set) first.
    pub async fn start(
        secrets: HubSecrets,
        devices: &[(&str, &str, &str)],
        configure: impl FnOnce(&mut HubConfig),
    ) -> Self {
        let (fake_url, fake) = FakeServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (database, blob_dir) = (dir.path().join("hub.sqlite3"), dir.path().join("photos"));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&database).unwrap());
        let blobs = Arc::new(LocalBlobStore::open(&blob_dir).unwrap());
        for (id, shop, token) in devices {
            store.add_device(id, shop, &token_digest(token), 0).unwrap();
        }
        let running = start(
            &fake_url.clone(),
            secrets,
            Arc::clone(&store),
            blobs.clone(),
            |config| {
                config.database = database;
                config.blob_dir = blob_dir;
                configure(config);
            },
        )
        .await
        .unwrap();
        Self {
            base: running.base.clone(),
            http: reqwest::Client::new(),
            store,
            blobs,
            fake,
            fake_url,
            dir,
            running,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The mirror's relay requests

/// Hex SHA-256 of `bytes`, as the `Content-SHA256` header carries it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A mirror's request for a WeChat code for `scene`, valid for an hour.
pub fn mint_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    scene: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}{SCENES_PATH}"))
        .bearer_auth(token)
        .json(&serde_json::json!({"scene": scene, "expire_seconds": 3600}))
}

/// Who uploads which photo where.
#[derive(Clone, Copy)]
pub struct Upload<'a> {
    /// The mirror's bearer token.
    pub token: &'a str,
    pub scene: &'a str,
    pub session: &'a str,
    /// The photo id, also the idempotency key.
    pub photo: &'a str,
    /// The `Content-SHA256` header: [`sha256_hex`] of the body, unless a test lies.
    pub digest: &'a str,
}

impl Upload<'_> {
    /// The upload of the JPEG `bytes`, taken at `taken_at_ms` (ms since the epoch) by a
    /// thumbs-up, with the contract headers, as the mirror sends it.
    pub fn request(
        &self,
        http: &reqwest::Client,
        base: &str,
        taken_at_ms: i64,
        bytes: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        http.post(format!("{base}{}", photos_path(self.scene)))
            .bearer_auth(self.token)
            .header("Content-Type", "image/jpeg")
            .header(h::IDEMPOTENCY_KEY, self.photo)
            .header(h::PHOTO_ID, self.photo)
            .header(h::SESSION_ID, self.session)
            .header(h::TAKEN_AT, taken_at_ms.to_string())
            .header(h::TRIGGER, "thumbs_up")
            .header(h::CONTENT_SHA256, self.digest)
            .body(bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// WeChat's pushes

/// `signature=…&timestamp=…&nonce=…`: how WeChat signs a callback with the Token `token`.
pub fn signed_query(token: &str, timestamp: &str, nonce: &str) -> String {
    let sig = signature(&[token, timestamp, nonce]);
    format!("signature={sig}&timestamp={timestamp}&nonce={nonce}")
}

/// The `/wechat` URL of a plaintext push from `openid`, signed with `token` at `timestamp`.
pub fn push_url_at(base: &str, token: &str, timestamp: &str, nonce: &str, openid: &str) -> String {
    let query = signed_query(token, timestamp, nonce);
    format!("{base}/wechat?{query}&openid={openid}")
}

/// [`push_url_at`] now: the hub refuses pushes with a stale timestamp.
pub fn push_url(base: &str, token: &str, nonce: &str, openid: &str) -> String {
    push_url_at(base, token, &unix_now().to_string(), nonce, openid)
}

/// Pushes `xml` to the hub at `base` as WeChat does, signed with `token` at `timestamp`
/// (`openid=o` in the query).
pub async fn push_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    timestamp: &str,
    nonce: &str,
    xml: &str,
) -> reqwest::Response {
    http.post(push_url_at(base, token, timestamp, nonce, "o"))
        .body(xml.to_string())
        .send()
        .await
        .unwrap()
}

/// [`push_at`] now.
pub async fn push(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    nonce: &str,
    xml: &str,
) -> reqwest::Response {
    push_at(http, base, token, &unix_now().to_string(), nonce, xml).await
}

/// A scan push to the official account `to`: `event` is `subscribe` (a new follower; `key`
/// is `qrscene_<scene>`) or `SCAN` (already following; `key` is the bare scene).
pub fn scan_xml(to: &str, openid: &str, create_time: i64, event: &str, key: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey><Ticket><![CDATA[gQH00001+fake/Ticket1AAAA==]]></Ticket></xml>"
    )
}

/// The one article of a `news` reply; panics on any other reply.
pub fn news_article(reply: &str) -> Article {
    parse_article(reply)
        .unwrap_or_else(|e| panic!("news reply: {e:?}: {reply}"))
        .unwrap_or_else(|| panic!("an article in {reply}"))
}

// ---------------------------------------------------------------------------------------------
// Gallery pages

/// The attributes of every `<name …>` start tag, in document order (values unescaped).
pub fn tags(html: &str, name: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        rest = after;
        if !after.starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
            continue; // `<a` matched `<abbr`, say
        }
        let end = after.find('>').unwrap_or(after.len());
        out.push(attributes(&after[..end]));
    }
    out
}

fn attributes(mut s: &str) -> HashMap<String, String> {
    let mut attrs = HashMap::new();
    loop {
        s = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() {
            return attrs;
        }
        let name_end = s
            .find(|c: char| c.is_ascii_whitespace() || c == '=')
            .unwrap_or(s.len());
        let name = s[..name_end].to_ascii_lowercase();
        s = &s[name_end..];
        let mut value = String::new();
        if let Some(v) = s.strip_prefix("=\"") {
            let end = v.find('"').unwrap_or(v.len());
            value = unescape(&v[..end]);
            s = &v[(end + 1).min(v.len())..];
        }
        attrs.insert(name, value);
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The photo `<img>` elements' `src`, in order.
pub fn img_srcs(html: &str) -> Vec<String> {
    tags(html, "img")
        .into_iter()
        .map(|a| a.get("src").cloned().unwrap_or_default())
        .collect()
}

/// The photos' download links (`<a download>`), in order.
pub fn download_links(html: &str) -> Vec<HashMap<String, String>> {
    tags(html, "a")
        .into_iter()
        .filter(|a| a.contains_key("download"))
        .collect()
}

/// [`img_srcs`], a relative one taken as on `base`.
pub fn photo_urls(html: &str, base: &str) -> Vec<String> {
    img_srcs(html)
        .into_iter()
        .map(|src| {
            if src.starts_with("http") {
                src
            } else {
                format!("{base}{src}")
            }
        })
        .collect()
}

/// The page at `url`, as text.
pub async fn page(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// The photo URLs the gallery page at `url` shows, on the hub at `base`.
pub async fn gallery_photos(http: &reqwest::Client, base: &str, url: &str) -> Vec<String> {
    photo_urls(&page(http, url).await, base)
}

/// Uploads `bytes` as photo `photo` of `scene` (session id = scene), as the mirror with
/// `token` does; asserts `201`.
pub async fn upload_photo(hub: &LocalHub, token: &str, scene: &str, photo: &str, bytes: &[u8]) {
    let digest = sha256_hex(bytes);
    let r = Upload {
        token,
        scene,
        session: scene,
        photo,
        digest: &digest,
    }
    .request(&hub.http, &hub.base, 1_700_000_000_000, bytes.to_vec())
    .send()
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
}
