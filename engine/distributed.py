"""A population split in shards over processes with torch.distributed (gloo on CPUs, NCCL on GPUs).

Launch: ``torchrun --nproc_per_node 2 -m mletui.tui.cli run population ...``. torchrun sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a topic that shards its state
calls :func:`ensure_process_group` in ``init``, which joins the group when WORLD_SIZE > 1 and
is a no-op otherwise (one process: every collective below is the identity).

Who writes: only rank 0 writes files (:func:`is_writer`). Every rank produces the same
frames (a topic reduces its observations over all shards, so the frames of every rank carry
the global figures); the CLI and anything else that writes must check ``is_writer()``.
Collectives in ``observe`` mean all ranks must observe at the same steps: the headless
``run()`` loop does; the interactive Runner (observing on a timer) is single-process only.

Layout of a sharded population: global replica positions 0..R-1 in rank order; rank k
holds positions [B_k, B_{k+1}) with B_k = (R k) // W (:func:`even_bounds`). After
resampling, rank k's n_k children sit at [o_k, o_k + n_k) with o_k the global prefix sum
of the n's; :func:`exchange_plan` names the slices to move so the shards are even again.
"""

from __future__ import annotations

import atexit
import datetime
import os
from typing import Sequence

import torch

try:
    import torch.distributed as dist
except Exception:  # pragma: no cover - torch built without distributed
    dist = None  # type: ignore[assignment]


def env_world_size() -> int:
    """WORLD_SIZE from the environment (torchrun sets it), 1 when absent."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_initialized() -> bool:
    return dist is not None and dist.is_available() and dist.is_initialized()


def rank() -> int:
    if is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_writer() -> bool:
    """True in the one process that writes output (rank 0, or a plain single process)."""
    return rank() == 0


def ensure_process_group(device: torch.device) -> torch.device:
    """Join the process group when launched with WORLD_SIZE > 1 (gloo for a CPU device,
    NCCL for CUDA), and return the device this rank computes on (cuda:LOCAL_RANK on GPUs).
    A no-op returning ``device`` in a single process."""
    if env_world_size() <= 1:
        return device
    if dist is None or not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=10))
        atexit.register(shutdown)
    return device


def shutdown() -> None:
    """Leave the process group (registered atexit by ensure_process_group)."""
    if is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# -- collectives that are the identity in one process --------------------------------------
def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (op = sum | max | min) over all ranks; returns ``t``."""
    if world_size() > 1:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(t, op=ops[op])
    return t


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """Stack of every rank's ``t`` (same shape on all ranks): (W, *t.shape), rank order."""
    w = world_size()
    if w == 1:
        return t.unsqueeze(0)
    out = [torch.empty_like(t) for _ in range(w)]
    dist.all_gather(out, t.contiguous())
    return torch.stack(out)


def even_bounds(total: int, world: int) -> list[int]:
    """B_0..B_W with B_k = (total k) // W: rank k holds global positions [B_k, B_{k+1})."""
    return [(total * k) // world for k in range(world + 1)]


def exchange_plan(sizes: Sequence[int]) -> list[list[tuple[int, int, int, int]]]:
    """Moves that make a sharded population even again.

    ``sizes[k]`` replicas sit on rank k at global positions [o_k, o_k + n_k) (o the prefix
    sum). Returns, for each source rank s, a list of (dest, start, stop, dest_offset): rank s
    sends its local rows [start, stop) to rank dest, which stores them at rows
    [dest_offset, dest_offset + stop - start) of its new shard. The moves of all sources
    tile every destination's shard exactly once; rows that stay put have dest == s."""
    world = len(sizes)
    total = int(sum(sizes))
    bounds = even_bounds(total, world)
    plan: list[list[tuple[int, int, int, int]]] = []
    offset = 0
    for s in range(world):
        lo_s, hi_s = offset, offset + int(sizes[s])
        moves = []
        for d in range(world):
            a, b = max(lo_s, bounds[d]), min(hi_s, bounds[d + 1])
            if a < b:
                moves.append((d, a - lo_s, b - lo_s, a - bounds[d]))
        plan.append(moves)
        offset = hi_s
    return plan


def gather_rebalanced(sources: Sequence[torch.Tensor], parents: torch.Tensor, sizes: Sequence[int],
                      outs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Resample and rebalance in one pass: this rank's children are ``source[parents]``
    (``sizes[rank]`` of them, at global positions [o_rank, o_rank + sizes[rank])); each is
    written straight to its row in the even layout, on this rank (``index_select`` into
    ``outs``) or sent to the rank that now owns it (point-to-point; after nearest
    resampling only a few rows per step change rank). ``outs`` are buffers with at least
    this rank's new share of rows; returns views of their first rows. One process: a plain
    gather ``source[parents]`` into ``outs``."""
    w = world_size()
    me = dist.get_rank() if w > 1 else 0
    plan = exchange_plan(sizes)
    total = int(sum(sizes))
    bounds = even_bounds(total, w)
    mine = bounds[me + 1] - bounds[me]
    views = [out[:mine] for out in outs]
    ops = []
    for s in range(w):
        for dest, start, stop, dest_off in plan[s]:
            n = stop - start
            if s == me and dest == me:
                idx = parents[start:stop]
                for view, src in zip(views, sources):
                    torch.index_select(src, 0, idx, out=view[dest_off:dest_off + n])
            elif s == me:
                idx = parents[start:stop]
                for src in sources:
                    ops.append(dist.P2POp(dist.isend, src.index_select(0, idx), dest))
            elif dest == me:
                for view in views:
                    ops.append(dist.P2POp(dist.irecv, view[dest_off:dest_off + n], s))
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()
    return views
