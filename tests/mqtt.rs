//! The MQTT sink against a real mosquitto on loopback (Debian package `mosquitto`; each test
//! starts its own broker on a free port): every event arrives in order and equals the event
//! file, a broker restarted mid-replay loses only the buffer's overflow (the oldest events),
//! the last will says `offline` when the daemon is killed, and TLS with a password from the
//! credentials directory works while a wrong password is refused without losing the stream.
//!
//! Under `CI=true` a missing mosquitto fails these tests with its reason; elsewhere they skip.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::*;
use mirrorsight::events::{Event, EventKind};
use mirrorsight::sinks::{EventSink, MqttConfig, MqttSink, SinkContext};
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};

const MIRROR: &str = "test-mirror";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mosquitto_binary() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A mosquitto of our own: started on loopback, restartable, killed on drop.
struct Broker {
    binary: PathBuf,
    conf: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// `listeners`: the listener sections; `{port}` is replaced by the main port and `{dir}`
    /// by the broker's directory. `None` (skip) when mosquitto is missing outside CI.
    fn start_with(listeners: &str) -> Option<Self> {
        let Some(binary) = mosquitto_binary() else {
            let why = "mosquitto is not installed (Debian package `mosquitto`; scripts/setup-test.sh installs it)";
            if std::env::var_os("CI").is_some_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("skipping: {why}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let listeners = listeners
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(
            &conf,
            format!(
                "{listeners}\npersistence true\npersistence_location {}/\n\
                 log_dest file {}/mosquitto.log\nlog_type all\n",
                dir.path().display(),
                dir.path().display()
            ) + if is_root() {
                // Started as root mosquitto would switch to its own user, who cannot read here.
                "user root\n"
            } else {
                ""
            },
        )
        .unwrap();
        let mut broker = Self {
            binary,
            conf,
            port,
            dir,
            child: None,
        };
        broker.launch();
        Some(broker)
    }

    /// Anonymous clients on one plain loopback listener.
    fn start() -> Option<Self> {
        Self::start_with("listener {port} 127.0.0.1\nallow_anonymous true")
    }

    fn launch(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (mosquitto saves its sessions), and wait for it to be gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sends a signal to our own child, whose pid is still ours (not yet waited for).
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// One message as a subscriber saw it.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: String,
    retained: bool,
}

/// A test client subscribed to `filter` at QoS 1; `persistent` keeps its session (and the
/// messages queued for it) across a broker restart.
struct Subscriber {
    messages: Receiver<Message>,
    seen: Vec<Message>,
    _client: Client,
}

impl Subscriber {
    fn connect(port: u16, filter: &str, persistent: bool) -> Self {
        let mut options = MqttOptions::new(format!("test-subscriber-{port}"), "127.0.0.1", port);
        options.set_clean_session(!persistent);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(options, 64);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let (tx, rx) = channel();
        let (subscribed_tx, subscribed) = channel();
        std::thread::spawn(move || {
            for notification in connection.iter() {
                match notification {
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let message = Message {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retained: p.retain,
                        };
                        if tx.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The broker went away (restart): try again shortly.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed");
        Self {
            messages: rx,
            seen: Vec::new(),
            _client: client,
        }
    }

    /// Collects until `done(all seen so far)` or `timeout`; returns whether `done` held.
    fn wait_for(&mut self, timeout: Duration, done: impl Fn(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) => self.seen.push(m),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return done(&self.seen);
                }
            }
        }
        true
    }

    fn on(&self, leaf: &str) -> Vec<&Message> {
        let topic = format!("mirrorsight/{MIRROR}/{leaf}");
        self.seen.iter().filter(|m| m.topic == topic).collect()
    }

    fn events(&self) -> Vec<String> {
        self.on("events")
            .iter()
            .map(|m| m.payload.clone())
            .collect()
    }
}

fn has(leaf: &'static str, payload: &'static str) -> impl Fn(&[Message]) -> bool {
    move |seen| {
        seen.iter()
            .any(|m| m.topic == format!("mirrorsight/{MIRROR}/{leaf}") && m.payload == payload)
    }
}

fn mqtt_settings(port: u16) -> Vec<String> {
    [
        "mqtt.enabled=true".to_string(),
        format!("mqtt.url=mqtt://127.0.0.1:{port}"),
        format!("mqtt.mirror={MIRROR}"),
        "mqtt.health_interval_s=1".to_string(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_replay_publishes_every_event_in_order_exactly_as_the_event_file() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let mut subscriber = Subscriber::connect(broker.port, "mirrorsight/#", false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    // No --live: a broker on loopback is one a replay may publish to (tests/replay_reach.rs).
    run_ok(
        bin()
            .arg("replay")
            .arg(demo_clip())
            .arg("--events")
            .arg(&file)
            .args(mqtt_settings(broker.port)),
    );
    let written = lines(&file);
    assert!(written.len() >= 3, "{written:?}");
    // A clean exit says "offline" last, after everything else was taken.
    assert!(
        subscriber.wait_for(Duration::from_secs(10), has("availability", "offline")),
        "no offline: {:?}\n{}",
        subscriber.seen,
        broker.log()
    );
    assert_eq!(subscriber.events(), written);
    let availability: Vec<&str> = subscriber
        .on("availability")
        .iter()
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(availability, ["online", "offline"]);
    let health = subscriber.on("health");
    let first: serde_json::Value = serde_json::from_str(&health[0].payload).unwrap();
    assert_eq!(first["mirror"], MIRROR);
    assert_eq!(first["status"], "ok");
    assert!(first["mqtt"]["dropped"].is_u64(), "{first}");

    // "offline" stays on the broker for whoever looks later.
    let mut late = Subscriber::connect(
        broker.port,
        &format!("mirrorsight/{MIRROR}/availability"),
        false,
    );
    assert!(late.wait_for(Duration::from_secs(5), |s| !s.is_empty()));
    assert_eq!(late.seen[0].payload, "offline");
    assert!(late.seen[0].retained);
}

#[test]
fn a_broker_restarted_mid_replay_loses_only_the_oldest_overflow() {
    let Some(mut broker) = Broker::start() else {
        return;
    };
    // A persistent session, so what the mirror publishes right after the restart is kept for
    // the subscriber until it is back too.
    let mut subscriber = Subscriber::connect(broker.port, &format!("mirrorsight/{MIRROR}/#"), true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut mirror = bin()
        .arg("replay")
        .arg(demo_clip())
        .arg("--realtime")
        .arg("--events")
        .arg(&file)
        .args(mqtt_settings(broker.port))
        // Room for one event while the broker is away.
        .args(["--set", "mqtt.buffer_events=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        subscriber.wait_for(Duration::from_secs(30), has("availability", "online")),
        "the mirror never connected"
    );
    assert!(
        lines(&file).is_empty(),
        "the first event came before the broker could be stopped"
    );
    broker.stop();
    // The demo's shopper arrives at 3.4 s: session_started and qr_minted, both while the broker
    // is away (the next event, person_left, comes 8 s later).
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&file).len() < 2 {
        assert!(Instant::now() < deadline, "no session in the demo clip");
        std::thread::sleep(Duration::from_millis(20));
    }
    let while_away = lines(&file);
    assert_eq!(while_away.len(), 2, "{while_away:?}");
    broker.restart();

    let status = mirror.wait().unwrap();
    let mut stderr = String::new();
    mirror
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    let written = lines(&file);
    // The clean end: the final health (with the sink's counters), then "offline".
    let ended = |seen: &[Message]| {
        seen.iter()
            .rev()
            .find(|m| m.topic.ends_with("/availability"))
            .is_some_and(|m| m.payload == "offline")
            && seen.iter().any(|m| m.topic.ends_with("/events"))
    };
    assert!(
        subscriber.wait_for(Duration::from_secs(15), ended),
        "{:?}\n{stderr}\n{}",
        subscriber.seen,
        broker.log()
    );
    let health = subscriber.on("health");
    let last: serde_json::Value = serde_json::from_str(&health.last().unwrap().payload).unwrap();
    let dropped = last["mqtt"]["dropped"].as_u64().unwrap() as usize;

    // What arrived is the event file, in order, less exactly the overflow the sink counted.
    let received = subscriber.events();
    let mut file_lines = written.iter();
    for got in &received {
        assert!(
            file_lines.any(|w| w == got),
            "{got} is out of order or not in the event file:\n{received:#?}\n{written:#?}"
        );
    }
    assert_eq!(
        received.len() + dropped,
        written.len(),
        "lost more than the overflow ({dropped} dropped):\n{received:#?}\n{written:#?}\n{stderr}"
    );
    // One event fits while the broker is away: of the two, the older (session_started) went.
    let kinds: Vec<String> = while_away
        .iter()
        .map(|l| {
            serde_json::from_str::<Event>(l)
                .unwrap()
                .type_name()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["session_started", "qr_minted"]);
    assert!(dropped >= 1, "{last}");
    assert!(!received.contains(&while_away[0]), "{received:#?}");
    assert!(received.contains(&while_away[1]), "{received:#?}");
}

#[test]
fn the_last_will_says_offline_when_the_daemon_is_killed() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let mut subscriber =
        Subscriber::connect(broker.port, &format!("mirrorsight/{MIRROR}/#"), false);
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = dir.path().join("mirrorsight.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\nrealtime = true\n[events]\nfile = \"\"\n\
             [service]\nlisten = \"127.0.0.1:{http}\"\n[display]\nmode = \"none\"\n\
             [storage]\ndir = \"{}\"\n[photos]\nspool_dir = \"{}\"\n",
            demo_clip().display(),
            dir.path().join("state").display(),
            dir.path().join("state/spool").display(),
        ),
    )
    .unwrap();
    let mut daemon = bin()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(mqtt_settings(broker.port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Health every second carries the daemon's /healthz once frames flow.
    let frames_flowing = |seen: &[Message]| {
        seen.iter().any(|m| {
            m.topic.ends_with("/health")
                && serde_json::from_str::<serde_json::Value>(&m.payload)
                    .is_ok_and(|h| h["frames_processed"].as_u64().is_some_and(|n| n > 0))
        })
    };
    let up = subscriber.wait_for(Duration::from_secs(30), |seen| {
        has("availability", "online")(seen) && frames_flowing(seen)
    });
    if !up {
        let _ = daemon.kill();
        panic!("{:?}", subscriber.seen);
    }
    let metrics = get(http, "/metrics");
    assert!(
        metrics.contains("\nmirrorsight_mqtt_connected 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nmirrorsight_mqtt_events_dropped_total 0\n"),
        "{metrics}"
    );

    signal(&daemon, libc::SIGKILL);
    let _ = daemon.wait();
    assert!(
        subscriber.wait_for(Duration::from_secs(10), has("availability", "offline")),
        "no last will: {:?}",
        subscriber.seen
    );
    let will = subscriber.on("availability");
    assert!(
        will.last().is_some_and(|m| m.payload == "offline"),
        "{will:?}"
    );
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}

/// A throwaway CA and a server certificate for 127.0.0.1 (openssl, as scripts/pg.sh does).
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package `openssl`)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mirrorsight-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "ext",
        "-out",
        "server.pem",
    ]);
}

fn event(i: u64) -> Event {
    Event::new(i as f64, EventKind::SourceEnded { frames: i })
}

/// Publishes `n` events through a sink built as `mirrorsight` builds it, with credentials from
/// `credentials`, and returns the sink's counters after its clean end.
fn publish_through_sink(
    config: &MqttConfig,
    credentials: &Path,
    n: u64,
) -> mirrorsight::sinks::mqtt::MqttStatus {
    let dir = credentials.display().to_string();
    let context = SinkContext {
        health: None,
        env: Arc::new(move |k| (k == "CREDENTIALS_DIRECTORY").then(|| dir.clone())),
    };
    let mut sink = MqttSink::start(config, &context).expect("sink starts");
    for i in 0..n {
        sink.handle(&event(i)).unwrap();
    }
    sink.flush().unwrap();
    sink.status()
}

#[test]
fn tls_and_a_password_from_the_credentials_directory() {
    if mosquitto_binary().is_none() {
        // Same skip-or-fail rule as every broker here.
        assert!(Broker::start().is_none());
        return;
    }
    let tls_port = free_port();
    let work = tempfile::tempdir().unwrap();
    make_certificates(work.path());
    let passwd = work.path().join("passwd");
    let made = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["mirror", "right-password"])
        .output()
        .expect("mosquitto_passwd (Debian package `mosquitto`)");
    assert!(made.status.success(), "{made:?}");
    let w = work.path().display();
    let Some(broker) = Broker::start_with(&format!(
        "per_listener_settings true\n\
         listener {{port}} 127.0.0.1\nallow_anonymous true\n\
         listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {w}/passwd\n\
         cafile {w}/ca.pem\ncertfile {w}/server.pem\nkeyfile {w}/server.key\n"
    )) else {
        return;
    };
    let mut subscriber =
        Subscriber::connect(broker.port, &format!("mirrorsight/{MIRROR}/events"), false);

    let credentials = tempfile::tempdir().unwrap();
    std::fs::copy(
        work.path().join("ca.pem"),
        credentials.path().join("mqtt-ca"),
    )
    .unwrap();
    std::fs::write(credentials.path().join("mqtt-username"), "mirror\n").unwrap();
    std::fs::write(credentials.path().join("mqtt-password"), "right-password\n").unwrap();
    let config = MqttConfig {
        enabled: true,
        url: format!("mqtts://127.0.0.1:{tls_port}"),
        mirror: MIRROR.into(),
        ..MqttConfig::default()
    };
    let status = publish_through_sink(&config, credentials.path(), 3);
    assert_eq!(status.published, 3, "{status:?}\n{}", broker.log());
    assert!(subscriber.wait_for(Duration::from_secs(5), |s| s.len() == 3));
    let want: Vec<String> = (0..3).map(|i| event(i).to_json_line()).collect();
    assert_eq!(subscriber.events(), want);

    // A wrong password: refused, nothing published, and the sink still ends cleanly (bounded).
    std::fs::write(credentials.path().join("mqtt-password"), "wrong\n").unwrap();
    let started = Instant::now();
    let status = publish_through_sink(&config, credentials.path(), 2);
    assert_eq!(status.published, 0, "{status:?}");
    assert_eq!(status.buffered, 2, "{status:?}");
    assert!(!status.connected);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        broker.log().contains("not authorised") || broker.log().contains("not authorized"),
        "{}",
        broker.log()
    );

    // Without the CA the broker's certificate (from a private CA) is not trusted.
    std::fs::remove_file(credentials.path().join("mqtt-ca")).unwrap();
    let status = publish_through_sink(&config, credentials.path(), 1);
    assert_eq!(status.published, 0, "{status:?}");
}
