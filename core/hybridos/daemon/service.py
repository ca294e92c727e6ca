"""The objects hybridosd serves: ``Sysroot`` and one ``OS`` per stateroot, with rpm-ostreed's names.

Each method parses its arguments into one ``hybridos.operations.verbs`` request, authorizes the caller and
starts a transaction (``txn``); properties are computed when the sysroot changes, never on a read.
"""

import asyncio
import contextvars
import logging
import os
import time
from pathlib import Path

from dbus_fast import Message, MessageType, Variant
from dbus_fast.errors import DBusError
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from hybridos.daemon import auth, dicts, names
from hybridos.errors import HybridosError

log = logging.getLogger("hybridosd")

#: the method call being served (set by a message handler before dbus-fast dispatches it)
CURRENT = contextvars.ContextVar("hybridosd_current_message", default=None)


def _sender() -> str:
    msg = CURRENT.get()
    return msg.sender if msg is not None else ""


def _opt(options: dict, key: str, default=None):
    v = options.get(key)
    return default if v is None else (v.value if isinstance(v, Variant) else v)


def _refuse_unknown(method_name: str, options: dict, supported: set[str]) -> None:
    """Options hybridos does not implement are refused by name (a false/empty value is accepted)."""
    for key in options:
        if key not in supported and _opt(options, key):
            raise DBusError(names.ERROR_FAILED, f"{method_name}: option {key!r} is not supported by hybridosd")


class SysrootInterface(ServiceInterface):
    def __init__(self, daemon: "Daemon"):
        super().__init__(names.IFACE_SYSROOT)
        self.d = daemon

    @dbus_property(access=PropertyAccess.READ)
    def Booted(self) -> "o":
        return self.d.booted_os_path()

    @dbus_property(access=PropertyAccess.READ)
    def Path(self) -> "s":
        return str(self.d.sysroot_path)

    @dbus_property(access=PropertyAccess.READ)
    def ActiveTransaction(self) -> "(sss)":
        t = self.d.txn
        return [t.method, t.sender, t.os_path] if t is not None else ["", "", ""]

    @dbus_property(access=PropertyAccess.READ)
    def ActiveTransactionPath(self) -> "s":
        return self.d.txn.address if self.d.txn is not None else ""

    @dbus_property(access=PropertyAccess.READ)
    def AutomaticUpdatePolicy(self) -> "s":
        return self.d.config.automatic_update_policy

    @dbus_property(access=PropertyAccess.READ)
    def Deployments(self) -> "aa{sv}":
        return self.d.state.deployments

    @method()
    async def RegisterClient(self, options: "a{sv}"):
        sender = _sender()
        self.d.clients[sender] = str(_opt(options, "id", "") or "")
        self.d.touch()

    @method()
    async def UnregisterClient(self, options: "a{sv}"):
        self.d.clients.pop(_sender(), None)
        self.d.touch()

    @method()
    async def Reload(self):
        self.d.reload_if_changed(force=True)

    @method()
    async def ReloadConfig(self):
        await self.d.authorize(("reload-daemon",))
        self.d.reload_config()
        self.d.reload_if_changed(force=True)

    @method()
    async def GetOS(self, name: "s") -> "o":
        if not name:
            return self.d.booted_os_path()
        if name not in self.d.os_objects:
            raise DBusError(names.ERROR_FAILED, f"OS name {name!r} not found")
        return names.os_object_path(name)


class OSInterface(ServiceInterface):
    def __init__(self, daemon: "Daemon", osname: str, name: str = names.IFACE_OS):
        super().__init__(name)
        self.d = daemon
        self.osname = osname

    @property
    def path(self) -> str:
        return names.os_object_path(self.osname)

    # -- properties ------------------------------------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return self.osname

    @dbus_property(access=PropertyAccess.READ)
    def BootedDeployment(self) -> "a{sv}":
        return self.d.state.os_props(self.osname)["booted"]

    @dbus_property(access=PropertyAccess.READ)
    def DefaultDeployment(self) -> "a{sv}":
        return self.d.state.os_props(self.osname)["default"]

    @dbus_property(access=PropertyAccess.READ)
    def RollbackDeployment(self) -> "a{sv}":
        return self.d.state.os_props(self.osname)["rollback"]

    @dbus_property(access=PropertyAccess.READ)
    def CachedUpdate(self) -> "a{sv}":
        return self.d.state.os_props(self.osname)["cached"]

    @dbus_property(access=PropertyAccess.READ)
    def HasCachedUpdateRpmDiff(self) -> "b":
        return "rpm-diff" in self.d.state.os_props(self.osname)["cached"]

    # -- transactions ----------------------------------------------------------------------------------------

    async def _txn(self, method_name: str, actions: tuple[str, ...], op, key, options: dict | None = None) -> str:
        await self.d.authorize(actions)
        if options is not None and _opt(options, "reboot") and self.d.sysroot_path != Path("/"):
            raise DBusError(names.ERROR_FAILED, f"{method_name}: 'reboot' only applies to the sysroot /")
        return self.d.begin(method_name, key, op, self.path,
                            reboot=bool(options is not None and _opt(options, "reboot")))

    _DEPLOY_OPTS = {"reboot", "allow-downgrade", "cache-only", "download-only", "initiating-command-line",
                    "skip-purge", "lock-finalization"}

    @method()
    async def Upgrade(self, options: "a{sv}") -> "s":
        from hybridos.operations.verbs import Upgrade

        _refuse_unknown("Upgrade", options, self._DEPLOY_OPTS)
        op = Upgrade(stateroot=self.osname, cache_only=bool(_opt(options, "cache-only")),
                     download_only=bool(_opt(options, "download-only")),
                     allow_downgrade=bool(_opt(options, "allow-downgrade")),
                     lock_finalization=bool(_opt(options, "lock-finalization")))
        return await self._txn("Upgrade", ("upgrade",), op, ("Upgrade", op), options)

    @method()
    async def Deploy(self, revision: "s", options: "a{sv}") -> "s":
        from hybridos.operations.verbs import Deploy

        _refuse_unknown("Deploy", options, self._DEPLOY_OPTS)
        op = Deploy(revision=revision.removeprefix("revision="), stateroot=self.osname,
                    lock_finalization=bool(_opt(options, "lock-finalization")))
        return await self._txn("Deploy", ("deploy",), op, ("Deploy", op), options)

    @method()
    async def Rebase(self, options: "a{sv}", refspec: "s", packages: "as") -> "s":
        from hybridos.operations.verbs import Rebase

        _refuse_unknown("Rebase", options, self._DEPLOY_OPTS)
        if packages:
            raise DBusError(names.ERROR_FAILED, "Rebase: installing packages while rebasing is not supported")
        op = Rebase(target=refspec, stateroot=self.osname, cache_only=bool(_opt(options, "cache-only")),
                    lock_finalization=bool(_opt(options, "lock-finalization")))
        return await self._txn("Rebase", ("rebase",), op, ("Rebase", op), options)

    @method()
    async def Rollback(self, options: "a{sv}") -> "s":
        from hybridos.operations.verbs import Rollback

        _refuse_unknown("Rollback", options, {"reboot", "initiating-command-line"})
        op = Rollback()
        return await self._txn("Rollback", ("rollback",), op, ("Rollback", op), options)

    @method()
    async def ClearRollbackTarget(self, options: "a{sv}") -> "s":
        from hybridos.operations.verbs import Cleanup

        _refuse_unknown("ClearRollbackTarget", options, {"initiating-command-line"})
        op = Cleanup(rollback=True)
        return await self._txn("ClearRollbackTarget", ("rollback",), op, ("ClearRollbackTarget", op))

    @method()
    async def PkgChange(self, options: "a{sv}", add: "as", remove: "as") -> "s":
        from hybridos.operations.verbs import PackageChange

        _refuse_unknown("PkgChange", options, {"reboot", "dry-run", "initiating-command-line"})
        op = PackageChange(name="install" if add else "uninstall", stateroot=self.osname, install=tuple(add),
                           uninstall=tuple(remove), dry_run=bool(_opt(options, "dry-run")))
        return await self._txn("PkgChange", ("install-uninstall-packages",), op, ("PkgChange", op), options)

    @method()
    async def UpdateDeployment(self, modifiers: "a{sv}", options: "a{sv}") -> "s":
        fds = [*(_opt(modifiers, "install-local-packages", ()) or ()),
               *(_opt(modifiers, "override-replace-local-packages", ()) or ())]
        try:
            op, actions = self.d.update_deployment_request(self.osname, modifiers, options)
            address = await self._txn("UpdateDeployment", actions, op, ("UpdateDeployment", op), options)
        except BaseException:
            _close_fds(fds)
            raise
        self.d.hand_over_fds(fds)
        return address

    @method()
    async def FinalizeDeployment(self, options: "a{sv}") -> "s":
        from hybridos.operations.verbs import FinalizeDeployment

        _refuse_unknown("FinalizeDeployment", options, {"checksum", "allow-missing-checksum", "allow-unlocked",
                                                        "initiating-command-line"})
        checksum = str(_opt(options, "checksum", "") or "")
        if not checksum and not _opt(options, "allow-missing-checksum"):
            raise DBusError(names.ERROR_FAILED, "Missing expected checksum")
        op = FinalizeDeployment(checksum=checksum, allow_unlocked=bool(_opt(options, "allow-unlocked")),
                                stateroot=self.osname)
        return await self._txn("FinalizeDeployment", ("finalize-deployment",), op, ("FinalizeDeployment", op))

    @method()
    async def KernelArgs(self, existing: "s", added: "as", replaced: "as", removed: "as",
                         options: "a{sv}") -> "s":
        from hybridos.operations.verbs import KernelArgs

        _refuse_unknown("KernelArgs", options, {"reboot", "initiating-command-line", "append-if-missing",
                                                "delete-if-present"})
        op = KernelArgs(stateroot=self.osname, append=tuple(added), replace=tuple(replaced),
                        delete=tuple(removed),
                        append_if_missing=tuple(_opt(options, "append-if-missing", ()) or ()),
                        delete_if_present=tuple(_opt(options, "delete-if-present", ()) or ()))
        try:
            op.validate()
        except HybridosError as exc:
            raise DBusError(names.ERROR_FAILED, exc.message) from None
        return await self._txn("KernelArgs", ("bootconfig",), op, ("KernelArgs", op), options)

    @method()
    async def SetInitramfsState(self, regenerate: "b", args: "as", options: "a{sv}") -> "s":
        from hybridos.operations.verbs import PackageChange

        _refuse_unknown("SetInitramfsState", options, {"reboot", "initiating-command-line"})
        op = PackageChange(name="initramfs", stateroot=self.osname, initramfs=bool(regenerate),
                           initramfs_args=tuple(args))
        return await self._txn("SetInitramfsState", ("bootconfig",), op, ("SetInitramfsState", op), options)

    @method()
    async def Cleanup(self, elements: "as") -> "s":
        from hybridos.operations.verbs import Cleanup

        known = {"base", "repomd", "pending-deploy", "rollback-deploy"}
        unknown = [e for e in elements if e not in known]
        if unknown:
            raise DBusError(names.ERROR_FAILED, f"Cleanup: unknown element {unknown[0]!r}")
        op = Cleanup(pending="pending-deploy" in elements, rollback="rollback-deploy" in elements,
                     base="base" in elements, repomd="repomd" in elements)
        return await self._txn("Cleanup", ("cleanup",), op, ("Cleanup", op))

    @method()
    async def RefreshMd(self, options: "a{sv}") -> "s":
        from hybridos.operations.verbs import RefreshMd

        _refuse_unknown("RefreshMd", options, {"force"})
        op = RefreshMd(stateroot=self.osname, force=bool(_opt(options, "force")))
        return await self._txn("RefreshMd", ("repo-refresh",), op, ("RefreshMd", op))

    @method()
    async def DownloadUpdateRpmDiff(self) -> "s":
        from hybridos.operations.verbs import Upgrade

        # the whole commit (rpm-ostreed downloads enough to read the new rpmdb), not deployed
        op = Upgrade(stateroot=self.osname, download_only=True)
        return await self._txn("DownloadUpdateRpmDiff", ("repo-refresh",), op, ("DownloadUpdateRpmDiff", op))

    @method()
    async def AutomaticUpdateTrigger(self, options: "a{sv}") -> "bs":
        from hybridos.operations.verbs import Upgrade

        _refuse_unknown("AutomaticUpdateTrigger", options, {"mode", "output-to-self", "initiating-command-line"})
        from hybridos.operations.verbs import AutomaticUpdate

        mode = str(_opt(options, "mode", "auto") or "auto")
        if mode == "auto":
            mode = self.d.config.automatic_update_policy
        if mode == "none":
            return [False, ""]
        if mode not in ("check", "stage", "apply"):
            raise DBusError(names.ERROR_FAILED, f"AutomaticUpdateTrigger: unknown mode {mode!r}")
        op = AutomaticUpdate(policy=mode, stateroot=self.osname)
        _ = Upgrade
        return [True, await self._txn("AutomaticUpdateTrigger", ("upgrade",), op, ("AutomaticUpdateTrigger", op))]

    # -- synchronous -----------------------------------------------------------------------------------------

    @method()
    async def GetDeploymentsRpmDiff(self, id0: "s", id1: "s") -> "a(sua{sv})":
        await self.d.authorize(("repo-refresh",), read_only=True)
        sysroot = self.d.sysroot()
        deps = {d.id: d for d in sysroot.deployments}
        for i in (id0, id1):
            if i not in deps:
                raise DBusError(names.ERROR_FAILED, f"deployment {i!r} not found")
        return dicts.db_diff_variant(dicts.packages_of_deployment(sysroot, deps[id0]),
                                     dicts.packages_of_deployment(sysroot, deps[id1]))

    @method()
    async def GetCachedUpdateRpmDiff(self, deployid: "s") -> "a(sua{sv})a{sv}":
        await self.d.authorize(("repo-refresh",), read_only=True)
        diff, details = dicts.cached_update_rpm_diff(self.d.sysroot(), self.osname)
        return [diff, details]

    @method()
    async def ModifyYumRepo(self, repo_id: "s", settings: "a{ss}") -> "s":
        from hybridos.operations.verbs import ModifyRepo

        op = ModifyRepo(stateroot=self.osname, repo_id=repo_id, settings=tuple(sorted(settings.items())))
        return await self._txn("ModifyYumRepo", ("repo-modify",), op, ("ModifyYumRepo", op))

    @method()
    async def DownloadRebaseRpmDiff(self, refspec: "s", packages: "as") -> "s":
        from hybridos.operations.verbs import PackageDiff

        # rpm-ostreed ignores ``packages`` here too
        op = PackageDiff(stateroot=self.osname, refspec=refspec)
        return await self._txn("DownloadRebaseRpmDiff", ("repo-refresh",), op, ("DownloadRebaseRpmDiff", op))

    @method()
    async def DownloadDeployRpmDiff(self, revision: "s", packages: "as") -> "s":
        from hybridos.operations.verbs import PackageDiff

        if not revision:
            raise DBusError(names.ERROR_FAILED, "DownloadDeployRpmDiff: Missing revision")
        op = PackageDiff(stateroot=self.osname, revision=revision)
        return await self._txn("DownloadDeployRpmDiff", ("repo-refresh",), op, ("DownloadDeployRpmDiff", op))

    @method()
    async def GetCachedRebaseRpmDiff(self, refspec: "s", packages: "as") -> "a(sua{sv})a{sv}":
        await self.d.authorize(("repo-refresh",), read_only=True)
        return self._target_diff("GetCachedRebaseRpmDiff", refspec=refspec)

    @method()
    async def GetCachedDeployRpmDiff(self, revision: "s", packages: "as") -> "a(sua{sv})a{sv}":
        await self.d.authorize(("repo-refresh",), read_only=True)
        return self._target_diff("GetCachedDeployRpmDiff", revision=revision or "")

    def _target_diff(self, method_name: str, **target) -> list:
        try:
            diff, details = dicts.target_rpm_diff(self.d.sysroot(), self.osname, **target)
        except HybridosError as exc:
            raise DBusError(names.ERROR_FAILED, f"{method_name}: {exc.message}") from None
        return [diff, details]

    @method()
    async def GetDeploymentBootConfig(self, deployid: "s", pending: "b") -> "a{sv}":
        sysroot = self.d.sysroot()
        if not deployid:
            dep = sysroot.merge_deployment(self.osname)
        else:
            dep = next((d for d in sysroot.deployments if d.id == deployid), None)
        if dep is None:
            raise DBusError(names.ERROR_FAILED, f"deployment {deployid!r} not found")
        entry = sysroot.entries.get(dep.name)
        out = {"options": Variant("s", dep.kargs)}
        if entry is not None:
            for key in ("title", "version", "linux", "initrd"):
                value = getattr(entry, key, None)
                if isinstance(value, str) and value:
                    out[key] = Variant("s", value)
        return out

    @method()
    async def ListRepos(self) -> "aa{sv}":
        from hybridos.layering.repos import all_host_repo_configs

        sysroot = self.d.sysroot()
        merge = sysroot.merge_deployment(self.osname)
        if merge is None:
            return []
        from hybridos.layering.assemble import commit_arch

        try:
            configs = all_host_repo_configs(sysroot.path, sysroot.path / merge.relpath,
                                        commit_arch(sysroot.repo, merge.checksum))
        except HybridosError as exc:
            raise DBusError(names.ERROR_FAILED, exc.message) from None
        out = []
        for c in configs:
            # every repository, enabled or not (GNOME Software lists them to switch them); libdnf's is-devel and
            # is-source are judged from the id as it does
            out.append({"id": Variant("s", c.id), "description": Variant("s", c.name or c.id),
                        "is-enabled": Variant("b", c.enabled),
                        "is-devel": Variant("b", c.id.endswith(("-debuginfo", "-debug", "-development"))),
                        "is-source": Variant("b", c.id.endswith("-source"))})
        return out


def _close_fds(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def request_actions(op) -> tuple[str, ...]:
    """The polkit actions a ``hybridos.operations`` request needs (rpm-ostreed's mapping of its verbs)."""
    verb = op.verb
    if verb in ("upgrade", "deploy", "rebase") and (op.install or op.install_local_files or op.uninstall):
        # --install/--uninstall with a new base: rpm-ostreed asks for both actions in UpdateDeployment
        return (verb, "install-uninstall-packages", *(("install-local-packages",) if op.install_local_files
                                                      else ()))
    if verb == "upgrade":
        return ("repo-refresh",) if op.check else ("upgrade",)
    if verb == "pkgchange":
        actions = []
        if op.install or op.uninstall or op.uninstall_all or op.reset_all:
            actions.append("install-uninstall-packages")
        if op.install_local_files:
            actions.append("install-local-packages")
        if op.remove or op.replace_local_files or op.reset_overrides or op.reset_all_overrides or op.reset_all:
            actions.append("override")
        if op.initramfs is not None or op.reset_all or op.initramfs_etc_track or op.initramfs_etc_untrack \
                or op.initramfs_etc_untrack_all or op.force_sync:
            actions.append("bootconfig")
        return tuple(actions) or ("install-uninstall-packages",)
    if verb == "automatic-update":
        return ("repo-refresh",) if op.policy == "check" else ("upgrade",)
    return {"deploy": ("deploy",), "rebase": ("rebase",), "rollback": ("rollback",), "kargs": ("bootconfig",),
            "cleanup": ("cleanup",), "refresh-md": ("repo-refresh",), "package-diff": ("repo-refresh",),
            "modify-yum-repo": ("repo-modify",), "search": (),
            "finalize-deployment": ("finalize-deployment",)}[verb]


class HybridosOSInterface(ServiceInterface):
    """``org.hybridos.OS1``: run any ``hybridos.operations`` request as a transaction. The ``hybridos`` CLI
    uses it so that a command gives the same output through the daemon as in-process."""

    def __init__(self, os_iface: OSInterface):
        super().__init__(names.IFACE_HYBRIDOS_OS)
        self.os_iface = os_iface

    @method()
    async def Run(self, verb: "s", request: "a{sv}", fds: "ah") -> "s":
        from hybridos.operations.verbs import from_dict

        try:
            data = {k: (v.value if isinstance(v, Variant) else v) for k, v in request.items()}
            files = [f"/proc/self/fd/{fd}" for fd in fds]
            for key in ("install_local_files", "replace_local_files"):
                if key in data:  # indexes into the passed file descriptors, never paths the daemon would open
                    try:
                        data[key] = [files[int(i)] for i in data[key]]
                    except (ValueError, IndexError):
                        raise DBusError(names.ERROR_FAILED, f"Run: {key} must index the passed fds") from None
            try:
                op = from_dict(verb, data)
            except (HybridosError, TypeError) as exc:
                raise DBusError(names.ERROR_FAILED, f"Run: {exc}") from None
            address = await self.os_iface._txn(f"Run({verb})", request_actions(op), op, ("Run", op))
        except BaseException:
            _close_fds(fds)
            raise
        self.os_iface.d.hand_over_fds(fds)
        return address


class OSExperimentalInterface(ServiceInterface):
    """``OSExperimental``: exported for clients that look for it; hybridos implements none of its methods."""

    def __init__(self):
        super().__init__(names.IFACE_OS_EXPERIMENTAL)


class SysrootState:
    """What the properties show, computed once per sysroot change."""

    def __init__(self, sysroot):
        self.sysroot = sysroot
        self.deployments = dicts.deployments(sysroot)
        self._by_id = {d.id: v for d, v in zip(sysroot.deployments, self.deployments, strict=True)}
        self._os: dict[str, dict] = {}

    def os_props(self, osname: str) -> dict:
        props = self._os.get(osname)
        if props is None:
            s = self.sysroot
            booted = s.booted if s.booted is not None and s.booted.stateroot == osname else None
            default = next((d for d in s.deployments if d.stateroot == osname), None)
            _, rollback = s.pending_and_rollback(osname)
            try:
                cached = dicts.cached_update(s, osname)
            except (HybridosError, OSError):
                cached = {}
            props = {"booted": self._by_id.get(booted.id, {}) if booted else {},
                     "default": self._by_id.get(default.id, {}) if default else {},
                     "rollback": self._by_id.get(rollback.id, {}) if rollback else {},
                     "cached": cached}
            self._os[osname] = props
        return props


class Daemon:
    """The daemon's state: the sysroot it serves, registered clients, the one active transaction."""

    def __init__(self, bus, sysroot_path: Path, config, *, run_dir: str, txn_linger: float = 30.0):
        self.bus = bus
        self.sysroot_path = Path(sysroot_path)
        self.config = config
        self.run_dir = run_dir
        self.txn_linger = txn_linger
        self.clients: dict[str, str] = {}
        self.txn = None
        self.os_objects: dict[str, tuple[OSInterface, OSExperimentalInterface]] = {}
        self.sysroot_iface = SysrootInterface(self)
        self._fingerprint = None
        self.state: SysrootState | None = None
        self.last_activity = time.monotonic()
        self.exit_event = asyncio.Event()
        self._reboot_after = False

    # -- sysroot state ---------------------------------------------------------------------------------------

    def sysroot(self):
        return self.state.sysroot

    def _compute_fingerprint(self):
        root = self.sysroot_path
        parts = []
        for p in ("boot/loader", "boot/loader/entries", "ostree/deploy", "ostree/repo/refs/remotes",
                  "ostree/repo/refs/heads"):
            try:
                st = os.stat(root / p)
                parts.append((p, st.st_mtime_ns, st.st_ino))
            except OSError:
                parts.append((p, None, None))
        try:
            parts.append(os.readlink(root / "boot/loader"))
        except OSError:
            parts.append(None)
        # refs of remotes live one level down (refs/remotes/<remote>/...)
        try:
            for entry in os.scandir(root / "ostree/repo/refs/remotes"):
                for dirpath, _dirs, files in os.walk(entry.path):
                    for f in files:
                        parts.append((dirpath, f, os.stat(os.path.join(dirpath, f)).st_mtime_ns))
        except OSError:
            pass
        try:
            for entry in os.scandir(root / "ostree/deploy"):
                st = os.stat(os.path.join(entry.path, "deploy"))
                parts.append((entry.name, st.st_mtime_ns))
        except OSError:
            pass
        return tuple(parts)

    @staticmethod
    def _trim() -> None:
        """Give freed memory back to the system after a reload (glibc keeps it otherwise): idle RSS stays low."""
        import ctypes
        import gc

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Reload the sysroot when it changed on disk (another process deploying, ``ostree admin``)."""
        from hybridos.sysroot.sysroot import Sysroot

        fp = self._compute_fingerprint()
        if not force and fp == self._fingerprint and self.state is not None:
            return False
        try:
            sysroot = Sysroot.load(self.sysroot_path)
        except HybridosError as exc:
            if self.state is None:
                raise
            log.warning("cannot reload %s: %s", self.sysroot_path, exc)
            return False
        self._fingerprint = fp
        old = self.state
        self.state = SysrootState(sysroot)
        self._sync_os_objects()
        if old is not None and old.deployments != self.state.deployments:
            self.sysroot_iface.emit_properties_changed({"Deployments": self.state.deployments,
                                                        "Booted": self.booted_os_path()})
        if old is not None:
            for osname, (iface, _exp) in self.os_objects.items():
                props = self.state.os_props(osname)
                iface.emit_properties_changed({"BootedDeployment": props["booted"],
                                               "DefaultDeployment": props["default"],
                                               "RollbackDeployment": props["rollback"],
                                               "CachedUpdate": props["cached"],
                                               "HasCachedUpdateRpmDiff": "rpm-diff" in props["cached"]})
        self._trim()
        return True

    def _sync_os_objects(self) -> None:
        wanted = set(self.state.sysroot.stateroots()) | {d.stateroot for d in self.state.sysroot.deployments}
        for osname in sorted(wanted - set(self.os_objects)):
            iface, exp = OSInterface(self, osname), OSExperimentalInterface()
            self.bus.export(names.os_object_path(osname), iface)
            self.bus.export(names.os_object_path(osname), exp)
            self.bus.export(names.os_object_path(osname), HybridosOSInterface(iface))
            self.os_objects[osname] = (iface, exp)
        for osname in sorted(set(self.os_objects) - wanted):
            self.bus.unexport(names.os_object_path(osname))
            del self.os_objects[osname]

    def booted_os_path(self) -> str:
        """The booted stateroot's object; on a sysroot that is not booted (an image being prepared, tests) the
        default deployment's, as ``hybridos`` commands choose it."""
        osname = self.state.sysroot.default_stateroot() if self.state else None
        return names.os_object_path(osname) if osname else "/"

    def reload_config(self) -> None:
        self.config = self.config.reload()

    # -- callers ---------------------------------------------------------------------------------------------

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    async def authorize(self, actions: tuple[str, ...], *, read_only: bool = False) -> None:
        """Refuse with NotAuthorized unless the caller may do ``actions``; ``read_only`` methods are allowed to
        everyone when there is no polkit to ask."""
        self.touch()
        sender = _sender()
        if not sender:
            return
        try:
            if read_only and not await auth.polkit_present(self.bus):
                return
            await auth.authorize(self.bus, sender, actions)
        except auth.NotAuthorized as exc:
            raise DBusError(names.ERROR_NOT_AUTHORIZED, str(exc)) from None

    def on_name_owner_changed(self, name: str, new_owner: str) -> None:
        if new_owner:
            return
        self.clients.pop(name, None)
        if self.txn is not None and self.txn.sender == name:
            self.txn.sender_vanished()

    # -- transactions ----------------------------------------------------------------------------------------

    def begin(self, method_name: str, key, op, os_path: str, *, reboot: bool = False) -> str:
        """Start a transaction for ``op`` (or join the running one when the request is identical)."""
        from hybridos.daemon.txn import DaemonTransaction

        sender = _sender()
        if self.txn is not None:
            if self.txn.key == key and not self.txn.finished:
                return self.txn.address
            raise DBusError(names.ERROR_UPDATE_IN_PROGRESS,
                            f"Transaction in progress: {self.txn.title} (initiated by "
                            f"{self.txn.client_description}); cancel it with `hybridos cancel`")
        client = self.clients.get(sender) or "unregistered client"
        txn = DaemonTransaction(self, op, method=method_name, key=key, sender=sender, os_path=os_path,
                                client_description=f"{client} ({sender})", run_dir=self.run_dir)
        txn.open()
        log.info("transaction %s (%s) for %s", txn.title, method_name, txn.client_description)
        self.txn = txn
        self._reboot_after = reboot
        self.sysroot_iface.emit_properties_changed({"ActiveTransaction": [method_name, sender, os_path],
                                                    "ActiveTransactionPath": txn.address})
        return txn.address

    def hand_over_fds(self, fds) -> None:
        """File descriptors a request refers to: closed when its transaction ends (at once if it ended)."""
        if self.txn is not None and not self.txn.finished:
            self.txn.fds.extend(fds)
        else:
            _close_fds(fds)

    def transaction_finished(self, txn) -> None:
        _close_fds(txn.fds)
        txn.fds.clear()
        if self.txn is txn:
            self.txn = None
            self.touch()
            self.reload_if_changed(force=True)
            self.sysroot_iface.emit_properties_changed({"ActiveTransaction": ["", "", ""],
                                                        "ActiveTransactionPath": ""})
            if txn.success and self._reboot_after and self.sysroot_path == Path("/"):
                from hybridos.util.run import run

                run(["systemctl", "reboot"])

    # -- UpdateDeployment ------------------------------------------------------------------------------------

    def update_deployment_request(self, osname: str, modifiers: dict, options: dict):
        """The request and polkit actions of ``UpdateDeployment(modifiers, options)``."""
        import dataclasses

        lock = bool(_opt(options, "lock-finalization"))
        options = {k: v for k, v in options.items() if k != "lock-finalization"}
        op, actions = self._update_deployment_request(osname, modifiers, options)
        if lock and hasattr(op, "lock_finalization"):
            op = dataclasses.replace(op, lock_finalization=True)
        return op, actions

    def _update_deployment_request(self, osname: str, modifiers: dict, options: dict):
        from hybridos.operations.verbs import Deploy, PackageChange, Rebase, Upgrade

        supported_mods = {"set-refspec", "set-revision", "install-packages", "uninstall-packages",
                          "install-local-packages", "override-remove-packages", "override-reset-packages",
                          "override-replace-local-packages"}
        supported_opts = {"reboot", "allow-downgrade", "no-pull-base", "dry-run", "no-layering", "no-overrides",
                          "cache-only", "download-only", "allow-inactive-requests", "idempotent-layering",
                          "initiating-command-line", "skip-purge"}
        _refuse_unknown("UpdateDeployment", modifiers, supported_mods)
        _refuse_unknown("UpdateDeployment", options, supported_opts)
        o = lambda k: bool(_opt(options, k))  # noqa: E731
        refspec, revision = _opt(modifiers, "set-refspec"), _opt(modifiers, "set-revision")
        install = tuple(_opt(modifiers, "install-packages", ()) or ())
        uninstall = tuple(_opt(modifiers, "uninstall-packages", ()) or ())
        local = [f"/proc/self/fd/{fd}" for fd in (_opt(modifiers, "install-local-packages", ()) or ())]
        remove = tuple(_opt(modifiers, "override-remove-packages", ()) or ())
        reset = tuple(_opt(modifiers, "override-reset-packages", ()) or ())
        replace_local = [f"/proc/self/fd/{fd}" for fd in
                         (_opt(modifiers, "override-replace-local-packages", ()) or ())]
        packages = install or uninstall or local or remove or reset or replace_local
        if refspec or revision:
            if packages or o("no-layering") or o("no-overrides"):
                raise DBusError(names.ERROR_FAILED, "UpdateDeployment: changing the base and the packages in "
                                                    "one transaction is not supported")
            if refspec:
                return Rebase(target=str(refspec), stateroot=osname, cache_only=o("cache-only")), ("rebase",)
            return Deploy(revision=str(revision).removeprefix("revision="), stateroot=osname), ("deploy",)
        if packages or o("no-layering") or o("no-overrides"):
            if not o("no-pull-base") and packages:
                raise DBusError(names.ERROR_FAILED, "UpdateDeployment: package changes together with a base "
                                                    "upgrade are not supported; pass no-pull-base")
            actions = ["install-uninstall-packages"] if (install or uninstall or o("no-layering")) else []
            if local:
                actions.append("install-local-packages")
            if remove or reset or replace_local or o("no-overrides"):
                actions.append("override")
            op = PackageChange(
                name="install" if install or local else "uninstall" if uninstall else
                "override remove" if remove else "override reset" if reset else
                "override replace" if replace_local else "reset",
                stateroot=osname, install=install, install_local_files=tuple(local), uninstall=uninstall,
                uninstall_all=o("no-layering"), remove=remove, reset_overrides=reset,
                reset_all_overrides=o("no-overrides"), replace_local_files=tuple(replace_local),
                idempotent=o("idempotent-layering"), dry_run=o("dry-run"), cache_only=o("cache-only"),
                download_only=o("download-only"), allow_inactive=o("allow-inactive-requests"))
            return op, tuple(actions)
        if o("no-pull-base"):
            raise DBusError(names.ERROR_FAILED, "UpdateDeployment: nothing to do (no modifiers and no-pull-base)")
        return Upgrade(stateroot=osname, cache_only=o("cache-only"), download_only=o("download-only"),
                       allow_downgrade=o("allow-downgrade")), ("upgrade",)


def track_calls(bus, daemon: Daemon):
    """Remember the message of each method call (for the caller's name) and watch names leaving the bus."""

    def handler(msg: Message):
        if msg.message_type == MessageType.METHOD_CALL:
            CURRENT.set(msg)
        elif (msg.message_type == MessageType.SIGNAL and msg.member == "NameOwnerChanged"
              and msg.sender == "org.freedesktop.DBus"):
            name, _old, new = msg.body
            daemon.on_name_owner_changed(name, new)
        return None

    bus.add_message_handler(handler)
