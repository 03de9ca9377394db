"""Weight precision as the PE runs it: which MAC lanes a dtype uses, the bytes a MAC reads, and what dequantising costs.

Weights are stored packed at their width (WEIGHT_BYTES, workload.py) and read at that width. How they reach a MAC:
    bf16            the 16-bit fmac: `macs_per_cycle_16bit` lanes, weight 2 B + accumulator 2 B read per MAC
    int8 / fp8      with native 8-bit MACs (`macs_per_cycle_8bit` > 0): the 8-bit fmac reads the packed byte
                    directly (1 B + 2 B accumulator per MAC). int8's per-block scales (one per QUANT_BLOCK rows of K,
                    per output) are folded in once per block: the block's partial sums are scaled and added to the
                    output (one 16-bit fmac over the outputs per block and token); fp8 has one scale per output
                    channel, folded once per GEMV. Without native 8-bit MACs: widened like int4 (below) to 16 bit.
    int4            with native 4-bit MACs (`macs_per_cycle_4bit` > 0) as int8 with native 8-bit, at half the bytes.
                    Neither preset has them (none is published), so each block of QUANT_BLOCK weight rows is widened
                    (unpack + scale: one vector instruction over the block, one element per lane per cycle) into a
                    scratch row block at the MAC width -- 8 bit with native 8-bit MACs (then scales fold as int8's),
                    else 16 bit with the scale applied in the same pass -- and the fmac reads the scratch. So on the
                    presets int4 saves SRAM (fewer wafers, smaller grids) but costs a pass per PE at equal PEs.
Widening is per weight, not per token: a chunk of T tokens reuses each widened block for all T (a T-token stream
chunk amortises it; decode, T = 1, pays it in full). Scale folding is per token (it acts on partial sums).
"""

from __future__ import annotations

from .workload import ACT_BYTES, QUANT_BLOCK, WEIGHT_BYTES

BLOCK_SCALED = ("int8", "int4")  # one bf16 scale per QUANT_BLOCK weights along K (as MatMulNBits)
CHANNEL_SCALED = ("fp8",)  # one scale per output channel (per-channel fp8, as common fp8 checkpoints ship)


def native(hw, dtype: str) -> bool:
    """The PE multiplies `dtype` weights as stored (bf16 always; int8/fp8, int4 if the hardware has those MACs)."""
    if dtype in ("int8", "fp8"):
        return hw.macs_per_cycle_8bit > 0
    if dtype == "int4":
        return hw.macs_per_cycle_4bit > 0
    return True


def widens(hw, dtype: str) -> bool:
    """Weights that pass through a widening scratch before the fmac."""
    return not native(hw, dtype)


def mac_lanes(hw, dtype: str) -> int:
    """MACs per cycle the fmac of a `dtype` weight row runs at (after any widening)."""
    if dtype == "int4" and native(hw, "int4"):
        return hw.macs_per_cycle_4bit
    if dtype != "bf16" and hw.macs_per_cycle_8bit > 0:
        return hw.macs_per_cycle_8bit
    return hw.macs_per_cycle_16bit


def operand_bytes(hw, dtype: str) -> float:
    """Bytes of weight one MAC reads from SRAM: the packed width, or the scratch's width after widening."""
    if native(hw, dtype):
        return WEIGHT_BYTES[dtype]
    return 1.0 if hw.macs_per_cycle_8bit > 0 else float(ACT_BYTES)


def folds_scales(hw, dtype: str) -> bool:
    """Scales applied to partial sums (a native low-bit or widened-to-8-bit path) rather than in the widening pass."""
    return dtype != "bf16" and (native(hw, dtype) or hw.macs_per_cycle_8bit > 0)


def scale_blocks(dtype: str, rows: int) -> int:
    """Scale groups among `rows` weight rows of K: one per QUANT_BLOCK (int8/int4), one in all (fp8), none (bf16)."""
    if dtype in BLOCK_SCALED:
        return -(-rows // QUANT_BLOCK)
    return 1 if dtype in CHANNEL_SCALED else 0
