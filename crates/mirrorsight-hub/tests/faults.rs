//! Fault injection against a real hub on loopback: what slow, oversized, malformed, repeated,
//! replayed and forged requests get, each with the exact status. Timeouts are set to a second
//! so every slow client is cut within a few; no test waits on anything unbounded, and no test
//! times the hub (that is the benchmark's job), it only bounds how long a refusal may take.

mod support {
    pub mod hub;
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use mirrorsight_contract::backend::{ErrorBody, SCENES_PATH, error_code, header as h};
use mirrorsight_fake_backend::{FAKE_APPID, Fault, Route};
use mirrorsight_hub::config::CallbackMode;
use mirrorsight_hub::http::unix_now;
use mirrorsight_hub::store::NonceUse;
use mirrorsight_hub::wechat::{Incoming, MessageCrypt, signature};
use mirrorsight_hub::{HubConfig, HubSecrets};
use mirrorsight_wechat::Secret;
use reqwest::StatusCode;
use support::hub::{self, LocalHub, sha256_hex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CALLBACK_TOKEN: &str = "faultsCallbackToken0123";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const ADMIN: &str = "faults-admin-token-0123456789";
const MIRROR_1: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const MIRROR_2: &str = "device-token-mirror-2-yyyyyyyyyyyy";
/// WeChat's published safe-mode sample (`WXBizMsgCrypt` demo), for the account
/// `wx2c2769f8efd9abc2`, under [`AES_KEY`]: a text message.
const SAMPLE_APPID: &str = "wx2c2769f8efd9abc2";
const SAMPLE_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

/// Every refusal below must come well within this.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A hub in safe mode with one-second timeouts, an admin token and two mirrors; `configure`
/// adjusts it further.
async fn start(configure: impl FnOnce(&mut HubConfig)) -> LocalHub {
    let secrets = HubSecrets {
        encoding_aes_key: Some(Secret::new(AES_KEY)),
        admin_token: Some(Secret::new(ADMIN)),
        ..hub::fake_wechat_secrets(CALLBACK_TOKEN)
    };
    let devices = [
        ("mirror-1", "shop-1", MIRROR_1),
        ("mirror-2", "shop-1", MIRROR_2),
    ];
    LocalHub::start(secrets, &devices, |config| {
        config.callback.mode = CallbackMode::Safe;
        config.photos.max_bytes = 64 * 1024;
        config.callback.max_body_bytes = 4096;
        config.http.header_read_timeout_s = 1;
        config.http.body_read_timeout_s = 1;
        config.http.request_timeout_s = 2;
        configure(config);
    })
    .await
}

fn addr(env: &LocalHub) -> String {
    env.base.trim_start_matches("http://").to_string()
}

/// Sends `request` on a fresh connection and reads until the hub closes it.
async fn exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    // A reset after the answer (the hub closing with unread bytes) still leaves the answer.
    let _ = tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut answer))
        .await
        .expect("the hub closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn error_code_of(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
    let end = body.rfind('}').map_or(body.len(), |i| i + 1);
    serde_json::from_str::<ErrorBody>(&body[..end])
        .map(|b| b.error)
        .unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body: ErrorBody = resp.json().await.unwrap();
    (status, body.error)
}

fn jpeg(n: usize) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.resize(n.max(6) - 2, 0x5A);
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

/// The head of a photo upload by mirror 1, as the contract spells it, without a body framing.
fn upload_head(scene: &str, photo: &str, body: &[u8]) -> String {
    format!(
        "POST /v1/sessions/{scene}/photos HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {MIRROR_1}\r\nContent-Type: image/jpeg\r\n{}: {photo}\r\n{}: {photo}\r\n{}: s1\r\n{}: 1767225600123\r\n{}: thumbs_up\r\n{}: {}\r\nConnection: close\r\n",
        h::IDEMPOTENCY_KEY,
        h::PHOTO_ID,
        h::SESSION_ID,
        h::TAKEN_AT,
        h::TRIGGER,
        h::CONTENT_SHA256,
        sha256_hex(body)
    )
}

/// `body` as HTTP/1.1 chunks of `size` bytes, with the last chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Pushes

static NONCES: AtomicU64 = AtomicU64::new(1_000_000);

/// A nonce no other push of this run used.
fn nonce() -> String {
    NONCES.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The `/wechat` URL of a safe-mode push of `encrypt`, signed with our Token at `timestamp`.
fn safe_push_url(base: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let sig = signature(&[CALLBACK_TOKEN, timestamp, nonce]);
    let msg_sig = signature(&[CALLBACK_TOKEN, timestamp, nonce, encrypt]);
    format!(
        "{base}/wechat?signature={sig}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_sig}"
    )
}

fn envelope(encrypt: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_store]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
}

async fn safe_push(env: &LocalHub, encrypt: &str) -> reqwest::Response {
    let now = unix_now().to_string();
    env.http
        .post(safe_push_url(&env.base, &now, &nonce(), encrypt))
        .body(envelope(encrypt))
        .send()
        .await
        .unwrap()
}

/// A frame encrypted as-is under [`AES_KEY`] (whole AES blocks): padding, length and appid
/// exactly as the test wrote them.
fn raw_frame(plain: &[u8]) -> String {
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let key: [u8; 32] = lenient
        .decode(format!("{AES_KEY}="))
        .unwrap()
        .try_into()
        .unwrap();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    let mut buf = plain.to_vec();
    let len = buf.len();
    let out = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .unwrap()
        .to_vec();
    STANDARD.encode(out)
}

/// 16 random bytes, the declared length, the message and the appid, then `pad` bytes of
/// `pad_byte` (PKCS#7 when `pad_byte == pad`).
fn frame(declared_len: usize, xml: &str, appid: &str, pad_byte: Option<u8>) -> Vec<u8> {
    let mut plain = vec![7u8; 16];
    plain.extend_from_slice(&(declared_len as u32).to_be_bytes());
    plain.extend_from_slice(xml.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad_byte.unwrap_or(pad as u8), pad));
    plain
}

fn scan(openid: &str, scene: &str) -> String {
    hub::scan_xml("gh_store", openid, 1_767_225_600, "SCAN", scene)
}

// ---------------------------------------------------------------------------------------------
// Slow and idle clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_off_and_the_cap_holds_the_rest_back() {
    let env = start(|c| c.http.max_connections = 3).await;
    let addr = addr(&env);
    // Three clients take every slot: they start a request and add a header every 300 ms.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
                .await
                .unwrap();
            let mut byte = [0u8; 1];
            loop {
                tokio::select! {
                    read = stream.read(&mut byte) => {
                        // Closed without an answer: nothing was ever a request.
                        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
                        return started.elapsed();
                    }
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            return started.elapsed();
                        }
                    }
                }
                assert!(
                    started.elapsed() < PROMPTLY,
                    "a slow client was never cut off"
                );
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fourth client waits for a slot (no descriptor is spent on it meanwhile) and is served
    // once the slow ones are gone.
    let started = Instant::now();
    let answer = exchange(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        waited >= Duration::from_millis(500),
        "served at once ({waited:?}): the connection cap did not hold"
    );
    for client in slow {
        let cut_after = client.await.unwrap();
        assert!(
            (Duration::from_millis(900)..PROMPTLY).contains(&cut_after),
            "{cut_after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_kept_alive_connections_are_closed() {
    let env = start(|_| {}).await;
    let addr = addr(&env);
    // Connected, silent.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // One request answered, then idle on a kept-alive connection.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408() {
    let env = start(|_| {}).await;
    let addr = addr(&env);
    let body = jpeg(1000);
    // Declares 1000 bytes, sends 10, stalls.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    let head = upload_head("scene-slow-1", "photo-slow-1", &body);
    stalled
        .write_all(format!("{head}Content-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let answer = read_to_close(&mut stalled).await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(error_code_of(&answer), error_code::REQUEST_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Trickles a byte every 100 ms: never idle, still cut at the body deadline.
    let started = Instant::now();
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    let head = upload_head("scene-slow-2", "photo-slow-2", &body);
    trickle
        .write_all(format!("{head}Content-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut unsent = body.iter();
    loop {
        assert!(
            started.elapsed() < PROMPTLY,
            "a trickling body was never cut off"
        );
        tokio::select! {
            read = trickle.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(byte) = unsent.next() {
                    // Once the hub has answered, writing may fail; the answer is still read.
                    let _ = trickle.write_all(std::slice::from_ref(byte)).await;
                }
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A push body that stalls gets the same.
    let now = unix_now().to_string();
    let url = safe_push_url("", &now, &nonce(), "AAAA");
    let mut push = TcpStream::connect(&addr).await.unwrap();
    push.write_all(
        format!("POST {url} HTTP/1.1\r\nHost: hub\r\nContent-Length: 500\r\n\r\n<xml>").as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut push).await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(
        env.store
            .photos_of_scene("scene-slow-1")
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Sizes and framing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_chunked_bodies() {
    let env = start(|_| {}).await;
    let addr = addr(&env);
    // Declared too large.
    let big = jpeg(64 * 1024 + 1);
    let answer = exchange(
        &addr,
        &[
            format!(
                "{}Content-Length: {}\r\n\r\n",
                upload_head("scene-big", "photo-big", &big),
                big.len()
            )
            .as_bytes(),
            &big,
        ]
        .concat(),
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(error_code_of(&answer), error_code::PAYLOAD_TOO_LARGE);
    // Chunked, no length declared, too large once counted.
    let answer = exchange(
        &addr,
        &[
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n",
                upload_head("scene-big", "photo-big", &big)
            )
            .as_bytes(),
            &chunked(&big, 8192),
        ]
        .concat(),
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    // Chunked within the limit: stored, byte for byte.
    let small = jpeg(20_000);
    let answer = exchange(
        &addr,
        &[
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n",
                upload_head("scene-chunked", "photo-chunked", &small)
            )
            .as_bytes(),
            &chunked(&small, 3000),
        ]
        .concat(),
    )
    .await;
    assert_eq!(status_of(&answer), 201, "{answer}");
    let stored = env.store.photo("scene-chunked", "photo-chunked").unwrap();
    assert_eq!(stored.map(|p| p.sha256), Some(sha256_hex(&small)));
    // Both a length and chunks (the request-smuggling shape): the chunks win and the length
    // is dropped (RFC 9112, 6.3), so what follows the chunks is never read as a request.
    let answer = exchange(
        &addr,
        &[
            format!(
                "{}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                upload_head("scene-both", "photo-both", &small)
            )
            .as_bytes(),
            &chunked(&small, 3000),
            b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n",
        ]
        .concat(),
    )
    .await;
    assert_eq!(status_of(&answer), 201, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    let stored = env.store.photo("scene-both", "photo-both").unwrap();
    assert_eq!(stored.map(|p| p.bytes), Some(small.len() as i64));
    // A push larger than callback.max_body_bytes, chunked.
    let now = unix_now().to_string();
    let url = safe_push_url("", &now, &nonce(), "AAAA");
    let answer = exchange(
        &addr,
        &[
            format!(
                "POST {url} HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
            &chunked(&[b'x'; 5000], 1000),
        ]
        .concat(),
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
}

// ---------------------------------------------------------------------------------------------
// Headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_authorization_and_upload_headers_get_400() {
    let env = start(|_| {}).await;
    let addr = addr(&env);
    let body = r#"{"scene":"scene-dup","expire_seconds":3600}"#;
    // The same valid token twice, and two different ones.
    for second in [MIRROR_1, MIRROR_2] {
        let answer = exchange(
            &addr,
            format!(
                "POST {SCENES_PATH} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {MIRROR_1}\r\nAuthorization: Bearer {second}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), 400, "{answer}");
        assert_eq!(error_code_of(&answer), error_code::BAD_REQUEST);
    }
    assert!(env.store.scene("scene-dup").unwrap().is_none());
    // The admin endpoints alike.
    for path in ["/v1/stats", "/metrics"] {
        let answer = exchange(
            &addr,
            format!(
                "GET {path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {ADMIN}\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), 400, "{path}: {answer}");
    }
    // A repeated upload header.
    let photo = jpeg(100);
    let head = upload_head("scene-dup", "photo-dup", &photo);
    let answer = exchange(
        &addr,
        &[
            format!(
                "{head}{}: photo-other\r\nContent-Length: {}\r\n\r\n",
                h::PHOTO_ID,
                photo.len()
            )
            .as_bytes(),
            &photo,
        ]
        .concat(),
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(env.store.photo("scene-dup", "photo-dup").unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Pushes: timing and safe mode

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_future_dated_pushes_are_refused() {
    let env = start(|_| {}).await;
    let crypt = MessageCrypt::new(AES_KEY, FAKE_APPID).unwrap();
    let encrypt = crypt.encrypt(&scan("o-time", "scene-time")).unwrap();
    let skew = i64::from(300u16);
    for (timestamp, want) in [
        (unix_now() + skew + 60, StatusCode::FORBIDDEN),
        (unix_now() - skew - 60, StatusCode::FORBIDDEN),
        (unix_now() + 30, StatusCode::OK),
    ] {
        let ts = timestamp.to_string();
        let resp = env
            .http
            .post(safe_push_url(&env.base, &ts, &nonce(), &encrypt))
            .body(envelope(&encrypt))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "timestamp {timestamp}");
    }
    assert_eq!(env.store.wechat_event_count().unwrap(), 1);
}

/// A callback URL from a log, replayed within the skew window with a forged body (a `SCAN` of
/// a real scene, whose reply would carry its gallery key): refused by whichever instance it
/// reaches, since the pairs seen are kept in the database they share. The same request again,
/// body and all, is WeChat retrying and gets the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_url_replayed_with_another_body_is_refused_by_every_instance() {
    // Compatible mode takes plaintext pushes, whose signature does not cover the body.
    let env = start(|c| c.callback.mode = CallbackMode::Compatible).await;
    let target = "replay-target";
    assert_eq!(
        hub::mint_request(&env.http, &env.base, MIRROR_1, target)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let (fake_url, _fake) = mirrorsight_fake_backend::FakeServer::start().await.unwrap();
    let secrets = HubSecrets {
        encoding_aes_key: Some(Secret::new(AES_KEY)),
        admin_token: Some(Secret::new(ADMIN)),
        ..hub::fake_wechat_secrets(CALLBACK_TOKEN)
    };
    let other = hub::start(
        &fake_url,
        secrets,
        env.store.clone(),
        env.blobs.clone(),
        |c| c.callback.mode = CallbackMode::Compatible,
    )
    .await
    .unwrap();

    let (timestamp, nonce) = (unix_now().to_string(), nonce());
    let send = |base: String, xml: String| {
        let (http, timestamp, nonce) = (env.http.clone(), timestamp.clone(), nonce.clone());
        async move { hub::push_at(&http, &base, CALLBACK_TOKEN, &timestamp, &nonce, &xml).await }
    };
    let genuine = scan("o-genuine", "scene-gone");
    let first = send(env.base.clone(), genuine.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.text().await.unwrap();
    assert_eq!(Incoming::parse(&first).unwrap().msg_type(), "text");
    let retry = send(other.base.clone(), genuine).await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(
        retry.text().await.unwrap(),
        first,
        "a retry, answered alike"
    );

    let forged = scan("o-attacker", target);
    for base in [&env.base, &other.base] {
        let resp = send(base.clone(), forged.clone()).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{base}");
        assert_eq!(resp.text().await.unwrap(), "replayed signature");
    }
    assert!(env.store.bindings(target).unwrap().is_empty());
    assert_eq!(env.store.wechat_event_count().unwrap(), 1);
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
        metrics
            .lines()
            .any(|l| l == "mirrorsight_hub_callback_replays_refused_total 1"),
        "{metrics}"
    );
}

/// In compatible mode a safe-mode push's URL (from a log) also signs a plaintext push, whose
/// signature is only `signature` over the same timestamp and nonce: the pair the safe push
/// claimed refuses a plaintext forgery under it. A retry of the safe push framed afresh
/// (another random prefix, so other ciphertext and `msg_signature`) carries the same message
/// and is answered as the first was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_push_url_cannot_carry_a_plaintext_forgery_in_compatible_mode() {
    let env = start(|c| c.callback.mode = CallbackMode::Compatible).await;
    let target = "compat-target";
    assert_eq!(
        hub::mint_request(&env.http, &env.base, MIRROR_1, target)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let crypt = MessageCrypt::new(AES_KEY, FAKE_APPID).unwrap();
    let xml = scan("o-retry", "scene-unknown");
    let (timestamp, nonce) = (unix_now().to_string(), nonce());
    let mut replies = Vec::new();
    for _ in 0..2 {
        let encrypt = crypt.encrypt(&xml).unwrap();
        let resp = env
            .http
            .post(safe_push_url(&env.base, &timestamp, &nonce, &encrypt))
            .body(envelope(&encrypt))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let reply = Incoming::parse(&resp.text().await.unwrap()).unwrap();
        replies.push(crypt.decrypt(reply.field("Encrypt")).unwrap());
    }
    assert_eq!(replies[0], replies[1], "a retry, answered alike");
    assert_eq!(env.store.wechat_event_count().unwrap(), 1);
    // The logged URL without `encrypt_type` and `msg_signature`, carrying a plaintext SCAN of
    // a real scene (whose reply would hold its gallery key).
    let resp = hub::push_at(
        &env.http,
        &env.base,
        CALLBACK_TOKEN,
        &timestamp,
        &nonce,
        &scan("o-attacker", target),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.text().await.unwrap(), "replayed signature");
    assert!(env.store.bindings(target).unwrap().is_empty());
    assert_eq!(env.store.wechat_event_count().unwrap(), 1);
}

/// In safe mode (the default) a retry framed afresh under the same timestamp and nonce is
/// answered as the first push was, from the event log, and the pair is not written down:
/// `msg_signature` already ties a frame to its query, and plaintext is refused outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_mode_retry_framed_afresh_is_answered_alike() {
    let env = start(|_| {}).await;
    let crypt = MessageCrypt::new(AES_KEY, FAKE_APPID).unwrap();
    let xml = scan("o-safe-retry", "scene-unknown");
    let (timestamp, nonce) = (unix_now().to_string(), nonce());
    let mut replies = Vec::new();
    for _ in 0..2 {
        let encrypt = crypt.encrypt(&xml).unwrap();
        let resp = env
            .http
            .post(safe_push_url(&env.base, &timestamp, &nonce, &encrypt))
            .body(envelope(&encrypt))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let reply = Incoming::parse(&resp.text().await.unwrap()).unwrap();
        replies.push(crypt.decrypt(reply.field("Encrypt")).unwrap());
    }
    assert_eq!(replies[0], replies[1], "a retry, answered alike");
    assert_eq!(env.store.wechat_event_count().unwrap(), 1);
    let signed_at: i64 = timestamp.parse().unwrap();
    assert_eq!(
        env.store
            .claim_push_nonce(
                signed_at,
                &nonce,
                &"0".repeat(64),
                unix_now(),
                signed_at + 300
            )
            .unwrap(),
        NonceUse::Fresh,
        "safe mode keeps no pairs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_mode_refuses_plaintext_and_malformed_frames() {
    let env = start(|_| {}).await;
    let xml = scan("o-safe", "scene-unknown");
    // A correctly signed plaintext push: refused, its signature does not cover the body.
    let resp = hub::push(&env.http, &env.base, CALLBACK_TOKEN, &nonce(), &xml).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A good frame: answered, encrypted.
    let crypt = MessageCrypt::new(AES_KEY, FAKE_APPID).unwrap();
    let resp = safe_push(&env, &crypt.encrypt(&xml).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reply = Incoming::parse(&resp.text().await.unwrap()).unwrap();
    let inner = Incoming::parse(&crypt.decrypt(reply.field("Encrypt")).unwrap()).unwrap();
    assert_eq!((inner.msg_type(), inner.to_user()), ("text", "o-safe"));
    // Frames wrong in one respect each.
    let good_len = xml.len();
    let cases: [(&str, String); 7] = [
        (
            "padding count over 32",
            raw_frame(&frame(good_len, &xml, FAKE_APPID, Some(33))),
        ),
        ("padding bytes unequal", {
            let mut f = frame(good_len, &xml, FAKE_APPID, None);
            let n = f.len();
            f[n - 2] ^= 0x40;
            raw_frame(&f)
        }),
        (
            "another appid",
            raw_frame(&frame(good_len, &xml, "wx0000000000000000", None)),
        ),
        (
            "length past the end",
            raw_frame(&frame(good_len + 100, &xml, FAKE_APPID, None)),
        ),
        (
            "length short by one",
            raw_frame(&frame(good_len - 1, &xml, FAKE_APPID, None)),
        ),
        ("not whole blocks", STANDARD.encode([1u8; 40])),
        (
            "WeChat's sample, for another account",
            SAMPLE_ENCRYPT.to_string(),
        ),
    ];
    for (what, encrypt) in &cases {
        let resp = safe_push(&env, encrypt).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    // Well-formed frames around a malformed push: a repeated field, a NUL.
    for (what, inner) in [
        (
            "repeated field",
            xml.replace("</xml>", "<Event>subscribe</Event></xml>"),
        ),
        ("NUL", xml.replace("o-safe", "o-\0safe")),
    ] {
        let resp = safe_push(&env, &crypt.encrypt(&inner).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    // A frame signed over other bytes than it carries.
    let encrypt = crypt.encrypt(&xml).unwrap();
    let now = unix_now().to_string();
    let resp = env
        .http
        .post(safe_push_url(&env.base, &now, &nonce(), "other"))
        .body(envelope(&encrypt))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        env.store.wechat_event_count().unwrap(),
        1,
        "only the good frame"
    );
}

/// Push XML that a lenient parser would read one way and WeChat meant another (#15 item 8):
/// a repeated field (which `EventKey` counts?), a NUL (cut short by C code downstream) and more
/// empty elements than a push has fields. Each gets 400 "malformed push", whether it comes as
/// plaintext (compatible mode) or inside a good safe-mode frame, and none is recorded or bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_push_xml_gets_400_as_plaintext_and_in_a_frame() {
    let env = start(|c| c.callback.mode = CallbackMode::Compatible).await;
    let target = "xml-target";
    assert_eq!(
        hub::mint_request(&env.http, &env.base, MIRROR_1, target)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let xml = scan("o-xml", target);
    // 64 fields in all is the limit: the scan's 7 plus 57 empty ones still parse.
    let empties = |n: usize| (0..n).map(|i| format!("<Empty{i}/>")).collect::<String>();
    let at_limit = xml.replace("</xml>", &format!("{}</xml>", empties(57)));
    let cases = [
        (
            "a repeated EventKey",
            xml.replace(
                "</xml>",
                "<EventKey><![CDATA[another-scene]]></EventKey></xml>",
            ),
        ),
        ("a NUL", xml.replace("o-xml", "o-\0xml")),
        (
            "65 fields, 58 of them empty",
            xml.replace("</xml>", &format!("{}</xml>", empties(58))),
        ),
    ];
    let crypt = MessageCrypt::new(AES_KEY, FAKE_APPID).unwrap();
    let malformed_before = metric(&env, "mirrorsight_hub_callback_malformed_total").await;
    for (what, bad) in &cases {
        let resp = hub::push(&env.http, &env.base, CALLBACK_TOKEN, &nonce(), bad).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "plaintext, {what}");
        assert_eq!(resp.text().await.unwrap(), "malformed push", "{what}");
        let resp = safe_push(&env, &crypt.encrypt(bad).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "framed, {what}");
        assert_eq!(resp.text().await.unwrap(), "malformed push", "{what}");
    }
    assert_eq!(env.store.wechat_event_count().unwrap(), 0);
    assert!(env.store.bindings(target).unwrap().is_empty());
    assert_eq!(
        metric(&env, "mirrorsight_hub_callback_malformed_total").await,
        malformed_before + 2 * cases.len() as i64
    );
    // The same scan at the limit is a scan: answered and bound.
    let resp = hub::push(&env.http, &env.base, CALLBACK_TOKEN, &nonce(), &at_limit).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(env.store.wechat_event_count().unwrap(), 1);
    assert_eq!(env.store.bindings(target).unwrap().len(), 1);
}

/// One value of the hub's `/metrics`, read with the admin token.
async fn metric(env: &LocalHub, name: &str) -> i64 {
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
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
}

/// WeChat's published ciphertext, pushed to a hub of the account it was made for: accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sample_is_accepted_for_its_account() {
    let env = start(|c| c.wechat.appid = SAMPLE_APPID.into()).await;
    let resp = safe_push(&env, SAMPLE_ENCRYPT).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // A text message from a shopper, not a scan: nothing to answer.
    assert_eq!(resp.text().await.unwrap(), "success");
}

// ---------------------------------------------------------------------------------------------
// Deadlines and shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_deadline_gets_503() {
    let env = start(|_| {}).await;
    env.fake
        .inject(Route::QrcodeCreate, Fault::Delay(Duration::from_secs(4)), 1);
    let started = Instant::now();
    let resp = hub::mint_request(&env.http, &env.base, MIRROR_1, "scene-late")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(
        error_of(resp).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::UNAVAILABLE.into()
        )
    );
    assert!(
        (Duration::from_millis(1900)..Duration::from_millis(3900)).contains(&started.elapsed())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_finish_within_the_grace_period() {
    // A request that finishes within the grace period is answered.
    let env = start(|c| c.http.shutdown_grace_s = 2).await;
    env.fake.inject(
        Route::QrcodeCreate,
        Fault::Delay(Duration::from_millis(500)),
        1,
    );
    let mint = hub::mint_request(&env.http, &env.base, MIRROR_1, "scene-graceful").send();
    let mint = tokio::spawn(mint);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = env.running;
    running.stop.send(()).unwrap();
    assert_eq!(mint.await.unwrap().unwrap().status(), StatusCode::CREATED);
    tokio::time::timeout(PROMPTLY, running.server)
        .await
        .expect("the hub stops")
        .unwrap()
        .unwrap();
    // Nothing new is accepted.
    assert!(
        TcpStream::connect(env.base.trim_start_matches("http://"))
            .await
            .is_err()
    );

    // One that would not: its connection is closed when the grace period ends.
    let env = start(|c| {
        c.http.shutdown_grace_s = 1;
        c.http.request_timeout_s = 60;
    })
    .await;
    env.fake.inject(
        Route::QrcodeCreate,
        Fault::Delay(Duration::from_secs(30)),
        1,
    );
    let mint = hub::mint_request(&env.http, &env.base, MIRROR_1, "scene-cut").send();
    let mint = tokio::spawn(mint);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = env.running;
    let started = Instant::now();
    running.stop.send(()).unwrap();
    tokio::time::timeout(PROMPTLY, running.server)
        .await
        .expect("the hub stops after the grace period")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    let cut = tokio::time::timeout(PROMPTLY, mint).await.unwrap().unwrap();
    assert!(cut.is_err(), "{cut:?}");
}

// ---------------------------------------------------------------------------------------------
// Metrics, rate limit, quota

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token_or_the_metrics_listener() {
    let env = start(|_| {}).await;
    let metrics = format!("{}/metrics", env.base);
    let resp = env.http.get(&metrics).send().await.unwrap();
    assert_eq!(
        error_of(resp).await,
        (StatusCode::UNAUTHORIZED, error_code::UNAUTHORIZED.into())
    );
    let resp = env
        .http
        .get(&metrics)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = env
        .http
        .get(&metrics)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("mirrorsight_hub_callback_requests_total")
    );

    // The metrics listener: /metrics without a token, and nothing else.
    let (fake_url, _fake) = mirrorsight_fake_backend::FakeServer::start().await.unwrap();
    let (listener, base) = hub::listen().await.unwrap();
    let (metrics_listener, metrics_base) = hub::listen().await.unwrap();
    let mut config = hub::fake_wechat_config(&base, &fake_url);
    config.metrics.listen = metrics_base.trim_start_matches("http://").into();
    let hub = mirrorsight_hub::Hub::with_stores(
        config,
        hub::fake_wechat_secrets(CALLBACK_TOKEN),
        env.store.clone(),
        env.blobs.clone(),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        hub.serve_with_metrics(listener, Some(metrics_listener), async {
            let _ = stopped.await;
        }),
    );
    let resp = env
        .http
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("mirrorsight_hub_photos_stored")
    );
    for path in ["/healthz", "/v1/stats", "/wechat"] {
        let resp = env
            .http
            .get(format!("{metrics_base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let resp = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_is_rate_limited_per_device_and_quota_errors_raise_the_alarm() {
    let env = start(|c| {
        c.relay.mint_burst = 2;
        c.relay.mints_per_hour = 1;
    })
    .await;
    let mint = |token: &'static str, scene: &'static str| {
        hub::mint_request(&env.http, &env.base, token, scene).send()
    };
    assert_eq!(
        mint(MIRROR_1, "rate-1").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        mint(MIRROR_1, "rate-2").await.unwrap().status(),
        StatusCode::CREATED
    );
    // A retry of a minted scene costs WeChat nothing and is not limited.
    assert_eq!(
        mint(MIRROR_1, "rate-1").await.unwrap().status(),
        StatusCode::OK
    );
    let resp = mint(MIRROR_1, "rate-3").await.unwrap();
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(
        error_of(resp).await,
        (
            StatusCode::TOO_MANY_REQUESTS,
            error_code::RATE_LIMITED.into()
        )
    );
    // Another mirror has its own allowance.
    assert_eq!(
        mint(MIRROR_2, "rate-4").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(env.fake.count(Route::QrcodeCreate), 3);

    // WeChat says the daily quota is spent.
    env.fake
        .inject(Route::QrcodeCreate, Fault::Errcode(45009), 1);
    let resp = mint(MIRROR_2, "rate-5").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
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
    let value = |name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(value("mirrorsight_hub_wechat_quota_errors_total"), 1);
    assert_eq!(value("mirrorsight_hub_mints_rate_limited_total"), 1);
    let at = value("mirrorsight_hub_wechat_quota_last_error_timestamp_seconds");
    assert!((unix_now() - 60..=unix_now()).contains(&at), "{at}");
}
