from __future__ import annotations

from tests.conftest import require_tool
from tests.daemon.bus import OS_IFACE, gdbus, run_transaction, serving, unquote_address


def test_smoke(host):
    require_tool("dbus-daemon", "busctl", "gdbus")
    sr, remote, v1 = host
    remote.publish("2.0")
    with serving(sr) as (bus, d):
        r = gdbus(bus, "call", "--dest", "org.projectatomic.rpmostree1", "--object-path",
                  "/org/projectatomic/rpmostree1/testos", "--method", f"{OS_IFACE}.Upgrade", "{}", check=False)
        print(r)
        print(d.output())
        addr = unquote_address(r.stdout)
        try:
            print(run_transaction(addr, timeout=20))
        finally:
            print(d.output())
        print(d.output())
    assert 0
