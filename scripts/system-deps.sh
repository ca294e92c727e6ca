#!/usr/bin/env bash
# Install the system tools hybridos's tests, demo and benchmarks use, when missing (as root, with apt-get).
# Harmless to run again: it only calls apt-get when a tool is absent.
set -euo pipefail

# command -> Debian package
declare -A TOOLS=(
  [ostree]=ostree [rpm]=rpm [rpmbuild]=rpm [createrepo_c]=createrepo-c [dnf]=dnf
  [grub-script-check]=grub-common [grub-editenv]=grub-common [mkimage]=u-boot-tools
  [bootctl]=systemd-boot [busybox]=busybox-static [bwrap]=bubblewrap [fw_printenv]=libubootenv-tool
  [cpio]=cpio [zstd]=zstd [xz]=xz-utils [qemu-aarch64-static]=qemu-user-static [hyperfine]=hyperfine
  [mkenvimage]=u-boot-tools [readelf]=binutils [getcap]=libcap2-bin [rpm2cpio]=rpm [rpmdb]=rpm
  [gpg]=gpg [gpgconf]=gpgconf [gpg-agent]=gpg-agent [rpmsign]=rpm
  [matchpathcon]=selinux-utils [setfiles]=policycoreutils
)
missing=()
for cmd in "${!TOOLS[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${TOOLS[$cmd]}")
done
# busybox must be the static build: fixtures copy it into trees.
if [ -x /bin/busybox ] && ! file -L /bin/busybox 2>/dev/null | grep -q "statically linked"; then
  missing+=(busybox-static)
fi
[ -d /usr/share/gocode/src/github.com/knqyf263/go-rpmdb/pkg/testdata ] || missing+=(golang-github-knqyf263-go-rpmdb-dev)
command -v file >/dev/null 2>&1 || missing+=(file)
# Property tests compare our GVariant and RPM header readers with GLib's and rpm's own (tests/helpers/oracles.py),
# imported by the system python.
/usr/bin/python3 -c 'import gi' >/dev/null 2>&1 || missing+=(python3-gi)
/usr/bin/python3 -c 'import rpm' >/dev/null 2>&1 || missing+=(python3-rpm)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: missing system packages (tests needing them will skip): ${missing[*]}" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=900 update -qq
apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
