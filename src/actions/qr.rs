//! One QR code per session: taken from the pre-minted pool (or rendered locally) the moment
//! the session starts, minted in the background otherwise.

use std::time::Duration;

use std::path::Path;

use mirrorsight_contract::events::{Event, EventKind};
use mirrorsight_wechat::{CodeOutcome, MintedCode, QrService, QrSource, QrUpdate};
use thiserror::Error;
use tracing::warn;

use super::Action;
use crate::ids::IdGenerator;

/// How long a start waits for the pool to fill before serving sessions anyway.
const POOL_FILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum QrStartError {
    #[error("QR credentials: {0}")]
    Secret(#[from] mirrorsight_wechat::SecretError),
    #[error("QR codes: {0}")]
    Start(#[from] mirrorsight_wechat::StartError),
}

/// How long the end of a replay (or a shutdown) waits for mints still in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

pub struct QrAction {
    service: QrService,
    /// Media time of the latest frame, for results that arrive in the background.
    now: f64,
    /// `qr_idle` went out (once per start).
    idle_sent: bool,
}

impl QrAction {
    /// Starts minting as configured. A replay waits (bounded) for a full pool first, so the
    /// first session is served from it exactly as a long-running mirror would be.
    pub fn start(
        settings: &mirrorsight_wechat::Settings,
        mut ids: IdGenerator,
        state_dir: &Path,
        runtime: tokio::runtime::Handle,
        fill_first: bool,
    ) -> Result<Self, QrStartError> {
        let secrets = settings.load_secrets(&|k| std::env::var(k).ok())?;
        let service = QrService::start(
            settings,
            &secrets,
            Box::new(move || ids.next_id()),
            &state_dir.join("bindings.jsonl"),
            runtime,
        )?;
        if fill_first && !service.wait_filled(POOL_FILL_WAIT) {
            warn!("QR pool not full after {POOL_FILL_WAIT:?}; sessions may wait for a live mint");
        }
        // A replay shows the idle code from its first frame, as a mirror that has been
        // running does.
        if fill_first
            && settings.qr.idle_code.is_some()
            && service.wait_idle_code(POOL_FILL_WAIT).is_none()
        {
            warn!("idle code not ready after {POOL_FILL_WAIT:?}; it shows once minted");
        }
        Ok(Self {
            service,
            now: 0.0,
            idle_sent: false,
        })
    }

    fn minted(t: f64, session: &str, code: MintedCode, source: QrSource) -> Event {
        Event::new(
            t,
            EventKind::QrMinted {
                session: session.to_string(),
                scene: code.scene,
                url: code.url.unwrap_or_default(),
                expires_at: code.expires_at.unwrap_or(0),
                source,
            },
        )
    }

    fn idle_code(&mut self, emit: &mut Vec<Event>) {
        if self.idle_sent {
            return;
        }
        if let Some(code) = self.service.idle_code() {
            self.idle_sent = true;
            emit.push(Event::new(
                self.now,
                EventKind::QrIdle {
                    scene: code.scene,
                    url: code.url.unwrap_or_default(),
                },
            ));
        }
    }

    fn drain_updates(&mut self, emit: &mut Vec<Event>) {
        while let Ok(update) = self.service.updates().try_recv() {
            emit.push(match update {
                QrUpdate::Minted {
                    session,
                    code,
                    source,
                } => Self::minted(self.now, &session, code, source),
                QrUpdate::Failed {
                    session, reason, ..
                } => Event::new(self.now, EventKind::QrFailed { session, reason }),
            });
        }
    }
}

impl Action for QrAction {
    fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>) {
        self.now = self.now.max(event.t);
        match &event.kind {
            EventKind::SessionStarted { session } => match self.service.code_for_session(session) {
                CodeOutcome::Ready { code, source } => {
                    emit.push(Self::minted(event.t, session, code, source))
                }
                // Minting continues in the background; `qr_failed` follows if it cannot succeed now.
                CodeOutcome::Pending => {}
            },
            EventKind::SessionEnded { session, .. } => self.service.session_ended(session),
            _ => {}
        }
    }

    fn poll(&mut self, t: f64, emit: &mut Vec<Event>) {
        self.now = self.now.max(t);
        self.idle_code(emit);
        self.drain_updates(emit);
    }

    fn finish(&mut self, emit: &mut Vec<Event>) {
        let report = self.service.shutdown(SHUTDOWN_WAIT);
        if !report.clean {
            warn!(
                abandoned = report.abandoned_mints,
                "QR mints still in flight at exit were abandoned"
            );
        }
        self.drain_updates(emit);
    }
}
