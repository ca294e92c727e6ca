"""Plugin discovery (stevedore entry points), registration (one pluggy PluginManager) and selection."""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import pluggy
from stevedore import ExtensionManager

from hybridos import hookspecs
from hybridos.bootloader import Bootloader, Detection
from hybridos.errors import BootloaderError, PluginError
from hybridos.fetch import Fetcher, FetchOptions

HOOK_FAMILIES: dict[str, tuple[str, ...]] = {
    "fetch": ("hybridos_fetchers",),
    "solve": ("hybridos_solve",),
    "layer": ("hybridos_layer",),
    "initramfs": ("hybridos_initramfs",),
    "bootloader": ("hybridos_bootloaders",),
}


@dataclass
class PluginInfo:
    """One discovered entry point (its distribution's name and version are read when asked for)."""

    name: str
    value: str
    entry_point: importlib.metadata.EntryPoint | None = field(default=None, repr=False, compare=False)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None

    @cached_property
    def distribution(self) -> str | None:
        return _dist_of(self.entry_point)[0]

    @cached_property
    def version(self) -> str | None:
        return _dist_of(self.entry_point)[1]


@dataclass(frozen=True)
class BootloaderChoice:
    bootloader: Bootloader | None
    plugin: str | None
    reason: str
    detections: tuple[tuple[str, Detection | None], ...] = ()


@dataclass(frozen=True)
class FetcherRef:
    """A fetcher class named by import path, imported only when a URL of its schemes is fetched.

    A fetch plugin may return one from ``hybridos_fetchers`` instead of the class itself, so that listing the
    fetchers (which every command that fetches does) does not import every fetcher's dependencies::

        FetcherRef("http", ("http", "https"), "hybridos_repo_http.fetcher:HttpFetcher")

    ``name`` and ``schemes`` must equal the class's own; :meth:`load` checks that.
    """

    name: str
    schemes: tuple[str, ...]
    target: str   #: "module:attribute"

    def load(self) -> type[Fetcher]:
        """Import the class; PluginError when it is missing or does not match this reference."""
        module, _, attr = self.target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"fetcher {self.name}: cannot load {self.target}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Fetcher)):
            raise PluginError(f"fetcher {self.name}: {self.target} is not a Fetcher subclass")
        if cls.name != self.name or tuple(cls.schemes) != tuple(self.schemes):
            raise PluginError(f"fetcher {self.name}: {self.target} serves {cls.name} {tuple(cls.schemes)}, "
                              f"not {self.name} {tuple(self.schemes)} as its plugin says")
        return cls

    def __call__(self, options: FetchOptions | None = None) -> Fetcher:
        return self.load()(options)


def _dist_of(entry_point) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _read_sysroot_options(sysroot: Path) -> dict[str, str]:
    """The ``[sysroot]`` section of ``ostree/repo/config``; empty when absent or unreadable."""
    import configparser  # only for choosing a bootloader

    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read(sysroot / "ostree/repo/config")
    except configparser.Error:
        return {}
    return dict(cfg["sysroot"]) if cfg.has_section("sysroot") else {}


class _FreshExtensionManager(ExtensionManager):
    """stevedore's ExtensionManager reading entry points from importlib.metadata on every start.

    stevedore caches entry points on disk keyed by path mtimes packed as 32-bit floats (about two minutes of
    resolution), so a plugin installed or upgraded moments ago could stay invisible. Listing entry points is
    cheap; loading and failure reporting stay with stevedore.
    """

    def list_entry_points(self):
        if not hasattr(self, "_entry_points"):   # asked twice per discovery: scan the installed dists once
            self._entry_points = sorted(importlib.metadata.entry_points(group=self.namespace), key=lambda e: e.name)
        return self._entry_points


class PluginRegistry:
    """All plugins of the ``hybridos.plugins`` group, registered into one PluginManager."""

    def __init__(self, *, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        if load_entry_points:
            self._discover()

    # -- discovery -------------------------------------------------------------------------------

    def _discover(self) -> None:
        failures: dict[str, str] = {}

        def on_failure(_manager, entry_point, exc):
            failures[entry_point.name] = f"{type(exc).__name__}: {exc}"

        mgr = _FreshExtensionManager(
            namespace=hookspecs.ENTRY_POINT_GROUP,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
        )
        loaded = {ext.name: ext for ext in mgr.extensions}
        # stevedore only reports what failed; list every entry point so failures are shown too.
        for ep in mgr.list_entry_points():
            if any(i.name == ep.name for i in self.infos):
                continue
            info = PluginInfo(ep.name, ep.value, ep)
            self.infos.append(info)
            if ep.name in failures or ep.name not in loaded:
                info.error = failures.get(ep.name, "not loaded")
                continue
            self.register(loaded[ep.name].plugin, ep.name, info)

    def register(self, plugin: object, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object; a plugin that does not fit the hook specifications is reported."""
        if info is None:
            info = PluginInfo(name, repr(plugin))
            self.infos.append(info)
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            return
        info.hooks = sorted(
            hc.name for hc in self.pm.get_hookcallers(plugin) or () if hc.name.startswith("hybridos_")
        )

    @property
    def hook(self):
        return self.pm.hook

    @property
    def failed(self) -> list[PluginInfo]:
        return [i for i in self.infos if not i.loaded]

    def _per_plugin(self, hookname: str) -> list[tuple[str, list]]:
        """Call a collecting hook plugin by plugin, in call order, skipping implementations that fail."""
        out = []
        for impl in reversed(getattr(self.pm.hook, hookname).get_hookimpls()):
            try:
                result = impl.function() or []
            except Exception as exc:  # a broken plugin is reported, not fatal
                info = next((i for i in self.infos if i.name == impl.plugin_name), None)
                if info is not None and info.error is None:
                    info.error = f"{hookname} failed: {type(exc).__name__}: {exc}"
                continue
            out.append((impl.plugin_name, list(result)))
        return out

    def call_order(self, hookname: str) -> list[str]:
        """Plugin names in the order a firstresult hook asks them."""
        return [impl.plugin_name for impl in reversed(getattr(self.pm.hook, hookname).get_hookimpls())]

    # -- fetch -----------------------------------------------------------------------------------

    @cached_property
    def fetchers(self) -> list[tuple[str, type[Fetcher] | FetcherRef]]:
        """(plugin, fetcher class or :class:`FetcherRef`) in call order; references are not imported here."""
        return [(plugin, cls) for plugin, classes in self._per_plugin("hybridos_fetchers") for cls in classes]

    def fetcher_class_for(self, url: str) -> tuple[str, type[Fetcher]]:
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        for plugin, cls in self.fetchers:  # call order: last registered first
            if scheme in cls.schemes:
                if isinstance(cls, FetcherRef):
                    cls = cls.load()
                return plugin, cls
        known = sorted({s or "(local path)" for _, c in self.fetchers for s in c.schemes})
        raise PluginError(
            f"no fetch plugin handles {scheme or 'local path'} URLs ({url}); installed schemes: "
            + (", ".join(known) or "none")
        )

    def fetcher_for(self, url: str, options: FetchOptions | None = None) -> Fetcher:
        """A new fetcher instance for ``url``'s scheme."""
        return self.fetcher_class_for(url)[1](options)

    # -- bootloader ------------------------------------------------------------------------------

    @cached_property
    def bootloaders(self) -> list[tuple[str, Bootloader]]:
        return [(plugin, bl) for plugin, bls in self._per_plugin("hybridos_bootloaders") for bl in bls]

    def select_bootloader(self, sysroot: Path) -> BootloaderChoice:
        """Explicit ``[sysroot] bootloader=`` first, then the highest detection score, else none."""
        configured = _read_sysroot_options(sysroot).get("bootloader", "auto").strip()
        if configured == "none":
            return BootloaderChoice(None, None, "[sysroot] bootloader=none in ostree/repo/config")
        if configured and configured != "auto":
            for plugin, bl in self.bootloaders:
                if bl.name == configured:
                    return BootloaderChoice(bl, plugin, f"[sysroot] bootloader={configured} in ostree/repo/config")
            known = ", ".join(sorted(bl.name for _, bl in self.bootloaders)) or "none"
            raise BootloaderError(
                f"[sysroot] bootloader={configured} is configured but no plugin provides it (installed: {known})"
            )
        detections = []
        best: tuple[int, str, Bootloader, Detection] | None = None
        for plugin, bl in self.bootloaders:
            try:
                det = bl.detect(sysroot)
            except Exception as exc:  # a broken plugin is reported, not fatal
                det = None
                detections.append((bl.name, Detection(-1, f"detection failed: {exc}")))
                continue
            detections.append((bl.name, det))
            if det is not None and (best is None or det.score > best[0]):
                best = (det.score, plugin, bl, det)
        if best is None:
            return BootloaderChoice(None, None, "no bootloader detected: BLS entries only", tuple(detections))
        return BootloaderChoice(best[2], best[1], f"detected: {best[3].reason}", tuple(detections))


_default_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, discovered on first use."""
    global _default_registry
    if _default_registry is None:
        _default_registry = PluginRegistry()
    return _default_registry


def report(registry: PluginRegistry, sysroot: Path | None = None) -> dict:
    """What was discovered and which implementation each hook family uses, and why (for ``plugins``)."""
    plugins = [
        {
            "name": i.name,
            "entry_point": i.value,
            "distribution": i.distribution,
            "version": i.version,
            "hooks": i.hooks,
            "loaded": i.loaded,
            "error": i.error,
        }
        for i in registry.infos
    ]
    fetch = []
    seen: set[str] = set()
    for plugin, cls in registry.fetchers:
        if isinstance(cls, FetcherRef):   # a reference that does not load is a broken plugin
            try:
                cls.load()
            except PluginError as exc:
                info = next((i for i in registry.infos if i.name == plugin), None)
                if info is not None and info.error is None:
                    info.error = f"hybridos_fetchers: {exc}"
                continue
        for scheme in cls.schemes:
            fetch.append({
                "scheme": scheme or "(local path)",
                "plugin": plugin,
                "implementation": cls.name,
                "selected": scheme not in seen,
                "reason": "claims the scheme" if scheme not in seen else "shadowed by a later plugin",
            })
            seen.add(scheme)
    selection: dict = {"fetch": fetch}
    for family, hookname in (("solve", "hybridos_solve"), ("layer", "hybridos_layer"),
                             ("initramfs", "hybridos_initramfs")):
        order = registry.call_order(hookname)
        selection[family] = {
            "order": order,
            "selected": order[0] if order else None,
            "reason": "first result: asked first among " + ", ".join(order) if order else "no implementation",
        }
    bootloaders = [
        {"plugin": plugin, "name": bl.name, "architectures": sorted(a.value for a in bl.architectures)}
        for plugin, bl in registry.bootloaders
    ]
    boot: dict = {"available": bootloaders}
    if sysroot is not None:
        try:
            choice = registry.select_bootloader(sysroot)
            boot.update({
                "sysroot": str(sysroot),
                "selected": choice.bootloader.name if choice.bootloader else None,
                "plugin": choice.plugin,
                "reason": choice.reason,
                "detections": {
                    name: ({"score": d.score, "reason": d.reason} if d else None) for name, d in choice.detections
                },
            })
        except BootloaderError as exc:
            boot.update({"sysroot": str(sysroot), "selected": None, "plugin": None, "reason": str(exc)})
    selection["bootloader"] = boot
    # Calling the collecting hooks may have found more broken plugins.
    for entry in plugins:
        info = next(i for i in registry.infos if i.name == entry["name"])
        entry["loaded"], entry["error"] = info.loaded, info.error
    return {"plugins": plugins, "selection": selection}
