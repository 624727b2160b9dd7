//! The unit file is valid for systemd (`systemd-analyze verify`), checked against a throwaway
//! root that holds the binary where the unit expects it. Without systemd-analyze the test
//! prints a skip line, and fails under `CI=true`.

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
fn systemd_analyze_verify_accepts_the_unit() {
    let test = "systemd_analyze_verify_accepts_the_unit";
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map_err(|_| "systemd-analyze is not installed (scripts/setup.sh installs it)".to_string());
    let Some(version) = mirrorsight_testkit::require(test, found) else {
        return;
    };
    assert!(version.status.success());
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for dir in ["usr/bin", "bin", "etc/systemd/system"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_mirrorsight"),
        r.join("usr/bin/mirrorsight"),
    )
    .unwrap();
    std::fs::copy("/bin/kill", r.join("bin/kill")).unwrap();
    copy_dir(
        Path::new("/usr/lib/systemd/system"),
        &r.join("usr/lib/systemd/system"),
    );
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mirrorsight.service");
    std::fs::copy(&unit, r.join("etc/systemd/system/mirrorsight.service")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("/etc/systemd/system/mirrorsight.service")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        !stderr.contains("mirrorsight.service"),
        "systemd-analyze verify complains about the unit: {stderr}"
    );
    // A config error exits 78 (EX_CONFIG); restarting would only repeat it.
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=78"),
        "the unit must not restart on a config error"
    );
}
