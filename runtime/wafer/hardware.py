"""Hardware: a WaferSpec (msgspec) loaded from a TOML preset shipped in `presets/`, any field overridable by a user TOML.

Every value in the presets carries a comment naming its source (public figures, the project's wafer hardware notes (shared/wafer/HARDWARE.md));
the four kernel constants marked "fitted" were fitted to the three WaferLLM calibration points only
(see bench/wafer_validation.py).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import msgspec

from runtime.checks import read_text_file

from .errors import WaferError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "presets"
HARDWARE_PRESETS = ("wse2", "wse3", "cs3")
WEIGHT_BLOCK_BYTES = 64  # one quantization block: 32 weights x 16 bit; a PE must hold at least one
HARDWARE_FILE_LIMIT = 1 << 20  # bytes; a hardware TOML is a few dozen lines
MAX_MESH_SIDE = 1 << 16  # PEs per side (WSE-3: 762 x 1172); the planner scans grid sides one by one
MAX_VALUE = 1e18  # any count, size or rate: past this it is a typo (and inf/NaN make every time 0 or NaN)


TOPOLOGIES = ("switched", "ring", "chain")


class WaferSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One wafer-scale engine (and how several are linked). Units are in the names."""

    name: str
    # -- the mesh
    mesh_width_pes: int  # usable PE columns (x)
    mesh_height_pes: int  # usable PE rows (y)
    sram_bytes_per_pe: int
    sram_reserved_bytes_per_pe: int  # program text, stack, fabric queues: not available to tensors
    clock_hz: float
    macs_per_cycle_16bit: int  # 16-bit FMACs per PE per cycle (SIMD width)
    macs_per_cycle_8bit: int = 0  # native 8-bit-weight (int8/fp8) FMACs per PE per cycle; 0 = none (widened to 16 bit)
    macs_per_cycle_4bit: int = 0  # native 4-bit-weight (int4) FMACs per PE per cycle; 0 = none (widened first)
    sram_read_bytes_per_cycle: int  # per PE
    # -- the fabric
    hop_latency_cycles: float  # alpha: one hardware-forwarded router hop
    ramp_latency_cycles: float  # T_R: router <-> core
    link_bytes_per_cycle: int  # one wavelet per cycle per direction
    routable_colors: int  # virtual channels a program may route
    # -- beyond one wafer
    wafer_link_bytes_per_s: float
    wafer_link_latency_s: float
    # how systems are linked: "switched" (every pair one link, through a switch of wafer_switch_latency_s), "ring"
    # (neighbours linked, the last to the first: the shorter way round), "chain" (neighbours only: a token id going
    # back from the last system to the first crosses every link and every wafer between)
    wafer_topology: str = "switched"
    wafer_switch_latency_s: float = 0.0
    host_io_bytes_per_s: float
    host_io_latency_s: float
    # -- the PE software (kernel) constants
    vector_op_issue_cycles: float  # one standalone DSD vector instruction: DSR loads, address setup, call/return
    loop_step_cycles: float  # one step of a GEMV loop / one row of MeshGEMM's: descriptor setup + fmac start
    map_step_cycles: float  # one element of a @map (MeshGEMM: one fmac per weight of a row): its call and fmac start
    collective_setup_cycles: float  # per collective phase or mesh shift: fabric queue/DSD setup
    relay_alu_cycles: float  # the add inside a software relay (Luczynski's "+1" in (2 T_R + 1))
    gemm_shift_hops: int  # MeshGEMM's interleaved cyclic shift: every transfer spans at most this many hops

    @property
    def pes_per_wafer(self) -> int:
        return self.mesh_width_pes * self.mesh_height_pes

    @property
    def tensor_bytes_per_pe(self) -> int:
        return self.sram_bytes_per_pe - self.sram_reserved_bytes_per_pe

    def links_between(self, a: int, b: int, wafers: int) -> int:
        """System-to-system links a message from wafer a to wafer b crosses (the topology above)."""
        d = abs(a - b)
        if d == 0:
            return 0
        if self.wafer_topology == "switched":
            return 1
        return min(d, wafers - d) if self.wafer_topology == "ring" else d

    @property
    def relay_cycles(self) -> float:
        """beta: one software relay = ramp down + add + ramp up (Luczynski et al. HPDC'24: 2 T_R + 1)."""
        return 2 * self.ramp_latency_cycles + self.relay_alu_cycles


def _validate(spec: WaferSpec, origin: str) -> WaferSpec:
    def bad(msg: str) -> WaferError:
        return WaferError(f"hardware {origin}: {msg}")

    if spec.wafer_topology not in TOPOLOGIES:
        raise bad(f"wafer_topology must be one of {', '.join(TOPOLOGIES)} (got {spec.wafer_topology!r:.40})")
    for field in WaferSpec.__struct_fields__:
        value = getattr(spec, field)
        if isinstance(value, (int, float)) and not (math.isfinite(value) and abs(value) <= MAX_VALUE):
            raise bad(f"{field} must be finite and within ±{MAX_VALUE:g} (got {value})")
    for field in ("mesh_width_pes", "mesh_height_pes"):
        if getattr(spec, field) > MAX_MESH_SIDE:
            raise bad(f"{field} must be at most {MAX_MESH_SIDE} (got {getattr(spec, field)})")
    for field in ("mesh_width_pes", "mesh_height_pes", "macs_per_cycle_16bit", "sram_read_bytes_per_cycle",
                  "link_bytes_per_cycle", "routable_colors", "gemm_shift_hops"):
        if getattr(spec, field) <= 0:
            raise bad(f"{field} must be > 0 (got {getattr(spec, field)})")
    for field in ("clock_hz", "wafer_link_bytes_per_s", "host_io_bytes_per_s"):
        if not getattr(spec, field) > 0:
            raise bad(f"{field} must be > 0 (got {getattr(spec, field)})")
    for field in ("macs_per_cycle_8bit", "macs_per_cycle_4bit", "hop_latency_cycles", "ramp_latency_cycles", "wafer_link_latency_s", "wafer_switch_latency_s", "host_io_latency_s",
                  "vector_op_issue_cycles", "loop_step_cycles", "map_step_cycles", "collective_setup_cycles", "relay_alu_cycles",
                  "sram_reserved_bytes_per_pe"):
        if getattr(spec, field) < 0:
            raise bad(f"{field} must not be negative (got {getattr(spec, field)})")
    if spec.tensor_bytes_per_pe < WEIGHT_BLOCK_BYTES:
        raise bad(
            f"sram_bytes_per_pe {spec.sram_bytes_per_pe} minus reserved {spec.sram_reserved_bytes_per_pe} "
            f"is smaller than one weight block ({WEIGHT_BLOCK_BYTES} bytes)"
        )
    return spec


def _read_toml(path: Path) -> dict:
    """A hardware TOML: a small regular UTF-8 file (not /dev/zero, a directory or a FIFO), parsed."""
    text = read_text_file(path, "hardware file", HARDWARE_FILE_LIMIT, WaferError)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise WaferError(f"hardware file {path} is not valid TOML: {e}") from None
    except RecursionError:
        raise WaferError(f"hardware file {path} is not valid TOML: nested too deeply") from None


def spec_from_dict(data: dict, origin: str) -> WaferSpec:
    known = set(WaferSpec.__struct_fields__)
    unknown = sorted(set(data) - known - {"base"})
    if unknown:
        raise WaferError(f"hardware {origin}: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
    data = {k: v for k, v in data.items() if k != "base"}
    try:
        spec = msgspec.convert(data, WaferSpec, strict=False)
    except msgspec.ValidationError as e:
        raise WaferError(f"hardware {origin}: {e}") from None
    return _validate(spec, origin)


def load_preset_dict(name: str) -> dict:
    """A preset's fields; a preset with `base` is that preset with its own fields over it (cs3 = wse3 + the vendor fit)."""
    if name not in HARDWARE_PRESETS:
        raise WaferError(f"unknown hardware preset '{name}' (known: {', '.join(HARDWARE_PRESETS)}, or a .toml file)")
    data = _read_toml(PRESET_DIR / f"{name}.toml")
    base = data.pop("base", None)
    return {**load_preset_dict(base), **data} if base and base != name else data


def load_hardware(name_or_path: str = "wse3", clock_hz: float | None = None) -> WaferSpec:
    """A preset name ("wse2", "wse3", "cs3") or a user TOML: `base = "wse3"` (default) plus any fields to override."""
    if name_or_path in HARDWARE_PRESETS:
        data, origin = load_preset_dict(name_or_path), name_or_path
    else:
        path = Path(name_or_path)
        if path.suffix != ".toml" and not path.exists():
            raise WaferError(
                f"unknown hardware '{name_or_path}' (known: {', '.join(HARDWARE_PRESETS)}, or a .toml file)"
            )
        user = _read_toml(path)
        data = load_preset_dict(str(user.get("base", "wse3")))
        data.update(user)
        data.setdefault("name", path.stem)
        origin = str(path.name)
    if clock_hz is not None:
        data["clock_hz"] = clock_hz
    return spec_from_dict(data, origin)
