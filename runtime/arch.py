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
    # Mixture of experts (simulated on the wafer, not served): a MoE layer's MLP is a router over `n_experts` SwiGLU
    # experts of width `d_ff_expert`, `experts_per_token` of them run per token, plus `n_shared_experts` that always
    # run; every `moe_layer_step`-th layer is MoE (Llama 4 Maverick: 2), the others keep a dense MLP of `d_ff`.
    n_experts: int = 0  # 0: dense
    experts_per_token: int = 0
    d_ff_expert: int = 0  # 0: d_ff
    n_shared_experts: int = 0
    moe_layer_step: int = 1

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            self.head_dim = self.d_model // self.n_heads
        if self.n_experts and self.d_ff_expert == 0:
            self.d_ff_expert = self.d_ff

    def is_moe_layer(self, i: int) -> bool:
        """Whether layer i's MLP is a mixture of experts (HF Llama 4: interleave_moe_layer_step)."""
        return self.n_experts > 0 and (i + 1) % max(1, self.moe_layer_step) == 0
