"""Who may call what: uid 0 always; others through polkit when polkitd is on the bus; without polkit, other
users may read properties and call the read-only methods, and every changing method is refused."""

from dbus_fast import Message, MessageType, Variant

from hybridos.daemon import names

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"
#: CheckAuthorization flag: the agent may ask the user (rpm-ostreed passes it)
ALLOW_USER_INTERACTION = 1


class NotAuthorized(Exception):
    pass


async def _call(bus, destination: str, path: str, interface: str, member: str, signature: str = "",
                body: list | None = None):
    reply = await bus.call(Message(destination=destination, path=path, interface=interface, member=member,
                                   signature=signature, body=body or []))
    if reply.message_type == MessageType.ERROR:
        raise RuntimeError(f"{reply.error_name}: {reply.body[0] if reply.body else ''}")
    return reply.body


async def caller_uid(bus, sender: str) -> int:
    body = await _call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                       "GetConnectionUnixUser", "s", [sender])
    return int(body[0])


async def polkit_present(bus) -> bool:
    body = await _call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                       "NameHasOwner", "s", [POLKIT_NAME])
    return bool(body[0])


async def authorize(bus, sender: str, actions: tuple[str, ...]) -> None:
    """Raise ``NotAuthorized`` unless ``sender`` may perform every polkit action in ``actions`` (short names
    such as ``upgrade``; an empty tuple means a read-only method anyone may call)."""
    if not actions:
        return
    uid = await caller_uid(bus, sender)
    if uid == 0:
        return
    if not await polkit_present(bus):
        raise NotAuthorized(f"{', '.join(actions)} needs root (no polkit on the bus to ask)")
    subject = ["system-bus-name", {"name": Variant("s", sender)}]
    for action in actions:
        try:
            body = await _call(bus, POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE, "CheckAuthorization",
                               "(sa{sv})sa{ss}us", [subject, names.POLKIT_PREFIX + action, {},
                                                    ALLOW_USER_INTERACTION, ""])
        except RuntimeError as exc:
            raise NotAuthorized(f"polkit could not check {names.POLKIT_PREFIX + action}: {exc}") from None
        if not body[0][0]:
            raise NotAuthorized(f"not authorized for {names.POLKIT_PREFIX + action}")
