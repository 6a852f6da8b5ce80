"""Per-epoch sample orders (numpy only): a pure function of (seed, epoch).

A resumed run rebuilds epoch e from the same (seed, epoch) and skips the
batches it has already trained on, landing on exactly the same data.
"""

from __future__ import annotations

import numpy as np


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(stream), 0x4B48])


def num_batches(num_items: int, batch_size: int, drop_remainder: bool) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return num_items // batch_size if drop_remainder else -(-num_items // batch_size)


def shuffled_order(indices, seed: int, epoch: int) -> np.ndarray:
    """A random permutation of `indices` for this (seed, epoch)."""
    indices = np.asarray(indices, np.int64)
    return indices[epoch_rng(seed, epoch).permutation(len(indices))]


def pk_order(indices, pids, batch_size: int, k: int, seed: int, epoch: int) -> np.ndarray:
    """Identity-balanced P x K order: each consecutive block of `batch_size`
    holds P = batch_size / K distinct identities with K images each.

    (Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", 2017, Sec. 3.) An epoch has len(indices) // batch_size
    batches, so every image is seen about once. Identities are drawn from
    successive random permutations (no identity twice in a batch); each
    identity's images are drawn from its own reshuffled cycle, so an identity
    with fewer than K images repeats some of them.
    """
    indices = np.asarray(indices, np.int64)
    pids = np.asarray(pids, np.int64)
    if batch_size % k:
        raise ValueError(f"P x K sampling: K={k} must divide batch_size={batch_size}")
    if k < 1:
        raise ValueError(f"P x K sampling: K must be >= 1, got {k}")
    if (pids < 0).any():
        raise ValueError("P x K sampling needs identity labels; some records have pid < 0")
    p = batch_size // k
    ids = np.unique(pids)
    if len(ids) < p:
        raise ValueError(f"P x K sampling: a batch needs P={p} identities, the records have only {len(ids)}")
    rng = epoch_rng(seed, epoch, stream=1)
    members = {pid: indices[pids == pid] for pid in ids}
    cycles = {pid: (rng.permutation(len(m)), 0) for pid, m in members.items()}

    def take(pid):
        perm, pos = cycles[pid]
        out = []
        for _ in range(k):
            if pos == len(perm):
                perm, pos = rng.permutation(len(perm)), 0
            out.append(members[pid][perm[pos]])
            pos += 1
        cycles[pid] = (perm, pos)
        return out

    order = []
    stream = list(rng.permutation(ids))
    for _ in range(len(indices) // batch_size):
        chosen = []
        while len(chosen) < p:
            if not stream:
                fresh = [pid for pid in rng.permutation(ids) if pid not in chosen]
                stream = fresh + [pid for pid in chosen if pid not in fresh]  # never empty
            pid = stream.pop(0)
            if pid in chosen:  # only across a permutation boundary: defer it
                stream.append(pid)
                continue
            chosen.append(pid)
        for pid in chosen:
            order.extend(take(pid))
    return np.asarray(order, np.int64)
