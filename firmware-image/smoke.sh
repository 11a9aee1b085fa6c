#!/usr/bin/env bash
# Smoke test of the image under qemu-user:
#   firmware-image/smoke.sh --arch arm64|armhf [--out DIR]   (builds the image into DIR if needed)
# Runs the daemon from the image (ARM Node, ARM fs-ext) on a data directory, appends 100,000
# events through a client, restarts the daemon, verifies the log, and syncs it with an x86
# replica through a mosquitto broker on loopback. Prints the image size, the daemon's RSS idle and
# after the appends (under qemu, so the emulator's own memory is included), and its start-up time.
# Exit 0 when every step passed. Under qemu-user an ARM process cannot start other ARM processes
# (no binfmt_misc): the daemon starts none; the clients are the host's Node.
set -euo pipefail

arch=arm64
out=${TMPDIR:-/tmp}/interlog-firmware
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "smoke.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$arch" in
  arm64) qemu=qemu-aarch64-static ;;
  armhf) qemu=qemu-arm-static ;;
  *) echo "smoke.sh: --arch must be arm64 or armhf" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
rootfs="$out/rootfs-$arch"
[ -x "$rootfs/usr/bin/node" ] && [ -f "$out/interlog-$arch.tar.gz" ] || "$repo/firmware-image/build.sh" --arch "$arch" --out "$out"
command -v mosquitto >/dev/null || { echo "smoke.sh: mosquitto is needed (apt-get install mosquitto)" >&2; exit 2; }

work=$(mktemp -d)
daemon_pid=""
broker_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n%s' "$port" "$([ "$(id -u)" = 0 ] && echo 'user root')" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker_pid=$!
broker="mqtt://127.0.0.1:$port"
data="$work/data"
socket="$data/interlog.sock"
host_cli="$repo/dist/cli/main.js"

# The V8 compile cache of one architecture crashes the other (../shared/TOOLCHAIN.md).
export DISABLE_V8_COMPILE_CACHE=1
arm_node() { "$qemu" -L "$rootfs" "$rootfs/usr/bin/node" "$@"; }

start_daemon() {
  local started=$(date +%s%N)
  # Started directly (not through the function) so that $! is qemu itself: it takes the signals.
  "$qemu" -L "$rootfs" "$rootfs/usr/bin/node" "$rootfs/opt/interlog/dist/cli/main.js" serve --init --data "$data" --broker "$broker" --durability interval >>"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 600); do
    [ -S "$socket" ] && grep -q 'local API listening' "$work/daemon.log" && break
    sleep 0.1
  done
  [ -S "$socket" ] || { cat "$work/daemon.log"; echo "smoke.sh: the daemon did not start"; exit 1; }
  startup_ms=$(( ($(date +%s%N) - started) / 1000000 ))
}
rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$daemon_pid/status"; }
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || { echo "smoke.sh: the daemon did not exit 0 on SIGTERM"; exit 1; }
  daemon_pid=""
}

echo "smoke [$arch]: ARM node $(arm_node -e 'process.stdout.write(process.version + " " + process.arch)')"
start_daemon
first_startup_ms=$startup_ms
sleep 1
rss_idle=$(rss_mib)
echo "smoke [$arch]: daemon up in ${startup_ms} ms, RSS idle ${rss_idle} MiB (under qemu)"

node --input-type=module -e "
  import { connect } from '$repo/dist/index.js'
  const log = await connect('$socket')
  const batch = Array.from({ length: 1000 }, (_, i) => new TextEncoder().encode('reading ' + i))
  for (let i = 0; i < 100; i++) await log.appendBatch(batch)
  if (await log.length() !== 100000) throw new Error('length after appends: ' + await log.length())
  await log.close()
"
rss_loaded=$(rss_mib)
echo "smoke [$arch]: 100,000 events appended through the socket; RSS ${rss_loaded} MiB"

stop_daemon
start_daemon
node --input-type=module -e "
  import { connect } from '$repo/dist/index.js'
  const log = await connect('$socket')
  const length = await log.length()
  const report = await log.verify()
  if (length !== 100000 || !report.ok) throw new Error('after restart: length ' + length + ', verify ' + JSON.stringify(report.damage))
  await log.close()
"
echo "smoke [$arch]: restarted in ${startup_ms} ms; 100,000 events intact, verify ok"

node --input-type=module -e "
  import { openLog, startSync } from '$repo/dist/index.js'
  const log = await openLog('$work/x86', { durability: 'interval' })
  const sync = await startSync(log, { url: '$broker', logName: 'main', announceIntervalMs: 500, logger: () => {} })
  const started = Date.now()
  while (log.length < 100000 && Date.now() - started < 120000) await new Promise((r) => setTimeout(r, 100))
  const length = log.length
  await sync.close(); await log.close()
  if (length !== 100000) throw new Error('the x86 replica holds ' + length + ' events')
  console.log('smoke [$arch]: an x86 replica synced all 100,000 events through mosquitto in ' + (Date.now() - started) + ' ms')
"
stop_daemon

image_bytes=$(stat -c %s "$out/interlog-$arch.tar.gz")
echo "smoke [$arch]: image $(( image_bytes / 1048576 )) MiB compressed; start-up ${first_startup_ms} ms; RSS idle ${rss_idle} MiB, after 100k appends ${rss_loaded} MiB"
echo "smoke [$arch]: passed"
