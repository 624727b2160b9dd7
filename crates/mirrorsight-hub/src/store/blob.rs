//! Photo bytes. Keys are hex digests the hub makes up (see `blob_key` in the relay), so an
//! implementation never sees a path a client chose.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("invalid blob key {0:?}")]
    BadKey(String),
    #[error("blob store I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An object store (S3) request failed; `message` is one line: the HTTP status with the
    /// store's error code and message, or the transport error, and what to check.
    #[error("object store {op} {key}: {message}")]
    Remote {
        op: &'static str,
        key: String,
        message: String,
    },
}

/// The keys the hub makes (lowercase hex and `-`, 8 to 128 long), the only ones any blob
/// store accepts: nothing a client sends can become a path or an object name.
pub(crate) fn valid_key(key: &str) -> bool {
    (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// The exact shape of the keys the relay makes: `<32 hex>-<16 hex>-<16 hex>` (scene and
/// photo, bytes, upload attempt), or `<32 hex>-<16 hex>` as written before the attempt part.
/// The orphan sweep deletes nothing else, so other objects sharing a bucket or prefix (or
/// another hub's, whose prefix extends ours) are never touched.
pub fn is_photo_blob_key(key: &str) -> bool {
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let parts: Vec<&str> = key.split('-').collect();
    match parts.as_slice() {
        [id, bytes] => hex(id, 32) && hex(bytes, 16),
        [id, bytes, attempt] => hex(id, 32) && hex(bytes, 16) && hex(attempt, 16),
        _ => false,
    }
}

/// Where photo bytes live. Blocking, like [`super::Store`].
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`, durably before returning; replaces what was there.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError>;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;
    /// `false` when there was nothing to delete.
    fn delete(&self, key: &str) -> Result<bool, BlobError>;
    /// Every stored blob, in no particular order: the orphan sweep compares them with the
    /// photo rows (a crash between storing the bytes and the row leaves bytes nobody owns).
    fn list(&self) -> Result<Vec<BlobEntry>, BlobError>;
    /// Removes what writes a crash interrupted, once older than `older_than` (younger ones
    /// may be uploads in flight, maybe of another process sharing the store). Only `serve`
    /// calls it, with an hour. The number removed; stores that write atomically have none.
    fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, BlobError> {
        let _ = older_than;
        Ok(0)
    }
}

/// One stored blob, as [`BlobStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub key: String,
    /// Last modified, Unix seconds: the sweep leaves blobs younger than an upload could take.
    pub modified: i64,
}

/// Blobs as files under one directory: `<dir>/<key[..2]>/<key>`. Writes go to a temp file in
/// `<dir>/tmp`, are fsynced, renamed into place and the directory fsynced, so a crash leaves
/// either the old state or the whole new file, never a torn photo.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LocalBlobStore {
    /// Opens (creating) the directory. Leaves `tmp/` alone: a hub serving from the same
    /// directory may be writing there right now (see [`BlobStore::remove_stale_temp_files`]).
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        if !valid_key(key) {
            return Err(BlobError::BadKey(key.to_string()));
        }
        Ok(self.root.join(&key[..2]).join(key))
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl BlobStore for LocalBlobStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| BlobError::BadKey(key.to_string()))?
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut nonce = [0u8; 8];
        // Only uniqueness matters here; fall back to the pid if the OS has no randomness.
        if getrandom::fill(&mut nonce).is_err() {
            nonce = u64::from(std::process::id()).to_le_bytes();
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{key}.{}", hex::encode(nonce)));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io(&path)(e));
        }
        sync_dir(&dir)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The temp files in `tmp/` older than `older_than`: nothing refers to them.
    fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, BlobError> {
        let tmp = self.root.join("tmp");
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))? {
            let entry = entry.map_err(io(&tmp))?;
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok());
            // An unreadable age (or one in the future) is not known to be stale.
            if age.is_some_and(|age| age > older_than) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let mut out = Vec::new();
        let shards = fs::read_dir(&self.root).map_err(io(&self.root))?;
        for shard in shards {
            let shard = shard.map_err(io(&self.root))?;
            let name = shard.file_name();
            // Only the two-hex-digit shard directories hold blobs (`tmp` holds torn writes).
            if name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            let dir = shard.path();
            for entry in fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                let Some(key) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if self.path(&key).is_err() {
                    continue;
                }
                let modified = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                out.push(BlobEntry { key, modified });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let key = "0123456789abcdef-00aa";
        assert_eq!(store.get(key).unwrap(), None);
        store.put(key, b"first").unwrap();
        store.put(key, b"second").unwrap();
        assert_eq!(store.get(key).unwrap().as_deref(), Some(&b"second"[..]));
        assert!(dir.path().join("01").join(key).exists());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temp files left behind"
        );
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        assert!(listed[0].modified > 1_700_000_000);
        assert!(store.delete(key).unwrap());
        assert!(store.list().unwrap().is_empty());
        assert!(!store.delete(key).unwrap());
        assert_eq!(store.get(key).unwrap(), None);
    }

    #[test]
    fn keys_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        for key in [
            "../../etc/passwd",
            "abc",
            "ABCDEF0123456789",
            "0123456789/abcdef",
        ] {
            assert!(
                matches!(store.put(key, b"x"), Err(BlobError::BadKey(_))),
                "{key}"
            );
        }
    }

    #[test]
    fn photo_blob_keys_have_one_exact_shape() {
        let id = "0".repeat(32);
        let b = "a".repeat(16);
        assert!(is_photo_blob_key(&format!("{id}-{b}")));
        assert!(is_photo_blob_key(&format!("{id}-{b}-{b}")));
        for other in [
            format!("0{id}-{b}"), // what another hub's longer prefix leaves after ours
            format!("{id}-{b}-{b}-{b}"),
            format!("{id}-{b}-"),
            format!("{id}{b}"),
            format!("{}-{b}", "A".repeat(32)),
            "0123456789abcdef-00aa".to_string(),
        ] {
            assert!(!is_photo_blob_key(&other), "{other}");
        }
    }

    #[test]
    fn only_stale_temp_files_are_removed_and_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let torn = tmp.join("torn.123");
        let in_flight = tmp.join("upload.456");
        fs::write(&torn, b"half").unwrap();
        fs::write(&in_flight, b"being written").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&torn)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        assert!(
            torn.exists() && in_flight.exists(),
            "opening cleans nothing"
        );
        assert_eq!(
            store
                .remove_stale_temp_files(Duration::from_secs(3600))
                .unwrap(),
            1
        );
        assert!(!torn.exists(), "a crash's leftover goes");
        assert!(in_flight.exists(), "an upload in flight stays");
    }
}
