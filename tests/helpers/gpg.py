"""Real OpenPGP keys and signatures for tests: Debian's ``gpg`` in a temporary GNUPGHOME, ``rpmsign``.

    gnupg = GnuPG.create(tmp_path / "gnupg")
    key = gnupg.generate("Test Signer <signer@example.com>", "rsa2048")   # or "ed25519"
    key.public_armored / key.public_binary         # exported public keys (bytes)
    gnupg.sign_rpm(path, key)                      # rpmsign --addsign with that key
    gnupg.detach_sign(data, key)                   # a binary detached signature (bytes)

Call ``close()`` when done: gpg starts a gpg-agent for the home (the ``gnupg`` fixtures do it).
``faked_time`` ("20200101T000000") runs gpg as if at that time (keys that have expired since, signatures made
before/after an expiry).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GpgKey:
    uid: str
    fingerprint: str
    key_id: str
    public_armored: bytes
    public_binary: bytes


@dataclass(frozen=True)
class GnuPG:
    home: Path

    @classmethod
    def create(cls, home: Path) -> GnuPG:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(home)

    def close(self) -> None:
        """Stop the gpg-agent that key generation and signing started for this home."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], env=self.env,
                       capture_output=True)

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, GNUPGHOME=str(self.home), LC_ALL="C")

    def gpg(self, *args: str, input: bytes | None = None, faked_time: str | None = None) -> bytes:
        argv = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
        if faked_time:
            argv += ["--faked-system-time", faked_time]
        proc = subprocess.run([*argv, *args], env=self.env, input=input, capture_output=True)
        if proc.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def generate(self, uid: str, algo: str = "rsa2048", expire: str = "0", faked_time: str | None = None,
                 usage: str = "sign") -> GpgKey:
        self.gpg("--quick-gen-key", uid, algo, usage, expire, faked_time=faked_time)
        return self.key(uid)

    def key(self, uid: str) -> GpgKey:
        listing = self.gpg("--with-colons", "--fingerprint", "--list-keys", uid).decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        return GpgKey(uid, fpr, fpr[-16:], self.gpg("--armor", "--export", fpr), self.gpg("--export", fpr))

    def add_signing_subkey(self, key: GpgKey, algo: str = "ed25519", faked_time: str | None = None,
                           expire: str = "0") -> str:
        """Add a signing subkey; returns its 16-hex key id."""
        self.gpg("--quick-add-key", key.fingerprint, algo, "sign", expire, faked_time=faked_time)
        listing = self.gpg("--with-colons", "--list-keys", key.fingerprint).decode()
        return [line.split(":")[4] for line in listing.splitlines() if line.startswith("sub:")][-1]

    def export(self, key: GpgKey, armor: bool = False) -> bytes:
        return self.gpg(*(["--armor"] if armor else []), "--export", key.fingerprint)

    def detach_sign(self, data: bytes, key: GpgKey | str, armor: bool = False, faked_time: str | None = None
                    ) -> bytes:
        user = key if isinstance(key, str) else key.fingerprint
        return self.gpg("--local-user", user, *(["--armor"] if armor else []), "--detach-sign", "--output", "-",
                        input=data, faked_time=faked_time)

    def revoke(self, key: GpgKey) -> None:
        """Import the revocation certificate gpg made with the key (a hard revocation: no reason)."""
        rev = (self.home / "openpgp-revocs.d" / f"{key.fingerprint}.rev").read_text()
        self.gpg("--import", input=rev.replace(":-----BEGIN", "-----BEGIN").encode())

    def sign_rpm(self, path: Path, key: GpgKey | str) -> None:
        """``rpmsign --addsign`` (rpm 4.18 writes RSAHEADER for RSA keys, DSAHEADER for EdDSA)."""
        user = key if isinstance(key, str) else key.fingerprint
        proc = subprocess.run(["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg",
                               "--define", f"_gpg_name {user}", "--define", f"_gpg_path {self.home}", str(path)],
                              env=self.env, capture_output=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise AssertionError(f"rpmsign failed: {proc.stderr.decode(errors='replace')}")


def flip_header_byte(path: Path, needle: bytes) -> None:
    """Change one byte of the main header in place (inside the first occurrence of ``needle``)."""
    data = bytearray(path.read_bytes())
    at = data.index(needle, 96)
    data[at] ^= 0x20
    path.write_bytes(bytes(data))


def signed_repo(repo_dir: Path, gnupg: GnuPG, signed: dict, *, unsigned=(), flipped: dict | None = None):
    """A createrepo_c repository of real RPMs: ``signed`` maps Pkg -> key (rpmsign), ``unsigned`` are left as
    built, ``flipped`` maps Pkg -> key: signed, then one byte of the header's summary changed."""
    from tests.helpers.rpms import build_rpm, make_repo

    work = repo_dir.parent / f"{repo_dir.name}-build"
    paths = []
    for spec, key in signed.items():
        p = build_rpm(spec, work)
        gnupg.sign_rpm(p, key)
        paths.append(p)
    for spec, key in (flipped or {}).items():
        p = build_rpm(spec, work)
        gnupg.sign_rpm(p, key)
        flip_header_byte(p, b"fixture")   # in the summary rpm-rs writes: "NAME fixture" -> "NAME Fixture"
        paths.append(p)
    paths += [build_rpm(spec, work) for spec in unsigned]
    return make_repo(repo_dir, paths)
