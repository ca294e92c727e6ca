"""Plugin discovery, selection and the ``plugins`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hybridos.plugins import PluginRegistry, report
from tests.conftest import run_cli

EXPECTED_PLUGINS = {
    "repo_fs": ("hybridos-repo-fs", ["hybridos_fetchers"]),
    "repo_http": ("hybridos-repo-http", ["hybridos_fetchers"]),
    "bootloader_grub": ("hybridos-bootloader-grub", ["hybridos_bootloaders"]),
    "bootloader_systemd_boot": ("hybridos-bootloader-systemd-boot", ["hybridos_bootloaders"]),
    "bootloader_uboot": ("hybridos-bootloader-uboot", ["hybridos_bootloaders"]),
    "core-solver": ("hybridos", ["hybridos_solve"]),
    "core-layerer": ("hybridos", ["hybridos_layer"]),
    "core-initramfs": ("hybridos", ["hybridos_initramfs"]),
}


def test_discovery_finds_all_plugins_and_core_defaults():
    reg = PluginRegistry()
    found = {i.name: i for i in reg.infos}
    for name, (dist, hooks) in EXPECTED_PLUGINS.items():
        assert name in found, f"{name} not discovered"
        assert found[name].loaded, found[name].error
        assert found[name].distribution == dist
        assert found[name].hooks == hooks


def test_fetcher_selected_by_scheme():
    reg = PluginRegistry()
    assert reg.fetcher_class_for("http://127.0.0.1/repo")[0] == "repo_http"
    assert reg.fetcher_class_for("https://example.invalid/x")[0] == "repo_http"
    assert reg.fetcher_class_for("file:///srv/repo")[0] == "repo_fs"
    assert reg.fetcher_class_for("/srv/repo")[0] == "repo_fs"


def test_unknown_scheme_is_a_clear_error():
    from hybridos.errors import PluginError

    reg = PluginRegistry()
    with pytest.raises(PluginError, match="no fetch plugin handles ftp URLs"):
        reg.fetcher_class_for("ftp://host/x")


def test_bootloader_detection_and_explicit_config(tmp_path):
    reg = PluginRegistry()
    assert reg.select_bootloader(tmp_path).bootloader is None
    (tmp_path / "boot/grub2").mkdir(parents=True)
    (tmp_path / "boot/grub2/grub.cfg").write_text("")
    choice = reg.select_bootloader(tmp_path)
    assert choice.bootloader.name == "grub2" and "grub.cfg" in choice.reason
    (tmp_path / "ostree/repo").mkdir(parents=True)
    (tmp_path / "ostree/repo/config").write_text("[core]\nrepo_version=1\n\n[sysroot]\nbootloader=uboot\n")
    choice = reg.select_bootloader(tmp_path)
    assert choice.bootloader.name == "uboot" and "bootloader=uboot" in choice.reason


def test_plugins_json_has_documented_fields(tmp_path):
    (tmp_path / "boot/efi/loader").mkdir(parents=True)
    out = run_cli("plugins", "--json", "--sysroot", str(tmp_path)).stdout
    data = json.loads(out)
    names = {p["name"] for p in data["plugins"]}
    assert set(EXPECTED_PLUGINS) <= names
    for p in data["plugins"]:
        assert set(p) == {"name", "entry_point", "distribution", "version", "hooks", "loaded", "error"}
    sel = data["selection"]
    assert {f["scheme"] for f in sel["fetch"] if f["selected"]} >= {"http", "https", "file"}
    assert sel["solve"]["selected"] == "core-solver"
    assert sel["bootloader"]["selected"] == "systemd-boot"
    assert "ESP" in sel["bootloader"]["reason"]
    archs = {b["name"]: b["architectures"] for b in sel["bootloader"]["available"]}
    assert archs["grub2"] == ["aarch64", "ppc64le", "x86_64"]
    assert archs["uboot"] == ["aarch64"]


def _install_dist(src: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(src)],
        check=True, capture_output=True,
    )


def _write_dist(root: Path, dist: str, module: str, body: str) -> Path:
    src = root / dist
    (src / module).mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "1.2.3"
        [project.entry-points."hybridos.plugins"]
        {module} = "{module}.plugin"
        [tool.setuptools]
        packages = ["{module}"]
        """))
    (src / module / "__init__.py").write_text("")
    (src / module / "plugin.py").write_text(textwrap.dedent(body))
    return src


THIRD_PARTY = """\
    from pathlib import Path
    from hybridos.arch import Architecture
    from hybridos.bootloader import Bootloader, Detection
    from hybridos.hookspecs import hookimpl

    class Petitboot(Bootloader):
        name = "petitboot-test"
        architectures = frozenset({Architecture.PPC64LE})
        def detect(self, sysroot):
            if (Path(sysroot) / "boot/petitboot.conf").exists():
                return Detection(90, "boot/petitboot.conf exists")
        def write_config(self, context):
            pass

    @hookimpl
    def hybridos_bootloaders():
        return [Petitboot()]
"""

BROKEN = """\
    import this_module_does_not_exist  # noqa
"""


@pytest.mark.slow
def test_third_party_and_broken_plugins_from_a_directory(tmp_path):
    site = tmp_path / "site"
    _install_dist(_write_dist(tmp_path / "src", "acme-petitboot", "acme_petitboot", THIRD_PARTY), site)
    _install_dist(_write_dist(tmp_path / "src", "acme-broken", "acme_broken", BROKEN), site)
    sysroot = tmp_path / "sysroot"
    (sysroot / "boot/grub2").mkdir(parents=True)
    (sysroot / "boot/grub2/grub.cfg").write_text("")
    (sysroot / "boot/petitboot.conf").write_text("")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    data = json.loads(run_cli("plugins", "--json", "--sysroot", str(sysroot), env=env).stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["acme_petitboot"]["distribution"] == "acme-petitboot"
    assert plugins["acme_petitboot"]["version"] == "1.2.3"
    assert plugins["acme_petitboot"]["hooks"] == ["hybridos_bootloaders"]
    # selected over GRUB by its higher detection score, without any core change
    assert data["selection"]["bootloader"]["selected"] == "petitboot-test"
    # the broken plugin is reported and skipped; everything else still works
    assert plugins["acme_broken"]["loaded"] is False
    assert "this_module_does_not_exist" in plugins["acme_broken"]["error"]
    assert plugins["repo_http"]["loaded"]
    text = run_cli("plugins", "--sysroot", str(sysroot), env=env).stdout
    assert "BROKEN" in text and "petitboot-test" in text
    assert run_cli("--version", env=env).stdout.startswith("hybridos, version")


def test_report_without_sysroot_has_no_bootloader_choice():
    data = report(PluginRegistry())
    assert "selected" not in data["selection"]["bootloader"]


def test_listing_plugins_imports_no_fetcher_or_bootloader_backend():
    """Fetchers are FetcherRefs and bootloader backends load when asked for: a file:// fetch imports neither
    urllib3 nor any bootloader backend."""
    code = textwrap.dedent("""\
        import sys
        from hybridos.plugins import get_registry
        reg = get_registry()
        cls = reg.fetcher_class_for("file:///srv/repo")[1]
        print(cls.__module__, [m for m in ("urllib3", "hybridos_repo_http.fetcher", "hybridos_bootloader_grub.backend",
              "hybridos_bootloader_systemd_boot.backend", "hybridos_bootloader_uboot.backend") if m in sys.modules])
        print(reg.fetcher_class_for("https://example.invalid/")[1].__module__, "urllib3" in sys.modules)
        print(sorted(bl.name for _, bl in reg.bootloaders))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "hybridos_repo_fs.fetcher []"
    assert out[1] == "hybridos_repo_http.fetcher True"
    assert out[2] == "['grub2', 'systemd-boot', 'uboot']"


def _fetch_plugin(*fetchers):
    from hybridos.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def hybridos_fetchers(self):
            return list(fetchers)

    return Plugin()


def test_plugin_returning_a_fetcher_class_still_works(tmp_path):
    from hybridos.fetch import Fetcher

    class AcmeFetcher(Fetcher):
        name = "acme"
        schemes = ("acme",)

        def read(self, url):
            return b"acme:" + url.encode()

        def download(self, request, progress=None):
            raise NotImplementedError

    reg = PluginRegistry()
    reg.register(_fetch_plugin(AcmeFetcher), "acme")
    assert reg.fetcher_class_for("acme://x") == ("acme", AcmeFetcher)
    assert reg.fetcher_for("acme://x").read("acme://x") == b"acme:acme://x"
    assert {f["scheme"] for f in report(reg)["selection"]["fetch"]} >= {"acme", "http", "file"}


def test_fetcher_ref_loads_on_selection_and_a_bad_one_is_reported():
    from hybridos.errors import PluginError
    from hybridos.plugins import FetcherRef

    reg = PluginRegistry()
    reg.register(_fetch_plugin(FetcherRef("file", ("file", ""), "hybridos_repo_fs.fetcher:FileFetcher"),
                               FetcherRef("ghost", ("ghost",), "no_such_module_xyz:Ghost"),
                               FetcherRef("liar", ("liar",), "hybridos_repo_fs.fetcher:FileFetcher")), "acme")
    from hybridos_repo_fs.fetcher import FileFetcher
    assert reg.fetcher_class_for("file:///x") == ("acme", FileFetcher)   # registered last: asked first
    with pytest.raises(PluginError, match="cannot load no_such_module_xyz:Ghost"):
        reg.fetcher_for("ghost://x")
    with pytest.raises(PluginError, match="serves file .* not liar"):
        reg.fetcher_class_for("liar://x")
    data = report(reg)
    acme = next(p for p in data["plugins"] if p["name"] == "acme")
    assert not acme["loaded"] and "no_such_module_xyz" in acme["error"]
    assert "ghost" not in {f["scheme"] for f in data["selection"]["fetch"]}
