"""Write the embedded MNIST sample (src/nin/sample/): the first 10,000 training and 2,000 test
images of the official files, in the official idx format, gzipped reproducibly.
Usage: python scripts/make_sample.py MNIST_DIR"""
import gzip
import hashlib
import sys
from pathlib import Path

N = {"train": 10000, "t10k": 2000}
src, dest = Path(sys.argv[1]), Path(__file__).resolve().parents[1] / "src/nin/sample/mnist"
dest.mkdir(parents=True, exist_ok=True)
sums = []
for stem, n in N.items():
    for kind, header in (("images-idx3", 16), ("labels-idx1", 8)):
        name = f"{stem}-{kind}-ubyte.gz"
        raw = gzip.decompress((src / name).read_bytes())
        per = 28 * 28 if kind.startswith("images") else 1
        head = bytearray(raw[:header])
        head[4:8] = n.to_bytes(4, "big")
        out = gzip.compress(bytes(head) + raw[header:header + n * per], 9, mtime=0)
        (dest / name).write_bytes(out)
        sums.append(f"{hashlib.md5(out).hexdigest()}  {name}")
(dest.parent / "MD5SUMS").write_text("\n".join(sums) + "\n")
print("\n".join(sums))
