"""rpm's own header reader as a reference, run by the system python (/usr/bin/python3 with Debian's python3-rpm).

One JSON request per line on stdin, one JSON answer per line (see tests/helpers/oracles.py):
  {"op": "hdr", "blob": HEX}  (a header without its magic, as headerImport and the rpmdb take it)
  -> {"ok": false, "error": TEXT} or {"ok": true, "name": .., "epoch": .., "version": .., "release": ..,
      "arch": .., "provides": [..], "requires": [..], "files": [..], "modes": [..]}
  {"op": "payload", "path": RPM}  (the payload read with rpm's archive reader, rpmfiArchive, after rpm's own
  digest check of the package, `rpmkeys --checksig --nosignature`, as rpm does before installing)
  -> {"ok": false, "error": TEXT, "members": [...so far]} or
     {"ok": true, "members": [[name, mode, hascontent, sha256 of the content or null, linkto], ...]}
"""

import hashlib
import json
import os
import subprocess
import sys

import rpm

_FIELDS = {"name": rpm.RPMTAG_NAME, "version": rpm.RPMTAG_VERSION, "release": rpm.RPMTAG_RELEASE,
           "arch": rpm.RPMTAG_ARCH}
_LISTS = {"provides": rpm.RPMTAG_PROVIDENAME, "requires": rpm.RPMTAG_REQUIRENAME, "files": rpm.RPMTAG_FILENAMES,
          "modes": rpm.RPMTAG_FILEMODES}


def text(v):
    if isinstance(v, bytes):   # a binary value where a string belongs (a legacy header, unchecked): not a string
        return {"bytes": v.hex()}
    return v


def read(blob):
    try:
        h = rpm.hdr(blob)
    except Exception as e:  # rpm raises rpm.error / TypeError for a header it refuses
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out = {"ok": True}
    for key, tag in _FIELDS.items():
        out[key] = get(h, tag, text)
    out["epoch"] = get(h, rpm.RPMTAG_EPOCH, lambda v: v)
    for key, tag in _LISTS.items():
        out[key] = get(h, tag, lambda v: [text(x) for x in (v or [])])
    for key in ("provides", "requires"):
        # rpm's dependency set (rpmdsNew), which drops a set whose flags/versions do not match its names;
        # only its length is asked, as iterating a set without versions crashes the bindings
        if isinstance(out[key], list):
            out[key] = out[key][:len(rpm.ds(h, _LISTS[key]))]
    return out


def get(h, tag, conv):
    """A tag's value, or {"unreadable": ...} when the bindings refuse to return it (a tag of the wrong type in a
    header without a region, which rpm imports unchecked)."""
    try:
        v = h[tag]
    except rpm.error as e:
        return {"unreadable": str(e)}
    return None if v is None else conv(v)


_PAYLOAD_IO = {"gzip": "gzdio", "bzip2": "bzdio", "xz": "xzdio", "lzma": "lzdio", "zstd": "zstdio",
               "identity": "ufdio"}


def payload(path):
    """Every member rpm's archive reader yields, in payload order, with the digest of its content."""
    members = []
    try:
        ts = rpm.TransactionSet()
        ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
        fd = rpm.fd.open(path)
        h = ts.hdrFromFdno(fd)
        io = _PAYLOAD_IO.get(h["payloadcompressor"] or "gzip")
        if io is None:
            return {"ok": False, "error": f"compressor {h['payloadcompressor']}", "members": members}
        archive = rpm.files(h).archive(rpm.fd(fd, "r", flags=io))
        for f in archive:
            content = archive.read() if archive.hascontent() else None
            members.append([f.name, f.mode, bool(archive.hascontent()),
                            hashlib.sha256(content).hexdigest() if content is not None else None, f.linkto])
    except Exception as e:  # rpm raises OSError for a broken archive
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "members": members}
    check = subprocess.run(["rpmkeys", "--checksig", "--nosignature", path], capture_output=True, text=True)
    if check.returncode != 0:
        return {"ok": False, "error": (check.stdout + check.stderr).strip(), "members": members}
    return {"ok": True, "members": members}


def main():
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):   # I18N strings in the C locale: the first
        os.environ.pop(var, None)
    rpm.setVerbosity(rpm.RPMLOG_EMERG)
    for line in sys.stdin:
        req = json.loads(line)
        ans = payload(req["path"]) if req.get("op") == "payload" else read(bytes.fromhex(req["blob"]))
        sys.stdout.write(json.dumps(ans, ensure_ascii=True) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
