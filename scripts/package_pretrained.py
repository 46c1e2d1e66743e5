"""Ship a trained run as the package's pretrained weights for a model name.
Usage: python scripts/package_pretrained.py RUN_FOLDER MODEL_NAME
Writes src/nin/weights/MODEL_NAME.{safetensors,json}; then check the error it states with
`nin eval --weights pretrained --model MODEL_NAME` on the real test set."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nin.hub import package  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path = package(sys.argv[1], sys.argv[2])
    print(f"wrote {path} and {path.with_suffix('.safetensors')} "
          f"({path.with_suffix('.safetensors').stat().st_size / 2**20:.1f} MiB)")
