//! `/s/{scene}?k=<key>`: the shopper's photos, on a phone. The key comes from the link in the
//! `news` reply; a wrong key looks exactly like an unknown scene (404), so a scene id alone
//! (printed in the QR code, visible to anyone nearby) opens nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, constant_time_eq, unix_now};
use crate::http::callback::scene_expired;
use crate::store::{Activity, Media, PhotoMeta, SceneRecord};

pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers every gallery answer carries: the key is in the URL, so no referrer may leak it,
/// and nothing here belongs in a shared cache.
pub(super) fn private(mut response: Response, content_type: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

const STYLE: &str = "body{margin:0;font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;background:#f6f6f6;color:#222}header{padding:16px;background:#fff;border-bottom:1px solid #e5e5e5}h1{font-size:20px;margin:0}p.sub{margin:4px 0 0;color:#777;font-size:14px}main{padding:12px}figure{margin:0 0 16px;background:#fff;border-radius:8px;overflow:hidden}img,video{display:block;width:100%;height:auto}video{background:#000}figcaption{padding:8px 12px;font-size:14px}a.dl{color:#07c160;text-decoration:none}.notice{background:#fff;border-radius:8px;padding:24px 16px;text-align:center;color:#555}h2{font-size:16px;margin:8px 4px 12px;color:#555}form{display:inline;margin-left:12px}button{font:inherit;background:none;border:1px solid #07c160;color:#07c160;border-radius:6px;padding:6px 12px}button.del{border-color:#d33;color:#d33}footer{padding:24px 12px;text-align:center}.keep{margin:0 0 16px;text-align:center}";

pub(super) fn page_html(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        html_escape(title)
    )
}

pub(super) fn not_found() -> Response {
    let body = "<main><div class=\"notice\"><p>找不到这些照片。请检查链接是否完整。</p><p>These photos cannot be found. Please check that the link is complete.</p></div></main>";
    private(
        (StatusCode::NOT_FOUND, page_html("未找到 · Not found", body)).into_response(),
        "text/html; charset=utf-8",
    )
}

fn gallery_html(
    state: &AppState,
    scene: &SceneRecord,
    photos: &[PhotoMeta],
    now: i64,
    csrf: &str,
) -> String {
    let live: Vec<&PhotoMeta> = photos.iter().filter(|p| p.expired_at.is_none()).collect();
    let retention_s = i64::from(state.config.photos.retention_days) * 86_400;
    let mut body = String::from(
        "<header><h1>你的试衣照片 · Your fitting photos</h1><p class=\"sub\">长按或点击“下载”保存 · Long-press or tap “Download” to save</p></header><main>",
    );
    if live.is_empty() {
        if scene_expired(scene, photos, retention_s, now) {
            body.push_str(&format!(
                "<div class=\"notice\" id=\"expired\"><p>这些照片已过期并已删除（保留 {d} 天）。</p><p>These photos have expired and were deleted (kept for {d} days).</p></div>",
                d = state.config.photos.retention_days
            ));
        } else {
            body.push_str("<div class=\"notice\" id=\"empty\"><p>还没有照片。在试衣镜前拍照后刷新本页。</p><p>No photos yet. Take a photo at the mirror, then reload this page.</p></div>");
        }
    }
    if !live.is_empty() {
        // "Keep these in my photos": binds the session to the shopper's WeChat sign-in.
        body.push_str(&format!(
            "<div class=\"keep\"><form method=\"post\" action=\"/s/{}/keep\"><input type=\"hidden\" name=\"k\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"keep\">保存到我的照片 · Keep these in my photos</button></form></div>",
            super::encode_segment(&scene.scene),
            html_escape(&scene.gallery_key),
            html_escape(csrf),
        ));
    }
    let mut numbers = Numbers::default();
    for photo in live {
        body.push_str(&figure(state, scene, photo, numbers.next(photo.media), ""));
    }
    body.push_str("</main>");
    page_html("你的试衣照片 · Your fitting photos", &body)
}

/// Photos and clips are numbered apart ("Photo 2", "Clip 1").
#[derive(Default)]
pub(super) struct Numbers {
    photos: usize,
    clips: usize,
}

impl Numbers {
    pub(super) fn next(&mut self, media: Media) -> usize {
        let n = match media {
            Media::Photo => &mut self.photos,
            Media::Clip => &mut self.clips,
        };
        *n += 1;
        *n
    }
}

/// One photo (full size behind a link) or clip (played inline, its poster shown until then),
/// each with a download link; `extra` goes at the end of the caption (the /me delete button).
pub(super) fn figure(
    state: &AppState,
    scene: &SceneRecord,
    item: &PhotoMeta,
    n: usize,
    extra: &str,
) -> String {
    let url = |ext: &str| {
        html_escape(&state.media_url(&scene.scene, &item.photo, ext, &scene.gallery_key))
    };
    match item.media {
        Media::Photo => {
            let url = url("jpg");
            format!(
                "<figure><a href=\"{url}\"><img src=\"{url}\" alt=\"照片 {n} · Photo {n}\" loading=\"lazy\"></a><figcaption><a class=\"dl\" href=\"{url}\" download=\"mirror-photo-{n}.jpg\">下载原图 · Download full size</a>{extra}</figcaption></figure>"
            )
        }
        Media::Clip => {
            let video = url("mp4");
            let poster = match item.poster_key {
                Some(_) => format!(" poster=\"{}\"", url("poster.jpg")),
                None => String::new(),
            };
            format!(
                "<figure class=\"clip\"><video playsinline controls preload=\"metadata\"{poster} src=\"{video}\" aria-label=\"转身视频 {n} · Turn-around clip {n}\"></video><figcaption><a class=\"dl\" href=\"{video}\" download=\"mirror-clip-{n}.mp4\">下载视频 · Download video</a>{extra}</figcaption></figure>"
            )
        }
    }
}

/// The scene if `key` is its gallery key; `None` both when the scene is unknown and when the
/// key is wrong, so the two cannot be told apart.
pub(super) fn authorised(scene: Option<SceneRecord>, key: Option<&String>) -> Option<SceneRecord> {
    let scene = scene?;
    let key = key?;
    constant_time_eq(key, &scene.gallery_key).then_some(scene)
}

/// `GET /s/{scene}?k=<key>`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    Path(scene): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !super::valid_scene(&scene) {
        return not_found();
    }
    let (csrf, new_csrf) = match super::shopper::csrf_token(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let page_csrf = csrf.clone();
    let now = unix_now();
    let key = q.get("k").cloned();
    let result = state
        .blocking(move |s| -> Result<Option<String>, super::ApiError> {
            let Some(record) = authorised(s.store.scene(&scene)?, key.as_ref()) else {
                return Ok(None);
            };
            let photos = s.store.photos_of_scene(&record.scene)?;
            s.store.record_activity(
                Activity::GalleryOpened,
                &record,
                Some(&format!("gallery:{}", record.scene)),
                now,
            )?;
            Ok(Some(gallery_html(s, &record, &photos, now, &page_csrf)))
        })
        .await;
    match result {
        Ok(Some(html)) => super::shopper::with_csrf(
            private(
                (StatusCode::OK, html).into_response(),
                "text/html; charset=utf-8",
            ),
            &csrf,
            new_csrf,
        ),
        Ok(None) => not_found(),
        Err(e) => e.into_response(),
    }
}

/// Which stored bytes a file name asks for: `{photo}.jpg`, `{clip}.mp4`, `{clip}.poster.jpg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Photo,
    Clip,
    Poster,
}

impl Served {
    fn of(file: &str) -> Option<(String, Served)> {
        let (id, what) = if let Some(id) = file.strip_suffix(".poster.jpg") {
            (id, Served::Poster)
        } else if let Some(id) = file.strip_suffix(".jpg") {
            (id, Served::Photo)
        } else {
            (file.strip_suffix(".mp4")?, Served::Clip)
        };
        super::valid_id(id).then(|| (id.to_string(), what))
    }

    fn content_type(self) -> &'static str {
        match self {
            Served::Photo | Served::Poster => "image/jpeg",
            Served::Clip => "video/mp4",
        }
    }

    /// The row's blob for this file, if the row is of the right kind.
    fn key(self, meta: &PhotoMeta) -> Option<&str> {
        match (self, meta.media) {
            (Served::Photo, Media::Photo) | (Served::Clip, Media::Clip) => Some(&meta.blob_key),
            (Served::Poster, Media::Clip) => meta.poster_key.as_deref(),
            _ => None,
        }
    }
}

/// `GET /s/{scene}/photos/{file}?k=<key>`: a photo (`{photo}.jpg`), a clip (`{clip}.mp4`) or a
/// clip's poster frame (`{clip}.poster.jpg`), as uploaded.
pub(super) async fn photo(
    State(state): State<Arc<AppState>>,
    Path((scene, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some((photo, served)) = Served::of(&file) else {
        return not_found();
    };
    if !super::valid_scene(&scene) {
        return not_found();
    }
    let now = unix_now();
    let key = q.get("k").cloned();
    // WeChat fetching the card picture is not the shopper receiving the photo, nor is a poster.
    let counts_as_delivery = served != Served::Poster && q.get("src").is_none_or(|s| s != "card");
    let result = state
        .blocking(move |s| -> Result<Option<Result<Vec<u8>, ()>>, super::ApiError> {
            let Some(record) = authorised(s.store.scene(&scene)?, key.as_ref()) else {
                return Ok(None);
            };
            let Some(meta) = s.store.photo(&record.scene, &photo)? else {
                return Ok(None);
            };
            if meta.expired_at.is_some() {
                return Ok(Some(Err(())));
            }
            let Some(blob) = served.key(&meta) else {
                return Ok(None);
            };
            let bytes = s.blobs.get(blob).map_err(|e| {
                tracing::error!(error = %e, "reading photo bytes failed");
                super::ApiError::unavailable("photo storage temporarily unavailable")
            })?;
            let Some(bytes) = bytes else {
                tracing::error!(scene = %record.scene, photo = %photo, "photo row without bytes");
                return Ok(None);
            };
            if counts_as_delivery {
                s.store.record_activity(
                    Activity::PhotoDelivered,
                    &record,
                    Some(&format!("delivered:{}:{}", record.scene, photo)),
                    now,
                )?;
            }
            Ok(Some(Ok(bytes)))
        })
        .await;
    match result {
        Ok(Some(Ok(bytes))) => private(
            (StatusCode::OK, bytes).into_response(),
            served.content_type(),
        ),
        Ok(Some(Err(()))) => private(
            (StatusCode::GONE, "照片已过期 · This photo has expired").into_response(),
            "text/plain; charset=utf-8",
        ),
        Ok(None) => not_found(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn wrong_or_missing_key_is_not_authorised() {
        let scene = SceneRecord {
            scene: "s".into(),
            device: "d".into(),
            store: "st".into(),
            code: None,
            gallery_key: "k123".into(),
            created_at: 0,
            kind: crate::store::SceneKind::Session,
        };
        assert!(authorised(Some(scene.clone()), Some(&"k123".to_string())).is_some());
        assert!(authorised(Some(scene.clone()), Some(&"k124".to_string())).is_none());
        assert!(authorised(Some(scene.clone()), Some(&"k12".to_string())).is_none());
        assert!(authorised(Some(scene), None).is_none());
        assert!(authorised(None, Some(&"k123".to_string())).is_none());
    }
}
