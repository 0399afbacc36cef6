"""The one home of id hashing: fixed, platform-independent mixers of integer ids.

Python's hash() is salted per process for strings and numpy's RNG depends on
call order; these depend only on the value. The split uses SplitMix64; the
example's demo builder picks the records it corrects with MurmurHash3's 32-bit
finaliser (kept as it was: another mixer would pick other records and change
every output of the example).
"""
from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_MASK32 = np.uint64(0xFFFFFFFF)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed 64-bit hash (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.asarray(values).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & _MASK64


def murmur32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser of each value taken mod 2**32: a fixed bijection."""
    h = np.asarray(values, dtype=np.int64).astype(np.uint64) & _MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _MASK32
    h ^= h >> np.uint64(16)
    return h
