//! What an operator sees of `mirrorsight-hub serve`: start and stop at the default level, no
//! terminal escape codes where stderr is not a terminal (the journal), and exit status 78
//! (EX_CONFIG) for a config error so that systemd stops restarting
//! (`RestartPreventExitStatus=78`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn hub() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mirrorsight-hub"));
    cmd.env_remove("MIRRORSIGHT_HUB_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

/// Strong enough for the hub (16-32 letters and digits), which refuses a weak one.
const CALLBACK_TOKEN: &str = "Xq7vR2mK9pL4sT8wZ3nB6yC1dF5gH0jA";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{}\"\npublic_base_url = \"https://hub.example\"\ndatabase = {:?}\nblob_dir = {:?}\n{extra}[wechat]\nappid = \"wx1\"\n[callback]\nmode = \"plaintext\"\n[metrics]\nlisten = \"\"\n",
            free_port(),
            dir.join("hub.sqlite3"),
            dir.join("photos"),
        ),
    )
    .unwrap();
    path
}

#[test]
fn serve_logs_start_and_stop_as_plain_text_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let mut child = hub()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("MIRRORSIGHT_WECHAT_APPSECRET", "test-appsecret")
        .env("MIRRORSIGHT_HUB_CALLBACK_TOKEN", CALLBACK_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("listening")) {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the hub never said it listens:\n{}", lines.join("\n"));
            }
        }
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape codes on a non-terminal stderr:\n{text}"
    );
    for needle in ["mirrorsight-hub listening", "mirrorsight-hub stopped"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(" INFO ") && l.contains(needle)),
            "no INFO line with `{needle}`:\n{text}"
        );
    }
}

#[test]
fn config_errors_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        // An unknown key (a typo) ...
        ("listne = \"127.0.0.1:1\"\n", "listne"),
        // ... and a known key with a value that cannot work.
        ("[photos]\nretention_days = 0\n", "photos.retention_days"),
    ] {
        let config = config(dir.path(), extra);
        let out = hub()
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{extra}: {stderr}");
        assert!(stderr.contains(key), "{key} missing: {stderr}");
    }
    // A missing credential is the config's business too.
    let config = config(dir.path(), "");
    let out = hub()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("MIRRORSIGHT_HUB_CALLBACK_TOKEN")
        .env_remove("MIRRORSIGHT_WECHAT_APPSECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    // A credential that is there but cannot be a key.
    let out = hub()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("MIRRORSIGHT_WECHAT_APPSECRET", "test-appsecret")
        .env("MIRRORSIGHT_HUB_CALLBACK_TOKEN", CALLBACK_TOKEN)
        .env("MIRRORSIGHT_HUB_TOKEN_KEY", "not-a-key")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("secrets.token_key"), "{stderr}");
    // A config file that is not there at all.
    let out = hub()
        .args(["--config", "/nonexistent/hub.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}
