"""Concurrent users on one placement (`simulate --users U`): per-user speed against throughput.

Each user holds its own KV cache (Workload.for_users sizes the placement for U of them); their tokens pipeline
through the regions in flow order.
"""

from __future__ import annotations

from .cost import Cost
from .hardware import WaferSpec
from .placement import Placement, kv_bytes_per_pe
from .report import Users
from .workload import Workload


def concurrent_users(p: Placement, w: Workload, hw: WaferSpec, users: int, context: int, dec: Cost, dec_sg: dict) -> Users:
    """U users decoding at once, their tokens pipelined through the regions (each region serves one user's token at a
    time, in flow order): a user's next token waits for its own pass (one token's latency T) and for every region to
    have served the others, so each user gets 1 / max(T, U x t_busiest) tokens per second. The pipeline holds
    T / t_busiest users before they slow each other; SRAM holds the KV caches of as many users as the fullest attention
    region has room for (this placement, its working buffers kept)."""
    t_token = dec.total / hw.clock_hz
    busy = {r.name: sum(dec_sg[s].total for s in r.subgraphs) / hw.clock_hz for r in p.regions}
    busiest = max(busy, key=busy.get)
    interval = max(t_token, users * busy[busiest])
    by_name = {s.name: s for s in w.subgraphs}
    room = [users + (hw.tensor_bytes_per_pe - r.sram_bytes_per_pe)
            // kv_bytes_per_pe(by_name[name], r.height, r.width // r.tiles, context)
            for r in p.regions for name in r.subgraphs if by_name[name].kind == "attn"]
    return Users(
        users=users, per_user_tokens_per_s=1.0 / interval, throughput_tokens_per_s=users / interval,
        single_user_tokens_per_s=1.0 / t_token, pipeline_users=max(1, int(t_token / busy[busiest])),
        busiest_region=busiest, kv_users_max=int(min(room)) if room else users,
    )
