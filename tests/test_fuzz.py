"""Fuzzing every parser briefly: whatever the bytes, a parser returns data or raises its own
clear error (DataError, CheckpointError, ImageError), never anything else."""
import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fakedata
from nin import checkpoint as ckpt
from nin.data import (DataError, _gunzip, parse_cifar_binary, parse_cifar_pickle, parse_idx,
                      parse_svhn_mat, safe_unpickle)
from nin.evaluation import ImageError, load_image

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_samples() -> dict:
    x, y = fakedata.images(3, 3, 32, 32, 0)
    return {
        "idx": fakedata.idx_bytes(x[:, 0, :28, :28]),
        "cifar-bin": (np.concatenate([y.astype(np.uint8)[:, None], x.reshape(3, -1)], 1)
                      .tobytes()),
        "cifar-py": fakedata.cifar_pickle(x, y, "labels"),
        "mat": fakedata.svhn_mat(x, y, compressed=False),
        "mat-compressed": fakedata.svhn_mat(x, y, compressed=True),
    }


PARSERS = {
    "idx": lambda d: parse_idx(d, "f"),
    "cifar-bin": lambda d: parse_cifar_binary(d, "f"),
    "cifar-py": lambda d: parse_cifar_pickle(d, "f"),
    "mat": lambda d: parse_svhn_mat(d, "f"),
    "mat-compressed": lambda d: parse_svhn_mat(d, "f"),
}
VALID = _valid_samples()


def test_valid_samples_parse():
    for name, parse in PARSERS.items():
        parse(VALID[name])


@pytest.mark.parametrize("name", PARSERS)
@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(name, data):
    try:
        PARSERS[name](data)
    except DataError:
        pass


@pytest.mark.parametrize("name", PARSERS)
@FUZZ
@given(st.data())
def test_mutated_valid_files(name, data):
    raw = bytearray(VALID[name])
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                               max_size=8))
    for pos, val in flips:
        raw[pos] = val
    try:
        PARSERS[name](bytes(raw[:cut] if data.draw(st.booleans()) else raw))
    except DataError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=512),
                 st.binary(max_size=256).map(gzip.compress).map(lambda b: b[:len(b) * 3 // 4])))
def test_gunzip_and_pickle(data):
    """nin's own _gunzip and safe_unpickle: any bytes (and truncated gzip streams) give a
    DataError naming the file, never another exception."""
    for f in (lambda: _gunzip(data, "x.gz", "mnist"), lambda: safe_unpickle(data, "p")):
        try:
            f()
        except DataError as e:
            assert str(e).startswith(("x.gz", "p")), e


@FUZZ
@given(st.one_of(st.binary(max_size=512),
                 st.recursive(st.none() | st.integers() | st.text(max_size=8),
                              lambda c: st.lists(c, max_size=3) |
                              st.dictionaries(st.text(max_size=8), c, max_size=3),
                              max_leaves=8).map(lambda v: json.dumps(v).encode())))
def test_checkpoint_sidecar(tmp_path, data):
    side = tmp_path / "step-00000001.json"
    side.write_bytes(data)
    try:
        ckpt.load_checkpoint(side)
    except ckpt.CheckpointError:
        pass


@FUZZ
@given(st.binary(max_size=1024))
def test_images(tmp_path, data):
    p = tmp_path / "x.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + data if data[:1] == b"\x00" else data)
    try:
        load_image(p, 3, 32)
    except ImageError:
        pass
