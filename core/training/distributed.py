"""Training under ``torchrun``: one process per rank, DistributedDataParallel, a distributed class-balanced
sampler, and everything that writes (checkpoints, weights, the model card) on rank 0 only.

    torchrun --nproc_per_node=2 -m core.train --model baseline --data DIR --out mine --threads 1

:func:`init_world` reads what torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without it (or with
``WORLD_SIZE=1``) the run is the usual single process and :data:`SINGLE` changes nothing. With several ranks:

- the backend is ``gloo`` for the CPU (the training loop's device here) and would be ``nccl`` for a GPU;
- every rank draws the *same* class-balanced epoch order (same seed) and takes an interleaved share of each
  global batch (:meth:`World.shard`): ``--batch-size`` stays the global batch, split among the ranks, and the
  averaged gradients make a step the same step as one process's on the whole batch (each rank's BatchNorm
  sees only its share; the augmentation draws differ per rank); every rank runs the same number of steps;
- validation runs on rank 0 and its report is broadcast, so every rank keeps the same best epoch and stops
  at the same time (the time budget too is rank 0's decision, at the end of an epoch);
- at the end every rank hashes its best weights and rank 0 records the digests in the card
  (``training.distributed``): they must all be equal.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)
T = TypeVar("T")


def backend_for(device: torch.device) -> str:
    """The collective backend for ``device``: NCCL for CUDA, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, checkpoints and writes the weights and the card."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: the model, or a DDP wrapper over its parameters trainable *now* (made
        again whenever the backbone is frozen or unfrozen; it broadcasts rank 0's weights and buffers)."""
        if not self.distributed:
            return model
        gc.collect()  # a wrapper dropped by the caller takes its gradient hooks with it
        return DistributedDataParallel(model)

    def shard(self, order: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, argparse.Namespace]:
        """This rank's draws of an epoch's ``order`` and the settings to train on them: every global batch of
        ``--batch-size`` draws is split among the ranks (rank ``r`` takes its ``r``-th, ``r+size``-th … draws),
        and the epoch is cut to whole global batches so that every rank takes the same number of steps."""
        if not self.distributed:
            return order, args
        per_rank = args.batch_size // self.size
        if per_rank < 2:
            raise SystemExit(f"--batch-size {args.batch_size} leaves fewer than 2 images per rank on {self.size} ranks")
        whole = len(order) // (per_rank * self.size) * per_rank * self.size
        return order[:whole][self.rank :: self.size], argparse.Namespace(**{**vars(args), "batch_size": per_rank})

    def epoch_deadline(self, deadline: float) -> float:
        """The deadline a rank checks inside an epoch: none with several ranks (they would stop at different
        steps and wait for each other for ever); the budget is checked after the epoch, by rank 0."""
        return float("inf") if self.distributed else deadline

    def sum_stats(self, stats: dict) -> dict:
        """An epoch's training loss and accuracy over all ranks' images."""
        if not self.distributed:
            return stats
        n = stats["train_images"]
        t = torch.tensor([stats["train_loss"] * n, stats["train_acc"] * n, n], dtype=torch.float64)
        dist.all_reduce(t)
        total = max(float(t[2]), 1.0)
        return {"train_loss": float(t[0]) / total, "train_acc": float(t[1]) / total, "train_images": int(t[2])}

    def from_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed on rank 0 and sent to every rank (the others wait)."""
        if not self.distributed:
            return fn()
        box = [fn() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, fn: Callable[[], object]) -> None:
        """``fn()`` on rank 0, then on the other ranks once rank 0 is done (e.g. making a file they all read)."""
        if self.is_main:
            fn()
        if self.distributed:
            dist.barrier()
            if not self.is_main:
                fn()

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        return self.from_main(lambda: flag)

    def weight_digests(self, state: dict) -> list[str]:
        """Every rank's :func:`state_digest` of ``state`` (one entry when not distributed)."""
        mine = state_digest(state)
        if not self.distributed:
            return [mine]
        out: list[str | None] = [None] * self.size
        dist.all_gather_object(out, mine)
        return [str(d) for d in out]

    def record(self, per_rank_batch: int, digests: list[str]) -> dict:
        """The card's ``training.distributed``."""
        return {
            "world_size": self.size,
            "backend": self.backend,
            "nodes": int(os.environ.get("GROUP_WORLD_SIZE", "1")),
            "batch_per_rank": per_rank_batch,
            "rank_weight_digests": digests,
            "ranks_agree": len(set(digests)) == 1,
        }

    def close(self) -> None:
        """Leave the process group."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = World()


def init_world(device: torch.device | None = None) -> World:
    """The world torchrun describes in the environment, its process group started; :data:`SINGLE` otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    backend = backend_for(device or torch.device("cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("rank %d of %d (local rank %d), backend %s", rank, size, local_rank, backend)
    return World(rank, size, local_rank, backend)


def state_digest(state: dict) -> str:
    """sha256 of a state dict's tensors (names, dtypes, shapes and bytes, in key order)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def launch_command() -> str:
    """How this process was started, for the card: torchrun's shape when under it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return "python -m core.train"
    nodes = os.environ.get("GROUP_WORLD_SIZE", "1")
    per_node = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
    return f"torchrun --nnodes={nodes} --nproc_per_node={per_node} -m core.train"
