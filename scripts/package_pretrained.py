"""Ship a trained run as the package's pretrained weights for a model name.
Usage: python scripts/package_pretrained.py RUN_FOLDER MODEL_NAME [--half]
Writes src/nin/weights/MODEL_NAME.{safetensors,json} (--half: the network in fp16); then check
the error it states with `nin eval --weights pretrained --model MODEL_NAME` on the real test
set (in fp16 it must stay within 0.05 points of the run's)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nin.errors import NinError  # noqa: E402
from nin.hub import package  # noqa: E402

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--half"]
    if len(args) != 2:
        sys.exit(__doc__)
    try:
        path = package(args[0], args[1], half="--half" in sys.argv[1:])
    except NinError as e:  # a bad run folder or name: one line, not a traceback
        sys.exit(f"error: {e}")
    print(f"wrote {path} and {path.with_suffix('.safetensors')} "
          f"({path.with_suffix('.safetensors').stat().st_size / 2**20:.1f} MiB)")
