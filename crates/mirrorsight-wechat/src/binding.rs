//! The durable record of which session got which scene: one JSON object per line, appended and
//! fsynced before the code is handed out, so a scan can always be traced back to its session.
//!
//! A crash can leave a half-written last line. Readers skip it; [`BindingLog::open`] cuts it
//! off so the next record starts on a line of its own. The cut line was never acknowledged
//! (its fsync had not returned), so no code was shown for it.
//!
//! A write that fails while the process lives on (a full disk, a file size limit) can leave the
//! same half line behind; [`BindingLog::append`] cuts the file back to its last acknowledged
//! length before reporting the error, and refuses to append behind a tail it could not cut, so
//! a failed record never glues itself to the front of the next one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mirrorsight_contract::events::QrSource;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub session: String,
    pub scene: String,
    /// The QR's content, when it has one (not mini-program codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Unix seconds; absent for codes that do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub source: QrSource,
    /// When the binding was made, unix milliseconds.
    pub bound_at_ms: u64,
}

#[derive(Debug, Error)]
pub enum BindingLogError {
    #[error("binding log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a read found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingLogContents {
    pub bindings: Vec<Binding>,
    /// The last line was incomplete (a crash mid-write) and was skipped.
    pub torn_tail: bool,
    /// 1-based numbers of complete lines that did not parse (skipped, not fatal).
    pub corrupt_lines: Vec<usize>,
}

impl BindingLogContents {
    /// The latest binding of `scene`, if any.
    pub fn session_of(&self, scene: &str) -> Option<&Binding> {
        self.bindings.iter().rev().find(|b| b.scene == scene)
    }

    /// The latest binding of `session`, if any.
    pub fn scene_of(&self, session: &str) -> Option<&Binding> {
        self.bindings.iter().rev().find(|b| b.session == session)
    }
}

/// An open, append-only binding log.
#[derive(Debug)]
pub struct BindingLog {
    path: PathBuf,
    file: File,
    /// Length of the file up to its last complete record: where the next record starts.
    good_len: u64,
    /// A failed append left bytes after `good_len` that could not be cut off yet.
    torn_tail: bool,
}

impl BindingLog {
    /// Opens (creating it and its directory if needed) and repairs a torn tail.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BindingLogError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| BindingLogError::Io {
            path: path.clone(),
            source,
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            create_dir_all_durable(dir).map_err(io)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let keep = complete_prefix_len(&mut file).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if keep < len {
            tracing::warn!(path = %path.display(), torn_bytes = len - keep, "binding log ends in a torn line; cutting it off");
            file.set_len(keep).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        if !existed {
            // The new file's directory entry must be durable too, or a crash loses the file.
            if let Some(dir) = parent {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        Ok(Self {
            path,
            file,
            good_len: keep,
            torn_tail: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one binding and waits until it is on disk. If the write fails the file is cut
    /// back to the records before it, so nothing of this one remains to corrupt the next.
    pub fn append(&mut self, binding: &Binding) -> Result<(), BindingLogError> {
        let mut line =
            serde_json::to_vec(binding).map_err(|e| self.io_error(std::io::Error::other(e)))?;
        line.push(b'\n');
        if self.torn_tail {
            // An earlier failure could not cut its bytes off; writing behind them would merge
            // this record into that half line, so try the cut again first.
            self.cut_back().map_err(|e| self.io_error(e))?;
        }
        // One write per record: with O_APPEND it lands whole at the end or (on a crash) torn
        // at the tail, which is what readers and `open` handle.
        if let Err(error) = self.file.write_all(&line) {
            self.torn_tail = true;
            if let Err(cut) = self.cut_back() {
                tracing::error!(
                    path = %self.path.display(),
                    error = %cut,
                    "cannot cut a failed binding record off the log; retried before the next record"
                );
            }
            return Err(self.io_error(error));
        }
        // The line is whole now: even if the fsync fails it cannot swallow the next record, and
        // the caller shows the code regardless, so the line stays for whoever traces the scan.
        self.good_len += line.len() as u64;
        self.file.sync_data().map_err(|e| self.io_error(e))
    }

    /// Truncates the file to `good_len` (its complete records) and makes the cut durable.
    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.good_len)?;
        self.file.sync_all()?;
        self.torn_tail = false;
        Ok(())
    }

    fn io_error(&self, source: std::io::Error) -> BindingLogError {
        BindingLogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads every binding, tolerating a torn last line and skipping corrupt ones.
    pub fn read(path: impl AsRef<Path>) -> Result<BindingLogContents, BindingLogError> {
        let path = path.as_ref();
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(BindingLogContents::default());
            }
            Err(source) => {
                return Err(BindingLogError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(parse(&data))
    }
}

/// Creates `dir` and whichever of its ancestors are missing, fsyncing the parent of each one
/// it creates: a new directory's entry lives in its parent, and without that fsync a power cut
/// can take the directory back together with every durable file written into it.
pub fn create_dir_all_durable(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for created in missing.into_iter().rev() {
        match std::fs::create_dir(created) {
            Ok(()) => {}
            // Another process made it meanwhile; its entry is that process's to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && created.is_dir() => {
                continue;
            }
            Err(e) => return Err(e),
        }
        let parent = created
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn parse(data: &[u8]) -> BindingLogContents {
    let mut out = BindingLogContents::default();
    let mut pieces: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    // A record counts once its newline is written: whatever follows the last newline is a
    // write that never finished (even if it happens to parse), exactly what `open` cuts off.
    let tail = pieces.pop().unwrap_or_default();
    out.torn_tail = !tail.is_empty();
    for (i, line) in pieces.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Binding>(line) {
            Ok(b) => out.bindings.push(b),
            Err(_) => out.corrupt_lines.push(i + 1),
        }
    }
    out
}

/// Length of the file up to and including its last newline.
fn complete_prefix_len(file: &mut File) -> std::io::Result<u64> {
    const BLOCK: u64 = 8192;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(pos) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(session: &str, scene: &str) -> Binding {
        Binding {
            session: session.into(),
            scene: scene.into(),
            url: Some(format!("http://weixin.qq.com/q/{scene}")),
            ticket: Some("gQH+/=".into()),
            expires_at: Some(1_700_003_600),
            source: QrSource::Pool,
            bound_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/bindings.jsonl");
        let mut log = BindingLog::open(&path).unwrap();
        log.append(&binding("s1", "A")).unwrap();
        log.append(&binding("s2", "B")).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(r#"{"session":"s1","scene":"A","url":"http://weixin.qq.com/q/A","ticket":"gQH+/=","expires_at":1700003600,"source":"pool","bound_at_ms":1700000000000}"#));
        let read = BindingLog::read(&path).unwrap();
        assert_eq!(read.bindings, vec![binding("s1", "A"), binding("s2", "B")]);
        assert!(!read.torn_tail);
        assert_eq!(read.session_of("B").map(|b| b.session.as_str()), Some("s2"));
        assert_eq!(read.scene_of("s1").map(|b| b.scene.as_str()), Some("A"));
    }

    #[test]
    fn torn_tail_is_skipped_then_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.jsonl");
        let mut log = BindingLog::open(&path).unwrap();
        log.append(&binding("s1", "A")).unwrap();
        drop(log);
        // A crash in the middle of the second write.
        let full = serde_json::to_string(&binding("s2", "B")).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);

        let read = BindingLog::read(&path).unwrap();
        assert_eq!(read.bindings, vec![binding("s1", "A")]);
        assert!(read.torn_tail);

        let mut log = BindingLog::open(&path).unwrap();
        log.append(&binding("s3", "C")).unwrap();
        drop(log);
        let read = BindingLog::read(&path).unwrap();
        assert_eq!(read.bindings, vec![binding("s1", "A"), binding("s3", "C")]);
        assert!(!read.torn_tail && read.corrupt_lines.is_empty());
    }

    #[test]
    fn missing_directories_are_created_down_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all_durable(&deep).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = create_dir_all_durable(&file.join("below")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotADirectory);
    }

    #[test]
    fn complete_record_without_newline_is_still_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.jsonl");
        std::fs::write(&path, serde_json::to_string(&binding("s1", "A")).unwrap()).unwrap();
        let read = BindingLog::read(&path).unwrap();
        assert!(read.bindings.is_empty() && read.torn_tail);
        drop(BindingLog::open(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn corrupt_middle_lines_are_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.jsonl");
        let a = serde_json::to_string(&binding("s1", "A")).unwrap();
        let c = serde_json::to_string(&binding("s3", "C")).unwrap();
        std::fs::write(&path, format!("{a}\nnot json\n\n{c}\n")).unwrap();
        let read = BindingLog::read(&path).unwrap();
        assert_eq!(read.bindings.len(), 2);
        assert_eq!(read.corrupt_lines, vec![2]);
        assert!(
            BindingLog::read(dir.path().join("missing"))
                .unwrap()
                .bindings
                .is_empty()
        );
    }

    #[test]
    fn long_tail_without_newline_in_a_big_file_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.jsonl");
        let a = serde_json::to_string(&binding("s1", "A")).unwrap();
        std::fs::write(&path, format!("{a}\n{}", "x".repeat(20_000))).unwrap();
        drop(BindingLog::open(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{a}\n"));
    }
}
