"""The shape of a decoder, shared by the graph builder, the converter, bundles and the wafer simulator.

Its own module (msgspec only) so that reading a bundle's metadata never imports the graph builder.
"""

from __future__ import annotations

import msgspec


class ArchSpec(msgspec.Struct, kw_only=True):
    """The shape of a decoder: enough to build its graph with or without weights."""

    name: str
    architecture: str = "llama"
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int = 0  # 0: d_model // n_heads
    d_ff: int
    vocab_size: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    qkv_bias: bool = False
    tied_embeddings: bool = False
    context_length: int = 8192

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            self.head_dim = self.d_model // self.n_heads
