//! What mirrorsight's tests need from the machine: root, a tmpfs of a given size, a tool on
//! the `PATH`.
//!
//! A test whose requirement is missing prints one `SKIPPED <test>: <reason>` line and passes,
//! so a developer's laptop runs what it can; under `CI=true` it fails with that reason instead,
//! because CI must never go green on a test it did not run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether CI is running the suite (`CI=true`, as `.ci/run` is called).
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `true` when `test`'s requirement is met (`ok`). Otherwise prints a skip line naming what is
/// `missing` and returns `false`; under `CI=true` it panics with that reason.
pub fn can_run(test: &str, ok: bool, missing: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "{test}: CI=true but {missing}");
    println!("SKIPPED {test}: {missing}");
    false
}

/// `Some(value)`, or `None` after [`can_run`] reported `Err`'s reason (a panic under CI).
pub fn require<T>(test: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(missing) => {
            can_run(test, false, &missing);
            None
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `Ok` as root, else why a test needs it.
pub fn root(what_for: &str) -> Result<(), String> {
    if is_root() {
        Ok(())
    } else {
        Err(format!("{what_for} needs root"))
    }
}

/// The path of `tool` on the `PATH`, or why not (naming the Debian package that has it).
pub fn tool(tool: &str, package: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!("{tool} is not installed (Debian package {package}; scripts/setup-test.sh installs it)")
        })
}

/// A tmpfs mounted at a directory (root only), unmounted (lazily) on drop.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `mount -t tmpfs -o <options>` at `dir` (created if needed), or why not.
    pub fn mount(dir: &Path, options: &str) -> Result<Self, String> {
        root("mounting a tmpfs")?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o {options} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `mount -o remount,<options>`, e.g. `ro` or `rw`.
    pub fn remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_report_what_is_missing() {
        assert!(can_run("t", true, "nothing"));
        assert_eq!(require("t", Ok::<_, String>(3)), Some(3));
        let missing = tool("surely-not-a-tool-xyz", "none").unwrap_err();
        assert!(missing.contains("surely-not-a-tool-xyz") && missing.contains("setup-test.sh"));
        assert!(tool("sh", "dash").is_ok());
        if !in_ci() {
            assert!(!can_run("t", false, "a thing"));
            assert_eq!(require::<u8>("t", Err("a thing".into())), None);
        }
    }
}
