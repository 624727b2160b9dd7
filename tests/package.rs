//! The Debian packages as a technician meets them. `dpkg -i` both packages (made by
//! `scripts/package.sh` from the release binaries already built; `scripts/test.sh` makes them
//! before the tests), then:
//! - the files are where the units and the daemon look for them, the config is a conffile, the
//!   service users exist, and nothing was enabled or started;
//! - `mirrorsight check --config /etc/mirrorsight/mirrorsight.toml` names exactly what is still
//!   to provide and exits 78, until it is provided; the packaged models load on both packaged
//!   ONNX Runtime builds, the CPU one and the OpenVINO one (`onnxruntime.provider = "openvino"`);
//! - `systemd-analyze verify` accepts the installed units;
//! - `dpkg -r` keeps the config, `dpkg -P` leaves nothing but what policy keeps (the system
//!   users).
//!
//! It changes the machine (packages, users), so it runs only as root (CI runs the suite as root;
//! under `CI=true` a missing privilege fails with its reason) and refuses a machine that already
//! has mirrorsight installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::*;

const PACKAGES: [&str; 2] = ["mirrorsight", "mirrorsight-hub"];

/// Everything the two packages put on the machine, or make there at install.
const INSTALLED: [&str; 23] = [
    "/usr/bin/mirrorsight",
    "/usr/bin/mirrorsight-hub",
    "/usr/lib/mirrorsight/libonnxruntime.so",
    // onnxruntime.provider = "openvino": ONNX Runtime's OpenVINO build, its provider, and the
    // plugin OpenVINO runs the models on by default (device "CPU").
    "/usr/lib/mirrorsight/openvino/libonnxruntime.so",
    "/usr/lib/mirrorsight/openvino/libonnxruntime_providers_openvino.so",
    "/usr/lib/mirrorsight/openvino/libopenvino_intel_cpu_plugin.so",
    "/usr/share/mirrorsight/models/manifest.json",
    "/usr/share/mirrorsight/models/pose_detection.onnx",
    "/usr/share/doc/mirrorsight/copyright",
    "/usr/share/doc/mirrorsight/onnxruntime/ThirdPartyNotices.txt.gz",
    "/usr/share/doc/mirrorsight/onnxruntime/openvino/runtime-third-party-programs.txt.gz",
    "/usr/share/doc/mirrorsight-hub/copyright",
    "/usr/lib/systemd/system/mirrorsight.service",
    "/usr/lib/systemd/system/mirrorsight-hub.service",
    "/usr/lib/sysusers.d/mirrorsight.conf",
    "/usr/lib/sysusers.d/mirrorsight-hub.conf",
    "/usr/lib/tmpfiles.d/mirrorsight.conf",
    "/usr/lib/tmpfiles.d/mirrorsight-hub.conf",
    "/etc/mirrorsight/mirrorsight.toml",
    "/etc/mirrorsight/hub.toml",
    "/etc/mirrorsight/credentials",
    "/var/lib/mirrorsight",
    "/var/lib/mirrorsight-hub",
];

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips outside CI with a note; fails under `CI=true` with the reason.
fn cannot_run(why: &str) {
    assert!(!in_ci(), "the package test cannot run: {why}");
    eprintln!("skipping the package test: {why}");
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// dpkg refuses to run while apt or another dpkg holds its lock: wait for it (bounded).
fn dpkg(args: &[&str]) -> Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        let locked = !out.status.success() && text(&out).contains("lock");
        if !locked || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn dpkg_ok(args: &[&str]) -> String {
    let out = dpkg(args);
    assert!(
        out.status.success(),
        "dpkg {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

fn status(package: &str) -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The target directory the tests were built into (`$CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mirrorsight"))
        .parent()
        .and_then(Path::parent)
        .expect("target/release/mirrorsight")
        .to_path_buf()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `<target>/debian/<name>_*.deb`, newest first.
fn find_deb(dir: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}_");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort_by_key(|p| std::cmp::Reverse(modified(p)));
    debs.into_iter().next()
}

/// The packages of the binaries under test: taken when newer than both binaries, else made
/// by `scripts/package.sh --no-build --fast` from exactly those binaries.
fn packages() -> Vec<PathBuf> {
    let target = target_dir();
    let debian = target.join("debian");
    // The hub's binary is another package's: it sits next to ours in the same build.
    let daemon = Path::new(env!("CARGO_BIN_EXE_mirrorsight"));
    let built = [
        daemon.to_path_buf(),
        daemon.with_file_name("mirrorsight-hub"),
    ]
    .iter()
    .filter_map(|b| modified(b))
    .max();
    let fresh = |deb: &Option<PathBuf>| {
        deb.as_ref()
            .and_then(|d| modified(d))
            .is_some_and(|m| Some(m) >= built)
    };
    let found: Vec<Option<PathBuf>> = PACKAGES.iter().map(|p| find_deb(&debian, p)).collect();
    if found.iter().all(fresh) {
        return found.into_iter().flatten().collect();
    }
    eprintln!("package test: making the packages with scripts/package.sh --no-build --fast");
    let out = run(Command::new(repo().join("scripts/package.sh"))
        .args(["--no-build", "--fast"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo()));
    assert!(
        out.status.success(),
        "scripts/package.sh failed:\n{}",
        text(&out)
    );
    PACKAGES
        .iter()
        .map(|p| find_deb(&debian, p).unwrap_or_else(|| panic!("no {p}_*.deb in {debian:?}")))
        .collect()
}

/// Purges whatever the test installed, even when an assertion failed half-way.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let mut args = vec!["--purge"];
        args.extend(PACKAGES);
        let _ = dpkg(&args);
    }
}

/// `mirrorsight check` as the technician runs it: from another directory (no ./models), with
/// nothing in the environment pointing elsewhere.
fn check(extra: &[&str]) -> Output {
    check_as(extra, false)
}

/// prctl(2) PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+): memory that was writable
/// never becomes executable, what `MemoryDenyWriteExecute=yes` enforces (systemd
/// uses this switch where the kernel has it, a seccomp filter with the same effect elsewhere).
fn deny_write_execute() -> std::io::Result<()> {
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    // SAFETY: prctl with plain integer arguments; it changes only the calling process.
    if unsafe {
        libc::prctl(
            PR_SET_MDWE,
            PR_MDWE_REFUSE_EXEC_GAIN,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } == 0
    {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this kernel can deny write-then-execute memory (tried in a child: it cannot be undone).
fn can_deny_write_execute() -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("true");
    // SAFETY: the closure runs in the forked child before exec and only calls prctl.
    unsafe { cmd.pre_exec(deny_write_execute) };
    cmd.status().is_ok_and(|s| s.success())
}

/// `check`, optionally under write-xor-execute (`deny_wx`: see
/// [`deny_write_execute`]).
fn check_as(extra: &[&str], deny_wx: bool) -> Output {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("/usr/bin/mirrorsight");
    cmd.args(["check", "--config", "/etc/mirrorsight/mirrorsight.toml"])
        .args(extra)
        .current_dir(dir.path())
        .env_remove("MIRRORSIGHT_MODELS_DIR")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("MIRRORSIGHT_DEVICE_TOKEN")
        .env_remove("MIRRORSIGHT_WECHAT_APPSECRET")
        .env_remove("DISPLAY");
    if deny_wx {
        // SAFETY: the closure runs in the forked child before exec and only calls prctl.
        unsafe { cmd.pre_exec(deny_write_execute) };
    }
    run(&mut cmd)
}

/// The lines of a check report that say MISSING, by name.
fn missing(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| {
            l.split_once(": MISSING: ")
                .map(|(what, _)| what.to_string())
        })
        .collect()
}

#[test]
fn install_check_verify_remove_and_purge() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("dpkg -i needs root (CI runs the suite as root)");
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return cannot_run("dpkg is not installed (a Debian or Ubuntu machine is needed)");
    }
    for package in PACKAGES {
        let state = status(package);
        if !state.is_empty() && state != "not-installed" {
            return cannot_run(&format!(
                "{package} is already on this machine ({state}); the test would remove it"
            ));
        }
    }
    for path in [
        "/etc/mirrorsight",
        "/var/lib/mirrorsight",
        "/var/lib/mirrorsight-hub",
    ] {
        if Path::new(path).exists() {
            return cannot_run(&format!(
                "{path} exists (a hand-made install?); the test would delete it on purge"
            ));
        }
    }
    let debs = packages();
    let _purge = PurgeOnDrop;
    let mut install = vec!["-i"];
    install.extend(debs.iter().map(|d| d.to_str().unwrap()));
    let log = dpkg_ok(&install);

    // Installed, configured, and the technician told what comes next.
    for package in PACKAGES {
        assert_eq!(status(package), "installed", "{log}");
    }
    assert!(
        log.contains("mirrorsight check --config /etc/mirrorsight/mirrorsight.toml"),
        "{log}"
    );
    for path in INSTALLED {
        assert!(Path::new(path).exists(), "{path} is missing after install");
    }
    let conffiles = run(Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}\n",
        "mirrorsight",
        "mirrorsight-hub",
    ]));
    let conffiles = String::from_utf8_lossy(&conffiles.stdout);
    for conffile in [
        "/etc/mirrorsight/mirrorsight.toml",
        "/etc/mirrorsight/hub.toml",
    ] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile: {conffiles}"
        );
    }
    // The service users (sysusers.d), with the camera's group for the mirror.
    let groups = run(Command::new("id").args(["-nG", "mirrorsight"]));
    let groups = String::from_utf8_lossy(&groups.stdout);
    assert!(
        groups.split_whitespace().any(|g| g == "mirrorsight")
            && groups.split_whitespace().any(|g| g == "video"),
        "mirrorsight's groups: {groups}"
    );
    assert!(
        run(Command::new("id").arg("mirrorsight-hub"))
            .status
            .success()
    );
    // Directories with the owners and modes the units expect (tmpfiles.d, postinst).
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let credentials = std::fs::metadata("/etc/mirrorsight/credentials").unwrap();
    assert_eq!(
        (credentials.uid(), credentials.permissions().mode() & 0o777),
        (0, 0o700)
    );
    let state = std::fs::metadata("/var/lib/mirrorsight").unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o750);
    assert_ne!(
        state.uid(),
        0,
        "/var/lib/mirrorsight belongs to the service user"
    );
    // Not enabled, not started: the daemon needs its config first.
    for unit in ["mirrorsight.service", "mirrorsight-hub.service"] {
        let wants = Path::new("/etc/systemd/system/multi-user.target.wants").join(unit);
        assert!(!wants.exists(), "{unit} was enabled by the package");
    }

    // A fresh install: check names exactly what the technician still has to provide.
    let out = check(&[]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert_eq!(
        missing(&report),
        ["camera", "qr", "backend.url", "display"],
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("still to provide: camera, qr, backend.url, display"),
        "{stderr}"
    );
    // The packaged ONNX Runtime (its CPU build, with provider = "cpu"; OpenVINO, the default,
    // is checked next) and models load (named explicitly: a /usr/local copy from
    // scripts/setup.sh would otherwise come first on this machine).
    let out = check(&[
        "--set",
        "onnxruntime.provider=\"cpu\"",
        "--set",
        "onnxruntime.library=\"/usr/lib/mirrorsight/libonnxruntime.so\"",
        "--set",
        "models.dir=\"/usr/share/mirrorsight/models\"",
    ]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("onnxruntime: ok (/usr/lib/mirrorsight/libonnxruntime.so)"),
        "{report}"
    );
    let models_ok = report
        .lines()
        .filter(|l| l.starts_with("model ") && l.contains(": ok (/usr/share/mirrorsight/models/"))
        .count();
    assert_eq!(models_ok, 7, "{report}");
    assert!(!report.contains("FAILED"), "{report}");
    assert!(
        report.contains("onnxruntime provider: ok (cpu)\n"),
        "{report}"
    );
    // The packaged OpenVINO build runs every model itself: a provider that refuses one falls
    // back to the CPU and check says so on the provider line.
    let out = check(&[
        "--set",
        "onnxruntime.provider=\"openvino\"",
        "--set",
        "onnxruntime.library=\"/usr/lib/mirrorsight/openvino/libonnxruntime.so\"",
        "--set",
        "models.dir=\"/usr/share/mirrorsight/models\"",
    ]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("onnxruntime: ok (/usr/lib/mirrorsight/openvino/libonnxruntime.so)\n"),
        "{}",
        text(&out)
    );
    let models_ok = report
        .lines()
        .filter(|l| l.starts_with("model ") && l.contains(": ok (/usr/share/mirrorsight/models/"))
        .count();
    assert_eq!(models_ok, 7, "{report}");
    assert!(
        report.contains("onnxruntime provider: ok (openvino, device CPU)\n"),
        "{}",
        text(&out)
    );
    assert!(
        !report.contains("FAILED") && !report.contains("fell back"),
        "{}",
        text(&out)
    );
    // Under write-xor-execute (MemoryDenyWriteExecute=yes, which the unit leaves off for
    // OpenVINO and the README's drop-in puts back for provider = "cpu"), ONNX Runtime's CPU
    // kernels still run, but OpenVINO's CPU plugin, which compiles its kernels at run time,
    // cannot: the models fall back to the CPU and the provider line says so.
    if can_deny_write_execute() {
        for (provider, library, said) in [
            (
                "cpu",
                "/usr/lib/mirrorsight/libonnxruntime.so",
                "onnxruntime provider: ok (cpu)\n",
            ),
            (
                "openvino",
                "/usr/lib/mirrorsight/openvino/libonnxruntime.so",
                "onnxruntime provider: ok (cpu, onnxruntime.provider = \"openvino\" fell back: model pose_detection: ",
            ),
        ] {
            let provider = format!("onnxruntime.provider=\"{provider}\"");
            let library = format!("onnxruntime.library=\"{library}\"");
            let out = check_as(
                &[
                    "--set",
                    &provider,
                    "--set",
                    &library,
                    "--set",
                    "models.dir=\"/usr/share/mirrorsight/models\"",
                ],
                true,
            );
            let report = String::from_utf8_lossy(&out.stdout).into_owned();
            let models_ok = report
                .lines()
                .filter(|l| {
                    l.starts_with("model ") && l.contains(": ok (/usr/share/mirrorsight/models/")
                })
                .count();
            assert_eq!(models_ok, 7, "{}", text(&out));
            assert!(report.contains(said), "{}", text(&out));
        }
    } else {
        let why = "this kernel has no PR_SET_MDWE (Linux 6.3+); MemoryDenyWriteExecute not tried";
        assert!(!in_ci(), "the package test cannot run: {why}");
        eprintln!("package test: {why}");
    }

    // The technician edits the config: a trial clip instead of the camera, codes and uploads
    // through the store hub, no screen. Then only the hub's device token is missing ...
    let mut config = std::fs::read_to_string("/etc/mirrorsight/mirrorsight.toml").unwrap();
    config = config
        .replace(
            "kind = \"camera\"",
            &format!("kind = \"file\"\npath = \"{}\"", demo_clip().display()),
        )
        .replace("kind = \"url\"", "kind = \"relay\"")
        .replace(
            "# url = \"https://hub.shop.example\"",
            "url = \"https://hub.myshop.cn\"",
        )
        .replace("mode = \"window\"", "mode = \"none\"");
    std::fs::write("/etc/mirrorsight/mirrorsight.toml", config).unwrap();
    let out = check(&[]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert_eq!(missing(&report), ["device token"], "{report}");
    assert!(
        report.contains("/etc/mirrorsight/credentials/device-token"),
        "{report}"
    );
    // ... and once it is in the credentials directory, the mirror is ready.
    std::fs::write(
        "/etc/mirrorsight/credentials/device-token",
        "device-token-from-the-hub\n",
    )
    .unwrap();
    std::fs::set_permissions(
        "/etc/mirrorsight/credentials/device-token",
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // systemd accepts the installed units as they are.
    let out = run(Command::new("systemd-analyze").args([
        "verify",
        "/usr/lib/systemd/system/mirrorsight.service",
        "/usr/lib/systemd/system/mirrorsight-hub.service",
    ]));
    let said = text(&out);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("mirrorsight"),
        "systemd-analyze verify complains: {said}"
    );

    // Remove keeps the configuration (and the credential); the programs go.
    let mut remove = vec!["--remove"];
    remove.extend(PACKAGES);
    dpkg_ok(&remove);
    for package in PACKAGES {
        assert_eq!(status(package), "config-files");
    }
    assert!(!Path::new("/usr/bin/mirrorsight").exists());
    assert!(Path::new("/etc/mirrorsight/mirrorsight.toml").exists());
    assert!(Path::new("/etc/mirrorsight/credentials/device-token").exists());

    // Purge leaves nothing but the system users (Debian policy 9.2.1 keeps them).
    let mut purge = vec!["--purge"];
    purge.extend(PACKAGES);
    dpkg_ok(&purge);
    for package in PACKAGES {
        assert!(matches!(status(package).as_str(), "" | "not-installed"));
    }
    for path in INSTALLED.iter().chain(&[
        "/etc/mirrorsight",
        "/usr/lib/mirrorsight",
        "/usr/share/mirrorsight",
        "/usr/share/doc/mirrorsight",
        "/usr/share/doc/mirrorsight-hub",
        // The mask `dpkg -r` put on the units, and deb-systemd-helper's memory of them.
        "/etc/systemd/system/mirrorsight.service",
        "/etc/systemd/system/mirrorsight-hub.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/mirrorsight.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/mirrorsight-hub.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-masked/mirrorsight.service",
        "/var/lib/systemd/deb-systemd-helper-masked/mirrorsight-hub.service",
    ]) {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    assert!(run(Command::new("id").arg("mirrorsight")).status.success());
}
