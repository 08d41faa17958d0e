"""Many GPUs and nodes: ``torch.distributed`` started by ``torchrun``.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) ``reidbench run``
joins the process group (NCCL on CUDA, gloo on CPU; ``--device cuda`` is ``cuda:LOCAL_RANK``).
Every rank runs every cell; what a cell does to a set of images (attack it, extract its
features) is split into contiguous shards of *whole batches* of the global index range, one per
rank (:func:`shard`), and the rows are gathered back in rank order (:func:`gather_rows`). A rank
therefore runs exactly the batches, with exactly the global image indices, that one process runs,
so per-image seeding and batch composition are the same and the numbers are identical to a
single-process run. Only rank 0 takes the run directory's lock and writes into it.

Without ``torchrun`` (or with ``WORLD_SIZE=1``) :data:`SINGLE` is used and nothing here
communicates.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist

from reidbench.errors import ParameterError

__all__ = ["SINGLE", "Dist", "check_cuda", "check_work", "gather_rows", "launched_rank", "launched_world_size", "setup", "shard", "teardown"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    """This process's place in the group: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    comm_device: torch.device = torch.device("cpu")  # where collectives' tensors live (CUDA for NCCL)
    owns_group: bool = False  # this module initialised the process group (and tears it down)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def ranks(self) -> list[int]:
        return list(range(self.world_size))

    # -- collectives (no-ops in one process) --------------------------------------------------

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (pickled; keep tensors on the CPU)."""
        if not self.active:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=src, device=self.comm_device)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out


SINGLE = Dist()


def shard(n: int, batch: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous rows ``[lo, hi)`` of ``n``: whole batches of ``batch``, the
    ``ceil(n / batch)`` batches dealt out as evenly as contiguity allows (ranks past the
    number of batches get none)."""
    nb = -(-n // batch) if n else 0
    b0, b1 = rank * nb // world, (rank + 1) * nb // world
    return min(b0 * batch, n), min(b1 * batch, n)


def gather_rows(d: Dist, part: torch.Tensor, n: int, batch: int, device: torch.device | None = None) -> torch.Tensor:
    """Concatenate every rank's shard (its rows ``shard(n, batch, rank, world)``) in rank order,
    on every rank, on ``device`` (default ``part``'s). Shards differ in size: they are padded to the largest
    before ``all_gather`` and trimmed after; an empty shard learns the row shape from the others."""
    if not d.active:
        return part
    sizes = [shard(n, batch, r, d.world_size) for r in range(d.world_size)]
    rows = [hi - lo for lo, hi in sizes]
    have = part.shape[0] > 0 if part.dim() else False
    metas = d.all_gather_object((tuple(part.shape[1:]), str(part.dtype)) if have else None)
    meta = next((m for m in metas if m is not None), None)
    if meta is None:  # nobody had rows (n == 0)
        return part if device is None else part.to(device)
    shape, dtype = meta[0], getattr(torch, meta[1].removeprefix("torch."))
    out_dev = device if device is not None else part.device
    width = max(rows)
    buf = torch.zeros((width, *shape), dtype=dtype, device=d.comm_device)
    if have:
        buf[: part.shape[0]] = part.to(d.comm_device)
    got = [torch.empty_like(buf) for _ in range(d.world_size)]
    tdist.all_gather(got, buf)
    return torch.cat([g[:k] for g, k in zip(got, rows, strict=True)]).to(out_dev)


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"${name}={text!r} is not a whole number; start reidbench with torchrun, "
                             "which sets RANK, WORLD_SIZE and LOCAL_RANK") from None  # fmt: skip


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if the environment names one; return it and this rank's device.

    ``cuda`` (or ``cuda:LOCAL_RANK``) becomes ``cuda:LOCAL_RANK``; a CUDA device on a machine
    without CUDA, or a ``cuda:N`` other than ``cuda:LOCAL_RANK``, is refused with one line.
    """
    world = _env_int("WORLD_SIZE")
    if world is None or world <= 1:
        return SINGLE, device
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None:
        raise ParameterError("WORLD_SIZE is set but RANK is not; start reidbench with torchrun")
    local = rank if local is None else local
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"--device cuda under torchrun (rank {rank} of {world}): CUDA is not available on "
                                 "this machine; use --device cpu (the gloo backend)")  # fmt: skip
        if device.index is not None and device.index != local:
            raise ParameterError(f"--device {device} under torchrun: each rank uses cuda:LOCAL_RANK "
                                 f"(this one cuda:{local}); pass --device cuda")  # fmt: skip
        if local >= torch.cuda.device_count():
            raise ParameterError(f"torchrun local rank {local} but this node has {torch.cuda.device_count()} CUDA "
                                 "device(s); use --nproc_per_node <= the number of GPUs")  # fmt: skip
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ParameterError(f"--device {device} under torchrun: use cuda (NCCL) or cpu (gloo)")
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not tdist.is_initialized():
        kw: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        tdist.init_process_group(backend=backend, **kw)
        owns = True
    elif tdist.get_world_size() != world:
        raise ParameterError(f"the process group has {tdist.get_world_size()} ranks but WORLD_SIZE={world}")
    comm = device if backend == "nccl" else torch.device("cpu")
    log.info("torch.distributed: rank %d of %d (local %d), backend %s, device %s", rank, world, local, backend, device)
    return Dist(rank=tdist.get_rank(), world_size=world, local_rank=local, comm_device=comm, owns_group=owns), device


def launched_world_size() -> int:
    """The WORLD_SIZE torchrun set (1 without torchrun)."""
    return _env_int("WORLD_SIZE") or 1


def launched_rank() -> int:
    """The RANK torchrun set (0 without torchrun)."""
    return _env_int("RANK") or 0 if launched_world_size() > 1 else 0


def check_cuda(name: str) -> None:
    """Under torchrun, refuse ``--device cuda...`` on a machine without CUDA with one line."""
    world = launched_world_size()
    if world > 1 and name.strip().lower().startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"--device {name} under torchrun (rank {launched_rank()} of {world}): CUDA is not "
                             "available on this machine; use --device cpu (the gloo backend)")  # fmt: skip


def check_work(world: int, n_query: int, dataset: str) -> None:
    """More ranks than query images is refused with one line."""
    if world > n_query:
        raise ParameterError(f"torchrun started {world} processes but {dataset} has only {n_query} query images "
                             f"to share; use --nnodes x --nproc_per_node <= {n_query}")  # fmt: skip


def teardown(d: Dist) -> None:
    """Leave the process group if :func:`setup` made it."""
    if d.owns_group and tdist.is_initialized():
        tdist.destroy_process_group()
