//! Test support: a loopback stand-in for the store backend's photo endpoints (with faults),
//! photo fixtures and spool inspection helpers. Kept minimal and dependency-light on purpose;
//! it checks what the real backend checks (token, digest, idempotency by photo id).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use mirrorsight_photos::{Frame, JpegEncoder, PixelFormat};

pub const TOKEN: &str = "device-token-for-tests";

#[derive(Debug, Clone)]
pub enum Fault {
    /// Every request's connection is dropped (like a network outage).
    Down,
    /// Answer `status` with this body and content type, without storing anything.
    Answer {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Store the photo, then hold the answer back this long (a kill lands here).
    StallAfterStore(Duration),
    /// Hold the request this long before reading the body.
    StallBeforeBody(Duration),
    /// Store the photo but confirm a wrong sha256.
    WrongDigest,
}

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub photo: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// sha256 of the body actually received (None if it never arrived whole).
    pub body_sha256: Option<String>,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct State {
    /// photo id → (scene, body)
    pub stored: BTreeMap<String, (String, Vec<u8>)>,
    /// photo id → every distinct body digest ever received complete for it
    pub bodies_seen: BTreeMap<String, BTreeSet<String>>,
    pub deleted: Vec<String>,
    pub log: Vec<Seen>,
    /// Faults applied to the next requests, in order; `sticky` one applies when the list is empty.
    pub faults: Vec<Fault>,
    pub sticky: Option<Fault>,
}

pub struct TestBackend {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl TestBackend {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("backend runtime");
        let state = Arc::new(Mutex::new(State::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let st = Arc::clone(&state);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(Arc::clone(&st), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_sticky(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().sticky = fault;
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    pub fn stored(&self) -> BTreeMap<String, (String, Vec<u8>)> {
        self.state.lock().unwrap().stored.clone()
    }

    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn posts_for(&self, photo: &str) -> usize {
        self.log()
            .iter()
            .filter(|s| s.method == "POST" && s.photo.as_deref() == Some(photo))
            .count()
    }

    /// The backend never saw two different complete bodies under one photo id.
    pub fn assert_no_conflicting_bodies(&self) {
        let st = self.state.lock().unwrap();
        for (id, bodies) in &st.bodies_seen {
            assert_eq!(
                bodies.len(),
                1,
                "photo {id} arrived with different bodies: {bodies:?}"
            );
        }
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, mut pred: impl FnMut(&State) -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if pred(&self.state.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    }
}

fn next_fault(st: &mut State) -> Option<Fault> {
    if st.faults.is_empty() {
        st.sticky.clone()
    } else {
        Some(st.faults.remove(0))
    }
}

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", content_type.parse().expect("content type"));
    r
}

fn json_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        "application/json",
        serde_json::json!({"error": code, "message": message}).to_string(),
    )
}

async fn handle(
    st: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let fault = next_fault(&mut st.lock().unwrap());
    let mut seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        photo: None,
        headers: headers.clone(),
        body_sha256: None,
        status: 0,
    };
    if let Some(Fault::Down) = fault {
        seen.status = 0;
        st.lock().unwrap().log.push(seen);
        // An error from the service makes hyper drop the connection without an answer.
        return Err(std::io::Error::other("backend is down"));
    }
    if let Some(Fault::StallBeforeBody(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            st.lock().unwrap().log.push(seen);
            return Err(std::io::Error::other(format!("incomplete body: {e}")));
        }
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "sessions", scene, "photos"]) => {
            let scene = scene.to_string();
            let photo = headers.get("x-photo-id").cloned().unwrap_or_default();
            seen.photo = Some(photo.clone());
            let digest = hex::encode(Sha256::digest(&body));
            seen.body_sha256 = Some(digest.clone());
            let resp = if let Some(Fault::Answer {
                status,
                content_type,
                body,
            }) = &fault
            {
                reply(*status, content_type, body.clone())
            } else if headers.get("authorization").map(String::as_str)
                != Some(&format!("Bearer {TOKEN}"))
            {
                json_error(401, "unauthorized", "unknown device token")
            } else if headers.get("idempotency-key") != Some(&photo) || photo.is_empty() {
                json_error(400, "bad_request", "Idempotency-Key must equal X-Photo-Id")
            } else if headers.get("x-content-sha256") != Some(&digest) {
                json_error(
                    400,
                    "digest_mismatch",
                    "body does not match X-Content-SHA256",
                )
            } else if headers.get("content-type").map(String::as_str) != Some("image/jpeg") {
                json_error(415, "unsupported_media_type", "image/jpeg expected")
            } else {
                let mut s = st.lock().unwrap();
                s.bodies_seen
                    .entry(photo.clone())
                    .or_default()
                    .insert(digest.clone());
                let status = match s.stored.get(&photo) {
                    Some((_, existing)) if *existing == body => 200,
                    Some(_) => 409,
                    None => {
                        s.stored.insert(photo.clone(), (scene, body.clone()));
                        201
                    }
                };
                drop(s);
                if status == 409 {
                    json_error(409, "conflict", "photo id stored with different bytes")
                } else {
                    let sha = if matches!(fault, Some(Fault::WrongDigest)) {
                        "0".repeat(64)
                    } else {
                        digest
                    };
                    reply(
                        status,
                        "application/json",
                        serde_json::json!({"photo": photo, "sha256": sha, "bytes": body.len()})
                            .to_string(),
                    )
                }
            };
            if let Some(Fault::StallAfterStore(d)) = fault {
                st.lock().unwrap().log.push(Seen {
                    status: 0,
                    ..seen.clone()
                });
                tokio::time::sleep(d).await;
                return Ok(resp);
            }
            resp
        }
        (&Method::DELETE, ["v1", "sessions", _scene, "photos", photo]) => {
            seen.photo = Some(photo.to_string());
            if let Some(Fault::Answer {
                status,
                content_type,
                body,
            }) = &fault
            {
                reply(*status, content_type, body.clone())
            } else if headers.get("authorization").map(String::as_str)
                != Some(&format!("Bearer {TOKEN}"))
            {
                json_error(401, "unauthorized", "unknown device token")
            } else {
                let mut s = st.lock().unwrap();
                if s.stored.remove(*photo).is_some() {
                    s.deleted.push(photo.to_string());
                    reply(204, "text/plain", "")
                } else {
                    json_error(404, "not_found", "no such photo")
                }
            }
        }
        _ => json_error(404, "not_found", "no such route"),
    };
    seen.status = resp.status().as_u16();
    st.lock().unwrap().log.push(seen);
    Ok(resp)
}

// ---- fixtures --------------------------------------------------------------------------------

/// A real JPEG, different for each `seed`.
pub fn jpeg(seed: u32, width: u32, height: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let base = if ((x / 16) + (y / 16) + seed).is_multiple_of(2) {
                180u32
            } else {
                50
            };
            let v = (base + s % 60) as u8;
            data.extend_from_slice(&[v, v / 2, 255 - v]);
        }
    }
    let frame = Frame::new(width, height, PixelFormat::Rgb8, data, 0.0).expect("frame");
    JpegEncoder::new(90)
        .expect("encoder")
        .encode(&frame)
        .expect("encode")
        .jpeg
}

/// Deterministic 128-bit ids for tests (the daemon uses OS randomness or a seeded ChaCha).
pub fn test_id(seed: u64, n: u64) -> mirrorsight_photos::PhotoId {
    let d = Sha256::digest(format!("{seed}/{n}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    mirrorsight_photos::PhotoId::from_bytes(b)
}

pub fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Every file and directory under `dir` with its mode bits.
pub fn walk(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let meta = std::fs::symlink_metadata(e.path()).expect("metadata");
            out.push((e.path(), meta.permissions().mode() & 0o7777, meta.is_dir()));
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// No file or directory in the spool may be readable (or anything else) by group or others.
pub fn assert_private(dir: &Path) {
    let root = std::fs::metadata(dir)
        .expect("spool dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(root, 0o700, "spool dir {} has mode {root:o}", dir.display());
    for (path, mode, is_dir) in walk(dir) {
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} has mode {mode:o}", path.display());
    }
}

/// `(photo id → jpg bytes)` of the photos in the spool directory (top level only).
pub fn spooled_jpgs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(id) = name.strip_suffix(".jpg")
            && !name.starts_with('.')
        {
            out.insert(id.to_string(), std::fs::read(&p).expect("read jpg"));
        }
    }
    out
}

pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|(p, _, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .map(|(p, _, _)| p)
        .collect()
}

pub fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}
