//! The binding log under write failures the process survives: a full disk (a real tmpfs, root
//! only) and a short write (the kernel's file-size limit stops a write halfway). After either,
//! the file must hold exactly the records before the failure, and the next record must be read
//! back whole instead of being glued to a half line.
//!
//! Outside CI the disk-full test prints a skip line without root; under `CI=true` it fails
//! with the reason, so CI cannot go green without having filled a disk.

use std::path::Path;
use std::process::Command;

use mirrorsight_testkit::{Tmpfs, require};
use mirrorsight_wechat::{Binding, BindingLog, BindingLogError, QrSource};

fn binding(n: u32) -> Binding {
    Binding {
        session: format!("session-{n:04}"),
        scene: format!("scene-{n:04}"),
        url: Some(format!("https://mirror.example/s/scene-{n:04}")),
        ticket: None,
        expires_at: Some(1_700_003_600),
        source: QrSource::Url,
        bound_at_ms: 1_700_000_000_000 + u64::from(n),
    }
}

fn record_len() -> u64 {
    serde_json::to_vec(&binding(0)).unwrap().len() as u64 + 1
}

fn os_error(e: &BindingLogError) -> Option<i32> {
    let BindingLogError::Io { source, .. } = e;
    source.raw_os_error()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_full_disk_leaves_no_torn_record_and_the_next_one_is_whole() {
    let test = "a_full_disk_leaves_no_torn_record_and_the_next_one_is_whole";
    let tmp = tempfile::tempdir().unwrap();
    let mount_dir = tmp.path().join("disk");
    let Some(_disk) = require(test, Tmpfs::mount(&mount_dir, "size=32k,mode=0700")) else {
        return;
    };
    let path = mount_dir.join("bindings.jsonl");
    let mut log = BindingLog::open(&path).unwrap();

    // Fill the log's first page so that the next record straddles the page boundary: on a
    // full tmpfs its first bytes still fit in that page and the rest cannot be allocated,
    // which is exactly a torn write.
    const PAGE: u64 = 4096;
    let len = record_len();
    assert_ne!(PAGE % len, 0, "records must not tile the page exactly");
    let mut written = Vec::new();
    while file_len(&path) + len <= PAGE {
        let b = binding(written.len() as u32);
        log.append(&b).unwrap();
        written.push(b);
    }
    let good_len = file_len(&path);
    assert!(good_len < PAGE && good_len + len > PAGE);

    // Everything else on the filesystem goes to a filler file.
    let filler = mount_dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; PAGE as usize];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }

    let failed = log
        .append(&binding(900))
        .expect_err("the disk is full: the append must fail");
    assert_eq!(os_error(&failed), Some(libc::ENOSPC), "{failed}");
    assert!(failed.to_string().contains("bindings.jsonl"), "{failed}");
    assert_eq!(
        file_len(&path),
        good_len,
        "the half-written record must be cut off again"
    );
    let read = BindingLog::read(&path).unwrap();
    assert_eq!(read.bindings, written);
    assert!(!read.torn_tail && read.corrupt_lines.is_empty());

    // Room again: the next record is read back whole, not swallowed by the failed one.
    std::fs::remove_file(&filler).unwrap();
    log.append(&binding(901)).unwrap();
    drop(log);
    let read = BindingLog::read(&path).unwrap();
    written.push(binding(901));
    assert_eq!(read.bindings, written);
    assert!(!read.torn_tail && read.corrupt_lines.is_empty(), "{read:?}");
}

const SHORT_WRITE_CHILD: &str = "MIRRORSIGHT_TEST_SHORT_WRITE_LOG";

/// The file-size limit is per process, so the faulty write happens in a child: this test's
/// own binary, run again for this one test with the log's path in the environment.
#[test]
fn a_short_write_is_cut_back_and_the_next_record_is_whole() {
    if let Some(path) = std::env::var_os(SHORT_WRITE_CHILD) {
        short_write_child(Path::new(&path));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bindings.jsonl");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_short_write_is_cut_back_and_the_next_record_is_whole",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(SHORT_WRITE_CHILD, &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = BindingLog::read(&path).unwrap();
    assert_eq!(read.bindings, vec![binding(1), binding(3)]);
    assert!(!read.torn_tail && read.corrupt_lines.is_empty(), "{read:?}");
}

fn short_write_child(path: &Path) {
    let mut log = BindingLog::open(path).unwrap();
    log.append(&binding(1)).unwrap();
    let good_len = file_len(path);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process's own signal disposition and limits.
    unsafe {
        // Over the limit the kernel sends SIGXFSZ (default: die); ignored, the write fails.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
    }
    let lifted = limit.rlim_cur;
    // Room for half of the next record: the kernel writes that much and refuses the rest.
    limit.rlim_cur = good_len + record_len() / 2;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
    let failed = log.append(&binding(2)).expect_err("over the size limit");
    assert_eq!(os_error(&failed), Some(libc::EFBIG), "{failed}");
    assert_eq!(file_len(path), good_len, "the half record must be cut off");
    limit.rlim_cur = lifted;
    // SAFETY: as above (the soft limit goes back up to where it was, below the hard limit).
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
    log.append(&binding(3)).unwrap();
}
