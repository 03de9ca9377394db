"""Golden reports for fixed configurations. Regenerate after a deliberate model change:
    WAFERLINE_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_wafer_golden.py
"""

import json
import os
from pathlib import Path

import msgspec
import pytest

from runtime.wafer import cli

GOLDEN = Path(__file__).parent / "golden" / "wafer"
CONFIGS = {
    "smollm2-135m_wse3_auto": dict(arch="smollm2-135m", hardware="wse3"),
    "llama3-8b_wse2_420_ktree": dict(arch="llama3-8b", hardware="wse2", grid="420x420", collective="ktree", context=4096, prompt_len=4096),
    "llama3.1-70b_wse3_pipeline_int8": dict(arch="llama3.1-70b", hardware="wse3", collective="pipeline", dtype="int8", context=8192),
    "llama3.1-70b_wse3_spec_llama3.2-1b": dict(arch="llama3.1-70b", hardware="wse3", collective="pipeline", context=8192,
                                               draft="llama3.2-1b", draft_tokens=2, acceptance=0.8),
    "llama3-8b_wse2_420_ktree_per_layer": dict(arch="llama3-8b", hardware="wse2", grid="420x420", collective="ktree",
                                               context=4096, prompt_len=4096, method="per-layer"),
    "gemv_16384_wse2_720": dict(gemv="16384x16384", hardware="wse2", grid="720x720", collective="ktree"),
}


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys differ: {sorted(set(a) ^ set(b))}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15), path
    else:
        assert a == b, path


def _trim(data: dict) -> dict:
    """Keep goldens small: every total, the first two layers, the head, the first and last regions, two systems."""
    if "subgraphs" in data:
        data["n_subgraphs"], data["n_regions"] = len(data["subgraphs"]), len(data["regions"])
        data["subgraphs"] = data["subgraphs"][:5] + data["subgraphs"][-1:]
        data["regions"] = data["regions"][:3] + data["regions"][-1:]
        data["n_systems"] = len(data["per_system"])
        data["per_system"] = [dict(s, regions=s["regions"][:2] + s["regions"][-1:]) for s in data["per_system"][:2]]
    return data


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_report(name):
    data = _trim(json.loads(msgspec.json.encode(cli.run_case(CONFIGS[name]))))
    path = GOLDEN / f"{name}.json"
    if os.environ.get("WAFERLINE_REGEN_GOLDEN") == "1" or not path.exists():
        if not os.environ.get("WAFERLINE_REGEN_GOLDEN") and not path.exists():
            pytest.fail(f"missing golden {path.name}: run with WAFERLINE_REGEN_GOLDEN=1")
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    _close(data, json.loads(path.read_text()))
