"""Writing files so that nothing already written is lost, and their digests."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path


def atomic_write(path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, rename: never a half-written file.
    A place that cannot be written is an OutputError naming the path (the old file stays)."""
    from .errors import OutputError
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"{path}: cannot write there ({e.strerror}); choose another "
                          "place") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: could not write it ({e.strerror}); free some space or "
                          "choose another place; what was there before is unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_dir(path) -> Path:
    """mkdir -p, or an OutputError naming the folder."""
    from .errors import OutputError
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot make this folder ({e.strerror}); choose another "
                          "place") from None
    return path


def file_digest(path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def read_jsonl(path, warn=None) -> list[dict]:
    """The records of a JSON-lines log (metrics.jsonl). A cut-off last line (a crash or a full
    disk mid-write) is dropped with a one-line warning; a bad line before it means the file was
    damaged otherwise, and is an error naming the file and the line."""
    from .errors import CheckpointError
    lines = [(i, ln) for i, ln in enumerate(Path(path).read_text().splitlines(), 1) if ln.strip()]
    rows = []
    for n, (i, ln) in enumerate(lines):
        try:
            rows.append(json.loads(ln))
        except ValueError:
            if n < len(lines) - 1:
                raise CheckpointError(f"{path}: line {i} is not JSON; the log is damaged (move "
                                      "it away to start a new one)") from None
            (warn or _stderr)(f"warning: {path}: dropped a cut-off last line ({len(ln)} "
                              "characters): the run ended while writing it")
    return rows


def _stderr(msg: str):
    print(msg, file=sys.stderr)
