"""The datasets: loaders for the official formats, checksums, downloads and the paper's splits.

Every dataset comes back as uint8 images (N, C, H, W) and int64 labels, in memory. Where the data
lives: the --data-dir flag, else $NIN_DATA_DIR, else ~/.cache/nin/data, in the official layouts:

  cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin   or cifar-10-binary.tar.gz
  cifar-10-batches-py/{data_batch_1..5,test_batch}        or cifar-10-python.tar.gz
  cifar-100-python/{train,test,meta}                      or cifar-100-python.tar.gz
  mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  svhn/{train,test,extra}_32x32.mat

    checksums.py   the official files' md5s, the sample's, the download URLs
    unpickle.py    safe unpickling of CIFAR's python files
    formats.py     the parsers: bytes to arrays
    layouts.py     where the files lie, the splits, load_dataset, verify_files
    download.py    nin data download
"""
from ..errors import DataError
from .checksums import DOWNLOADS, MD5, SAMPLE_DIR, md5_bytes, md5_file
from .download import download
from .formats import (_gunzip, parse_cifar_binary, parse_cifar_pickle, parse_idx, parse_svhn_mat,
                      read_mat5)
from .layouts import (CIFAR10_CLASSES, DIGITS, LAYOUTS, SPLITS, Dataset, data_dir,
                      load_dataset, load_for_weights, svhn_val_index, verify_files)
from .unpickle import safe_unpickle

__all__ = ["CIFAR10_CLASSES", "DIGITS", "DOWNLOADS", "DataError", "Dataset",
           "LAYOUTS", "MD5", "SAMPLE_DIR", "SPLITS", "data_dir", "download", "load_dataset",
           "load_for_weights", "md5_bytes", "md5_file", "parse_cifar_binary",
           "parse_cifar_pickle", "parse_idx", "parse_svhn_mat", "read_mat5", "safe_unpickle",
           "svhn_val_index", "verify_files", "_gunzip"]
