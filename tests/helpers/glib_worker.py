"""GLib's GVariant as a reference, run by the system python (/usr/bin/python3 with Debian's python3-gi).

Reads JSON requests one per line on stdin, answers one JSON line each (see tests/helpers/oracles.py):
  {"op": "parse", "type": T, "data": HEX}   -> {"normal": bool, "value": TREE or null}
  {"op": "serialize", "type": T, "value": TREE} -> {"data": HEX}
TREE: ints, bools, strings as JSON; ``d`` as the hex of its 8 bytes; ``ay`` as hex; arrays (dictionaries too,
duplicates kept) and tuples as lists; a maybe as null or {"just": TREE}; a variant as {"sig": T, "value": TREE}.
"""

import json
import struct
import sys
import warnings

warnings.simplefilter("ignore")
import gi  # noqa: E402

gi.require_version("GLib", "2.0")
from gi.repository import GLib  # noqa: E402

_INTS = {"y": "byte", "n": "int16", "q": "uint16", "i": "int32", "u": "uint32", "x": "int64", "t": "uint64",
         "h": "handle"}


def to_tree(v):
    t = v.get_type_string()
    k = t[0]
    if k in _INTS:
        return getattr(v, "get_" + _INTS[k])()
    if k == "b":
        return v.get_boolean()
    if k == "d":
        return struct.pack("<d", v.get_double()).hex()
    if k in "sog":
        return v.get_string()
    if k == "v":
        c = v.get_variant()
        return {"sig": c.get_type_string(), "value": to_tree(c)}
    if k == "m":
        c = v.get_maybe()
        return None if c is None else {"just": to_tree(c)}
    if t == "ay":
        return bytes(v.get_child_value(i).get_byte() for i in range(v.n_children())).hex()
    return [to_tree(v.get_child_value(i)) for i in range(v.n_children())]


def split_types(inner):
    """The member types of a tuple/dict entry body."""
    out, pos = [], 0
    while pos < len(inner):
        end = pos
        depth = 0
        while True:
            c = inner[end]
            if c in "am":
                end += 1
                continue
            if c in "({":
                depth += 1
            elif c in ")}":
                depth -= 1
            end += 1
            if depth == 0:
                break
        out.append(inner[pos:end])
        pos = end
    return out


def from_tree(t, x):
    k = t[0]
    if k in _INTS:
        return getattr(GLib.Variant, "new_" + _INTS[k])(x)
    if k == "b":
        return GLib.Variant.new_boolean(x)
    if k == "d":
        return GLib.Variant.new_double(struct.unpack("<d", bytes.fromhex(x))[0])
    if k == "s":
        return GLib.Variant.new_string(x)
    if k == "o":
        return GLib.Variant.new_object_path(x)
    if k == "g":
        return GLib.Variant.new_signature(x)
    if k == "v":
        return GLib.Variant.new_variant(from_tree(x["sig"], x["value"]))
    if k == "m":
        child = None if x is None else from_tree(t[1:], x["just"])
        return GLib.Variant.new_maybe(GLib.VariantType(t[1:]), child)
    if k == "a":
        if t == "ay":
            x = list(bytes.fromhex(x))
        return GLib.Variant.new_array(GLib.VariantType(t[1:]), [from_tree(t[1:], e) for e in x])
    types = split_types(t[1:-1])
    kids = [from_tree(ct, e) for ct, e in zip(types, x, strict=True)]
    if k == "{":
        return GLib.Variant.new_dict_entry(*kids)
    return GLib.Variant.new_tuple(*kids)


def main():
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "parse":
            vt = GLib.VariantType(req["type"])
            v = GLib.Variant.new_from_bytes(vt, GLib.Bytes.new(bytes.fromhex(req["data"])), False)
            normal = v.is_normal_form()
            ans = {"normal": normal, "value": to_tree(v) if normal else None}
        elif req["op"] == "valid_type":
            ans = {"valid": GLib.VariantType.string_is_valid(req["type"])}
        else:
            v = from_tree(req["type"], req["value"])
            ans = {"data": v.get_data_as_bytes().get_data().hex()}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
