"""Safe unpickling of the CIFAR python files: only numpy arrays and bytes, never code."""
from __future__ import annotations

import io
import pickle

import numpy as np

from ..errors import DataError

_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    """Resolves only the few globals a CIFAR pickle holds (numpy arrays, bytes)."""

    path = "<pickle>"

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_ALLOWED:
            raise DataError(
                f"{self.path}: the pickle asks for {module}.{name}, which a dataset file never "
                "needs; refused, since loading it could run code. Replace the file with the "
                "official one.")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # numpy 2 moved it; avoids a deprecation warning
        return super().find_class(module, name)


def safe_unpickle(data: bytes, path="<pickle>"):
    """Load a CIFAR-style pickle without letting it run code."""
    up = _DataUnpickler(io.BytesIO(data), encoding="bytes")
    up.path = str(path)
    try:
        return up.load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e}); the "
                        "file is truncated or corrupt. Replace it with the official one.") from None
