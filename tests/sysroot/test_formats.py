"""Pure parts: GKeyFile, origins, kernel arguments, BLS entries."""

from __future__ import annotations

import pytest

from hybridos.errors import ConfigError, FormatError, UsageError
from hybridos.sysroot import bls, keyfile
from hybridos.sysroot.kargs import KernelArgs, edit, split_args
from hybridos.sysroot.origin import Origin, Refspec, parse_origin, serialize_origin


def test_keyfile_roundtrip_and_lists():
    kf = keyfile.parse(b"# c\n[origin]\nrefspec=fedora:fedora/39/x86_64\n\n[packages]\nrequested=vim;a\\;b;\n")
    assert kf.get_string("origin", "refspec") == "fedora:fedora/39/x86_64"
    assert kf.get_list("packages", "requested") == ("vim", "a;b")
    kf.set_list("packages", "requested", ["x", "y;z"])
    again = keyfile.parse(keyfile.serialize(kf))
    assert again.get_list("packages", "requested") == ("x", "y;z")


@pytest.mark.parametrize("data", [b"refspec=x\n", b"[origin\nrefspec=x\n", b"[origin]\nno equals sign\n",
                                  b"[origin]\n=x\n", b"\xff\xfe"])
def test_keyfile_rejects_garbage(data):
    with pytest.raises(FormatError):
        keyfile.parse(data)


def test_origin_rpm_ostree_keys_roundtrip():
    data = (b"[origin]\nbaserefspec=fedora:fedora/x86_64/stable\n\n[packages]\nrequested=htop;vim;\n"
            b"requested-local=abc:foo-1-1.x86_64;\n\n[overrides]\nremove=nano;\n\n[rpmostree]\n"
            b"regenerate-initramfs=true\ninitramfs-args=--add;ostree;\n\n[libostree-transient]\npinned=true\n"
            b"\n[custom]\nkeep=me\n")
    o = parse_origin(data)
    assert o.ref == Refspec("fedora", "fedora/x86_64/stable")
    assert o.requested_packages == ("htop", "vim")
    assert o.requested_local_packages == ("abc:foo-1-1.x86_64",)
    assert o.removals == ("nano",)
    assert o.regenerate_initramfs and o.initramfs_args == ("--add", "ostree")
    assert o.pinned and o.is_layered
    again = parse_origin(serialize_origin(o))
    assert again == o and ("custom", "keep", "me") in again.extra
    assert b"baserefspec=" in serialize_origin(o)
    plain = serialize_origin(Origin("remote:ref"))
    assert plain == b"[origin]\nrefspec=remote:ref\n"


@pytest.mark.parametrize("data", [b"", b"[origin]\n", b"[origin]\nrefspec=\n", b"[origin]\nrefspec=a b\n",
                                  b"garbage\x00", b"[origin]\nrefspec=:ref\n",
                                  b"[origin]\nrefspec=r:x\n[libostree-transient]\npinned=maybe\n"])
def test_corrupt_origin_is_a_config_error(data):
    with pytest.raises(ConfigError):
        parse_origin(data)


def test_kargs_parse_and_quotes():
    k = KernelArgs.parse('root=/dev/sda1 rw quiet console=tty0 console=ttyS0 foo="a b"')
    assert k.values("console") == ["tty0", "ttyS0"]
    assert k.values("foo") == ['"a b"']
    assert str(k) == 'root=/dev/sda1 rw quiet console=tty0 console=ttyS0 foo="a b"'
    assert split_args("  a   b=c  ") == ["a", "b=c"]


def test_kargs_edits_follow_libostree():
    k = KernelArgs.parse("root=/dev/sda1 rw console=tty0 console=ttyS0 log-level=3")
    assert str(k.append("quiet")) == "root=/dev/sda1 rw console=tty0 console=ttyS0 log-level=3 quiet"
    assert k.append_if_missing("rw") == k
    assert str(k.append_if_missing("nomodeset")).endswith(" nomodeset")
    assert str(k.delete("rw")) == "root=/dev/sda1 console=tty0 console=ttyS0 log-level=3"
    assert str(k.delete("console=tty0")) == "root=/dev/sda1 rw console=ttyS0 log-level=3"
    assert k.delete_if_present("absent") == k
    assert str(k.replace("root=/dev/vda2")) == "root=/dev/vda2 rw console=tty0 console=ttyS0 log-level=3"
    assert str(k.replace("console=ttyS0=ttyS1")) == "root=/dev/sda1 rw console=tty0 console=ttyS1 log-level=3"
    # - and _ are the same in keys, as for the kernel
    assert str(k.delete("log_level")) == "root=/dev/sda1 rw console=tty0 console=ttyS0"
    out = edit(k, delete=["rw"], replace=["root=/dev/vdb"], append=["a=1"], append_if_missing=["a=2", "a=1"])
    assert str(out) == "root=/dev/vdb console=tty0 console=ttyS0 log-level=3 a=1 a=2"


def test_kargs_if_missing_and_if_present_compare_key_and_value_like_ostree():
    k = KernelArgs.parse("root=/dev/sda1 rw console=tty0 console=ttyS0")
    assert k.append_if_missing("console=tty0") == k                       # this exact KEY=VALUE is there
    assert str(k.append_if_missing("console=ttyS1")).endswith("console=ttyS0 console=ttyS1")
    assert str(k.append_if_missing("root")).endswith(" root")              # a bare KEY is another entry
    assert k.delete_if_present("console") == k                             # no bare 'console': nothing, no error
    assert k.delete_if_present("rw=1") == k and k.delete_if_present("root=/dev/sda2") == k
    assert str(k.delete_if_present("console=ttyS0")) == "root=/dev/sda1 rw console=tty0"
    assert str(k.delete_if_present("rw")) == "root=/dev/sda1 console=tty0 console=ttyS0"


@pytest.mark.parametrize("op,arg", [
    ("append", ""), ("append", "a b"), ("append", "=x"), ("append", 'x="y'), ("append", "ostree=/x"),
    ("append", "a\nb"), ("delete", "console"), ("delete", "absent"), ("delete", "rw=1"),
    ("replace", "console=x"), ("replace", "absent=1"), ("replace", "rw"), ("replace", "root=/nope=/x"),
])
def test_kargs_invalid_edits_raise_usage_errors(op, arg):
    k = KernelArgs.parse("root=/dev/sda1 rw console=tty0 console=ttyS0")
    with pytest.raises(UsageError):
        getattr(k, op)(arg)


def test_bls_entry_roundtrip_and_names():
    from hybridos.bootloader import BootEntry

    e = BootEntry(id="ostree-2-x", title=bls.entry_title("Test OS", "2.0", 0), sort_version=2,
                  linux="/ostree/x-abc/vmlinuz-6.1", initrd=("/ostree/x-abc/initramfs-6.1.img",),
                  options="rw ostree=/ostree/boot.1/x/abc/0", fdtdir="/ostree/x-abc/dtb")
    parsed = bls.parse_entry(bls.format_entry(e))
    assert parsed.get("title") == "Test OS 2.0 (ostree:0)"
    assert parsed.sort_version == 2 and parsed.get("fdtdir") == "/ostree/x-abc/dtb"
    assert bls.split_ostree_karg(parsed.options) == ("/ostree/boot.1/x/abc/0", "rw")
    assert bls.parse_ostree_karg("/ostree/boot.1/x/abc/0") == (1, "x", "abc", 0)
    assert bls.entry_id(1, 3, "fedora") == "ostree-2-fedora"
    assert bls.entry_title("Fedora 39", "39", 1) == "Fedora 39 (ostree:1)"
    assert bls.entry_title("Test OS", "2.0", 1, "other") == "Test OS 2.0 (ostree:other:1)"
    with pytest.raises(FormatError):
        bls.parse_ostree_karg("/ostree/boot.2/x/abc/0")


def test_os_release_quotes():
    assert bls.parse_os_release(b'NAME="A \\"B\\""\nID=x\n# c\nPRETTY_NAME=\'P Q\'\n') == {
        "NAME": 'A "B"', "ID": "x", "PRETTY_NAME": "P Q"}
