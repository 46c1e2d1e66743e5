"""Write the embedded MNIST sample as a folder dataset of RGB PNG files at 32x32 (10,000 train,
2,000 test), for the fine-tuning measurement in the README ("Your own pictures"):

    python scripts/make_digit_folder.py OUT      # OUT/{train,test}/<digit>/<index>.png

Digits are pictures nin_cifar10_bn never saw: 1 channel, 28 px, white on black."""
import sys
from pathlib import Path

from PIL import Image

from nin.data import load_dataset


def main(out: Path):
    for split in ("train", "test"):
        ds = load_dataset("mnist-sample", split)
        for d in range(10):
            (out / split / str(d)).mkdir(parents=True, exist_ok=True)
        for i, (x, y) in enumerate(zip(ds.images, ds.labels)):
            im = Image.fromarray(x[0].numpy()).resize((32, 32), Image.BICUBIC).convert("RGB")
            im.save(out / split / str(int(y)) / f"{i:05d}.png")
        print(f"{out / split}: {len(ds):,} images")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
