//! The workspace's dependency declarations hold what the Cargo.toml files promise:
//! - every crate in the build (ours, and what `Cargo.lock` resolves for this platform, build and
//!   dev dependencies included) compiles with the workspace's `rust-version`, and every member
//!   declares that one `rust-version`;
//! - no exact `=x.y.z` requirement except where the code needs that one release (ort's release
//!   candidate): `Cargo.lock` already fixes the build;
//! - one `base64` major version across the members.
//!
//! Read from `cargo metadata --offline` (what the build already resolved and downloaded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The crates whose exact pin is deliberate, with why.
const EXACT_PINS_ALLOWED: &[(&str, &str)] = &[(
    "ort",
    "a release candidate: its API changes from one candidate to the next",
)];

fn metadata() -> Value {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO"))
        .current_dir(repo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            host(),
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The platform the tests were built for: the build's dependencies are this platform's.
fn host() -> &'static str {
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
        "aarch64-unknown-linux-gnu"
    } else {
        panic!("the mirror builds for x86_64 or aarch64 Linux")
    }
}

/// "1.92" or "1.92.1" as a comparable (major, minor, patch).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("not a Rust version: {text:?}"))
    });
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn members(meta: &Value) -> Vec<&Value> {
    let ids: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| ids.contains(id)))
        .collect()
}

fn name(package: &Value) -> &str {
    package["name"].as_str().expect("a package name")
}

#[test]
fn every_crate_in_the_build_compiles_with_the_declared_rust_version() {
    let meta = metadata();
    let declared: BTreeMap<&str, Option<&str>> = members(&meta)
        .iter()
        .map(|p| (name(p), p["rust_version"].as_str()))
        .collect();
    let root = declared["mirrorsight"].expect("the mirrorsight package declares rust-version");
    let differing: Vec<_> = declared.iter().filter(|(_, v)| **v != Some(root)).collect();
    assert!(
        differing.is_empty(),
        "every member takes the workspace's rust-version ({root}): {differing:?}"
    );
    // The code itself: let chains (`if let … && let …`) are Rust 1.88; the standard library
    // calls are held to `root` by clippy's incompatible_msrv lint.
    assert!(version(root) >= (1, 88, 0), "let chains need Rust 1.88");

    // Only what the build uses on this platform: the resolve graph of `--filter-platform`.
    let used: BTreeSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let newer: Vec<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| used.contains(id)))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(root))
                .then(|| format!("{} {} needs Rust {needs}", name(p), p["version"]))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "Cargo.lock holds crates that need a newer Rust than rust-version = \"{root}\" (raise \
         it, or `cargo update -p <crate>`: the resolver then picks a release that fits): {newer:?}"
    );
}

#[test]
fn no_exact_pin_that_only_the_lock_file_needs() {
    let meta = metadata();
    let mut pinned = Vec::new();
    for package in members(&meta) {
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let req = dep["req"].as_str().unwrap_or_default();
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if req.starts_with('=') && !EXACT_PINS_ALLOWED.iter().any(|(n, _)| *n == dep_name) {
                pinned.push(format!("{}: {dep_name} {req}", name(package)));
            }
        }
    }
    assert!(
        pinned.is_empty(),
        "exact pins (Cargo.lock already fixes the build; a pin only blocks fixes): {pinned:?}"
    );
}

#[test]
fn one_base64_major_version() {
    let meta = metadata();
    let mut requirements: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in members(&meta) {
        for dep in package["dependencies"].as_array().expect("dependencies") {
            if dep["name"] == "base64" {
                let req = dep["req"].as_str().unwrap_or_default().to_string();
                requirements
                    .entry(req)
                    .or_default()
                    .push(name(package).to_string());
            }
        }
    }
    assert_eq!(
        requirements.len(),
        1,
        "the members ask for several base64 versions: {requirements:?}"
    );
}
