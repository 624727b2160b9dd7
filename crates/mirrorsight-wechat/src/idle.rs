//! The mirror's idle code (`qr.idle_code`) kept on disk: a permanent code is one of the
//! account's 100,000, so it is minted once and read back at every start.
//!
//! The file (`idle_code.json` next to the binding log) holds the scene, the kind it was
//! minted by, the url and the ticket. A file for another scene or kind, or one that cannot be
//! read, is ignored: the code is minted (or, in relay mode, fetched from the hub) again.
//! Mini-program codes are images and never expire: they are not kept.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::QrKind;
use crate::minter::MintedCode;

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    scene: String,
    kind: QrKind,
    url: String,
    #[serde(default)]
    ticket: Option<String>,
}

/// The code kept at `path` for `scene` and `kind`, if there is one.
pub(crate) fn read_cache(path: &Path, scene: &str, kind: QrKind) -> Option<MintedCode> {
    let bytes = std::fs::read(path).ok()?;
    let cached: Cached = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable idle code file");
            return None;
        }
    };
    (cached.scene == scene && cached.kind == kind && !cached.url.is_empty()).then_some(MintedCode {
        scene: cached.scene,
        url: Some(cached.url),
        ticket: cached.ticket,
        image: None,
        expires_at: None,
        expire_seconds: None,
    })
}

/// Keeps `code` at `path`: written to a temporary file, fsynced, renamed over the old one.
pub(crate) fn write_cache(path: &Path, kind: QrKind, code: &MintedCode) -> std::io::Result<()> {
    let Some(url) = code.url.clone().filter(|_| kind != QrKind::MiniProgram) else {
        return Ok(());
    };
    let body = serde_json::to_vec(&Cached {
        scene: code.scene.clone(),
        kind,
        url,
        ticket: code.ticket.clone(),
    })
    .map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&body)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(scene: &str) -> MintedCode {
        MintedCode {
            scene: scene.into(),
            url: Some("http://weixin.qq.com/q/idle".into()),
            ticket: Some("t".into()),
            image: None,
            expires_at: None,
            expire_seconds: None,
        }
    }

    #[test]
    fn kept_once_and_read_back_only_for_its_scene_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/idle_code.json");
        assert_eq!(read_cache(&path, "idle-1", QrKind::Relay), None);
        write_cache(&path, QrKind::Relay, &code("idle-1")).unwrap();
        assert_eq!(
            read_cache(&path, "idle-1", QrKind::Relay),
            Some(code("idle-1"))
        );
        assert_eq!(read_cache(&path, "idle-2", QrKind::Relay), None);
        assert_eq!(read_cache(&path, "idle-1", QrKind::OfficialAccount), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read_cache(&path, "idle-1", QrKind::Relay), None);
        // Mini-program codes are images: nothing to keep.
        let mp = dir.path().join("mp.json");
        write_cache(&mp, QrKind::MiniProgram, &code("idle-1")).unwrap();
        assert!(!mp.exists());
    }
}
