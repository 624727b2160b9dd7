//! Logging the way systemd users expect, shared by `mirrorsight` and `mirrorsight-hub`.
//!
//! - Under systemd, stderr is a stream into the journal and `$JOURNAL_STREAM` names it
//!   (`<device>:<inode>`). Then records go to journald natively ([`tracing_journald`]), with
//!   their level as the syslog priority, so `journalctl -p err` finds the errors and the
//!   fields stay searchable.
//! - Anywhere else: plain text on stderr, coloured only when stderr is a terminal (and
//!   `NO_COLOR` is unset), so pipes, files and the journal never see escape codes.
//! - One variable per program sets the filter (`MIRRORSIGHT_LOG`, `MIRRORSIGHT_HUB_LOG`), in
//!   `tracing_subscriber::EnvFilter` syntax: `debug`, `warn,mirrorsight=debug`, …
//!
//! [`Logging::fatal`] writes a program's last words (the one-line error before a non-zero
//! exit) so that they reach the journal at priority `err` as well.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where this process's log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Native journal records (stderr is connected to the journal and journald answers).
    Journal,
    /// Text on stderr that the journal collects (journald's socket did not answer): no
    /// timestamps and no colour, the journal adds its own.
    JournalStream,
    /// Text on stderr, with ANSI colour when `ansi`.
    Stderr { ansi: bool },
}

/// What a program asks for.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The `SYSLOG_IDENTIFIER` in the journal, e.g. "mirrorsight".
    pub program: &'a str,
    /// The environment variable holding the filter, e.g. "MIRRORSIGHT_LOG".
    pub filter_var: &'a str,
    /// The filter when the variable is unset, e.g. "info".
    pub default_filter: &'a str,
    /// Directives always added after the filter, e.g. "noisy_crate=off".
    pub always: &'a [&'a str],
}

/// The installed logger; tells how to write the program's last words.
#[derive(Debug, Clone, Copy)]
pub struct Logging {
    destination: Destination,
}

impl Logging {
    /// Installs the global subscriber. Never fails: a wrong filter falls back to the default
    /// (and says so), an unreachable journald falls back to text.
    pub fn init(settings: &Settings<'_>) -> Self {
        let (filter, bad_filter) = filter(settings);
        let journal_stream = stderr_is_journal_stream();
        // Native records when journald answers; text otherwise (Option<Layer> is a layer that
        // is either there or not).
        let journal = journal_stream
            .then(|| tracing_journald::layer().ok())
            .flatten()
            .map(|layer| {
                layer
                    .with_syslog_identifier(settings.program.to_string())
                    .with_priority_mappings(syslog_priorities())
            });
        let destination = match (journal.is_some(), journal_stream) {
            (true, _) => Destination::Journal,
            (false, true) => Destination::JournalStream,
            (false, false) => Destination::Stderr {
                ansi: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            },
        };
        let ansi = matches!(destination, Destination::Stderr { ansi: true });
        let timed_text = matches!(destination, Destination::Stderr { .. }).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(ansi)
        });
        // Into the journal as text: it stamps each line itself.
        let untimed_text = (destination == Destination::JournalStream).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(false)
                .without_time()
        });
        let installed = tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .with(timed_text)
            .with(untimed_text)
            .try_init();
        if installed.is_ok()
            && let Some(value) = bad_filter
        {
            tracing::warn!(
                "{}={value:?} is not a log filter (like \"debug\" or \"warn,{}=debug\"); using {:?}",
                settings.filter_var,
                settings.program.replace('-', "_"),
                settings.default_filter
            );
        }
        Self { destination }
    }

    pub fn destination(&self) -> Destination {
        self.destination
    }

    /// Writes the one line that explains a failed exit to stderr. Into the journal it goes with
    /// the `<3>` prefix of sd-daemon(3), so it is stored at priority `err` like logged errors.
    pub fn fatal(&self, line: &str) {
        let prefix = match self.destination {
            Destination::Journal | Destination::JournalStream => "<3>",
            Destination::Stderr { .. } => "",
        };
        let _ = writeln!(std::io::stderr().lock(), "{prefix}{line}");
    }
}

/// The filter from the program's variable, else the default; the rejected value if any.
fn filter(settings: &Settings<'_>) -> (EnvFilter, Option<String>) {
    let with_always = |mut f: EnvFilter| {
        for directive in settings.always {
            if let Ok(d) = directive.parse() {
                f = f.add_directive(d);
            }
        }
        f
    };
    let default = || with_always(EnvFilter::new(settings.default_filter));
    match std::env::var(settings.filter_var) {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(f) => (with_always(f), None),
            Err(_) => (default(), Some(value)),
        },
        _ => (default(), None),
    }
}

/// Syslog's meaning of the levels: errors `err` (3), warnings `warning` (4), the lifecycle
/// `info` (6), debugging `debug` (7). (The crate's default puts INFO at `notice`.)
fn syslog_priorities() -> PriorityMappings {
    PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// True when `$JOURNAL_STREAM` names this process's stderr: systemd connected it to the
/// journal. (A child that inherited the variable but not the stream must not believe it.)
pub fn stderr_is_journal_stream() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    names_stream(value, meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM` is `<st_dev>:<st_ino>` in decimal.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_the_very_stream() {
        assert!(names_stream("8:1234", 8, 1234));
        assert!(!names_stream("8:1234", 8, 1235));
        assert!(!names_stream("9:1234", 8, 1234));
        assert!(!names_stream("", 8, 1234));
        assert!(!names_stream("8", 8, 1234));
        assert!(!names_stream("x:y", 8, 1234));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        let p = syslog_priorities();
        // The enum's values are the ASCII digits journald expects in PRIORITY=.
        assert_eq!(p.error as u8, b'3');
        assert_eq!(p.warn as u8, b'4');
        assert_eq!(p.info as u8, b'6');
        assert_eq!(p.debug as u8, b'7');
    }
}
