//! The hub's unit file is valid for systemd (`systemd-analyze verify`), checked against a
//! throwaway root that holds the binary where the unit expects it.

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
    for dir in ["usr/local/bin", "etc/systemd/system"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_mirrorsight-hub"),
        r.join("usr/local/bin/mirrorsight-hub"),
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
