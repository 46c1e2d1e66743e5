"""What the paper fixes: the datasets (classes, image shape, splits) and its test errors; the inits.
Plain data, no torch: the CLI reads it to build its help in a fraction of a second."""

# Weight inits: the paper's Gaussian and two of ours (nin.models.NIN.reset_parameters).
INITS = ("paper", "kaiming", "kaiming_zero")

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

# The results tables' rows: each of the paper's figures beside our networks for it and the best
# published reimplementation's error (what nin.tables fills from results/).
# (label, dataset, augmented, paper, paper-recipe model, modern model, best published)
RESULT_ROWS = [
    ("CIFAR-10, no augmentation", "cifar10", False, PAPER_ERROR["cifar10"], "nin_cifar10", None,
     "10.36 (PyTorch port of the Caffe recipe)"),
    ("CIFAR-10, translation + flip", "cifar10", True, PAPER_ERROR["cifar10_aug"], "nin_cifar10",
     ("nin_cifar10_bn", "nin_cifar10"), "7.43 (pytorchcv nin_cifar10)"),
    ("CIFAR-100, no augmentation", "cifar100", False, PAPER_ERROR["cifar100"], "nin_cifar100",
     "nin_cifar100_bn", "28.39 (pytorchcv)"),
    ("SVHN", "svhn", False, PAPER_ERROR["svhn"], "nin_svhn", "nin_svhn_bn",
     "3.76 (pytorchcv; a network with the CIFAR-10 widths, not the paper's SVHN network)"),
    ("MNIST", "mnist", False, PAPER_ERROR["mnist"], "nin_mnist", "nin_mnist_bn", "—"),
]
ABLATION_ROWS = [
    ("mlpconv + fully connected", "nin_cifar10_fc", "11.59"),
    ("mlpconv + fully connected + dropout", "nin_cifar10_fc_dropout", "10.88"),
    ("mlpconv + GAP (NIN)", "nin_cifar10", PAPER_ERROR["cifar10"]),
    ("NIN without dropout between blocks", "nin_cifar10_nodropout", "~14.5"),
    ("conventional CNN + fully connected", "cnn_cifar10_fc", "17.56"),
    ("conventional CNN + fully connected + dropout", "cnn_cifar10_fc_dropout", "15.99"),
    ("conventional CNN + GAP", "cnn_cifar10_gap", "16.46"),
    ("maxout 1×1 layers in NIN's shape + GAP", "nin_cifar10_maxout", "—"),
    ("Maxout Networks (Goodfellow et al. 2013)", "maxout_cifar10", "11.68"),
]
# The paper's claims that its ablations test, as differences of test error (points):
# (claim, the network it says is better, the one it says is worse, the paper's difference).
CLAIMS = [
    ("(a) GAP beats a fully connected head", "nin_cifar10", "nin_cifar10_fc", 1.18),
    ("(a) GAP beats fully connected + dropout", "nin_cifar10", "nin_cifar10_fc_dropout", 0.47),
    ("(b) mlpconv beats linear convolution, both with GAP", "nin_cifar10", "cnn_cifar10_gap",
     6.05),  # 10.41 against 16.46; the paper: a linear convolution abstracts less
    ("(b) with linear convolutions, GAP beats FC", "cnn_cifar10_gap", "cnn_cifar10_fc", 1.10),
    ("(b) with linear convolutions, FC + dropout beats GAP", "cnn_cifar10_fc_dropout",
     "cnn_cifar10_gap", 0.47),
    ("(c) dropout between the mlpconv blocks helps", "nin_cifar10", "nin_cifar10_nodropout",
     4.09),  # "about 14.5" against 10.41
    # (f) the argument of §3: an MLP beats maxout; no figure for NIN's own shape (None)
    ("(f) mlpconv beats maxout units, both in NIN's shape", "nin_cifar10", "nin_cifar10_maxout",
     None),
    ("(f) NIN beats Maxout Networks", "nin_cifar10", "maxout_cifar10", 1.27),  # 10.41, 11.68
]
# Claim (d), stated without a figure (§4.6): GAP makes the network more robust to translations.
# (the pair compared: the GAP network, the FC one); measured as the mean rise of test error over
# shifts of 1-8 pixels (`nin shifts`; the curves: nin.tables.SHIFTS_FILE).
SHIFT_CLAIMS = [("nin_cifar10", "nin_cifar10_fc"), ("nin_cifar10", "nin_cifar10_fc_dropout"),
                ("cnn_cifar10_gap", "cnn_cifar10_fc"),
                ("cnn_cifar10_gap", "cnn_cifar10_fc_dropout")]


def num_classes(dataset: str) -> int | None:
    """The class count of a dataset (None for a folder: its train/ subfolders decide)."""
    return DATASETS[dataset]["classes"]
