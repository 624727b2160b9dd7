//! sd_notify datagrams on a real unix socket, the watchdog thread against live health, and
//! signal handling. Each test binary is its own process, so installing handlers here touches
//! no other test.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mirrorsight::service::watchdog::{WatchdogSettings, notifier_from_env};
use mirrorsight::service::{
    Health, HealthSettings, Notifier, Notify, ReloadRequests, Shutdown, SystemdNotifier,
    WatchdogCore, WatchdogThread, signals,
};

fn recv_all(socket: &UnixDatagram, quiet: Duration) -> Vec<(Instant, String)> {
    socket.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 512];
    let mut out = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        out.push((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ));
    }
    out
}

/// Forwards to the real notifier and notes when each message went out.
struct Recording {
    inner: SystemdNotifier,
    sent: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Notifier for Recording {
    fn notify(&self, message: &Notify) -> std::io::Result<()> {
        self.sent
            .lock()
            .unwrap()
            .push((Instant::now(), message.payload()));
        self.inner.notify(message)
    }
}

#[test]
fn notifications_arrive_as_datagrams_on_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let notifier = SystemdNotifier::connect(path.to_str().unwrap()).unwrap();
    for m in [
        Notify::Ready,
        Notify::Status("streaming".into()),
        Notify::Watchdog,
        Notify::Reloading,
        Notify::Stopping,
    ] {
        notifier.notify(&m).unwrap();
    }
    let got: Vec<String> = recv_all(&socket, Duration::from_millis(200))
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        got,
        [
            "READY=1",
            "STATUS=streaming",
            "WATCHDOG=1",
            "RELOADING=1",
            "STOPPING=1"
        ]
    );
}

#[test]
fn notifications_reach_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("mirrorsight-test-{}-{nanos}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let notifier = SystemdNotifier::connect(&format!("@{name}")).unwrap();
    notifier.notify(&Notify::Ready).unwrap();
    let got = recv_all(&socket, Duration::from_millis(200));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "READY=1");
}

#[test]
fn bad_notify_socket_values_are_errors_and_absent_means_noop() {
    assert!(SystemdNotifier::connect("vsock:2:1234").is_err());
    // Not under systemd in tests: the fallback must not fail.
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        notifier_from_env().notify(&Notify::Ready).unwrap();
    }
}

#[test]
fn watchdog_thread_pings_while_frames_flow_and_stops_when_they_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let notifier: Arc<dyn Notifier> = Arc::new(Recording {
        inner: SystemdNotifier::connect(path.to_str().unwrap()).unwrap(),
        sent: sent.clone(),
    });

    let health = Arc::new(Health::new(HealthSettings::default()));
    let ping_every = Duration::from_millis(200); // WatchdogSec = 400 ms
    let core = WatchdogCore::new(
        WatchdogSettings {
            ping_every: Some(ping_every),
            stall_after: Duration::from_millis(300),
            reconnect_grace: Duration::ZERO,
            attempt_window: Duration::ZERO,
            startup_grace: Duration::ZERO,
        },
        Instant::now(),
    );
    let shutdown = Shutdown::new();
    let watchdog = WatchdogThread::spawn(core, notifier, health.clone(), shutdown.clone()).unwrap();

    let collector = thread::spawn(move || recv_all(&socket, Duration::from_secs(2)));

    let feed = |d: Duration| {
        let until = Instant::now() + d;
        let mut seq = 0;
        while Instant::now() < until {
            health.frame_processed(seq, Instant::now());
            seq += 1;
            thread::sleep(Duration::from_millis(10));
        }
    };
    thread::sleep(Duration::from_millis(300)); // starting: nothing to ping for
    let flow1 = Instant::now();
    feed(Duration::from_millis(1000));
    let frozen = Instant::now();
    thread::sleep(Duration::from_millis(1200));
    let flow2 = Instant::now();
    feed(Duration::from_millis(1000));
    let stopped = Instant::now();
    shutdown.trigger();
    watchdog.join();
    assert_eq!(
        health.report(Instant::now()).reason.as_deref(),
        Some("shutting down")
    );

    let received: Vec<String> = collector
        .join()
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    // Times are taken as the watchdog thread sends: a collector thread starved on a busy
    // machine would otherwise see a ping sent while frames flowed arrive after the freeze.
    let got = sent.lock().unwrap().clone();
    assert_eq!(
        received,
        got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        "what the socket received is what was sent, in order"
    );
    let at = |m: &str| -> Vec<Instant> {
        got.iter()
            .filter(|(_, p)| p == m)
            .map(|(t, _)| *t)
            .collect()
    };
    let pings = at("WATCHDOG=1");
    // Allow for a busy machine delaying the watchdog thread between deciding and sending.
    let slack = Duration::from_millis(150);
    assert_eq!(at("READY=1").len(), 1, "{got:?}");
    assert!(
        at("READY=1")[0] >= flow1,
        "READY only after the first frame"
    );
    assert!(pings.iter().all(|&t| t >= flow1), "no pings before frames");
    let first_run = pings.iter().filter(|&&t| t < frozen).count();
    assert!(first_run >= 4, "pings while frames flow: {got:?}");
    // Within one ping interval of the freeze the pings stop…
    assert!(
        pings
            .iter()
            .filter(|&&t| t > frozen + ping_every + slack && t < flow2)
            .count()
            == 0,
        "pinged while frozen: {got:?}"
    );
    // …and resume with the frames.
    let second_run = pings
        .iter()
        .filter(|&&t| t >= flow2 && t <= stopped + slack)
        .count();
    assert!(second_run >= 4, "pings after recovery: {got:?}");
    assert_eq!(
        got.last().map(|(_, p)| p.as_str()),
        Some("STOPPING=1"),
        "{got:?}"
    );
    let statuses: Vec<&str> = got
        .iter()
        .filter_map(|(_, p)| p.strip_prefix("STATUS="))
        .collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("stalled")),
        "{statuses:?}"
    );
}

#[test]
fn sigterm_triggers_shutdown_and_sighup_requests_a_reload() {
    let shutdown = Shutdown::new();
    let reload = ReloadRequests::new();
    let handler = signals::install(shutdown.clone(), reload.clone()).unwrap();

    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
    assert!(
        reload
            .receiver()
            .recv_timeout(Duration::from_secs(2))
            .is_ok()
    );
    assert!(reload.take());
    assert!(!shutdown.is_triggered());

    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    assert!(shutdown.wait_timeout(Duration::from_secs(2)));
    handler.close();
}
