#!/usr/bin/env bash
# The whole story on this machine, everything on 127.0.0.1: sets the machine up, builds, then
#   1. starts the loopback WeChat fake and a local store hub (relay mode, SQLite, photos on disk),
#   2. replays assets/story.mp4 on the mirror: a shopper arrives, swipes, gives a thumbs up and
#      leaves; the events stream by, the mirror's screens are saved as PNGs (and shown in a
#      window when $DISPLAY is set), the photo is uploaded to the hub,
#   3. simulates the shopper's scan: a correctly signed WeChat `SCAN` push to the hub's callback,
#   4. saves the gallery page the shopper is sent to: a PNG by headless Chromium when it is
#      installed, and the HTML,
# and prints where everything is. Exits non-zero, saying which part of the story is missing,
# if one is. Everything it writes goes to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
. scripts/env.sh
cargo build --release --locked -p mirrorsight --bin mirrorsight -p mirrorsight-hub --bin mirrorsight-hub \
  -p mirrorsight-fake-backend --bin mirrorsight-fake-backend >&2
bin="$CARGO_TARGET_DIR/release"

out=out/demo
rm -rf "$out" && mkdir -p "$out/screens" "$out/hub" "$out/mirror"
out=$(cd "$out" && pwd)

# The loopback WeChat fake's fixed credentials (crates/mirrorsight-fake-backend: FAKE_APPID,
# FAKE_APPSECRET) and the callback token the official account would share with the hub.
appid=wxfake0123456789ab
export MIRRORSIGHT_WECHAT_APPSECRET=fake-appsecret-0123456789abcdef
callback_token=mirrorsightDemoCallback5f1c9a
export MIRRORSIGHT_HUB_CALLBACK_TOKEN="$callback_token"

pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
fail() { echo "demo: $*" >&2; exit 1; }

"$bin/mirrorsight-fake-backend" --listen 127.0.0.1:0 >"$out/wechat-fake.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$out/wechat-fake.log" && break; sleep 0.1; done
wechat=$(sed -n 's/^listening on //p' "$out/wechat-fake.log")
[ -n "$wechat" ] || fail "the WeChat fake did not start: $(cat "$out/wechat-fake.log")"

hub_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
hub="http://127.0.0.1:$hub_port"
cat >"$out/hub/hub.toml" <<EOF
# The demo's store hub (crates/mirrorsight-hub/hub.example.toml explains every key).
listen = "127.0.0.1:$hub_port"
public_base_url = "$hub"
database = "$out/hub/hub.sqlite3"
blob_dir = "$out/hub/photos"
[wechat]
appid = "$appid"
api_base = "$wechat"
mp_base = "$wechat"
[callback]
# The simulated scan below is a plaintext push (an account without an EncodingAESKey); a real
# account uses "safe", encrypted pushes only.
mode = "plaintext"
[metrics]
listen = ""
EOF
hub_cli() { "$bin/mirrorsight-hub" --config "$out/hub/hub.toml" "$@"; }
device_token=$(hub_cli device add demo-mirror --store demo-shop 2>/dev/null)
"$bin/mirrorsight-hub" --config "$out/hub/hub.toml" serve 2>"$out/hub/hub.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "$hub/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$hub/healthz" >/dev/null || fail "the hub did not start: $(tail -n 3 "$out/hub/hub.log")"
echo "demo: WeChat fake on $wechat, store hub on $hub (mirror demo-mirror registered)" >&2

display=headless
if [ -n "${DISPLAY:-}" ] && [ "${MIRRORSIGHT_DEMO_HEADLESS:-0}" != 1 ]; then display=window; fi
echo "demo: the mirror replays assets/story.mp4 (events below; the screen: $display)" >&2
MIRRORSIGHT_DEVICE_TOKEN="$device_token" "$bin/mirrorsight" replay assets/story.mp4 --config assets/demo.toml \
  --set 'qr.kind="relay"' --set "backend.url=\"$hub\"" \
  --set "storage.dir=\"$out/mirror\"" --set "photos.spool_dir=\"$out/mirror/spool\"" \
  --display "$display" --snapshot-dir "$out/screens" --events - | tee "$out/events.jsonl"

# The story, from the event stream.
field() { python3 -c 'import json, sys
for line in sys.stdin:
    event = json.loads(line)
    if event["type"] == sys.argv[1]:
        print(event[sys.argv[2]])' "$@" <"$out/events.jsonl"; }
count() { grep -c "\"type\":\"$1\"" "$out/events.jsonl" || true; }
scene=$(field qr_minted scene | head -n 1)
[ -n "$scene" ] || fail "no session started, so no QR code (see $out/events.jsonl)"
[ "$(count gesture)" -gt 0 ] || fail "no gesture recognised (see $out/events.jsonl)"
[ "$(count photo_uploaded)" -gt 0 ] || fail "no photo reached the hub (see $out/events.jsonl, $out/hub/hub.log)"
[ "$(count session_ended)" -gt 0 ] || fail "the session did not end (see $out/events.jsonl)"

# The shopper scans the code: WeChat pushes SCAN, signed with the shared callback token
# (signature = sha1 of token, timestamp and nonce sorted and joined).
timestamp=$(date +%s)
nonce=$((RANDOM * 32768 + RANDOM))
signature=$(printf '%s\n' "$callback_token" "$timestamp" "$nonce" | LC_ALL=C sort | tr -d '\n' | sha1sum | cut -d' ' -f1)
push="<xml><ToUserName><![CDATA[gh_demo_store]]></ToUserName><FromUserName><![CDATA[oDemoShopper]]></FromUserName>\
<CreateTime>$timestamp</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event>\
<EventKey><![CDATA[$scene]]></EventKey><Ticket><![CDATA[demo]]></Ticket></xml>"
curl -fsS -X POST -H 'Content-Type: text/xml' --data-binary "$push" \
  "$hub/wechat?signature=$signature&timestamp=$timestamp&nonce=$nonce&openid=oDemoShopper" >"$out/scan-reply.xml" \
  || fail "the hub refused the scan push (see $out/hub/hub.log)"
gallery=$(sed -n 's/.*<Url><!\[CDATA\[\([^]]*\)\]\]><\/Url>.*/\1/p' "$out/scan-reply.xml")
[ -n "$gallery" ] || fail "the scan reply has no gallery link: $(cat "$out/scan-reply.xml")"
echo "demo: the shopper scanned scene $scene; WeChat shows a card linking to $gallery" >&2

curl -fsS "$gallery" >"$out/gallery.html" || fail "the gallery did not open: $gallery"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chromium" ]; then
  timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --hide-scrollbars --force-device-scale-factor=1 --lang=zh-CN --virtual-time-budget=5000 \
    --user-data-dir="$out/.chromium" --window-size=390,844 --screenshot="$out/gallery.png" "$gallery" \
    >/dev/null 2>"$out/chromium.log" || fail "Chromium could not render the gallery (see $out/chromium.log)"
  rm -rf "$out/.chromium"
  gallery_file="$out/gallery.png (and gallery.html)"
else
  gallery_file="$out/gallery.html (install chromium for a PNG)"
fi

photos=$(find "$out/hub/photos" -type f -not -path "$out/hub/photos/tmp/*" | wc -l)
cat >&2 <<EOF

demo: the whole story, on loopback:
  events (JSON lines)   $out/events.jsonl  ($(count session_started) session, $(count gesture) gestures, $(count photo_uploaded) photo uploaded)
  mirror's screens      $out/screens/  ($(ls "$out/screens" | wc -l) PNG files)
  photos at the hub     $out/hub/photos/  ($photos stored)
  the scan's reply      $out/scan-reply.xml
  the shopper's gallery $gallery_file
  logs                  $out/hub/hub.log, $out/wechat-fake.log
EOF
