"""scripts/gpu_runs.sh end to end at toy size on the CPU, so that a lent GPU (15 minutes a
session) finds no bug in it: the smoke run, the throughput probe, the choice of sweep, two
ranks side by side, and the packing of their run folders into pieces that come back."""
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def test_gpu_script_runs_two_seeds_and_packs_them(tmp_path, real_data_dir):
    out = tmp_path / "out"
    # a relative data folder, as .ci/run gives it: the script must resolve it before it moves
    env = dict(os.environ, NIN_GPU_RUNS_TOY="1", OUT=str(out),
               NIN_DATA_DIR=os.path.relpath(real_data_dir.resolve(), ROOT),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               NIN_GPU_RUNS_WORK=str(tmp_path / "work"))
    r = subprocess.run(["bash", "scripts/gpu_runs.sh", "auto", "400"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "images/s (two processes)" in r.stderr + r.stdout  # the choice says what it saw
    parts = sorted(out.glob("runs.tgz.part*"))
    assert parts and all(p.stat().st_size < 16 << 20 for p in parts)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        names = tar.getnames()
        results = [json.load(tar.extractfile(n)) for n in names if n.endswith("/result.json")]
    assert sorted(r["config"]["seed"] for r in results) == [0, 1]
    assert all(r["finished"] and r["final"]["n"] == 128 for r in results)
    kept = sorted(Path(n).name.split(".", 1)[1] for n in names if n.endswith(".safetensors"))
    assert kept == ["preprocess.safetensors"] * 2 + ["safetensors"] * 2  # finished: no state
    assert any(n.endswith("train_throughput_cpu_two0.json") for n in names)
    assert {"probe.log", "rank0.log", "rank1.log"} <= {p.name for p in out.iterdir()}
    assert not (ROOT / "runs" / "toy").exists()  # nothing left in the clone
