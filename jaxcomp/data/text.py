"""Byte-level text corpora for language models, with no network needed.

The offline corpus is the English text of the Debian packages ``fortunes`` and
``fortunes-min`` (``apt-get install fortunes fortunes-min``): their 43 plain-text
fortune files (the binary ``.dat`` indexes and ``.u8`` links skipped),
concatenated in sorted name order — 2,576,674 bytes whose sha256 is checked —
and split contiguously 90/10 into train and valid. :func:`download` fetches a
larger public corpus when online (urllib, a local cache, sha256-checked).

:class:`TextData` cuts training batches of random contiguous windows (a
function of ``(seed, step)`` only) and fixed non-overlapping evaluation windows;
:func:`unigram_bpb` and :func:`bigram_bpb` are the add-one-smoothed baselines.

Example:
    >>> import numpy as np
    >>> from jaxcomp.data.text import TextData
    >>> data = TextData.from_bytes(b"abcdefghij" * 10, name="toy")
    >>> len(data.train), len(data.valid)
    (90, 10)
    >>> b = data.batch(seed=0, step=0, batch_size=2, context=4)
    >>> b["x"].shape, bool((b["x"][:, 1:] == b["y"][:, :-1]).all())
    ((2, 4), True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import urllib.request
import zipfile

import numpy as np

from jaxcomp.core.errors import ConfigError, check_choice

FORTUNES_DIR = "/usr/share/games/fortunes"
FORTUNES_ENV = "JAXCOMP_FORTUNES_DIR"
FORTUNES_VERSION = "1:1.99.1-7.3"  # Debian 12 (bookworm) fortunes / fortunes-min
FORTUNES_SHA256 = "fbc2d796dde8ea64a51345ce4c18ff486a778a2d2259603987073bedb3fc3cd7"
FORTUNES_SIZE = 2_576_674
FORTUNES_FILES = (
    "art", "ascii-art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs",
    "education", "ethnic", "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law",
    "linux", "linuxcookie", "literature", "love", "magic", "medicine", "men-women",
    "miscellaneous", "news", "paradoxum", "people", "perl", "pets", "platitudes", "politics",
    "pratchett", "riddles", "science", "songs-poems", "sports", "startrek", "tao",
    "translate-me", "wisdom", "work", "zippy",
)
#: larger public corpora fetched by :func:`load_corpus` when online. ``sha256=None``: not
#: pinned here (it could not be checked offline); the first download's digest is recorded
#: in the cache and later reads are checked against it.
CORPORA = {
    "enwik8": {"url": "http://mattmahoney.net/dc/enwik8.zip", "member": "enwik8",
               "sha256": None},
}


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def fortunes_corpus(directory: str | os.PathLike | None = None, *, check: bool = True) -> bytes:
    """The fortunes corpus as bytes, its sha256 checked against :data:`FORTUNES_SHA256`.

    Looks in ``directory``, ``$JAXCOMP_FORTUNES_DIR``, then ``/usr/share/games/fortunes``.
    """
    d = pathlib.Path(directory or os.environ.get(FORTUNES_ENV) or FORTUNES_DIR)
    missing = [f for f in FORTUNES_FILES if not (d / f).is_file()]
    if missing:
        raise ConfigError(
            f"the fortunes corpus is not installed: {len(missing)} of {len(FORTUNES_FILES)} "
            f"files missing in {d} (e.g. {missing[0]!r}). Install it with "
            f"`apt-get install fortunes fortunes-min`, or set ${FORTUNES_ENV}.")
    data = b"".join((d / f).read_bytes() for f in FORTUNES_FILES)
    digest = sha256_of(data)
    if check and digest != FORTUNES_SHA256:
        raise ConfigError(
            f"the fortunes corpus in {d} has sha256 {digest} ({len(data)} bytes); expected "
            f"{FORTUNES_SHA256} ({FORTUNES_SIZE} bytes) from the Debian packages fortunes and "
            f"fortunes-min version {FORTUNES_VERSION}. Install that version, or pass "
            "check=False to use this text (results will not match recorded numbers).")
    return data


def cache_dir() -> pathlib.Path:
    """``$JAXCOMP_CACHE/text`` or ``~/.cache/jaxcomp/text``."""
    root = os.environ.get("JAXCOMP_CACHE", pathlib.Path.home() / ".cache/jaxcomp")
    return pathlib.Path(root) / "text"


def _file_sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, sha256: str | None = None, *, cache: str | os.PathLike | None = None,
             filename: str | None = None) -> pathlib.Path:
    """Fetch ``url`` into the cache once and return the local path, sha256-checked.

    A cached file whose digest does not match is fetched again; a fetched file whose
    digest does not match is deleted and a :class:`ConfigError` raised. With
    ``sha256=None`` the first download's digest is written beside the file
    (``<name>.sha256``) and checked on every later call.

    Example:
        >>> import pathlib, tempfile
        >>> src = pathlib.Path(tempfile.mkdtemp()) / "t.txt"; _ = src.write_bytes(b"hi")
        >>> p = download(src.as_uri(), sha256_of(b"hi"), cache=tempfile.mkdtemp())
        >>> p.read_bytes()
        b'hi'
    """
    root = pathlib.Path(cache) if cache is not None else cache_dir()
    path = root / (filename or url.rstrip("/").rsplit("/", 1)[-1])
    pin = path.with_name(path.name + ".sha256")
    expected = sha256 or (pin.read_text().strip() if pin.is_file() else None)
    if path.is_file() and (expected is None or _file_sha256(path) == expected):
        if expected is None:
            pin.write_text(_file_sha256(path) + "\n")
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:  # noqa: S310
            shutil.copyfileobj(r, f)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"download of {url} failed ({e}); no valid copy in {path}") from None
    got = _file_sha256(tmp)
    if expected is not None and got != expected:
        tmp.unlink()
        raise ConfigError(f"download of {url}: sha256 {got} does not match the expected "
                          f"{expected}; the file is corrupted or changed upstream (removed)")
    tmp.replace(path)
    if sha256 is None:
        pin.write_text(got + "\n")
    return path


def load_corpus(name: str = "fortunes", *, url: str | None = None, sha256: str | None = None,
                cache: str | os.PathLike | None = None) -> bytes:
    """Corpus bytes by name: ``fortunes`` (offline) or one of :data:`CORPORA` (downloaded;
    ``url`` / ``sha256`` override the registered ones, e.g. for a mirror)."""
    check_choice("data.name", name, ("fortunes", *CORPORA))
    if name == "fortunes":
        return fortunes_corpus()
    spec = CORPORA[name]
    path = download(url or spec["url"], sha256 or spec["sha256"], cache=cache,
                    filename=f"{name}{pathlib.Path(spec['url']).suffix}")
    if spec.get("member"):
        with zipfile.ZipFile(path) as z:
            return z.read(spec["member"])
    return path.read_bytes()


@dataclasses.dataclass(frozen=True)
class TextData:
    """A byte corpus split contiguously into ``train`` and ``valid`` (uint8 arrays)."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    sha256: str = ""

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "text", valid_fraction: float = 0.1
                   ) -> TextData:
        """The first ``1 - valid_fraction`` of ``data`` trains, the rest validates."""
        if not 0.0 < valid_fraction < 1.0:
            raise ConfigError(f"data.valid_fraction: got {valid_fraction!r}; allowed (0, 1)")
        arr = np.frombuffer(data, np.uint8)
        cut = int(round(len(arr) * (1.0 - valid_fraction)))
        if cut < 2 or len(arr) - cut < 2:
            raise ConfigError(f"data: {len(arr)} bytes leave an empty split at "
                              f"valid_fraction={valid_fraction}")
        return cls(name, arr[:cut], arr[cut:], sha256_of(data))

    def _check_context(self, context: int, split: np.ndarray, what: str) -> None:
        if not isinstance(context, int | np.integer) or not 1 <= context <= len(split) - 1:
            raise ConfigError(f"data.context: got {context!r}; allowed 1..{len(split) - 1} "
                              f"(the {what} split has {len(split)} bytes)")

    def batch(self, seed: int, step: int, batch_size: int, context: int) -> dict[str, np.ndarray]:
        """``{"x", "y"}`` int32 ``(batch_size, context)``: random windows of ``context + 1``
        train bytes, ``y`` the next byte of each ``x``; a function of ``(seed, step)``."""
        self._check_context(context, self.train, "train")
        rng = np.random.default_rng([seed, step])
        starts = rng.integers(0, len(self.train) - context, size=batch_size)
        win = self.train[starts[:, None] + np.arange(context + 1)].astype(np.int32)
        return {"x": win[:, :-1], "y": win[:, 1:]}

    def batches(self, seed: int, first_step: int, num_steps: int, batch_size: int,
                context: int) -> dict[str, np.ndarray]:
        """Steps ``first_step … first_step+num_steps-1`` stacked: ``(num_steps, B, T)``."""
        bs = [self.batch(seed, first_step + i, batch_size, context) for i in range(num_steps)]
        return {k: np.stack([b[k] for b in bs]) for k in ("x", "y")}

    def eval_windows(self, context: int, split: str = "valid",
                     max_windows: int | None = None) -> dict[str, np.ndarray]:
        """Non-overlapping windows over a split: ``x`` bytes ``[i·T, (i+1)·T)``, ``y`` the
        same shifted by one; ``(n, T)`` with ``n = (len - 1) // T`` (or ``max_windows``)."""
        arr = {"train": self.train, "valid": self.valid}[check_choice("split", split,
                                                                      ("train", "valid"))]
        self._check_context(context, arr, split)
        n = (len(arr) - 1) // context
        if max_windows is not None:
            n = min(n, int(max_windows))
        m = n * context
        return {"x": arr[:m].reshape(n, context).astype(np.int32),
                "y": arr[1:m + 1].reshape(n, context).astype(np.int32)}


def fortunes(valid_fraction: float = 0.1) -> TextData:
    """The fortunes corpus split 90/10 (contiguous): about 2.32 MB train, 0.26 MB valid."""
    return TextData.from_bytes(fortunes_corpus(), name="fortunes", valid_fraction=valid_fraction)


def unigram_bpb(train: np.ndarray, valid: np.ndarray) -> float:
    """Bits per byte on ``valid[1:]`` of add-one-smoothed byte frequencies of ``train``.

    Example:
        >>> import numpy as np
        >>> unigram_bpb(np.zeros(0, np.uint8), np.arange(10, dtype=np.uint8))
        8.0
    """
    counts = np.bincount(np.asarray(train, np.int64), minlength=256) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[np.asarray(valid[1:], np.int64)].mean())


def bigram_bpb(train: np.ndarray, valid: np.ndarray) -> float:
    """Bits per byte on ``valid[1:]`` of add-one-smoothed ``p(byte | previous byte)``.

    Example:
        >>> import numpy as np
        >>> t = np.frombuffer(b"abababab" * 50, np.uint8)
        >>> bigram_bpb(t, t[:20]) < unigram_bpb(t, t[:20])
        True
    """
    t = np.asarray(train, np.int64)
    counts = np.bincount(t[:-1] * 256 + t[1:], minlength=256 * 256).reshape(256, 256) + 1.0
    logp = np.log2(counts / counts.sum(axis=1, keepdims=True))
    v = np.asarray(valid, np.int64)
    return float(-logp[v[:-1], v[1:]].mean())


__all__ = ["CORPORA", "FORTUNES_SHA256", "FORTUNES_VERSION", "TextData", "bigram_bpb",
           "cache_dir", "download", "fortunes", "fortunes_corpus", "load_corpus", "sha256_of",
           "unigram_bpb"]
