//! The core crate's walls: the session tracker, gesture recognizer and capture scheduler depend
//! on nothing that does I/O, so Cargo, not discipline, keeps them pure.

use std::path::Path;
use std::process::Command;

/// Crates that do I/O (runtimes, HTTP, vision, camera, window) and must never reach the core.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "opencv",
    "ort",
    "nokhwa",
    "minifb",
    "turbojpeg",
    "rusqlite",
    "rumqttc",
];

#[test]
fn the_core_depends_on_no_io_crate() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO"))
        .current_dir(repo)
        .args([
            "tree",
            "-p",
            "mirrorsight-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"mirrorsight-core"), "{tree}");
    for name in FORBIDDEN {
        assert!(
            !crates.contains(name),
            "mirrorsight-core depends on `{name}`:\n{tree}"
        );
    }
}

#[test]
fn the_core_uses_no_file_network_or_clock_api() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/mirrorsight-core/src");
    let mut offenders = Vec::new();
    visit(&src, &mut |path, text| {
        // Test-only modules may read fixtures; the library code may not.
        if text.contains("#![cfg(test)]") {
            return;
        }
        let library: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .to_string();
        for api in [
            "std::fs",
            "std::net",
            "std::process",
            "std::thread",
            "Instant::now",
            "SystemTime",
            "std::env",
        ] {
            if library.contains(api) {
                offenders.push(format!("{}: {api}", path.display()));
            }
        }
    });
    assert!(offenders.is_empty(), "I/O in the core: {offenders:?}");
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).expect("read core sources") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            visit(&path, f);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            f(&path, &text);
        }
    }
}
