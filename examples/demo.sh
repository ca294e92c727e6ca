#!/usr/bin/env bash
# The embedded demo: a tiny real distribution, composed, served, deployed, upgraded, layered and rolled back.
# Everything lives under ./demo/ (or $DEMO_DIR); the only network traffic is to 127.0.0.1.
# Every step prints the command it runs, so it can be repeated by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-$PWD/demo}
PY=${PYTHON:-python3}
SYSROOT=$DEMO/sysroot
REF=hybriddemo/stable/x86_64

say() { printf '\n\033[1;34m## %s\033[0m\n' "$*"; }
step() { printf '\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$DEMO"
mkdir -p "$DEMO"

say "1. Build the sample distribution, release 1 (real RPMs with rpm-rs, repodata with createrepo_c)"
step "$PY" examples/distro/build.py "$DEMO/build" --release 1
step cat "$DEMO/build/config/demo.yaml"

say "2. Compose version 1 into an archive repository"
step hybridos repo init --repo "$DEMO/repo" --mode archive
step hybridos compose tree "$DEMO/build/config/demo.yaml" --repo "$DEMO/repo" \
    --cachedir "$DEMO/cache" --write-composejson-to "$DEMO/compose-v1.json"
step cat "$DEMO/compose-v1.json"

say "3. Serve the repository and the RPMs over HTTP on 127.0.0.1"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '\033[1m$ %s\033[0m\n' "$PY -m http.server --bind 127.0.0.1 $PORT --directory $DEMO &"
"$PY" -m http.server --bind 127.0.0.1 "$PORT" --directory "$DEMO" >"$DEMO/http.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
URL=http://127.0.0.1:$PORT
for _ in $(seq 50); do "$PY" -c "import urllib.request; urllib.request.urlopen('$URL/repo/config')" 2>/dev/null && break; sleep 0.1; done

say "4. Create a sysroot with a GRUB layout and deploy version 1"
step hybridos admin init-fs "$SYSROOT"
step hybridos admin os-init --sysroot "$SYSROOT" hybriddemo
step mkdir -p "$SYSROOT/boot/grub2"
step touch "$SYSROOT/boot/grub2/grub.cfg"
step hybridos --sysroot "$SYSROOT" repo remote add --no-gpg-verify hybriddemo "$URL/repo" "$REF"
step hybridos --sysroot "$SYSROOT" repo pull hybriddemo "$REF"
step hybridos admin deploy --sysroot "$SYSROOT" --os hybriddemo --karg root=LABEL=root --karg rw "hybriddemo:$REF"
step hybridos --sysroot "$SYSROOT" status

say "5. The administrator edits /etc (modify, add, delete) and keeps data in /var"
ETC=$(ls -d "$SYSROOT"/ostree/deploy/hybriddemo/deploy/*.0)/etc
step sed -i 's/greeting=hi/greeting=bonjour/' "$ETC/hello.conf"
mkdir -p "$ETC/yum.repos.d"
printf '[hybriddemo]\nname=Hybrid Demo\nbaseurl=%s/build/rpms\ngpgcheck=0\n' "$URL" > "$ETC/yum.repos.d/hybriddemo.repo"
step cat "$ETC/yum.repos.d/hybriddemo.repo"
step rm "$ETC/hostname"
echo "precious user data" > "$SYSROOT/ostree/deploy/hybriddemo/var/userdata"

say "6. Release 2 is published: build and compose version 2"
step "$PY" examples/distro/build.py "$DEMO/build" --release 2
step hybridos compose tree "$DEMO/build/config/demo.yaml" --repo "$DEMO/repo" \
    --cachedir "$DEMO/cache" --write-composejson-to "$DEMO/compose-v2.json"

say "7. Upgrade the host (plugins chosen automatically)"
step hybridos plugins --sysroot "$SYSROOT"
step hybridos --sysroot "$SYSROOT" upgrade
step head -n 30 "$SYSROOT/boot/loader/grub.cfg"

say "8. Layer a package on top of the image"
step hybridos --sysroot "$SYSROOT" install cowsay
step hybridos --sysroot "$SYSROOT" status
step hybridos --sysroot "$SYSROOT" db diff

say "9. Roll back, then look again"
step hybridos --sysroot "$SYSROOT" rollback
step hybridos --sysroot "$SYSROOT" status
step cat "$SYSROOT/ostree/deploy/hybriddemo/var/userdata"

echo
echo "demo finished: everything is under $DEMO (run 'make demo' again to start over)"
