"""Several processes on one run: the environment ``torchrun`` sets, and what ranks share.

``torchrun --nproc-per-node N -m interpret_shift compare ...`` starts N processes (ranks)
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each rank loads both models on its
own device (``cuda:LOCAL_RANK``, or the CPU with the gloo backend), computes a disjoint,
deterministic share of every explainer's items and writes those records into the shared
output folder; rank 0 waits at a barrier, then reads every record and diffs, reports and
prints. The share depends only on the item's position in the explainer's list and on the
number of ranks, never on what already exists, so every rank splits alike; and records
carry nothing of the rank or device that wrote them, so any number of ranks (one, without
``torchrun``) resumes a run another number started.

A rank that fails ends the run: ``torchrun`` stops the others. If it cannot (a node that
vanished), the barrier gives up after :func:`timeout` seconds instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from interpret_shift.errors import InputError, InterpretShiftError

#: Seconds a rank waits at a barrier (and for any collective) before giving up; the
#: environment variable of that name overrides it.
TIMEOUT_VARIABLE = "INTERPRET_SHIFT_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 3600.0

Key = TypeVar("Key")


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run of ``world`` processes.

    ``rank`` is global (0 to world - 1), ``local_rank`` its index on this node, which picks
    its accelerator.
    """

    rank: int
    world: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 diffs, reports and prints; the others only compute their shares."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world)``, as :func:`~interpret_shift.core.explainer.run_explainer` takes it."""
        return self.rank, self.world

    @property
    def device(self) -> torch.device:
        """``cuda:LOCAL_RANK`` when there are GPUs, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def from_environment(environ: Mapping[str, str] | None = None) -> Ranks | None:
    """The ranks ``torchrun`` announced, or ``None`` for a single process.

    ``WORLD_SIZE`` unset or 1 is a single process; a malformed variable is an
    :class:`InputError` (before any model is loaded).
    """
    environ = os.environ if environ is None else environ
    if environ.get("WORLD_SIZE") in (None, "", "1"):
        return None
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = environ.get(name, "0" if name == "LOCAL_RANK" else "")
        try:
            values[name] = int(text)
        except ValueError:
            raise InputError(
                f"The environment variable {name}={text!r} is not a whole number.",
                "Start several processes with torchrun (it sets RANK, WORLD_SIZE and "
                "LOCAL_RANK), or unset WORLD_SIZE to run one process.",
            ) from None
    ranks = Ranks(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if not 0 <= ranks.rank < ranks.world or ranks.local_rank < 0:
        raise InputError(
            f"RANK={ranks.rank} does not fit WORLD_SIZE={ranks.world}.",
            "Start several processes with torchrun, or unset WORLD_SIZE to run one process.",
        )
    return ranks


def timeout() -> float:
    """Seconds to wait at a barrier: :data:`TIMEOUT_VARIABLE`, else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(
            f"{TIMEOUT_VARIABLE}={text!r} is not a positive number of seconds.",
            f"Set it to e.g. 7200, or unset it for {DEFAULT_TIMEOUT:.0f} seconds.",
        )
    return seconds


def current() -> Ranks | None:
    """The ranks of the initialised process group, or ``None`` (one process, or none yet)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    world = torch.distributed.get_world_size()
    if world == 1:
        return None
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return Ranks(torch.distributed.get_rank(), world, local)


def start() -> Ranks | None:
    """Join the process group ``torchrun`` describes, if any; ``None`` for one process.

    gloo on the CPU, nccl on GPUs (each rank bound to ``cuda:LOCAL_RANK``); every collective
    times out after :func:`timeout` seconds. A group someone else initialised is used as
    it is.
    """
    ranks = current()
    if ranks is not None:
        return ranks
    ranks = from_environment()
    if ranks is None:
        return None
    seconds = timeout()
    if not torch.distributed.is_available():
        raise InterpretShiftError(
            "This build of torch has no torch.distributed, which several processes need.",
            "Install a torch build with distributed support, or run one process.",
        )
    if ranks.device.type == "cuda":
        torch.cuda.set_device(ranks.device)
    try:
        torch.distributed.init_process_group(
            ranks.backend,
            rank=ranks.rank,
            world_size=ranks.world,
            timeout=timedelta(seconds=seconds),
        )
    except (RuntimeError, ValueError) as error:  # no rendezvous: MASTER_ADDR, a dead peer
        raise InterpretShiftError(
            f"Rank {ranks.rank} of {ranks.world} could not join the process group "
            f"({str(error).splitlines()[0][:300]}).",
            "Start the processes with torchrun (it sets MASTER_ADDR and MASTER_PORT), and "
            "check that every node reaches the rendezvous address.",
        ) from error
    return ranks


def stop() -> None:
    """Leave the process group (if one is initialised)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def session() -> Iterator[Ranks | None]:
    """``start()`` for the block, ``stop()`` after it (also after an error)."""
    ranks = start()
    try:
        yield ranks
    finally:
        if ranks is not None:
            stop()


def barrier(ranks: Ranks, what: str = "the barrier") -> None:
    """Wait until every rank is here; give up after :func:`timeout` seconds with a clear error.

    On gloo a monitored barrier names the ranks that did not arrive.
    """
    seconds = timeout()
    try:
        if ranks.backend == "gloo":
            torch.distributed.monitored_barrier(
                timeout=timedelta(seconds=seconds), wait_all_ranks=True
            )
        else:
            torch.distributed.barrier(device_ids=[ranks.device.index])
    except RuntimeError as error:
        detail = str(error).splitlines()[0][:300]
        raise InterpretShiftError(
            f"Rank {ranks.rank} of {ranks.world} gave up waiting at {what} ({detail}).",
            "Another rank failed or stalled: see its error. Finished records are kept; "
            f"rerun (with any number of ranks) to resume. {TIMEOUT_VARIABLE} sets the wait "
            "in seconds.",
        ) from error


def shard_keys(keys: Sequence[Key], rank: int, world: int) -> list[Key]:
    """The keys rank ``rank`` of ``world`` computes: every ``world``-th, from position ``rank``.

    Disjoint, together complete, and fixed by the list's order alone (not by what exists).
    """
    if not (isinstance(world, int) and world >= 1 and isinstance(rank, int)
            and 0 <= rank < world):  # fmt: skip
        raise InputError(
            f"The share ({rank}, {world}) is not a rank and a number of ranks.",
            "Pass shard=(rank, world) with 0 <= rank < world.",
        )
    return list(keys[rank::world])
