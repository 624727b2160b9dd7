//! One QR code per session: taken from the pre-minted pool (or rendered locally) the moment
//! the session starts, minted in the background otherwise. Mini-program codes are images
//! WeChat draws: each is kept under `<state>/codes/` and its path goes out with the event, for
//! the screen to draw.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirrorsight_contract::events::{Event, EventKind};
use mirrorsight_wechat::{CodeOutcome, MintedCode, QrService, QrSource, QrUpdate};
use thiserror::Error;
use tracing::warn;

use super::Action;
use crate::ids::IdGenerator;

/// How long a start waits for the pool to fill before serving sessions anyway.
const POOL_FILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum QrStartError {
    #[error("QR credentials: {0}")]
    Secret(#[from] mirrorsight_wechat::SecretError),
    #[error("QR codes: {0}")]
    Start(#[from] mirrorsight_wechat::StartError),
}

/// How long the end of a replay (or a shutdown) waits for mints still in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Code images kept in `<state>/codes/` besides the idle code's: the newest, enough for every
/// session a screen could still be showing; older ones are removed as new ones arrive.
const KEEP_CODE_IMAGES: usize = 32;

pub struct QrAction {
    service: QrService,
    /// `<state>/codes`: the mini-program code images, one file per scene.
    codes_dir: PathBuf,
    /// The idle code's image, never pruned while this mirror shows it.
    idle_image: Option<PathBuf>,
    /// Media time of the latest frame, for results that arrive in the background.
    now: f64,
    /// `qr_idle` went out (once per start).
    idle_sent: bool,
}

impl QrAction {
    /// Starts minting as configured. A replay waits (bounded) for a full pool first, so the
    /// first session is served from it exactly as a long-running mirror would be.
    pub fn start(
        settings: &mirrorsight_wechat::Settings,
        mut ids: IdGenerator,
        state_dir: &Path,
        runtime: tokio::runtime::Handle,
        fill_first: bool,
    ) -> Result<Self, QrStartError> {
        let secrets = settings.load_secrets(&|k| std::env::var(k).ok())?;
        let service = QrService::start(
            settings,
            &secrets,
            Box::new(move || ids.next_id()),
            &state_dir.join("bindings.jsonl"),
            runtime,
        )?;
        if fill_first && !service.wait_filled(POOL_FILL_WAIT) {
            warn!("QR pool not full after {POOL_FILL_WAIT:?}; sessions may wait for a live mint");
        }
        // A replay shows the idle code from its first frame, as a mirror that has been
        // running does.
        if fill_first
            && settings.qr.idle_code.is_some()
            && service.wait_idle_code(POOL_FILL_WAIT).is_none()
        {
            warn!("idle code not ready after {POOL_FILL_WAIT:?}; it shows once minted");
        }
        Ok(Self {
            service,
            codes_dir: state_dir.join("codes"),
            idle_image: None,
            now: 0.0,
            idle_sent: false,
        })
    }

    /// The code's image kept on disk, for a code that has no URL to render (a mini-program
    /// code); `Ok(None)` for URL codes.
    fn keep_image(&self, code: &MintedCode) -> Result<Option<String>, String> {
        let Some(image) = code.image.as_deref().filter(|_| code.url.is_none()) else {
            return Ok(None);
        };
        let path = keep_code_image(&self.codes_dir, &code.scene, image)?;
        if let Err(e) = prune_code_images(&self.codes_dir, &path, self.idle_image.as_deref()) {
            warn!(dir = %self.codes_dir.display(), error = %e, "old code images not removed");
        }
        Ok(Some(path.display().to_string()))
    }

    fn minted(&self, t: f64, session: &str, code: MintedCode, source: QrSource) -> Event {
        let image = match self.keep_image(&code) {
            Ok(image) => image,
            // Without its image the code cannot be shown: the screen says it is offline.
            Err(reason) => {
                return Event::new(
                    t,
                    EventKind::QrFailed {
                        session: session.to_string(),
                        reason,
                    },
                );
            }
        };
        Event::new(
            t,
            EventKind::QrMinted {
                session: session.to_string(),
                scene: code.scene,
                url: code.url.unwrap_or_default(),
                expires_at: code.expires_at.unwrap_or(0),
                source,
                image,
            },
        )
    }

    fn idle_code(&mut self, emit: &mut Vec<Event>) {
        if self.idle_sent {
            return;
        }
        if let Some(code) = self.service.idle_code() {
            self.idle_sent = true;
            let image = match self.keep_image(&code) {
                Ok(image) => image,
                Err(e) => {
                    warn!(scene = %code.scene, error = %e, "the idle code cannot be shown");
                    return;
                }
            };
            self.idle_image = image.as_ref().map(PathBuf::from);
            emit.push(Event::new(
                self.now,
                EventKind::QrIdle {
                    scene: code.scene,
                    url: code.url.unwrap_or_default(),
                    image,
                },
            ));
        }
    }

    fn drain_updates(&mut self, emit: &mut Vec<Event>) {
        while let Ok(update) = self.service.updates().try_recv() {
            emit.push(match update {
                QrUpdate::Minted {
                    session,
                    code,
                    source,
                } => self.minted(self.now, &session, code, source),
                QrUpdate::Failed {
                    session, reason, ..
                } => Event::new(self.now, EventKind::QrFailed { session, reason }),
            });
        }
    }
}

impl Action for QrAction {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>) {
        self.now = self.now.max(event.t);
        match &event.kind {
            EventKind::SessionStarted { session } => match self.service.code_for_session(session) {
                CodeOutcome::Ready { code, source } => {
                    emit.push(self.minted(event.t, session, code, source))
                }
                // Minting continues in the background; `qr_failed` follows if it cannot succeed now.
                CodeOutcome::Pending => {}
            },
            EventKind::SessionEnded { session, .. } => self.service.session_ended(session),
            _ => {}
        }
    }

    fn poll(&mut self, t: f64, emit: &mut Vec<Event>) {
        self.now = self.now.max(t);
        self.idle_code(emit);
        self.drain_updates(emit);
    }

    fn finish(&mut self, emit: &mut Vec<Event>) {
        let report = self.service.shutdown(SHUTDOWN_WAIT);
        if !report.clean {
            warn!(
                abandoned = report.abandoned_mints,
                "QR mints still in flight at exit were abandoned"
            );
        }
        self.drain_updates(emit);
    }
}

/// What a code image is, by its signature: WeChat sends PNG or JPEG.
fn image_extension(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else {
        None
    }
}

/// A file name for `scene`: the scene itself when it is plain (our ids are), else a digest of
/// it (mini-program scenes may hold `/`, `?` and other punctuation).
fn image_stem(scene: &str) -> String {
    let plain = !scene.is_empty()
        && scene.len() <= 64
        && !scene.starts_with(['.', '-'])
        && scene
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        scene.to_string()
    } else {
        use sha2::Digest;
        format!(
            "scene-{}",
            &hex::encode(sha2::Sha256::digest(scene.as_bytes()))[..32]
        )
    }
}

/// Writes `image` to `<dir>/<scene>.<png|jpg>` durably (temporary file, fsync, rename, fsync
/// of the directory), so the screen and the event log never see half a code; a file already
/// holding these bytes is kept as it is. Runs on the pipeline thread: one small file, once
/// per session.
pub fn keep_code_image(dir: &Path, scene: &str, image: &[u8]) -> Result<PathBuf, String> {
    let ext = image_extension(image).ok_or_else(|| {
        format!(
            "the code image for scene {scene} is neither PNG nor JPEG ({} bytes)",
            image.len()
        )
    })?;
    let name = format!("{}.{ext}", image_stem(scene));
    let path = dir.join(&name);
    let fail = |what: &str, e: std::io::Error| {
        format!("cannot keep the code image {}: {what}: {e}", path.display())
    };
    if std::fs::read(&path).is_ok_and(|old| old == image) {
        return Ok(path);
    }
    mirrorsight_wechat::binding::create_dir_all_durable(dir)
        .map_err(|e| fail("creating the directory", e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(image)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    std::fs::rename(&tmp, &path).map_err(|e| fail("renaming", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("syncing the directory", e))?;
    Ok(path)
}

/// Removes all but the newest [`KEEP_CODE_IMAGES`] code images (never `current` or `idle`).
fn prune_code_images(dir: &Path, current: &Path, idle: Option<&Path>) -> std::io::Result<()> {
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let is_image = path.extension().is_some_and(|e| e == "png" || e == "jpg");
        if !is_image || path == current || Some(path.as_path()) == idle {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        images.push((modified, path));
    }
    if images.len() <= KEEP_CODE_IMAGES {
        return Ok(());
    }
    images.sort();
    let excess = images.len() - KEEP_CODE_IMAGES;
    for (_, path) in images.into_iter().take(excess) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nrest";

    #[test]
    fn code_images_are_kept_by_scene_and_refused_when_not_images() {
        let dir = tempfile::tempdir().unwrap();
        let codes = dir.path().join("state/codes");
        let path = keep_code_image(&codes, "kJ3x_Zq8R0aUe-1mVbN4wA", PNG).unwrap();
        assert_eq!(path, codes.join("kJ3x_Zq8R0aUe-1mVbN4wA.png"));
        assert_eq!(std::fs::read(&path).unwrap(), PNG);
        let jpg = keep_code_image(&codes, "s2", &[0xFF, 0xD8, 0xFF, 0xE0, 1]).unwrap();
        assert_eq!(jpg, codes.join("s2.jpg"));
        // Punctuation WeChat allows in a scene never reaches the file system as a path.
        let odd = keep_code_image(&codes, "a/../b?c=1", PNG).unwrap();
        assert_eq!(odd.parent(), Some(codes.as_path()));
        assert!(
            odd.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("scene-")
        );
        let err = keep_code_image(&codes, "s3", b"<html>502 Bad Gateway</html>").unwrap_err();
        assert!(err.contains("neither PNG nor JPEG"), "{err}");
        assert!(!codes.join("s3.png").exists());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&codes)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn old_code_images_are_pruned_but_never_the_idle_one() {
        let dir = tempfile::tempdir().unwrap();
        let codes = dir.path();
        let idle = keep_code_image(codes, "idle-1", PNG).unwrap();
        let mut last = idle.clone();
        for i in 0..KEEP_CODE_IMAGES + 5 {
            last = keep_code_image(codes, &format!("s{i}"), PNG).unwrap();
            prune_code_images(codes, &last, Some(&idle)).unwrap();
        }
        let count = std::fs::read_dir(codes).unwrap().count();
        assert_eq!(
            count,
            KEEP_CODE_IMAGES + 2,
            "the newest, the current and the idle code"
        );
        assert!(idle.exists() && last.exists());
    }
}
