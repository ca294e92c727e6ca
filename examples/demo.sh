#!/usr/bin/env bash
# The embedded demo: everything hybridos can do so far, on temporary data under ./demo/.
# Every step prints the command it runs so it can be repeated by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-$PWD/demo}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

rm -rf "$DEMO"; mkdir -p "$DEMO"
step hybridos --version
step hybridos plugins
mkdir -p "$DEMO/sysroot/boot/grub2" && : > "$DEMO/sysroot/boot/grub2/grub.cfg"
step hybridos plugins --sysroot "$DEMO/sysroot"
echo; echo "demo finished: state under $DEMO"
