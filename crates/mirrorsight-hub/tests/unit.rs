//! The hub's unit file is valid for systemd (`systemd-analyze verify`), checked against a
//! throwaway root that holds the binary where the unit expects it, and agrees with the hub's
//! defaults (descriptors above the connection cap, a stop timeout above the grace period, no
//! restart loop on a config error).

use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).unwrap();
            let _ = std::os::unix::fs::symlink(link, &target);
        } else if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_hub_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "systemd-analyze is missing in CI: scripts/setup.sh installs it"
        );
        eprintln!("skipping: systemd-analyze is not installed (scripts/setup.sh installs it)");
        return;
    };
    assert!(version.status.success());
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for dir in ["usr/bin", "etc/systemd/system"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_mirrorsight-hub"),
        r.join("usr/bin/mirrorsight-hub"),
    )
    .unwrap();
    copy_dir(
        Path::new("/usr/lib/systemd/system"),
        &r.join("usr/lib/systemd/system"),
    );
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mirrorsight-hub.service");
    std::fs::copy(&unit, r.join("etc/systemd/system/mirrorsight-hub.service")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("/etc/systemd/system/mirrorsight-hub.service")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        !stderr.contains("mirrorsight-hub.service"),
        "systemd-analyze verify complains about the unit: {stderr}"
    );
}

/// `Key=value` of the unit's `[Service]` section, the last one if repeated (as systemd reads
/// these keys).
fn service_setting(unit: &str, key: &str) -> Option<String> {
    let mut in_service = false;
    let mut found = None;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service
            && let Some(value) = line.strip_prefix(key).and_then(|l| l.strip_prefix('='))
        {
            found = Some(value.trim().to_string());
        }
    }
    found
}

#[test]
fn the_unit_agrees_with_the_hubs_limits() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mirrorsight-hub.service"),
    )
    .unwrap();
    let defaults = mirrorsight_hub::HubConfig::with_base_url("https://hub.example");
    let setting = |key: &str| {
        service_setting(&unit, key).unwrap_or_else(|| panic!("{key}= is missing from the unit"))
    };
    // Every connection is a descriptor; the database pool, photo files, WeChat and the
    // metrics listener need more besides.
    let nofile: usize = setting("LimitNOFILE")
        .parse()
        .expect("LimitNOFILE=<number>");
    assert!(
        nofile >= 2 * defaults.http.max_connections,
        "LimitNOFILE={nofile} leaves no room above http.max_connections = {}",
        defaults.http.max_connections
    );
    let stop_s: u64 = setting("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec=<seconds>");
    assert!(
        stop_s > defaults.http.shutdown_grace_s,
        "TimeoutStopSec={stop_s} would kill the hub inside http.shutdown_grace_s = {}",
        defaults.http.shutdown_grace_s
    );
    assert!(
        setting("RestartPreventExitStatus")
            .split_whitespace()
            .any(|s| s == "78"),
        "a config error (exit 78) must not restart the hub forever"
    );
}
