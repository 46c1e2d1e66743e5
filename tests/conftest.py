import os
import sys
from pathlib import Path

# Inductor compiles CPU kernels in a pool of worker processes by default; a cold-cache run of
# the compile tests here once died with a segfault there (1 in 4 fresh clones). Compiling in
# the main process avoids that pool (pytorch/pytorch#135120 suggests the same). It must be set
# before torch._inductor.config is first imported.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
# Inductor's cache keys do not see ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA, but its kernels
# depend on them: a kernel cached by a capped run (.ci/run's second pass) segfaulted when an
# uncapped run loaded it. One cache per capability keeps the two apart.
_cap = "-".join(os.environ.get(k, "") for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"))
if _cap.strip("-"):
    import getpass
    import tempfile
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{_cap.lower()}"))

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def fake_md5(monkeypatch):
    """Register the md5s of files a test wrote in place of the official ones."""
    import nin.data

    def register(dataset: str, sums: dict):
        table = dict(nin.data.MD5[dataset])
        # A written file replaces every official sum of its layout (archive or folder).
        table.update(sums)
        monkeypatch.setitem(nin.data.MD5, dataset, table)
    return register


def pytest_collection_modifyitems(config, items):
    """Without NIN_DATA_DIR (a fresh clone, no datasets) the realdata tests skip, saying why.
    With it set, missing data is a failure: .ci/run unpacks ../shared/data and sets it."""
    if os.environ.get("NIN_DATA_DIR"):
        return
    skip = pytest.mark.skip(reason="NIN_DATA_DIR is unset: real MNIST/CIFAR-10 not available "
                                   "(../shared/data/unpack .data && NIN_DATA_DIR=.data)")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The unpacked real datasets ($NIN_DATA_DIR). Set but missing data is a failure, not a
    skip: CI unpacks ../shared/data there, so a missing file means the pipeline is broken."""
    root = Path(os.environ["NIN_DATA_DIR"])
    for f in ("mnist/train-images-idx3-ubyte.gz", "cifar-10-batches-bin/data_batch_1.bin"):
        if not (root / f).is_file():
            pytest.fail(f"{root / f} is missing: run ../shared/data/unpack {root}")
    return root
