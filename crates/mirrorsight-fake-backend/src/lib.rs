//! A loopback stand-in for the WeChat API and the store backend, for tests and demos.
//!
//! It implements the contract in `shared/notes/wechat-api.md` (`cgi-bin/token`,
//! `cgi-bin/stable_token`, `cgi-bin/qrcode/create`, `cgi-bin/showqrcode`,
//! `wxa/getwxacodeunlimit`, errors as HTTP 200 + `errcode`), what WeChat does for a shopper
//! ([`shopper`]: web sign-in, mini-program login, customer-service messages) and the backend
//! contract in `docs/openapi.yaml` (`/v1/scenes`, scene registration, photo upload and delete
//! with idempotency, clip upload and its poster). All live on one listener, so one base URL
//! serves as `wechat.api_base`, `wechat.mp_base`, `wechat.oauth_base` and `backend.url`.
//!
//! Tests script faults per route ([`FakeHandle::inject`]), read back every request
//! ([`FakeHandle::requests`]), and can take the listener down and up again
//! ([`FakeHandle::go_down`]) for a real "connection refused". Other processes can do the same
//! over HTTP under `/__fake/` (see [`admin`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mirrorsight_contract::backend::{
    ClipUploadHeaders, ClipUploadResponse, CreateSceneRequest, CreateSceneResponse, ErrorBody,
    HeaderError, MAX_SCENE_LEN, PhotoUploadResponse, RegisterSceneRequest, SceneKind,
    UploadHeaders, bearer_token, error_code, is_clip_content_type, is_photo_content_type,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

pub mod admin;
pub mod shopper;

pub use shopper::{CustomMessage, Follower};

/// The fake's credentials and limits.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub appid: String,
    pub appsecret: String,
    /// `expires_in` of issued access tokens.
    pub token_expires_in: u64,
    /// Device token → device id.
    pub device_tokens: Vec<(String, String)>,
    /// Photos above this many bytes get `413`.
    pub max_photo_bytes: usize,
    /// Clips above this many bytes get `413`.
    pub max_clip_bytes: usize,
    /// The mini-program next to the official account (`sns/jscode2session`).
    pub mp_appid: String,
    pub mp_appsecret: String,
}

pub const FAKE_APPID: &str = "wxfake0123456789ab";
pub const FAKE_APPSECRET: &str = "fake-appsecret-0123456789abcdef";
pub const FAKE_DEVICE_TOKEN: &str = "fake-device-token-mirror-1";
pub const FAKE_DEVICE_TOKEN_2: &str = "fake-device-token-mirror-2";
pub const FAKE_MP_APPID: &str = "wxfakeminiprogram01";
pub const FAKE_MP_APPSECRET: &str = "fake-mp-appsecret-0123456789abcd";

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            appid: FAKE_APPID.to_string(),
            appsecret: FAKE_APPSECRET.to_string(),
            token_expires_in: 7200,
            device_tokens: vec![
                (FAKE_DEVICE_TOKEN.to_string(), "mirror-1".to_string()),
                (FAKE_DEVICE_TOKEN_2.to_string(), "mirror-2".to_string()),
            ],
            max_photo_bytes: 10 * 1024 * 1024,
            max_clip_bytes: 32 * 1024 * 1024,
            mp_appid: FAKE_MP_APPID.to_string(),
            mp_appsecret: FAKE_MP_APPSECRET.to_string(),
        }
    }
}

/// The endpoints faults can be aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Token,
    StableToken,
    QrcodeCreate,
    Showqrcode,
    WxacodeUnlimit,
    OauthAuthorize,
    OauthAccessToken,
    Jscode2session,
    CustomSend,
    Scenes,
    RegisterScene,
    PhotoUpload,
    PhotoDelete,
    ClipUpload,
    ClipPoster,
}

impl Route {
    fn classify(method: &Method, path: &str) -> Option<(Route, Vec<String>)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match (method.as_str(), segments.as_slice()) {
            ("GET", ["cgi-bin", "token"]) => Route::Token,
            ("POST", ["cgi-bin", "stable_token"]) => Route::StableToken,
            ("POST", ["cgi-bin", "qrcode", "create"]) => Route::QrcodeCreate,
            ("GET", ["cgi-bin", "showqrcode"]) => Route::Showqrcode,
            ("POST", ["wxa", "getwxacodeunlimit"]) => Route::WxacodeUnlimit,
            ("GET", ["connect", "oauth2", "authorize"]) => Route::OauthAuthorize,
            ("GET", ["sns", "oauth2", "access_token"]) => Route::OauthAccessToken,
            ("GET", ["sns", "jscode2session"]) => Route::Jscode2session,
            ("POST", ["cgi-bin", "message", "custom", "send"]) => Route::CustomSend,
            ("POST", ["v1", "scenes"]) => Route::Scenes,
            ("PUT", ["v1", "scenes", scene]) => {
                return Some((Route::RegisterScene, vec![scene.to_string()]));
            }
            ("POST", ["v1", "sessions", scene, "photos"]) => {
                return Some((Route::PhotoUpload, vec![scene.to_string()]));
            }
            ("DELETE", ["v1", "sessions", scene, "photos", photo]) => {
                return Some((
                    Route::PhotoDelete,
                    vec![scene.to_string(), photo.to_string()],
                ));
            }
            ("POST", ["v1", "sessions", scene, "clips"]) => {
                return Some((Route::ClipUpload, vec![scene.to_string()]));
            }
            ("PUT", ["v1", "sessions", scene, "clips", clip, "poster"]) => {
                return Some((Route::ClipPoster, vec![scene.to_string(), clip.to_string()]));
            }
            _ => return None,
        };
        Some((route, Vec::new()))
    }

    fn is_wechat(self) -> bool {
        matches!(
            self,
            Route::Token
                | Route::StableToken
                | Route::QrcodeCreate
                | Route::Showqrcode
                | Route::WxacodeUnlimit
                | Route::OauthAuthorize
                | Route::OauthAccessToken
                | Route::Jscode2session
                | Route::CustomSend
        )
    }
}

/// A scripted misbehaviour, applied to the next request(s) of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 200 with `{"errcode": N, "errmsg": "..."}`. For the token codes the presented
    /// access token really becomes invalid (`40001`/`40014`: revoked, `42001`: expired), as
    /// on the real platform, so a client must fetch another.
    Errcode(i64),
    /// HTTP 502 with an nginx-style HTML page.
    Html502,
    /// HTTP 200, `application/json`, with a truncated JSON body.
    MalformedJson,
    /// Answer normally, but only after this long.
    Delay(Duration),
    /// This HTTP status with an `ErrorBody` (and `Retry-After: 1` for 503 and 429).
    Status(u16),
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, still percent-encoded.
    pub query: Option<String>,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    #[serde(serialize_with = "admin::serialize_body")]
    pub body: Vec<u8>,
    pub route: Option<Route>,
}

impl RecordedRequest {
    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_query(self.query.as_deref().unwrap_or("")).remove(name)
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A scene the backend minted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SceneRecord {
    pub device: String,
    pub response: CreateSceneResponse,
}

/// A turn-around clip the backend stored, with its poster frame once put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredClip {
    pub device: String,
    pub scene: String,
    pub clip: String,
    pub session: String,
    pub taken_at_ms: u64,
    pub trigger: String,
    pub sha256: String,
    #[serde(serialize_with = "admin::serialize_body")]
    pub bytes: Vec<u8>,
    #[serde(serialize_with = "admin::serialize_optional_body")]
    pub poster: Option<Vec<u8>>,
}

/// A photo the backend stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPhoto {
    pub device: String,
    pub scene: String,
    pub photo: String,
    pub session: String,
    pub taken_at_ms: u64,
    pub trigger: String,
    pub sha256: String,
    #[serde(serialize_with = "admin::serialize_body")]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenStatus {
    Valid,
    Revoked,
    Expired,
}

#[derive(Default)]
struct Data {
    requests: Vec<RecordedRequest>,
    faults: HashMap<Route, VecDeque<(Fault, usize)>>,
    tokens: HashMap<String, TokenStatus>,
    stable_current: Option<String>,
    issued: u64,
    tickets: HashMap<String, String>,
    scenes: HashMap<String, SceneRecord>,
    photos: HashMap<(String, String), StoredPhoto>,
    clips: HashMap<(String, String), StoredClip>,
    claimed: HashMap<String, String>,
    shopper: shopper::ShopperData,
}

struct App {
    config: FakeConfig,
    data: Mutex<Data>,
}

impl App {
    fn data(&self) -> MutexGuard<'_, Data> {
        // A test that panicked while holding the lock has already failed; keep serving.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_fault(&self, route: Route) -> Option<Fault> {
        let mut data = self.data();
        let queue = data.faults.get_mut(&route)?;
        let (fault, remaining) = queue.front_mut()?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Stop,
}

/// Entry point: [`FakeServer::start`].
pub struct FakeServer;

impl FakeServer {
    /// Starts on `127.0.0.1:0` with [`FakeConfig::default`]; returns the base URL (no trailing
    /// slash) and the handle. Must run inside a tokio runtime.
    pub async fn start() -> std::io::Result<(String, FakeHandle)> {
        Self::start_with(
            FakeConfig::default(),
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
        )
        .await
    }

    /// Starts on `listen` with `config`.
    pub async fn start_with(
        config: FakeConfig,
        listen: SocketAddr,
    ) -> std::io::Result<(String, FakeHandle)> {
        let listener = bind(listen)?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App {
            config,
            data: Mutex::new(Data::default()),
        });
        let (mode_tx, mode_rx) = watch::channel(Mode::Up);
        let (listening_tx, listening_rx) = watch::channel(true);
        let task = tokio::spawn(supervise(
            listener,
            addr,
            Arc::clone(&app),
            mode_rx,
            listening_tx,
        ));
        let url = format!("http://{addr}");
        Ok((
            url.clone(),
            FakeHandle {
                url,
                addr,
                app,
                mode: mode_tx,
                listening: listening_rx,
                task: Mutex::new(Some(task)),
            },
        ))
    }

    /// For tests without a runtime of their own: runs the fake on a dedicated thread.
    pub fn start_blocking() -> std::io::Result<BlockingFakeServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-backend")
            .enable_all()
            .build()?;
        let (url, handle) = runtime.block_on(Self::start())?;
        Ok(BlockingFakeServer {
            url,
            handle,
            runtime,
        })
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Lets `come_back` rebind the same port while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn supervise(
    first: TcpListener,
    addr: SocketAddr,
    app: Arc<App>,
    mut mode: watch::Receiver<Mode>,
    listening: watch::Sender<bool>,
) {
    let router = Router::new().fallback(handle_any).with_state(app);
    let mut listener = Some(first);
    loop {
        let current = match listener.take() {
            Some(l) => l,
            None => {
                // Down: wait to be brought back (or stopped).
                if mode
                    .wait_for(|m| *m != Mode::Down)
                    .await
                    .map(|m| *m)
                    .unwrap_or(Mode::Stop)
                    == Mode::Stop
                {
                    break;
                }
                match rebind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "fake backend cannot listen again");
                        break;
                    }
                }
            }
        };
        let _ = listening.send(true);
        let mut shutdown_mode = mode.clone();
        let shutdown = async move {
            let _ = shutdown_mode.wait_for(|m| *m != Mode::Up).await;
        };
        if let Err(e) = axum::serve(current, router.clone())
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "fake backend server failed");
        }
        let _ = listening.send(false);
        if *mode.borrow() == Mode::Stop {
            break;
        }
    }
    let _ = listening.send(false);
}

async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// Controls a running fake. Dropping it stops the server.
pub struct FakeHandle {
    url: String,
    addr: SocketAddr,
    app: Arc<App>,
    mode: watch::Sender<Mode>,
    listening: watch::Receiver<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for FakeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHandle")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FakeHandle {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &FakeConfig {
        &self.app.config
    }

    /// Makes the next `times` requests to `route` misbehave as `fault` (after any faults
    /// already queued for it).
    pub fn inject(&self, route: Route, fault: Fault, times: usize) {
        if times > 0 {
            self.app
                .data()
                .faults
                .entry(route)
                .or_default()
                .push_back((fault, times));
        }
    }

    pub fn clear_faults(&self) {
        self.app.data().faults.clear();
    }

    /// Every request so far (admin requests excluded), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.data().requests.clone()
    }

    pub fn requests_to(&self, route: Route) -> Vec<RecordedRequest> {
        self.app
            .data()
            .requests
            .iter()
            .filter(|r| r.route == Some(route))
            .cloned()
            .collect()
    }

    pub fn count(&self, route: Route) -> usize {
        self.app
            .data()
            .requests
            .iter()
            .filter(|r| r.route == Some(route))
            .count()
    }

    pub fn clear_requests(&self) {
        self.app.data().requests.clear();
    }

    /// Every access token issued so far becomes expired (`42001` on use).
    pub fn expire_tokens(&self) {
        let mut data = self.app.data();
        for status in data.tokens.values_mut() {
            if *status == TokenStatus::Valid {
                *status = TokenStatus::Expired;
            }
        }
    }

    /// Access tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.app.data().issued
    }

    pub fn scenes(&self) -> Vec<SceneRecord> {
        self.app.data().scenes.values().cloned().collect()
    }

    pub fn scene(&self, scene: &str) -> Option<SceneRecord> {
        self.app.data().scenes.get(scene).cloned()
    }

    /// Who is "signed in to WeChat" in the browser that opens the authorize page: it then
    /// redirects back with a code for this openid. `None`: a browser outside WeChat.
    pub fn sign_in_as(&self, openid: Option<&str>) {
        self.app.data().shopper.signed_in = openid.map(str::to_string);
    }

    /// A mini-program login code for `openid`, as `wx.login` would give it.
    pub fn mini_program_code(&self, openid: &str) -> String {
        self.app.data().shopper.mini_program_code(openid)
    }

    /// How the platform sees `openid` when a customer-service message is sent to them
    /// (default: [`Follower::Following`]).
    pub fn set_follower(&self, openid: &str, state: Follower) {
        self.app
            .data()
            .shopper
            .followers
            .insert(openid.to_string(), state);
    }

    /// Customer-service messages delivered so far, in order.
    pub fn custom_messages(&self) -> Vec<CustomMessage> {
        self.app.data().shopper.messages.clone()
    }

    pub fn photos(&self) -> Vec<StoredPhoto> {
        self.app.data().photos.values().cloned().collect()
    }

    pub fn clips(&self) -> Vec<StoredClip> {
        self.app.data().clips.values().cloned().collect()
    }

    pub fn photo(&self, scene: &str, photo: &str) -> Option<StoredPhoto> {
        self.app
            .data()
            .photos
            .get(&(scene.to_string(), photo.to_string()))
            .cloned()
    }

    /// Closes the listener and every idle connection: clients get "connection refused"
    /// until [`Self::come_back`]. Waits for requests in progress to finish.
    pub async fn go_down(&self) {
        let _ = self.mode.send(Mode::Down);
        let mut listening = self.listening.clone();
        let _ = listening.wait_for(|l| !*l).await;
    }

    /// Listens again on the same address.
    pub async fn come_back(&self) {
        let _ = self.mode.send(Mode::Up);
        let mut listening = self.listening.clone();
        let _ = listening.wait_for(|l| *l).await;
    }

    /// Stops the server and waits for it.
    pub async fn stop(&self) {
        let _ = self.mode.send(Mode::Stop);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        let _ = self.mode.send(Mode::Stop);
    }
}

/// A fake running on its own thread, for synchronous tests.
pub struct BlockingFakeServer {
    url: String,
    handle: FakeHandle,
    runtime: tokio::runtime::Runtime,
}

impl BlockingFakeServer {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn handle(&self) -> &FakeHandle {
        &self.handle
    }

    pub fn go_down(&self) {
        self.runtime.block_on(self.handle.go_down());
    }

    pub fn come_back(&self) {
        self.runtime.block_on(self.handle.come_back());
    }
}

impl std::ops::Deref for BlockingFakeServer {
    type Target = FakeHandle;
    fn deref(&self) -> &FakeHandle {
        &self.handle
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, so a ticket whose `+` was
/// not percent-encoded by the client arrives damaged, as it would at WeChat.
fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

pub(crate) fn wechat_error(code: i64, msg: &str) -> Response {
    let body = json!({"errcode": code, "errmsg": format!("{msg} rid: 66fa1c2b-0a1b2c3d-4e5f6a7b")});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; encoding=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn wechat_json(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; encoding=utf-8")],
        value.to_string(),
    )
        .into_response()
}

fn backend_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let mut response = (status, axum::Json(ErrorBody::new(code, message))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn fault_response(route: Route, fault: &Fault) -> Option<Response> {
    Some(match fault {
        Fault::Delay(_) => return None,
        Fault::Errcode(code) => wechat_error(*code, "injected fault"),
        Fault::Html502 => (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "text/html")], HTML_502).into_response(),
        Fault::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; encoding=utf-8")],
            r#"{"ticket":"gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xLzAy","expire_seconds":36"#,
        )
            .into_response(),
        Fault::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if route.is_wechat() {
                (status, [(header::CONTENT_TYPE, "text/plain")], format!("{status}")).into_response()
            } else {
                let error = match status.as_u16() {
                    401 => error_code::UNAUTHORIZED,
                    403 => error_code::FORBIDDEN,
                    404 => error_code::NOT_FOUND,
                    409 => error_code::CONFLICT,
                    413 => error_code::PAYLOAD_TOO_LARGE,
                    429 => error_code::RATE_LIMITED,
                    502 => error_code::UPSTREAM,
                    503 => error_code::UNAVAILABLE,
                    _ => error_code::BAD_REQUEST,
                };
                backend_error(status, error, "injected fault")
            }
        }
    })
}

async fn handle_any(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    // Generous: the photo size check below wants to see the whole body and answer 413
    // itself rather than cut the connection.
    let limit = app
        .config
        .max_photo_bytes
        .max(app.config.max_clip_bytes)
        .saturating_add(4 * 1024 * 1024);
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return backend_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_code::PAYLOAD_TOO_LARGE,
                "body too large",
            );
        }
    };
    if let Some(rest) = path.strip_prefix("/__fake/") {
        return admin::handle(&app, &parts.method, rest, &body);
    }
    let classified = Route::classify(&parts.method, &path);
    let route = classified.as_ref().map(|(r, _)| *r);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    app.data().requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers,
        body: body.clone(),
        route,
    });
    let Some((route, params)) = classified else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if let Some(fault) = app.next_fault(route) {
        if let Fault::Delay(d) = fault {
            tokio::time::sleep(d).await;
        }
        if let Fault::Errcode(code) = fault
            && matches!(code, 40001 | 40014 | 42001)
            && let Some(token) = parse_query(query.as_deref().unwrap_or("")).get("access_token")
        {
            let status = if code == 42001 {
                TokenStatus::Expired
            } else {
                TokenStatus::Revoked
            };
            app.data().tokens.insert(token.clone(), status);
        }
        if let Some(response) = fault_response(route, &fault) {
            return response;
        }
    }
    let q = parse_query(query.as_deref().unwrap_or(""));
    match route {
        Route::Token => token(&app, &q),
        Route::StableToken => stable_token(&app, &body),
        Route::QrcodeCreate => check_token(&app, &q).unwrap_or_else(|| qrcode_create(&app, &body)),
        Route::Showqrcode => showqrcode(&app, &q),
        Route::WxacodeUnlimit => check_token(&app, &q).unwrap_or_else(|| wxacode_unlimit(&body)),
        Route::OauthAuthorize => shopper::authorize(&app, &q),
        Route::OauthAccessToken => shopper::oauth_access_token(&app, &q),
        Route::Jscode2session => shopper::jscode2session(&app, &q),
        Route::CustomSend => {
            check_token(&app, &q).unwrap_or_else(|| shopper::custom_send(&app, &body))
        }
        Route::Scenes
        | Route::RegisterScene
        | Route::PhotoUpload
        | Route::PhotoDelete
        | Route::ClipUpload
        | Route::ClipPoster => {
            let device = match device(&app, &parts.headers) {
                Ok(device) => device,
                Err(e) => {
                    return backend_error(StatusCode::BAD_REQUEST, error_code::BAD_REQUEST, e);
                }
            };
            let Some(device) = device else {
                return backend_error(
                    StatusCode::UNAUTHORIZED,
                    error_code::UNAUTHORIZED,
                    "missing or unknown device token",
                );
            };
            match (route, params.as_slice()) {
                (Route::Scenes, _) => create_scene(&app, &device, &body),
                (Route::RegisterScene, [scene]) => register_scene(&app, &device, scene, &body),
                (Route::PhotoUpload, [scene]) => {
                    upload_photo(&app, &device, scene, &parts.headers, body)
                }
                (Route::PhotoDelete, [scene, photo]) => delete_photo(&app, &device, scene, photo),
                (Route::ClipUpload, [scene]) => {
                    upload_clip(&app, &device, scene, &parts.headers, body)
                }
                (Route::ClipPoster, [scene, clip]) => {
                    put_clip_poster(&app, &device, scene, clip, &parts.headers, body)
                }
                _ => (StatusCode::NOT_FOUND, "not found").into_response(),
            }
        }
    }
}

fn issue_token(data: &mut Data) -> String {
    data.issued += 1;
    // Real tokens are ~140 characters of [A-Za-z0-9_-]; clients must not assume less.
    let token = format!("{:03}_FAKE_{}", data.issued, "aB3-_x9Zq".repeat(14));
    data.tokens.insert(token.clone(), TokenStatus::Valid);
    token
}

fn check_credentials(
    app: &App,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Option<Response> {
    if grant_type != Some("client_credential") {
        return Some(wechat_error(40002, "invalid grant_type"));
    }
    if appid != Some(app.config.appid.as_str()) {
        return Some(wechat_error(40013, "invalid appid"));
    }
    if secret != Some(app.config.appsecret.as_str()) {
        return Some(wechat_error(40125, "invalid appsecret"));
    }
    None
}

fn token(app: &App, q: &HashMap<String, String>) -> Response {
    if let Some(err) = check_credentials(
        app,
        q.get("grant_type").map(String::as_str),
        q.get("appid").map(String::as_str),
        q.get("secret").map(String::as_str),
    ) {
        return err;
    }
    let token = issue_token(&mut app.data());
    wechat_json(json!({"access_token": token, "expires_in": app.config.token_expires_in}))
}

fn stable_token(app: &App, body: &[u8]) -> Response {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return wechat_error(47001, "data format error");
    };
    let field = |k: &str| value.get(k).and_then(serde_json::Value::as_str);
    if let Some(err) = check_credentials(app, field("grant_type"), field("appid"), field("secret"))
    {
        return err;
    }
    let force = value
        .get("force_refresh")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let mut data = app.data();
    let current = data
        .stable_current
        .clone()
        .filter(|t| data.tokens.get(t) == Some(&TokenStatus::Valid));
    let token = match (force, current) {
        (false, Some(t)) => t,
        (_, previous) => {
            if let Some(old) = previous {
                data.tokens.insert(old, TokenStatus::Revoked);
            }
            let t = issue_token(&mut data);
            data.stable_current = Some(t.clone());
            t
        }
    };
    wechat_json(json!({"access_token": token, "expires_in": app.config.token_expires_in}))
}

/// `Some(error)` when the call's `access_token` is missing or no good.
fn check_token(app: &App, q: &HashMap<String, String>) -> Option<Response> {
    let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
        return Some(wechat_error(41001, "access_token missing"));
    };
    match app.data().tokens.get(token) {
        Some(TokenStatus::Valid) => None,
        Some(TokenStatus::Expired) => Some(wechat_error(42001, "access_token expired")),
        Some(TokenStatus::Revoked) => Some(wechat_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        )),
        None => Some(wechat_error(40014, "invalid access_token")),
    }
}

fn qrcode_create(app: &App, body: &[u8]) -> Response {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return wechat_error(47001, "data format error");
    };
    let action = value
        .get("action_name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let temporary = match action {
        "QR_SCENE" | "QR_STR_SCENE" => true,
        "QR_LIMIT_SCENE" | "QR_LIMIT_STR_SCENE" => false,
        _ => return wechat_error(40052, "invalid action name"),
    };
    // Like the real API: no `scene` wrapper is accepted and yields scene 0.
    let scene_obj = value.pointer("/action_info/scene");
    let scene = if action.ends_with("STR_SCENE") {
        let s = scene_obj
            .and_then(|s| s.get("scene_str"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if scene_obj.is_some() && !(1..=64).contains(&s.chars().count()) {
            return wechat_error(40053, "invalid action info");
        }
        if scene_obj.is_none() {
            "0".to_string()
        } else {
            s.to_string()
        }
    } else {
        let id = scene_obj
            .and_then(|s| s.get("scene_id"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let max = if temporary { 2_147_483_647 } else { 100_000 };
        if scene_obj.is_some() && !(1..=max).contains(&id) {
            return wechat_error(40053, "invalid action info");
        }
        id.to_string()
    };
    let expire = match value.get("expire_seconds") {
        None => 60,
        Some(v) => match v.as_u64() {
            Some(s) if (1..=2_592_000).contains(&s) => s,
            _ => return wechat_error(40009, "invalid expire_seconds"),
        },
    };
    let mut data = app.data();
    let n = data.tickets.len() + 1;
    // Real tickets are base64 and contain `+ / =`: clients must URL-encode them.
    let ticket = format!("gQH{n:05}+fake/Ticket{n}AAAA==");
    let url = format!("http://weixin.qq.com/q/02fake{n:05}");
    data.tickets.insert(ticket.clone(), scene);
    if temporary {
        wechat_json(json!({"ticket": ticket, "expire_seconds": expire, "url": url}))
    } else {
        wechat_json(json!({"ticket": ticket, "url": url}))
    }
}

/// Bytes that look like a JPEG to anyone checking the magic numbers.
fn fake_jpeg(label: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend_from_slice(label.as_bytes());
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

fn showqrcode(app: &App, q: &HashMap<String, String>) -> Response {
    let ticket = q.get("ticket").cloned().unwrap_or_default();
    if !app.data().tickets.contains_key(&ticket) {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>404</body></html>",
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "image/jpg")],
        fake_jpeg(&format!("QR:{ticket}")),
    )
        .into_response()
}

fn wxacode_unlimit(body: &[u8]) -> Response {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return wechat_error(
            40169,
            "invalid length for scene, or the data is not json string",
        );
    };
    let scene = value
        .get("scene")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if !(1..=32).contains(&scene.chars().count()) {
        return wechat_error(
            40169,
            "invalid length for scene, or the data is not json string",
        );
    }
    if !scene
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$&'()*+,/:;=?@-._~".contains(c))
    {
        return wechat_error(40129, "invalid scene");
    }
    if let Some(page) = value.get("page").and_then(serde_json::Value::as_str)
        && (page.starts_with('/') || page.contains('?'))
    {
        return wechat_error(41030, "invalid page");
    }
    if let Some(width) = value.get("width").and_then(serde_json::Value::as_u64)
        && !(280..=1280).contains(&width)
    {
        return wechat_error(40097, "invalid args: width");
    }
    if let Some(env) = value.get("env_version").and_then(serde_json::Value::as_str)
        && !matches!(env, "release" | "trial" | "develop")
    {
        return wechat_error(40097, "invalid args: env_version");
    }
    let width = value
        .get("width")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(430);
    match wxacode_png(scene, width as usize) {
        Some(png) => (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], png).into_response(),
        None => wechat_error(-1, "system error"),
    }
}

/// What the fake draws for a mini-program code: a grayscale PNG about `width` pixels wide
/// holding a QR code of the scene (WeChat's round codes cannot be read without WeChat; a QR
/// lets a test read back what the mirror shows).
fn wxacode_png(scene: &str, width: usize) -> Option<Vec<u8>> {
    let code =
        qrcode::QrCode::with_error_correction_level(scene.as_bytes(), qrcode::EcLevel::M).ok()?;
    let modules = code.width() + 8;
    let module_px = (width / modules).max(1);
    let side = modules * module_px;
    let dark = code.to_colors();
    let mut gray = vec![255u8; side * side];
    for (i, color) in dark.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % code.width() + 4, i / code.width() + 4);
            for y in my * module_px..(my + 1) * module_px {
                gray[y * side + mx * module_px..y * side + (mx + 1) * module_px].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&gray).ok()?;
    writer.finish().ok()?;
    Some(out)
}

/// The device whose token the request carries (the contract's bearer parsing, shared with the
/// hub); an error message for a repeated `Authorization` header.
fn device(app: &App, headers: &HeaderMap) -> Result<Option<String>, String> {
    let token = bearer_token(header_pairs(headers)).map_err(|e| e.to_string())?;
    Ok(token.and_then(|token| {
        app.config
            .device_tokens
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, d)| d.clone())
    }))
}

fn header_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
}

/// A scene as the contract allows it: 1..=64 characters, no whitespace or control characters.
fn valid_scene(s: &str) -> bool {
    (1..=MAX_SCENE_LEN).contains(&s.chars().count())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn create_scene(app: &App, device: &str, body: &[u8]) -> Response {
    let request: CreateSceneRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return backend_error(
                StatusCode::BAD_REQUEST,
                error_code::BAD_REQUEST,
                format!("body: {e}"),
            );
        }
    };
    if !valid_scene(&request.scene) {
        return backend_error(
            StatusCode::BAD_REQUEST,
            error_code::BAD_REQUEST,
            "scene must be 1..=64 characters",
        );
    }
    let permanent = request.kind == SceneKind::Idle;
    if !permanent && !(1..=2_592_000).contains(&request.expire_seconds) {
        return backend_error(
            StatusCode::BAD_REQUEST,
            error_code::BAD_REQUEST,
            "expire_seconds must be 1..=2592000",
        );
    }
    let mut data = app.data();
    if let Some(existing) = data.scenes.get(&request.scene) {
        if existing.device != device {
            return foreign_scene();
        }
        return (StatusCode::OK, axum::Json(existing.response.clone())).into_response();
    }
    let n = data.scenes.len() + 1;
    let response = CreateSceneResponse {
        scene: request.scene.clone(),
        url: format!("http://weixin.qq.com/q/02relay{n:05}"),
        ticket: Some(format!("gQHrelay{n:05}+fake/Ticket==")),
        // Permanent codes answer 0: they never expire.
        expires_at: if permanent {
            0
        } else {
            unix_now() + u64::from(request.expire_seconds)
        },
    };
    data.scenes.insert(
        request.scene,
        SceneRecord {
            device: device.to_string(),
            response: response.clone(),
        },
    );
    (StatusCode::CREATED, axum::Json(response)).into_response()
}

/// `PUT /v1/scenes/{scene}`: a code the mirror minted itself.
fn register_scene(app: &App, device: &str, scene: &str, body: &[u8]) -> Response {
    let bad = |msg: String| backend_error(StatusCode::BAD_REQUEST, error_code::BAD_REQUEST, msg);
    if !valid_scene(scene) {
        return bad("scene must be 1..=64 characters".into());
    }
    let request: RegisterSceneRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad(format!("body: {e}")),
    };
    if request.url.is_empty() {
        return bad("url must not be empty".into());
    }
    let mut data = app.data();
    if let Some(refused) = refuse_foreign_scene(&data, scene, device) {
        return refused;
    }
    let response = CreateSceneResponse {
        scene: scene.to_string(),
        url: request.url,
        ticket: request.ticket,
        expires_at: request.expires_at.unwrap_or(0),
    };
    let existed = data
        .scenes
        .insert(
            scene.to_string(),
            SceneRecord {
                device: device.to_string(),
                response: response.clone(),
            },
        )
        .is_some();
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, axum::Json(response)).into_response()
}

/// The device that owns `scene`: the one that minted it, or else the first to upload to it.
fn scene_owner(data: &Data, scene: &str) -> Option<String> {
    data.scenes
        .get(scene)
        .map(|s| s.device.clone())
        .or_else(|| data.claimed.get(scene).cloned())
}

/// What differs between the photo and the clip upload routes (stored as `T`, confirmed with
/// an `A`); everything else is [`upload_media`].
struct MediaRoute<T, A> {
    /// `photo` or `clip`, in messages.
    what: &'static str,
    /// The refusal of another content type.
    wrong_type: &'static str,
    is_content_type: fn(&str) -> bool,
    max_bytes: usize,
    /// The checked metadata headers, the id from `X-Photo-Id` or `X-Clip-Id`.
    headers: fn(&HeaderMap) -> Result<MediaHeaders, HeaderError>,
    /// Where uploads of this kind are kept, by (scene, id).
    shelf: fn(&mut Data) -> &mut HashMap<(String, String), T>,
    /// The confirmation: id, sha256 and length.
    answer: fn(&MediaHeaders, u64) -> A,
    /// What is kept of an upload by a device to a scene.
    stored: fn(MediaHeaders, &str, &str, Vec<u8>) -> T,
}

/// The checked metadata of one upload, photo or clip.
struct MediaHeaders {
    id: String,
    session: String,
    taken_at_ms: u64,
    trigger: String,
    sha256: String,
}

impl From<UploadHeaders> for MediaHeaders {
    fn from(h: UploadHeaders) -> Self {
        Self {
            id: h.photo,
            session: h.session,
            taken_at_ms: h.taken_at_ms,
            trigger: h.trigger,
            sha256: h.sha256,
        }
    }
}

impl From<ClipUploadHeaders> for MediaHeaders {
    fn from(h: ClipUploadHeaders) -> Self {
        Self {
            id: h.clip,
            session: h.session,
            taken_at_ms: h.taken_at_ms,
            trigger: h.trigger,
            sha256: h.sha256,
        }
    }
}

/// What a stored upload is asked when the same id comes again.
trait StoredMedia {
    fn sha256(&self) -> &str;
}

impl StoredMedia for StoredPhoto {
    fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl StoredMedia for StoredClip {
    fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// The refusal of a request about a scene another device owns.
fn foreign_scene() -> Response {
    backend_error(
        StatusCode::FORBIDDEN,
        error_code::FORBIDDEN,
        "scene belongs to another device",
    )
}

/// [`foreign_scene`] when another device owns `scene` (minted it, or uploaded to it first).
fn refuse_foreign_scene(data: &Data, scene: &str, device: &str) -> Option<Response> {
    scene_owner(data, scene)
        .filter(|owner| owner != device)
        .map(|_| foreign_scene())
}

/// One upload (a photo or a clip): the scene, metadata headers, content type, size and
/// digest checked, the scene claimed for `device` if nobody owns it; stored under (scene, id)
/// unless the id is taken: `201`, or `200` when the same bytes are there already (a retry),
/// or `409` when other bytes are.
fn upload_media<T: StoredMedia, A: Serialize>(
    app: &App,
    device: &str,
    scene: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    route: &MediaRoute<T, A>,
) -> Response {
    let bad = |msg: &str| backend_error(StatusCode::BAD_REQUEST, error_code::BAD_REQUEST, msg);
    if !valid_scene(scene) {
        return bad("scene must be 1..=64 characters");
    }
    let meta = match (route.headers)(headers) {
        Ok(meta) => meta,
        Err(e) => return bad(&e.to_string()),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(route.is_content_type)(content_type) {
        return backend_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_code::UNSUPPORTED_MEDIA_TYPE,
            route.wrong_type,
        );
    }
    if body.len() > route.max_bytes {
        return backend_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::PAYLOAD_TOO_LARGE,
            format!("at most {} bytes", route.max_bytes),
        );
    }
    if hex::encode(Sha256::digest(&body)) != meta.sha256 {
        return backend_error(
            StatusCode::BAD_REQUEST,
            error_code::DIGEST_MISMATCH,
            "X-Content-SHA256 does not match the body",
        );
    }
    let mut data = app.data();
    match scene_owner(&data, scene) {
        Some(owner) if owner != device => return foreign_scene(),
        Some(_) => {}
        None => {
            data.claimed.insert(scene.to_string(), device.to_string());
        }
    }
    let key = (scene.to_string(), meta.id.clone());
    let confirmation = axum::Json((route.answer)(&meta, body.len() as u64));
    let shelf = (route.shelf)(&mut data);
    if let Some(existing) = shelf.get(&key) {
        if existing.sha256() == meta.sha256 {
            return (StatusCode::OK, confirmation).into_response();
        }
        return backend_error(
            StatusCode::CONFLICT,
            error_code::CONFLICT,
            format!("{} id already stored with different bytes", route.what),
        );
    }
    shelf.insert(key, (route.stored)(meta, device, scene, body));
    (StatusCode::CREATED, confirmation).into_response()
}

fn upload_photo(
    app: &App,
    device: &str,
    scene: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response {
    let route = MediaRoute {
        what: "photo",
        wrong_type: "photos are image/jpeg",
        is_content_type: is_photo_content_type,
        max_bytes: app.config.max_photo_bytes,
        headers: |h| UploadHeaders::parse(header_pairs(h)).map(MediaHeaders::from),
        shelf: |data| &mut data.photos,
        answer: |meta, bytes| PhotoUploadResponse {
            photo: meta.id.clone(),
            sha256: meta.sha256.clone(),
            bytes,
        },
        stored: |meta, device, scene, bytes| StoredPhoto {
            device: device.to_string(),
            scene: scene.to_string(),
            photo: meta.id,
            session: meta.session,
            taken_at_ms: meta.taken_at_ms,
            trigger: meta.trigger,
            sha256: meta.sha256,
            bytes,
        },
    };
    upload_media(app, device, scene, headers, body, &route)
}

fn upload_clip(
    app: &App,
    device: &str,
    scene: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response {
    let route = MediaRoute {
        what: "clip",
        wrong_type: "clips are video/mp4",
        is_content_type: is_clip_content_type,
        max_bytes: app.config.max_clip_bytes,
        headers: |h| ClipUploadHeaders::parse(header_pairs(h)).map(MediaHeaders::from),
        shelf: |data| &mut data.clips,
        answer: |meta, bytes| ClipUploadResponse {
            clip: meta.id.clone(),
            sha256: meta.sha256.clone(),
            bytes,
        },
        stored: |meta, device, scene, bytes| StoredClip {
            device: device.to_string(),
            scene: scene.to_string(),
            clip: meta.id,
            session: meta.session,
            taken_at_ms: meta.taken_at_ms,
            trigger: meta.trigger,
            sha256: meta.sha256,
            bytes,
            poster: None,
        },
    };
    upload_media(app, device, scene, headers, body, &route)
}

fn put_clip_poster(
    app: &App,
    device: &str,
    scene: &str,
    clip: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_photo_content_type(content_type) {
        return backend_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_code::UNSUPPORTED_MEDIA_TYPE,
            "posters are image/jpeg",
        );
    }
    if body.len() > app.config.max_photo_bytes {
        return backend_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::PAYLOAD_TOO_LARGE,
            format!("at most {} bytes", app.config.max_photo_bytes),
        );
    }
    let declared = headers
        .get(mirrorsight_contract::backend::header::CONTENT_SHA256)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if hex::encode(Sha256::digest(&body)) != declared {
        return backend_error(
            StatusCode::BAD_REQUEST,
            error_code::DIGEST_MISMATCH,
            "X-Content-SHA256 missing or not the body's",
        );
    }
    let mut data = app.data();
    if let Some(refused) = refuse_foreign_scene(&data, scene, device) {
        return refused;
    }
    match data.clips.get_mut(&(scene.to_string(), clip.to_string())) {
        Some(stored) => {
            stored.poster = Some(body);
            StatusCode::NO_CONTENT.into_response()
        }
        None => backend_error(
            StatusCode::NOT_FOUND,
            error_code::NOT_FOUND,
            "no such clip; upload it first",
        ),
    }
}

fn delete_photo(app: &App, device: &str, scene: &str, photo: &str) -> Response {
    let mut data = app.data();
    if let Some(refused) = refuse_foreign_scene(&data, scene, device) {
        return refused;
    }
    match data.photos.remove(&(scene.to_string(), photo.to_string())) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => backend_error(
            StatusCode::NOT_FOUND,
            error_code::NOT_FOUND,
            "no such photo",
        ),
    }
}
