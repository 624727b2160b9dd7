//! `mirrorsight-fake-backend --listen 127.0.0.1:PORT`: the loopback WeChat + store-backend fake
//! for manual demos. Prints `listening on http://ADDR` on stdout once ready; Ctrl-C stops it.
//! Faults and the request log are reachable under `/__fake/` (see the library's `admin`).

use std::net::SocketAddr;
use std::process::ExitCode;

use mirrorsight_fake_backend::{FakeConfig, FakeServer};

const USAGE: &str = "usage: mirrorsight-fake-backend [--listen ADDR] [--appid ID] [--appsecret SECRET] \
[--device-token TOKEN=DEVICE]... [--token-expires-in SECONDS] [--max-photo-bytes N]";

fn parse_args(args: &[String]) -> Result<(SocketAddr, FakeConfig), String> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let mut config = FakeConfig::default();
    let mut custom_devices = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--appid" => config.appid = value("--appid")?,
            "--appsecret" => config.appsecret = value("--appsecret")?,
            "--device-token" => {
                let v = value("--device-token")?;
                let (token, device) = v
                    .split_once('=')
                    .ok_or("--device-token wants TOKEN=DEVICE")?;
                custom_devices.push((token.to_string(), device.to_string()));
            }
            "--token-expires-in" => {
                let v = value("--token-expires-in")?;
                config.token_expires_in = v
                    .parse()
                    .map_err(|e| format!("--token-expires-in {v}: {e}"))?;
            }
            "--max-photo-bytes" => {
                let v = value("--max-photo-bytes")?;
                config.max_photo_bytes = v
                    .parse()
                    .map_err(|e| format!("--max-photo-bytes {v}: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !custom_devices.is_empty() {
        config.device_tokens = custom_devices;
    }
    Ok((listen, config))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, config) = match parse_args(&args) {
        Ok(v) => v,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("mirrorsight-fake-backend: {msg}");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let (url, handle) = match FakeServer::start_with(config, listen).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mirrorsight-fake-backend: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {url}");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("mirrorsight-fake-backend: cannot wait for Ctrl-C: {e}");
    }
    handle.stop().await;
    ExitCode::SUCCESS
}
