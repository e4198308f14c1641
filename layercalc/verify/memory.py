"""verify's memory budget: what one check will hold at its peak, estimated before allocating anything.

Checks run one at a time and each builds (and drops) its own arrays, so a run's peak is its
largest single check, not their sum: the whole-network check or the largest layer.
"""

from __future__ import annotations

import ctypes
import os

from ..analysis import Entry, Execution, entry_table, fold
from ..layers import numel
from .differences import DENSE_MAX, SPAN

# bytes per parameter held at a check's peak: the float64 array and its gradient (float32 runs: the
# array, its gradient and the float64 twin the numeric side runs on), 2 for the temporaries of a
# matrix product (vgg16's classifier measured 17.8); a tensor above DENSE_MAX elements adds its
# direction's bits; a smaller tensor's direction is formed from the run's noise pool as it is used
# (the plan counts the pool once for the whole run: noise_elements). Per activation element: the forward caches
# (about three arrays of the output's size: input, output, one intermediate), upstream and input
# gradients
BYTES_PER_PARAM = 18
BYTES_PER_NOISE = 8  # per element of the noise pool (float64)
DEFAULT_CAP = 2 * 2**30  # the default budget: half of the memory available, at most this
BYTES_PER_ACTIVATION = 8 * 5


BYTES_PER_WORK = 8  # per element of a layer's own intermediates (Layer.work_elements), float64


def _layers(entry: Entry) -> list[Execution]:
    """The rows of the entry's run table that a check builds as layers: those without children."""
    return [row for row in entry_table(entry) if not row.entry.children and row.entry.layer is not None]


def work_elements(entry: Entry) -> int:
    """Elements of every layer's own intermediates in this subtree (attention's T×T matrices, a
    recurrent layer's gates at every step), each layer counted as often as a check runs it: every
    parameter set once per run (as if every expert of a mixture ran on every token: an upper bound,
    a check runs each on the tokens routed to it)."""
    return fold(_layers(entry), lambda row: row.entry.layer.work_elements(tuple(row.input_shape)), held=True)


def _param_sizes(row: Execution) -> list[int]:
    """Elements of each parameter tensor of a row's layer, tied ones too."""
    return list(map(numel, row.entry.layer.param_shapes(tuple(row.input_shape)).values()))


def largest_tensors(entry: Entry) -> tuple[int, int]:
    """Elements of the subtree's largest parameter tensor and of its largest input or output."""
    params = max((n for row in _layers(entry) for n in _param_sizes(row)), default=0)
    activations = max(max(numel(row.input_shape), numel(row.output_shape)) for row in entry_table(entry))
    return params, activations


def noise_elements(network: Entry) -> int:
    """Elements of the noise pool a run over this network holds: twice its largest tensor (a
    batch-1 activation counted twice over, for the batch-2 copies), at most twice DENSE_MAX."""
    params, activations = largest_tensors(network)
    if network.input_shape and network.input_shape[0] == 1:
        activations *= 2
    return 2 * min(DENSE_MAX, max(params, activations))


def noise_bytes(network: Entry) -> int:
    """Bytes a run over this network holds for its noise: the pool, and the buffer where
    directions are formed (a span of SPAN elements at most)."""
    n = noise_elements(network)
    return BYTES_PER_NOISE * (n + min(SPAN, n // 2))


def activation_memory(entry: Entry) -> int:
    """Bytes of a check's arrays that scale with the batch: activations and the layers' own intermediates."""
    # every expert's outputs at every token (held times over, not top_k): an upper bound. An expert
    # runs on the tokens routed to it (top_k per token in all), its inputs gathered copies, and only
    # its output is put back at every token, for the router's weighted sum
    unrouted = sum((row.held - row.copies) * row.entry.tensors for row in _layers(entry))
    activations = numel(entry.input_shape) + entry.tensors + unrouted
    return activations * BYTES_PER_ACTIVATION + work_elements(entry) * BYTES_PER_WORK


def held_params(entry: Entry) -> int:
    """Parameters a check of this entry holds as arrays: tied ones too (a check gives a tied
    weight its own array; the count of parameters has it once, at its owner)."""
    return fold(_layers(entry), lambda row: sum(_param_sizes(row)), held=True)


def check_memory(entry: Entry, batch_scale: float = 1.0) -> int:
    """Bytes one check of this entry (a layer, a block or the network) holds at its peak, estimated:
    its parameters, its activations and its layers' own intermediates (the run's noise pool apart)."""
    return int(held_params(entry) * BYTES_PER_PARAM + activation_memory(entry) * batch_scale)


def largest_leaf_activations(entry: Entry) -> int:
    """activation_memory of the subtree's largest leaf: what checking one layer again inside a pass
    over the subtree adds (its forward on a moved input, beside the caches the pass holds)."""
    return max((activation_memory(row.entry) for row in entry_table(entry) if not row.entry.children), default=0)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), or 4 GiB where that cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def budget(given: int | None) -> int:
    """The memory budget in bytes: the one given, else half of the memory available now, at most
    2 GiB (a verify run keeps to a modest share of a laptop; --max-memory raises it)."""
    return given if given is not None else min(available_memory() // 2, DEFAULT_CAP)


def mb(n: int) -> str:
    """Bytes in the product's one unit system, decimal (1 MB = 10^6 bytes): '2.15 GB', '300 MB'."""
    from ..render.formats import human_bytes

    return human_bytes(n)


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc's malloc_trim): arrays under the allocator's
    mmap threshold otherwise stay in the process after a check, and add to the next one's peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
