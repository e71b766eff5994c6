"""Memory budgets: sizes written like ``1GiB`` and the memory a device has free.

A budget bounds the working memory of one model's computation (activations, gradients,
chunks), not the weights: explainers size their chunks from it, and a device map placed
by accelerate takes it as the per-device ``max_memory``.
"""

from __future__ import annotations

import os
import re

import torch

from interpret_shift.errors import InputError

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
#: Without a budget, explainers may use this share of the memory their device has free.
FREE_SHARE = 0.5


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: an integer, or a number with a unit (``512MB``, ``1.5GiB``)."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else ""
        if not match or unit not in UNITS:
            raise InputError(
                f"{text!r} is not a memory size.",
                "Write a number of bytes or a number with a unit, e.g. 512MiB, 2GiB or 8GB.",
            )
        size = int(float(match.group(1)) * UNITS[unit])
    if size <= 0:
        raise InputError(f"The memory size {text!r} is not positive.", "Give a size above 0.")
    return size


def free_memory(device: torch.device | str) -> int:
    """Bytes free on ``device`` now: the accelerator's own count, else the host's."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return _host_available()


def budget(device: torch.device | str, given: int | None = None) -> int:
    """The budget to work within: ``given``, else :data:`FREE_SHARE` of the free memory."""
    return given if given is not None else int(FREE_SHARE * free_memory(device))


def _host_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
