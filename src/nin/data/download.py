"""`nin data download`: fetch a dataset's official files, resumable, md5-checked."""
from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from .checksums import DOWNLOADS, MD5, md5_file
from .layouts import _check_name, data_dir

def _fetch(urls: list, dest: Path, md5: str | None, timeout: float = 60.0):
    """Download to dest.part (resuming a cut-off download with an HTTP Range request), check the
    md5, then rename into place: a half-written file is never taken for the real one."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            have = part.stat().st_size if part.exists() else 0
            req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                resumed = have and r.status == 206  # else the server sent the whole file
                size = int(r.headers.get("Content-Length") or -1)
                size = size + have if (resumed and size >= 0) else size
                with open(part, "ab" if resumed else "wb") as f:
                    try:
                        while block := r.read(1 << 20):
                            f.write(block)
                    except http.client.IncompleteRead as e:
                        f.write(e.partial)
            if 0 <= size != part.stat().st_size:
                errors.append(f"{url}: cut off after {part.stat().st_size:,} of {size:,} bytes "
                              f"(kept in {part.name}; run again to resume)")
                continue
            got = md5_file(part)
            if md5 is not None and got != md5:
                part.unlink()
                errors.append(f"{url}: md5 {got}, expected {md5} (deleted; try again)")
                continue
            os.replace(part, dest)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416:  # range past the end: the partial file is complete or stale
                part.unlink(missing_ok=True)
            errors.append(f"{url}: HTTP {e.code}")
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise DataError(f"could not download {dest.name}:\n  " + "\n  ".join(errors)
                    + f"\nOffline? Copy the official file to {dest} and run `nin data verify`.")


def download(name: str, root=None, urls: dict | None = None) -> list[Path]:
    """Fetch a dataset's official files into the data folder, checking their md5s. Files that
    are already there and correct are kept. `urls` maps a file to other URLs (mirrors, tests)."""
    _check_name(name)
    if name == "mnist-sample":
        return []
    root = data_dir(root)
    done = []
    for rel, candidates in DOWNLOADS[name]:
        dest, want = root / rel, MD5[name].get(rel)
        if dest.is_file() and (want is None or md5_file(dest) == want):
            done.append(dest)
            continue
        _fetch((urls or {}).get(rel, candidates), dest, want)
        done.append(dest)
    return done
