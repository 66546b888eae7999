"""Comparison helpers for tests."""

import numpy as np


def rel_err(actual, expected) -> float:
    """max |actual − expected| / max |expected| (a norm-wise relative error)."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def tree_rel_err(actual: dict, expected: dict) -> float:
    """The norm-wise relative error over all entries of two dicts of numbers."""
    keys = sorted(expected)
    a = np.concatenate([np.ravel(np.asarray(actual[k], float)) for k in keys])
    e = np.concatenate([np.ravel(np.asarray(expected[k], float)) for k in keys])
    return float(np.max(np.abs(a - e)) / np.max(np.abs(e)))


class FakeComm:
    """A comm of the lab bridge, as tests see it: what the kernel sends lands in `sent`."""

    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(data)

    def on_msg(self, callback):
        pass

    def on_close(self, callback):
        pass

    def close(self):
        pass
