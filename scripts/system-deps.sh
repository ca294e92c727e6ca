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
  # real boot (tests/boot): depmod at compose, disk images without loop devices, QEMU
  [depmod]=kmod [mkfs.ext4]=e2fsprogs [sfdisk]=fdisk [mkfs.vfat]=dosfstools [mcopy]=mtools
  [grub-mkimage]=grub-common [qemu-system-x86_64]=qemu-system-x86 [qemu-system-aarch64]=qemu-system-arm
  [qemu-system-ppc64]=qemu-system-ppc [dpkg-deb]=dpkg
  [dracut]=dracut-core   # bench_boot: initramfs size of dracut --no-hostonly (--kmoddir; the host kernel is never used)
  # container images (tests/container)
  [skopeo]=skopeo [umoci]=umoci [docker-registry]=docker-registry
  # hybridosd tests (tests/daemon): a private system bus, D-Bus clients, unit checks, another uid
  [dbus-daemon]=dbus-daemon [busctl]=systemd [gdbus]=libglib2.0-bin [systemd-analyze]=systemd
  [setpriv]=util-linux
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
# hybridosd's polkit path (tests/daemon/test_polkit.py) runs the real polkitd on the test bus
[ -x /usr/lib/polkit-1/polkitd ] || missing+=(polkitd)
# firmware and bootloader images the QEMU boot tests load (files, not commands)
declare -A BOOT_FILES=(
  [/usr/lib/grub/i386-pc/boot.img]=grub-pc-bin [/usr/lib/grub/x86_64-efi/linux.mod]=grub-efi-amd64-bin
  [/usr/share/OVMF/OVMF_CODE.fd]=ovmf
  [/usr/share/qemu-efi-aarch64/QEMU_EFI.fd]=qemu-efi-aarch64 [/usr/lib/u-boot/qemu_arm64/u-boot.bin]=u-boot-qemu
  [/usr/lib/systemd/boot/efi/systemd-bootx64.efi]=systemd-boot-efi [/usr/share/qemu/slof.bin]=qemu-system-data
)
for f in "${!BOOT_FILES[@]}"; do
  [ -e "$f" ] || missing+=("${BOOT_FILES[$f]}")
done
# Boot tests fetch Debian's arm64 and ppc64el kernels, static busybox and (ppc64el) GRUB's powerpc-ieee1275
# modules with `apt-get download PKG:ARCH` (unpacked with dpkg-deb, never installed): apt needs those
# architectures, and fresh package lists.
if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null 2>&1; then
  added=0
  for arch in arm64 ppc64el; do
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
      echo "adding the $arch architecture to apt (downloads only, for the boot tests)" >&2
      dpkg --add-architecture "$arch"
      added=1
    fi
  done
  [ "$added" = 0 ] || apt-get -o DPkg::Lock::Timeout=900 update -qq
fi

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
