"""What the paper fixes: the datasets (classes, image shape, splits) and its test errors.
Plain data, no torch: the CLI reads it to build its help in a fraction of a second."""

# name: classes, channels, image side, the splits nin can load (val / train-val: the last
# 10,000 training images, the paper's validation set; SVHN's are the paper's 6,000 images).
DATASETS = {
    "cifar10": dict(classes=10, in_chans=3, size=32, splits=("train", "test", "val", "train-val")),
    "cifar100": dict(classes=100, in_chans=3, size=32,
                     splits=("train", "test", "val", "train-val")),
    "mnist": dict(classes=10, in_chans=1, size=28, splits=("train", "test", "val", "train-val")),
    "svhn": dict(classes=10, in_chans=3, size=32,
                 splits=("train", "test", "extra", "val", "train-val")),
    # the first 10,000 training and 2,000 test images of MNIST, shipped in the package
    "mnist-sample": dict(classes=10, in_chans=1, size=28, splits=("train", "test")),
    # your own pictures: DIR/train/<class>/ (nin.folder); classes, channels and size vary
    "folder": dict(classes=None, in_chans=None, size=None, splits=("train", "val", "test")),
}

# Test error (%) of the paper's Tables 1-4 (CIFAR-10: with translation + flip augmentation).
PAPER_ERROR = {"cifar10": 10.41, "cifar10_aug": 8.81, "cifar100": 35.68, "svhn": 2.35,
               "mnist": 0.47}


def num_classes(dataset: str) -> int | None:
    """The class count of a dataset (None for a folder: its train/ subfolders decide)."""
    return DATASETS[dataset]["classes"]
