"""The static activation arena: tensor lifetimes over the execution order, then offsets.

The profiler's peak SRAM *is* this plan's arena, and the firmware allocates exactly this arena,
so the two agree by construction. The rules, applied to an `OpGraph`:

1. Lifetime. A tensor is live from the op that writes it to the last op that reads it. The input
   image is live from step 0; the logits until the last op.
2. Co-residence. An op's inputs, output and scratch are all live while it runs; a residual input
   therefore stays live across the whole block until its add.
3. In place. When an op may overwrite an input (`Op.overwrites`: residual add, SE scale,
   stride-1 depthwise) and is that input's last reader, the output takes over the input's buffer.
   Otherwise the output gets a new buffer.
4. Scratch. An op's `scratch` (its kernel's working memory) is a buffer live for that step only.
5. Placement. Buffers are placed largest first (ties: earlier first use), each at the lowest
   offset clear of every placed buffer whose lifetime overlaps, as TFLM's greedy planner does,
   rounded up to a multiple of 4 so that kernels may load words. The arena is the highest end
   offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyarch.tools.opgraph import OpGraph

ALIGN = 4
"""Every buffer starts at a multiple of this many bytes (word loads in the kernels)."""


@dataclass(slots=True)
class MemoryPlan:
    """Byte offsets of every tensor (and kernel scratch) in one arena of `arena` bytes."""

    tensor_offsets: list[int]
    tensor_buffer: list[int]
    buffer_sizes: list[int]
    buffer_first: list[int]
    buffer_last: list[int]
    buffer_offsets: list[int]
    scratch_buffer: dict[int, int]
    inplace_ops: set[int]
    live_bytes: list[int]
    arena: int

    @property
    def peak_live(self) -> int:
        """Largest sum of simultaneously live bytes: a lower bound that no placement can beat."""
        return max(self.live_bytes)


def plan_memory(graph: OpGraph) -> MemoryPlan:
    ops, sizes = graph.ops, graph.sizes
    steps = len(ops)
    last_read = [0] * len(sizes)
    for i, op in enumerate(ops):
        for t in op.inputs:
            last_read[t] = i
    last_read[ops[-1].output] = steps - 1

    size, first, last = [sizes[0]], [0], [last_read[0]]
    tensor_buffer = [0] * len(sizes)
    scratch_buffer: dict[int, int] = {}
    inplace: set[int] = set()

    def new_buffer(nbytes: int, start: int, end: int) -> int:
        size.append(nbytes)
        first.append(start)
        last.append(end)
        return len(size) - 1

    for i, op in enumerate(ops):
        out, victim = op.output, op.overwrites
        if victim is not None and last_read[victim] == i and sizes[victim] == sizes[out]:
            b = tensor_buffer[victim]
            tensor_buffer[out] = b
            last[b] = last_read[out]
            inplace.add(i)
        else:
            tensor_buffer[out] = new_buffer(sizes[out], i, last_read[out])
        if op.scratch:
            scratch_buffer[i] = new_buffer(op.scratch, i, i)

    n = len(size)
    conflicts: list[list[int]] = [[] for _ in range(n)]
    active: list[int] = []
    for b in sorted(range(n), key=first.__getitem__):
        active = [a for a in active if last[a] >= first[b]]
        for a in active:
            conflicts[a].append(b)
            conflicts[b].append(a)
        active.append(b)

    offsets = [-1] * n
    for b in sorted(range(n), key=lambda b: (-size[b], first[b])):
        at = 0
        for lo, hi in sorted((offsets[a], offsets[a] + size[a]) for a in conflicts[b] if offsets[a] >= 0):
            if at + size[b] <= lo:
                break
            at = max(at, ALIGN * -(-hi // ALIGN))
        offsets[b] = at

    delta = [0] * (steps + 1)
    for b in range(n):
        delta[first[b]] += size[b]
        delta[last[b] + 1] -= size[b]
    live, running = [], 0
    for d in delta[:steps]:
        running += d
        live.append(running)

    return MemoryPlan(
        tensor_offsets=[offsets[b] for b in tensor_buffer],
        tensor_buffer=tensor_buffer,
        buffer_sizes=size,
        buffer_first=first,
        buffer_last=last,
        buffer_offsets=offsets,
        scratch_buffer=scratch_buffer,
        inplace_ops=inplace,
        live_bytes=live,
        arena=max(o + s for o, s in zip(offsets, size, strict=True)),
    )
