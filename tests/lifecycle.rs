//! What an operator sees of `mirrorsight run`: the lifecycle in the log at the default level,
//! no terminal escape codes where stderr is not a terminal, native journal records with syslog
//! priorities when systemd connects stderr to the journal, and exit status 78 (EX_CONFIG) for
//! a config error so that systemd stops restarting (`RestartPreventExitStatus=78`).

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

use common::*;

/// A config that plays the demo clip like a camera, with nothing listening and nothing drawn.
fn clip_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("mirrorsight.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\nrealtime = true\n[session]\nexit_after_s = 2.0\n\
             [events]\nfile = \"\"\n[display]\nmode = \"none\"\n[storage]\ndir = \"{}\"\n\
             [photos]\nspool_dir = \"{}\"\n[service]\nlisten = \"\"\n{extra}",
            demo_clip().display(),
            dir.join("state").display(),
            dir.join("state/spool").display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn run_logs_its_lifecycle_as_plain_text_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = clip_config(dir.path(), "status_interval_s = 2.0\n");
    let out = bin()
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("MIRRORSIGHT_LOG")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape codes on a non-terminal stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let has = |needle: &str| {
        lines
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains(needle))
    };
    for needle in [
        "mirrorsight running",
        "first frame processed: ready",
        "mirrorsight stopped cleanly",
    ] {
        assert!(has(needle), "no INFO line with `{needle}`:\n{stderr}");
    }
    // The 13.6 s clip plays in real time: several periodic status lines, then the final one,
    // which counts the one shopper of the clip.
    let periodic = lines
        .iter()
        .filter(|l| l.contains(" INFO status sessions="))
        .count();
    assert!(periodic >= 3, "{periodic} periodic status lines:\n{stderr}");
    let last = lines
        .iter()
        .find(|l| l.contains(" INFO status at shutdown"))
        .unwrap_or_else(|| panic!("no status line at shutdown:\n{stderr}"));
    assert!(last.contains("sessions_total=1"), "{last}");
    assert!(last.contains("frames_processed_total="), "{last}");
}

#[test]
fn config_errors_exit_78_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // An unknown key (a typo) ...
        ("[session]\nexit_afer_s = 2\n", "session.exit_afer_s"),
        // ... and a known key with a value out of range.
        ("[presence]\nmin_score = 2\n", "presence.min_score"),
        // A credential the config asks for and nobody provides.
        (
            "[qr]\nkind = \"relay\"\n[backend]\nurl = \"http://127.0.0.1:9\"\ndevice_token_file = \"/nonexistent/device-token\"\n",
            "device token",
        ),
    ];
    for (text, key) in cases {
        let config = dir.path().join("bad.toml");
        std::fs::write(
            &config,
            // Nothing outside the temporary directory, should the daemon get as far as writing.
            format!(
                "[source]\nkind = \"file\"\npath = \"{}\"\n[storage]\ndir = \"{}\"\n\
                 [photos]\nspool_dir = \"{}\"\n{text}",
                demo_clip().display(),
                dir.path().join("state").display(),
                dir.path().join("state/spool").display(),
            ),
        )
        .unwrap();
        let out = bin()
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("MIRRORSIGHT_DEVICE_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("mirrorsight: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(key), "{key} missing: {stderr}");
    }
    // A credential that the config makes unusable: a user name (so a password) that would cross
    // the network in clear text.
    let config = dir.path().join("mqtt.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\n[storage]\ndir = \"{}\"\n\
             [photos]\nspool_dir = \"{}\"\n\
             [mqtt]\nenabled = true\nmirror = \"m1\"\nurl = \"mqtt://192.0.2.1:1883\"\n",
            demo_clip().display(),
            dir.path().join("state").display(),
            dir.path().join("state/spool").display(),
        ),
    )
    .unwrap();
    let out = bin()
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("MIRRORSIGHT_MQTT_USERNAME", "mirror")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("mqtt.url"), "{stderr}");
    // Not a config problem: a clip that is not there fails with 1, and systemd may retry.
    let config = dir.path().join("missing-clip.toml");
    std::fs::write(
        &config,
        "[source]\nkind = \"file\"\npath = \"/nonexistent/clip.mp4\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// journald's native socket, bound by the test for as long as it lives (and removed after).
struct FakeJournal {
    socket: std::os::unix::net::UnixDatagram,
    created: Vec<std::path::PathBuf>,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

impl FakeJournal {
    /// `Err` says why it cannot be had here.
    fn bind() -> Result<Self, String> {
        let path = Path::new(JOURNAL_SOCKET);
        if path.exists() {
            return Err(format!(
                "{JOURNAL_SOCKET} exists (a real journald runs here)"
            ));
        }
        let mut created = Vec::new();
        for dir in ["/run/systemd", "/run/systemd/journal"] {
            if !Path::new(dir).exists() {
                std::fs::create_dir(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
                created.push(dir.into());
            }
        }
        let socket = std::os::unix::net::UnixDatagram::bind(path);
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                for dir in created.iter().rev() {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(format!("cannot bind {JOURNAL_SOCKET}: {e}"));
            }
        };
        created.push(path.into());
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        Ok(Self { socket, created })
    }

    /// Every record received so far, as field → value maps.
    fn records(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = self.socket.recv(&mut buf) {
            if n > 0 {
                out.push(parse_native(&buf[..n]));
            }
        }
        out
    }
}

impl Drop for FakeJournal {
    fn drop(&mut self) {
        for path in self.created.iter().rev() {
            let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
        }
    }
}

/// journald's native protocol: `KEY=value\n`, or `KEY\n<u64 LE length><value>\n` for values
/// with newlines.
fn parse_native(mut data: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while !data.is_empty() {
        let Some(end) = data.iter().position(|&b| b == b'\n' || b == b'=') else {
            break;
        };
        let key = String::from_utf8_lossy(&data[..end]).into_owned();
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            fields.insert(key, String::from_utf8_lossy(&rest[..stop]).into_owned());
            data = rest.get(stop + 1..).unwrap_or(&[]);
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            data = rest.get(8 + len + 1..).unwrap_or(&[]);
        }
    }
    fields
}

/// Runs the binary with stderr on a stream socket that `JOURNAL_STREAM` names, as systemd
/// connects a service to the journal; returns (exit code, what reached the stream).
fn run_with_journal_stream(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let meta = std::fs::File::from(std::os::fd::OwnedFd::from(theirs.try_clone().unwrap()))
        .metadata()
        .unwrap();
    let mut cmd = bin();
    cmd.args(args)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("MIRRORSIGHT_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    let mut child = cmd.spawn().unwrap();
    // Our copy of the child's end must go, or the read below never sees the end.
    drop(cmd);
    let mut stream = String::new();
    ours.read_to_string(&mut stream).unwrap();
    (child.wait().unwrap().code(), stream)
}

#[test]
fn under_systemd_records_go_to_the_journal_with_syslog_priorities() {
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !in_ci,
            "the journal test binds {JOURNAL_SOCKET} and needs root (CI runs the suite as root)"
        );
        eprintln!("skipping: binding {JOURNAL_SOCKET} needs root");
        return;
    }
    let journal = match FakeJournal::bind() {
        Ok(j) => j,
        Err(why) => {
            eprintln!("skipping the native journal check: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let config = clip_config(dir.path(), "status_interval_s = 0\n");
    let (code, stream) =
        run_with_journal_stream(&["run".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, Some(0), "{stream}");
    assert!(
        stream.trim().is_empty(),
        "records went to the journal, not as text into the stream:\n{stream}"
    );
    let records = journal.records();
    let find = |message: &str| {
        records
            .iter()
            .find(|r| r.get("MESSAGE").is_some_and(|m| m.contains(message)))
            .unwrap_or_else(|| panic!("no journal record `{message}` in {records:#?}"))
    };
    for message in [
        "mirrorsight running",
        "status at shutdown",
        "mirrorsight stopped cleanly",
    ] {
        let record = find(message);
        assert_eq!(
            record.get("PRIORITY").map(String::as_str),
            Some("6"),
            "{record:?}"
        );
        assert_eq!(
            record.get("SYSLOG_IDENTIFIER").map(String::as_str),
            Some("mirrorsight"),
            "{record:?}"
        );
    }
    // Fields stay fields: `journalctl SESSIONS_TOTAL=1` finds the status line.
    assert_eq!(
        find("status at shutdown")
            .get("F_SESSIONS_TOTAL")
            .map(String::as_str),
        Some("1")
    );
    assert!(
        records
            .iter()
            .all(|r| !r.values().any(|v| v.contains('\x1b')))
    );

    // A fatal config error reaches the stream with sd-daemon's `<3>` prefix: priority err, so
    // `journalctl -p err -u mirrorsight` shows why the unit stopped.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[session]\nexit_afer_s = 2\n").unwrap();
    let (code, stream) =
        run_with_journal_stream(&["run".as_ref(), "--config".as_ref(), bad.as_os_str()]);
    assert_eq!(code, Some(78), "{stream}");
    assert!(
        stream.starts_with("<3>mirrorsight: error: ") && stream.contains("session.exit_afer_s"),
        "{stream}"
    );
}
