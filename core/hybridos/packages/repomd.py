"""rpm-md repository metadata: ``repomd.xml`` parsing, checksum checks, decompression, and a libsolv cache.

``load_repo`` fetches ``repodata/repomd.xml`` through the fetch hook, then ``primary`` and ``filelists``
(checked against the checksums in repomd, decompressed from gz/xz/zst/bz2), loads them into libsolv once and
writes a ``.solv`` file keyed by those checksums. An unchanged repository is then read back from that file in
milliseconds; the solver reads every repository from its ``.solv`` file.
"""

from __future__ import annotations

import bz2
import contextlib
import gc
import gzip
import hashlib
import io
import lzma
import marshal
import os
import re
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import solv
import zstandard

from hybridos.errors import (
    CorruptionError,
    FetchError,
    FormatError,
    HybridosError,
    NotFoundError,
    SignatureError,
)
from hybridos.fetch import FetchOptions
from hybridos.packages.repofile import RepoConfig
from hybridos.util.atomic import atomic_write

_REPO_NS = "{http://linux.duke.edu/metadata/repo}"
#: Bumped when what we write into .solv files changes, so old cache files are ignored.
CACHE_FORMAT = "hybridos-solv-4"
_HASHES = {"sha": "sha1", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384",
           "sha512": "sha512", "md5": "md5"}


# -- formats (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepomdRecord:
    """One ``<data type=...>`` entry of repomd.xml."""

    type: str
    href: str
    checksum_type: str
    checksum: str
    size: int | None = None
    open_size: int | None = None   #: the decompressed size (``<open-size>``), a cap when decompressing


@dataclass(frozen=True)
class Repomd:
    revision: str
    records: Mapping[str, RepomdRecord]

    def record(self, kind: str, source: str) -> RepomdRecord:
        try:
            return self.records[kind]
        except KeyError:
            raise FormatError(f"{source}: repomd.xml lists no {kind} metadata") from None


def _number(el: ET.Element | None) -> int | None:
    """A size from the XML: ASCII digits only (``int`` would take "²" and raise on 5000 digits), else None."""
    text = (el.text or "").strip() if el is not None else ""
    return int(text) if _NUMBER.fullmatch(text) else None


_NUMBER = re.compile(r"[0-9]{1,19}")   # up to 2**63: larger is no real size


def _xml(data: bytes, source: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError, UnicodeError) as exc:   # LookupError: unknown encoding
        raise FormatError(f"{source}: corrupt {what} ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None


def parse_repomd(data: bytes, source: str = "repomd.xml") -> Repomd:
    """Parse repomd.xml bytes; anything that is not a usable repomd is a FormatError naming ``source``."""
    root = _xml(data, source, "repomd.xml")
    if root.tag != f"{_REPO_NS}repomd":
        raise FormatError(f"{source}: not a repomd.xml (root element {root.tag!r})")
    records = {}
    for el in root.findall(f"{_REPO_NS}data"):
        kind = el.get("type")
        loc = el.find(f"{_REPO_NS}location")
        ck = el.find(f"{_REPO_NS}checksum")
        if not kind or loc is None or not loc.get("href") or ck is None or not (ck.text or "").strip():
            raise FormatError(f"{source}: corrupt repomd.xml (incomplete <data type={kind!r}> entry)")
        records[kind] = RepomdRecord(kind, loc.get("href"), (ck.get("type") or "sha256").lower(),
                                     ck.text.strip().lower(), _number(el.find(f"{_REPO_NS}size")),
                                     _number(el.find(f"{_REPO_NS}open-size")))
    rev = root.find(f"{_REPO_NS}revision")
    return Repomd((rev.text or "").strip() if rev is not None else "", records)


def verify_checksum(data: bytes, record: RepomdRecord, url: str) -> None:
    """Raise CorruptionError when ``data`` does not match the checksum repomd.xml gives for it."""
    algo = _HASHES.get(record.checksum_type)
    if algo is None:
        raise FormatError(f"{url}: unsupported checksum type {record.checksum_type!r} in repomd.xml")
    actual = hashlib.new(algo, data).hexdigest()
    if actual != record.checksum:
        raise CorruptionError(f"checksum mismatch for {url}: expected {record.checksum_type} {record.checksum}, "
                              f"got {actual}")


_MAGIC = (
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"\x1f\x8b", "gz"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
)
_EXTENSIONS = {".zst": "zst", ".gz": "gz", ".xz": "xz", ".bz2": "bz2", ".xml": "none"}


def compression_of(data: bytes, name: str) -> str:
    """The compression of a metadata file: from its magic bytes, else its name; unknown is a FormatError."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data.lstrip()[:1] == b"<":
        return "none"
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTENSIONS:
        raise FormatError(f"{name}: corrupt {ext[1:]} data (bad magic bytes)")
    raise FormatError(f"{name}: unknown compression (supported: zst, gz, xz, bz2 or plain XML)")


#: decompressed metadata without an ``<open-size>`` may be at most this many times its compressed size (XML
#: compresses 5-20x; a bomb 1000x) and never more than MAX_METADATA bytes
MAX_RATIO = 100
MAX_METADATA = 2 << 30
#: a primary/filelists file whose repomd.xml declares no ``<size>`` may be at most this large as downloaded
#: (``max_metadata_size=`` in the .repo file sets both limits)
MAX_DOWNLOAD = 512 << 20


def decompress(data: bytes, name: str, open_size: int | None = None, max_size: int = MAX_METADATA) -> bytes:
    """Decompress rpm-md metadata (zst, gz, xz, bz2 or plain) detected by magic bytes: every frame or member,
    streamed, and stopped as soon as it grows past ``open_size`` (repomd.xml's ``<open-size>``) or, without
    one, past MAX_RATIO times its compressed size."""
    kind = compression_of(data, name)
    if kind == "none":
        return data
    if open_size is not None and open_size > max_size:
        raise FormatError(f"{name}: its <open-size> of {open_size} bytes is over the limit of {max_size} "
                          f"(max_metadata_size= in the .repo file)")
    limit = open_size if open_size is not None else min(max_size, max(64 << 20, MAX_RATIO * len(data)))
    source = io.BytesIO(data)
    opener = {"zst": lambda f: zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True),
              "gz": lambda f: gzip.GzipFile(fileobj=f), "xz": lzma.LZMAFile, "bz2": bz2.BZ2File}[kind]
    try:
        out = bytearray()
        with opener(source) as reader:
            while chunk := reader.read(1 << 20):
                out += chunk
                if len(out) > limit:
                    what = f"its <open-size> of {open_size} bytes" if open_size is not None else f"{limit} bytes"
                    raise FormatError(f"{name}: decompresses to more than {what} (a decompression bomb?)")
    except (zstandard.ZstdError, OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
        raise FormatError(f"{name}: corrupt {kind} data ({exc})") from None
    if open_size is not None and len(out) != open_size:
        raise FormatError(f"{name}: decompresses to {len(out)} bytes, not its <open-size> of {open_size}")
    return bytes(out)


def cache_key(repomd: Repomd) -> str:
    """The cache key of a repository's solvables: its primary and filelists checksums."""
    parts = [CACHE_FORMAT]
    for kind in ("primary", "filelists"):
        rec = repomd.records.get(kind)
        parts.append(f"{kind}:{rec.checksum_type}:{rec.checksum}" if rec else f"{kind}:-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


_METALINK_NS = "{http://www.metalinker.org/}"
_REPOMD_SUFFIX = "repodata/repomd.xml"


def parse_mirrorlist(text: str) -> tuple[str, ...]:
    """A yum mirrorlist (one base URL per line, ``#`` comments) -> base URLs."""
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


@dataclass(frozen=True)
class Metalink:
    """What a metalink says about repomd.xml: mirror base URLs (best first) and the expected hashes."""

    baseurls: tuple[str, ...]
    hashes: Mapping[str, str]


def parse_metalink(data: bytes, source: str = "metalink") -> Metalink:
    """A metalink 3.0 document for repomd.xml -> base URLs ordered by preference, and repomd.xml hashes."""
    root = _xml(data, source, "metalink")
    file_el = next((f for f in root.iter(f"{_METALINK_NS}file") if f.get("name") == "repomd.xml"), None)
    if file_el is None:
        raise FormatError(f"{source}: the metalink describes no repomd.xml")
    hashes = {h.get("type", "").lower(): (h.text or "").strip().lower()
              for h in file_el.iter(f"{_METALINK_NS}hash") if h.get("type") and (h.text or "").strip()}
    urls = []
    for pos, u in enumerate(file_el.iter(f"{_METALINK_NS}url")):
        url = (u.text or "").strip()
        if (u.get("protocol") or url.split(":", 1)[0]) not in ("http", "https", "file") or \
                not url.endswith(_REPOMD_SUFFIX):
            continue
        pref = int(u.get("preference") or 0) if _NUMBER.fullmatch(u.get("preference") or "0") else 0
        urls.append((-pref, pos, url[: -len(_REPOMD_SUFFIX)]))
    return Metalink(tuple(u for _, _, u in sorted(urls)), hashes)


def check_metalink_hashes(data: bytes, metalink: Metalink, url: str) -> None:
    """Raise CorruptionError when repomd.xml from a mirror does not match the metalink (a stale mirror)."""
    for kind in ("sha512", "sha256", "sha1", "md5"):
        expected = metalink.hashes.get(kind)
        if expected:
            actual = hashlib.new(kind, data).hexdigest()
            if actual != expected:
                raise CorruptionError(f"{url} does not match the metalink ({kind} {actual}, expected {expected})")
            return


# -- libsolv loading --------------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_PRIMARY_PKGID_RE = re.compile(rb'<checksum type="[^"]*" pkgid="YES">([^<]*)</checksum>')


def parse_filelists(filelists_xml: bytes, positions: Mapping[bytes, list[int]],
                    source: str) -> dict[bytes, list[int]]:
    """filelists.xml -> {path: [position of each package holding it]} (keys are UTF-8 bytes).

    ``positions`` maps a package id (its checksum) to the package's positions in the repository. A streaming
    XML parser (expat) reads it, so any well-formed spelling counts (``<file >``, CDATA, single quotes, character
    references); a document that declares entities is refused before any could be expanded.
    """
    index: dict[bytes, list[int]] = {}
    current: list[int] | None = None
    text: list[str] = []
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal current
        if name == "file":
            if current is None:
                raise FormatError(f"{source}: corrupt filelists metadata (a file outside any package)")
            text.clear()
            parser.CharacterDataHandler = text.append
        elif name == "package":
            current = positions.get(attrs.get("pkgid", "").lower().encode(), [])

    def end(name: str) -> None:
        if name == "file":
            parser.CharacterDataHandler = None
            path = "".join(text).encode("utf-8", "surrogateescape")
            entry = index.get(path)
            if entry is None:
                index[path] = list(current)   # type: ignore[arg-type]
            else:
                entry.extend(current)   # type: ignore[arg-type]

    def no_entities(*_args) -> None:
        raise FormatError(f"{source}: filelists metadata declares XML entities (refused)")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = no_entities
    collecting = gc.isenabled()
    gc.disable()   # hundreds of thousands of small lists: the cycle collector would only slow this down
    try:
        parser.Parse(filelists_xml, True)
    except (expat.ExpatError, LookupError, ValueError, UnicodeError) as exc:
        raise FormatError(f"{source}: corrupt filelists metadata ({str(exc).splitlines()[0]})") from None
    finally:
        if collecting:
            gc.enable()
    return index


def _positions(repo: solv.Repo, primary_xml: bytes) -> dict[bytes, list[int]]:
    """Package id -> positions in the repository (document order, as libsolv adds them)."""
    ids = _PRIMARY_PKGID_RE.findall(primary_xml)
    if len(ids) != repo.nsolvables:       # unusual primary.xml: ask libsolv (slower)
        ids = []
        for s in repo.solvables:
            chk = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
            ids.append(chk.hex().encode() if chk is not None else b"")
    out: dict[bytes, list[int]] = {}
    for pos, pkgid in enumerate(ids):
        out.setdefault(pkgid.lower(), []).append(pos)
    return out


def _load_xml(repo: solv.Repo, xml: bytes, flags: int, what: str, source: str) -> None:
    fd = os.memfd_create(f"hybridos-{what}")
    try:
        _write_all(fd, xml)
        os.lseek(fd, 0, os.SEEK_SET)
        fp = solv.xfopen_fd(None, fd)
        ok = repo.add_rpmmd(fp, None, flags)
        fp.close()
    finally:
        os.close(fd)
    if not ok:
        raise FormatError(f"{source}: corrupt {what} metadata ({' '.join(repo.pool.errstr.split())})")


def build_solv(primary_xml: bytes, filelists_xml: bytes | None, dest: Path, source: str) -> None:
    """Load primary XML into libsolv, add the file provides its own file dependencies need (from filelists),
    and write the repository as ``dest`` (``.solv``) plus the full file index as ``dest`` + ``.files``.

    libsolv's own filelists loader adds directories to a pool whose sibling lookup is linear, which takes
    seconds on distribution-sized repositories; the index is read only when a file dependency from outside
    the repository (installed set, local RPM, a path on the command line) needs it.
    """
    pool = solv.Pool()
    pool.setarch("x86_64")
    repo = pool.add_repo("load")
    _load_xml(repo, primary_xml, 0, "primary", source)
    index: dict[bytes, list[int]] = {}
    if filelists_xml is not None:
        index = parse_filelists(filelists_xml, _positions(repo, primary_xml), source)
    # File dependencies of the repository itself, resolved now so the cache needs no file list at all.
    needed = [(dep_id, pool.id2str(dep_id)) for dep_id in pool.addfileprovides_queue()]
    if needed and index:
        first = next(iter(repo.solvables)).id      # a fresh repository is one contiguous block
        for dep_id, path in needed:
            for pos in index.get(path.encode(), ()):
                pool.id2solvable(first + pos).add_provides(dep_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(_files_path(dest), marshal.dumps(index))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fp = solv.xfopen_fd(None, fd)
        os.close(fd)
        if not repo.write(fp):
            raise HybridosError(f"cannot write repository cache {dest}")
        fp.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _files_path(solv_path: Path) -> Path:
    return solv_path.with_name(solv_path.name + ".files")


def read_file_index(repo: LoadedRepo) -> dict[bytes, list[int]]:
    """path (UTF-8 bytes) -> positions (in repository order) of the packages that contain it."""
    path = _files_path(repo.solv_path)
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        raise CorruptionError(f"repository [{repo.id}]: file index {path} is missing or corrupt "
                              "(delete the cache directory and load the repo again)") from None


# -- repositories ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRepo:
    """A repository ready for the solver: its libsolv cache file and where its packages live."""

    id: str
    baseurl: str                       #: the base URL that answered; package locations are relative to it
    solv_path: Path
    revision: str = ""
    priority: int = 99
    excludepkgs: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()      #: every base URL, in configured order (download failover)
    from_cache: bool = False           #: True when no metadata had to be parsed
    gpgcheck: bool = False             #: packages must carry a good header signature by one of ``gpgkeys``
    gpgkeys: tuple[str, ...] = ()      #: the repository's gpgkey= URLs


def _join(base: str, href: str) -> str:
    return base.rstrip("/") + "/" + href.lstrip("/")


#: repomd.xml, metalinks, mirrorlists and signatures are small: a body larger than this is refused as it arrives
MAX_SMALL_METADATA = 16 << 20


def _fetch(url: str, options: FetchOptions | None) -> bytes:
    from hybridos.plugins import get_registry

    with get_registry().fetcher_for(url, options) as fetcher:
        return fetcher.read_capped(url, MAX_SMALL_METADATA)


def _repo_dir(cachedir: Path, repo_id: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", repo_id) or repo_id in (".", ".."):
        repo_id = "id-" + hashlib.sha256(repo_id.encode()).hexdigest()[:16]   # never a path outside cachedir
    return Path(cachedir) / repo_id


def _cached_repomd(cachedir: Path, config: RepoConfig, *, any_url: bool = False) -> tuple[Repomd, str] | None:
    """The cached repomd.xml of ``config`` and the base URL it came from; one cached from another base URL
    counts only with ``any_url`` (--cache-only: whatever was fetched for this repository id)."""
    path = _repo_dir(cachedir, config.id) / "repomd.xml"
    try:
        data = path.read_bytes()
        baseurl = (_repo_dir(cachedir, config.id) / "baseurl").read_text().strip()
    except OSError:
        return None
    if config.baseurls and baseurl not in config.baseurls and not any_url:
        return None     # cached for another base URL (the .repo file or its $releasever changed): stale
    try:
        return parse_repomd(data, str(path)), baseurl
    except FormatError:
        return None


def _fresh(cachedir: Path, config: RepoConfig) -> bool:
    """True when the cached repomd.xml may be used without asking the repository (metadata_expire)."""
    if config.baseurls and all(url.startswith("file:") or "://" not in url for url in config.baseurls):
        return False        # local repositories are always re-read: reading repomd.xml costs nothing
    if config.metadata_expire < 0:
        return True
    try:
        age = time.time() - (_repo_dir(cachedir, config.id) / "repomd.xml").stat().st_mtime
    except OSError:
        return False
    return age < config.metadata_expire


def load_repo(config: RepoConfig | str, cachedir: str | os.PathLike, *, cache_only: bool = False,
              refresh: bool = False, options: FetchOptions | None = None) -> LoadedRepo:
    """Fetch (or reuse) a repository's metadata and return it ready for the solver.

    ``config`` is a RepoConfig or a base URL. ``refresh`` ignores ``metadata_expire``; ``cache_only`` uses
    only what the cache holds (NotFoundError when it holds nothing for this repository).
    """
    if isinstance(config, str):
        config = RepoConfig(id=_url_id(config), name=config, baseurls=(config,), metadata_expire=0)
    cachedir = Path(cachedir)
    rdir = _repo_dir(cachedir, config.id)

    mirrors = config.baseurls

    def loaded(repomd: Repomd, baseurl: str, from_cache: bool) -> LoadedRepo:
        return LoadedRepo(config.id, baseurl, rdir / f"{cache_key(repomd)}.solv", repomd.revision,
                          config.priority, config.excludepkgs, mirrors or (baseurl,), from_cache,
                          config.gpgcheck, config.gpgkeys)

    cached = _cached_repomd(cachedir, config, any_url=cache_only)
    if cached is not None and (cache_only or (not refresh and _fresh(cachedir, config))):
        repo = loaded(*cached, from_cache=True)
        if repo.solv_path.is_file() and _files_path(repo.solv_path).is_file():
            return repo
    if cache_only:
        raise NotFoundError(f"repository [{config.id}] has no cached metadata in {cachedir}",
                            hint="run without --cache-only (or `hybridos refresh-md`) first")

    baseurls, metalink = _resolve_baseurls(config, options)
    mirrors = baseurls
    errors = []
    for baseurl in baseurls:
        url = _join(baseurl, "repodata/repomd.xml")
        try:
            data = _fetch(url, options)
            if metalink is not None:
                check_metalink_hashes(data, metalink, url)
        except (FetchError, NotFoundError, CorruptionError) as exc:     # try the next base URL
            errors.append(str(exc))
            continue
        if config.repo_gpgcheck:     # before anything in repomd.xml is trusted
            _check_repomd_signature(config, data, url, options)
        repomd = parse_repomd(data, url)
        repo = loaded(repomd, baseurl, from_cache=False)
        if not (repo.solv_path.is_file() and _files_path(repo.solv_path).is_file()):
            primary, filelists = _fetch_metadata(repomd, baseurl, options, config.max_metadata_size)
            build_solv(primary, filelists, repo.solv_path, f"[{config.id}] {baseurl}")
        else:
            repo = loaded(repomd, baseurl, from_cache=True)
        rdir.mkdir(parents=True, exist_ok=True)
        atomic_write(rdir / "repomd.xml", data)
        atomic_write(rdir / "baseurl", baseurl.encode() + b"\n")
        _prune(rdir, keep=repo.solv_path.name)
        return repo
    raise FetchError(f"repository [{config.id}]: cannot fetch repomd.xml from any baseurl: " + "; ".join(errors))


def _check_repomd_signature(config: RepoConfig, data: bytes, url: str, options: FetchOptions | None) -> None:
    """``repo_gpgcheck=1``: ``repomd.xml.asc`` must hold a good signature by one of the gpgkey= keys."""
    from hybridos.packages.gpgcheck import load_keys, verify_repomd

    if not config.gpgkeys:
        raise SignatureError(f"repository [{config.id}] has repo_gpgcheck=1 but no gpgkey",
                             hint=f"add gpgkey=URL of the key that signs its metadata to [{config.id}]")
    try:
        signature: bytes | None = _fetch(url + ".asc", options)
    except NotFoundError:
        signature = None
    verify_repomd(data, signature, load_keys(config.gpgkeys, f"repository [{config.id}]", options), config.id, url)


def _resolve_baseurls(config: RepoConfig, options: FetchOptions | None) -> tuple[tuple[str, ...], Metalink | None]:
    """baseurl, else the mirrors a metalink or mirrorlist names (with the metalink for checking repomd.xml)."""
    if config.baseurls:
        return config.baseurls, None
    if metalink_url := config.get("metalink"):
        metalink = parse_metalink(_fetch(metalink_url, options), metalink_url)
        if not metalink.baseurls:
            raise FetchError(f"repository [{config.id}]: the metalink {metalink_url} lists no usable mirror")
        return metalink.baseurls, metalink
    if mirrorlist_url := config.get("mirrorlist"):
        mirrors = parse_mirrorlist(_fetch(mirrorlist_url, options).decode("utf-8", "replace"))
        if not mirrors:
            raise FetchError(f"repository [{config.id}]: the mirrorlist {mirrorlist_url} lists no mirror")
        return mirrors, None
    raise FetchError(f"repository [{config.id}] has no baseurl, metalink or mirrorlist")


def download_limit(record: RepomdRecord, url: str, max_size: int | None) -> int:
    """How many bytes of ``record``'s file a server may send: its declared ``<size>`` (more is a lie), else the
    configured ``max_metadata_size`` (default MAX_DOWNLOAD); a declared size over that is refused up front."""
    limit = max_size if max_size is not None else MAX_DOWNLOAD
    if record.size is None:
        return limit
    if record.size > limit:
        raise FetchError(f"{url}: repomd.xml declares {record.size} bytes, over the limit of {limit}",
                         hint="raise max_metadata_size= in the repository's .repo file")
    return record.size


def _fetch_metadata(repomd: Repomd, baseurl: str, options: FetchOptions | None,
                    max_size: int | None = None) -> tuple[bytes, bytes | None]:
    """primary (and filelists) of a repository, each body cut off as soon as it exceeds its limit
    (:func:`download_limit`), checked against its checksum and decompressed within its ``<open-size>``."""
    from concurrent.futures import ThreadPoolExecutor

    from hybridos.plugins import get_registry

    primary = repomd.record("primary", _join(baseurl, "repodata/repomd.xml"))
    records = [primary]
    filelists = repomd.records.get("filelists")
    if filelists is not None:
        records.append(filelists)
    urls = [_join(baseurl, r.href) for r in records]
    limits = [download_limit(r, u, max_size) for r, u in zip(records, urls, strict=True)]
    with get_registry().fetcher_for(urls[0], options) as fetcher, ThreadPoolExecutor(len(urls)) as pool:
        blobs = list(pool.map(fetcher.read_capped, urls, limits))
    out = []
    for rec, url, blob in zip(records, urls, blobs, strict=True):
        verify_checksum(blob, rec, url)
        out.append(decompress(blob, url, rec.open_size, max_size or MAX_METADATA))
    return out[0], (out[1] if len(out) > 1 else None)


def _prune(rdir: Path, keep: str) -> None:
    """Remove cache files of older revisions of this repository."""
    for p in rdir.glob("*.solv"):
        if p.name != keep:
            with contextlib.suppress(OSError):
                _files_path(p).unlink()
            with contextlib.suppress(OSError):
                p.unlink()


def _url_id(url: str) -> str:
    """A cache directory name for a repository given only by URL."""
    return "url-" + hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def open_solv(pool: solv.Pool, repo: LoadedRepo) -> solv.Repo:
    """Add ``repo``'s cached solvables to ``pool``."""
    srepo = pool.add_repo(repo.id)
    srepo.priority = repo.priority and -repo.priority     # libsolv: higher wins; rpm-md: lower wins
    srepo.appdata = repo
    try:
        fp = solv.xfopen(str(repo.solv_path))
    except Exception:  # noqa: BLE001 - swig raises plain exceptions
        fp = None
    if fp is None:
        raise NotFoundError(f"repository [{repo.id}]: cache file {repo.solv_path} is missing; load the repo again")
    try:
        if not srepo.add_solv(fp, 0):
            raise CorruptionError(f"repository [{repo.id}]: cache file {repo.solv_path} is corrupt: {' '.join(pool.errstr.split())}"
                                  " (delete it and load the repo again)")
    finally:
        fp.close()
    return srepo
