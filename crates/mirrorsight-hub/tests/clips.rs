//! Turn-around clips at the hub: a mirror uploads an H.264 MP4 over the contract
//! (`POST /v1/sessions/{scene}/clips`, idempotent by clip id) and puts its poster frame; the
//! gallery plays it inline (`<video playsinline controls poster>`) with a download link, and
//! serves both files byte-identical. Checked over HTTP and in headless Chromium (the poster
//! frame's colour must be on the screenshot where the video is).
//!
//! Needs `ffmpeg` (to make a real MP4) and Chromium (`scripts/setup-test.sh`); without
//! Chromium the browser part prints a skip line, except under `CI=true`, where it fails.

mod support {
    pub mod chromium;
    pub mod hub;
}

use std::path::Path;
use std::process::Command;

use mirrorsight_contract::backend::{
    ClipUploadResponse, clip_poster_path, clips_path, header as h,
};
use mirrorsight_hub::store::BlobStore;
use reqwest::StatusCode;
use support::chromium::{PHONE_H, chromium_or_skip, dom_and_screenshot};
use support::hub::{self, LocalHub, tags};

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const MIRROR: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const OTHER: &str = "device-token-mirror-2-yyyyyyyyyyyy";
const SCENE: &str = "cL1p_Zq8R0aUe-1mVbN4wA";
const CLIP: &str = "tUrN_aR0und-cl1p00000A";
/// The poster's colour, to find on the screenshot.
const POSTER_RGB: [u8; 3] = [0x2E, 0x86, 0xC1];

fn ffmpeg(args: &[&str], out: &Path) -> Vec<u8> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(status.success(), "ffmpeg {args:?}");
    std::fs::read(out).unwrap()
}

/// A 2 s H.264 MP4 (moov first, as the mirror makes them) and a JPEG poster frame.
fn clip_and_poster(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mp4 = ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=0xC0392B:s=320x240:r=15",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ],
        &dir.join("clip.mp4"),
    );
    let jpg = ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=0x2E86C1:s=320x240",
            "-frames:v",
            "1",
            "-f",
            "mjpeg",
        ],
        &dir.join("poster.jpg"),
    );
    (mp4, jpg)
}

fn post_clip(
    hub: &LocalHub,
    token: &str,
    id: &str,
    bytes: &[u8],
    content_type: &str,
) -> reqwest::RequestBuilder {
    hub.http
        .post(format!("{}{}", hub.base, clips_path(SCENE)))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .header(h::IDEMPOTENCY_KEY, id)
        .header(h::CLIP_ID, id)
        .header(h::SESSION_ID, SCENE)
        .header(h::TAKEN_AT, "1767225600123")
        .header(h::TRIGGER, "open_palm_hold")
        .header(h::CONTENT_SHA256, hub::sha256_hex(bytes))
        .body(bytes.to_vec())
}

fn put_poster(hub: &LocalHub, token: &str, id: &str, bytes: &[u8]) -> reqwest::RequestBuilder {
    hub.http
        .put(format!("{}{}", hub.base, clip_poster_path(SCENE, id)))
        .bearer_auth(token)
        .header("Content-Type", "image/jpeg")
        .header(h::CONTENT_SHA256, hub::sha256_hex(bytes))
        .body(bytes.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_are_stored_like_photos_and_play_inline_in_the_gallery() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, jpg) = clip_and_poster(dir.path());
    let devices = [
        ("mirror-1", "shop-1", MIRROR),
        ("mirror-2", "shop-1", OTHER),
    ];
    let hub = LocalHub::start(hub::fake_wechat_secrets(CALLBACK_TOKEN), &devices, |_| {}).await;
    let resp = hub::mint_request(&hub.http, &hub.base, MIRROR, SCENE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // No poster for a clip that is not there.
    let r = put_poster(&hub, MIRROR, CLIP, &jpg).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A clip is video/mp4.
    let r = post_clip(&hub, MIRROR, CLIP, &mp4, "image/jpeg")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // New: 201; again: 200 with the same answer; other bytes under its id: 409.
    let r = post_clip(&hub, MIRROR, CLIP, &mp4, "video/mp4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: ClipUploadResponse = r.json().await.unwrap();
    assert_eq!(
        (first.clip.as_str(), first.sha256.clone(), first.bytes),
        (CLIP, hub::sha256_hex(&mp4), mp4.len() as u64)
    );
    let r = post_clip(&hub, MIRROR, CLIP, &mp4, "video/mp4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<ClipUploadResponse>().await.unwrap(), first);
    let r = post_clip(&hub, MIRROR, CLIP, &mp4[..mp4.len() / 2], "video/mp4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Another mirror's scene takes neither clips nor posters from it.
    let r = post_clip(&hub, OTHER, "another-clip", &mp4, "video/mp4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = put_poster(&hub, OTHER, CLIP, &jpg).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The poster: 204, and again (replaced, the old bytes gone).
    for _ in 0..2 {
        let r = put_poster(&hub, MIRROR, CLIP, &jpg).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let row = hub
        .store
        .photo(SCENE, CLIP)
        .unwrap()
        .expect("the clip's row");
    let stored: Vec<String> = hub
        .blobs
        .list()
        .unwrap()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(
        stored.len(),
        2,
        "the clip and one poster, nothing left of the replaced one: {stored:?}"
    );
    assert!(row.blob_keys().all(|k| stored.iter().any(|s| s == k)));
    // And a photo beside it.
    hub::upload_photo(
        &hub,
        MIRROR,
        SCENE,
        "ph0to-0000000000000001",
        &[0xFF, 0xD8, 0xFF, 0xD9],
    )
    .await;

    // The gallery: one video with controls, inline, its poster, and a download link.
    let record = hub.store.scene(SCENE).unwrap().unwrap();
    let gallery = format!("{}/s/{SCENE}?k={}", hub.base, record.gallery_key);
    let html = hub::page(&hub.http, &gallery).await;
    let videos = tags(&html, "video");
    assert_eq!(videos.len(), 1, "{html}");
    let video = &videos[0];
    for attr in ["playsinline", "controls", "poster", "src"] {
        assert!(video.contains_key(attr), "<video> without {attr}: {html}");
    }
    assert_eq!(
        hub::img_srcs(&html).len(),
        1,
        "the photo is still an <img>: {html}"
    );
    let download = hub::download_links(&html)
        .into_iter()
        .find(|a| a.get("download").is_some_and(|d| d.ends_with(".mp4")))
        .expect("a download link for the clip");
    assert_eq!(download.get("href"), video.get("src"));
    // Byte-identical, with the right types.
    let r = hub.http.get(&video["src"]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.bytes().await.unwrap().as_ref(), mp4.as_slice());
    let r = hub.http.get(&video["poster"]).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().as_ref(), jpg.as_slice());
    // A clip is not served as a photo, nor a photo as a clip.
    let as_photo = video["src"].replace(".mp4?", ".jpg?");
    assert_eq!(
        hub.http.get(&as_photo).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // In a real browser: the video element is there and shows its poster frame.
    if let Some(chromium) =
        chromium_or_skip("clips_are_stored_like_photos_and_play_inline_in_the_gallery")
    {
        let (dom, shot) = dom_and_screenshot(&chromium, &gallery, PHONE_H, "clip").await;
        let videos = tags(&dom, "video");
        assert_eq!(videos.len(), 1, "{dom}");
        assert!(videos[0].contains_key("playsinline") && videos[0].contains_key("controls"));
        let poster = shot.find(POSTER_RGB);
        assert!(
            poster.count > shot.width * 40 && poster.x1 - poster.x0 > shot.width / 2,
            "the poster frame is not on the page as the video's picture: {poster:?}"
        );
    }

    // Retention takes the clip's bytes and its poster; the gallery then has no video.
    let far = mirrorsight_hub::http::unix_now() + 400 * 86_400;
    let report =
        mirrorsight_hub::sweep_expired(hub.store.as_ref(), hub.blobs.as_ref(), 7, far).unwrap();
    assert_eq!((report.expired, report.blobs_missing), (2, 0));
    assert!(hub.blobs.list().unwrap().is_empty(), "no bytes left behind");
    let html = hub::page(&hub.http, &gallery).await;
    assert!(tags(&html, "video").is_empty(), "{html}");
}
