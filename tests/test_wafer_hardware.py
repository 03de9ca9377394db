"""WaferSpec presets, overrides and one-line validation errors."""

import pytest

from runtime.wafer.errors import WaferError
from runtime.wafer.hardware import HARDWARE_PRESETS, PRESET_DIR, load_hardware


@pytest.mark.parametrize("name", HARDWARE_PRESETS)
def test_presets_load_and_every_value_names_its_source(name):
    spec = load_hardware(name)
    assert spec.name == name and spec.pes_per_wafer > 700_000
    for line in (PRESET_DIR / f"{name}.toml").read_text().splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith("name"):
            assert "#" in line, f"{name}.toml: value without a source comment: {line}"


def test_wse3_differs_where_the_vendor_says():
    w2, w3 = load_hardware("wse2"), load_hardware("wse3")
    assert w3.macs_per_cycle_16bit > w2.macs_per_cycle_16bit  # "boosts the SIMD width"
    assert w3.pes_per_wafer > w2.pes_per_wafer
    assert w2.relay_cycles == 2 * w2.ramp_latency_cycles + w2.relay_alu_cycles


def test_user_toml_overrides_any_field(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "wse2"\nclock_hz = 850e6\nhop_latency_cycles = 2.0\n')
    spec = load_hardware(str(f))
    assert spec.clock_hz == 850e6 and spec.hop_latency_cycles == 2.0
    assert spec.mesh_width_pes == load_hardware("wse2").mesh_width_pes
    assert load_hardware("wse3", clock_hz=1.0e9).clock_hz == 1.0e9


@pytest.mark.parametrize(
    "body, needle",
    [
        ("mesh_width_pes = 0", "mesh_width_pes must be > 0"),
        ("hop_latency_cycles = -1.0", "must not be negative"),
        ("sram_bytes_per_pe = 4100", "smaller than one weight block"),
        ("clock_hz = 0.0", "clock_hz must be > 0"),
        ("warp_drive = 1", "unknown field 'warp_drive'"),
        ('base = "wse9"', "unknown hardware preset 'wse9'"),
        ("mesh_width_pes = [", "not valid TOML"),
    ],
)
def test_nonsense_values_give_one_line_errors(tmp_path, body, needle):
    f = tmp_path / "bad.toml"
    f.write_text(body + "\n")
    with pytest.raises(WaferError) as e:
        load_hardware(str(f))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_names_and_missing_files():
    with pytest.raises(WaferError, match="unknown hardware 'cs9'"):
        load_hardware("cs9")
    with pytest.raises(WaferError, match="not found"):
        load_hardware("/nonexistent/hw.toml")


def test_the_topology_of_the_links_sets_the_way_back_to_the_first_system():
    import msgspec

    from runtime.wafer.sim import SimOptions, simulate
    from runtime.wafer.workload import load_arch, workload_for_arch

    w = workload_for_arch(load_arch("llama3.1-70b"))
    hw = load_hardware("wse3")
    run = lambda **kw: simulate(w, msgspec.structs.replace(hw, **kw), SimOptions(context=4096, wafers=5))  # noqa: E731
    switched, ring, chain = run(), run(wafer_topology="ring"), run(wafer_topology="chain")
    assert switched.wafers_used == 5
    assert ring.per_token_latency_s == pytest.approx(switched.per_token_latency_s)  # last and first are neighbours
    # a chain sends the next token's id back over 4 links and through the 3 wafers between
    extra = 3 * (hw.wafer_link_latency_s + 4 / hw.wafer_link_bytes_per_s) + 3 * (hw.mesh_width_pes + 8) / hw.clock_hz
    assert chain.per_token_latency_s - switched.per_token_latency_s == pytest.approx(extra, rel=0.01)
    slow = run(wafer_switch_latency_s=2e-6)  # every crossing pays the switch: 4 forward + 1 back
    assert slow.per_token_latency_s - switched.per_token_latency_s == pytest.approx(5 * 2e-6, rel=0.01)
    with pytest.raises(WaferError, match="wafer_topology"):
        from runtime.wafer.hardware import spec_from_dict, load_preset_dict
        spec_from_dict({**load_preset_dict("wse3"), "wafer_topology": "mesh"}, "x")
