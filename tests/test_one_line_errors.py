"""Every bad input to the real `waferline` CLI gives ONE line `waferline: error: ...` and exit 2: no traceback, no
crash, no exhausted memory. Each child runs under a 2 GiB address-space cap, so a regression that allocates by a
bad value fails here instead of swapping."""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import gguf
import onnx
import pytest
from gguf import GGUFValueType as VT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
MEM_CAP = 2 << 30


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEM_CAP, MEM_CAP))


def run_cli(*args: str | bytes | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    argv = [a if isinstance(a, bytes) else str(a) for a in args]  # bytes: argv that is not UTF-8
    return subprocess.run([sys.executable, "-m", "lsp_server.cli", *argv], cwd=ROOT, capture_output=True, timeout=timeout,
                          preexec_fn=_cap_memory, stdin=subprocess.DEVNULL)


def error_lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [line for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.startswith("waferline: error:")]


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], needle: str = "") -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, f"exit {proc.returncode}: {err[-1500:]}"
    assert "Traceback" not in err, err[-1500:]
    assert err.strip().splitlines() == error_lines(proc), err[-1500:]  # that one line and nothing else
    assert len(error_lines(proc)) == 1
    assert needle in err, err
    return err.strip()


# ------------------------------------------------------------------------------------------------ inputs
def rewrite_gguf(src: Path, dst: Path, overrides: dict[str, tuple[object, VT]]) -> Path:
    """A copy of `src` with metadata values replaced (or added) with the given GGUF types, tensors unchanged."""
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
    todo = dict(overrides)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value, vtype = todo.pop(name, (field.contents(), field.types[0]))
        w.add_key_value(name, value, vtype, sub_type=field.types[1] if vtype == VT.ARRAY else None)
    for name, (value, vtype) in todo.items():
        w.add_key_value(name, value, vtype)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_dtype=gguf.GGMLQuantizationType(t.tensor_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.fixture(scope="module")
def files(tiny_gguf: Path, tiny_bundle: Path, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    f = {"dir": d / "adir", "binary": d / "bin.py", "latin1": d / "latin1.txt", "ok": d / "ok.py", "afile": d / "afile"}
    f["dir"].mkdir()
    f["binary"].write_bytes(bytes(range(256)) * 4)
    f["latin1"].write_bytes("café = 'naïve'\n".encode("latin-1"))
    f["ok"].write_text("def f(x):\n    return x\n")
    f["afile"].write_text("a file, not a directory")
    arch = {"n_layers": 2, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "d_ff": 128, "vocab_size": 100}
    for name, change in {"layers": {"n_layers": 10**6}, "heads0": {"n_heads": 0}, "wide": {"d_ff": 10**12}}.items():
        f[name] = d / f"{name}.json"
        f[name].write_text(str({**arch, **change}).replace("'", '"'))
    f["deep"] = d / "deep.json"
    f["deep"].write_text("[" * 200_000 + "]" * 200_000)
    f["hw_latin1"] = d / "hw.toml"
    f["hw_latin1"].write_bytes("clock_hz = 1e9  # 1 GHz à peu près\n".encode("latin-1"))
    f["hw_thin"] = d / "thin.toml"  # a 1 x 1000 PE mesh: the whole layer fits a wafer, no square grid or strip holds it
    f["hw_thin"].write_text("mesh_width_pes = 1000\nmesh_height_pes = 1\n")  # (4 x 1000 places, as 4-row strips)
    f["hw_small"] = d / "small.toml"  # 16 x 16 PEs: SRAM enough within 256 wafers, but the rectangles never place
    f["hw_small"].write_text("mesh_width_pes = 16\nmesh_height_pes = 16\n")
    f["hw_line"] = d / "line.toml"  # one PE row: a GEMV that fits the wafer in total fits no square grid
    f["hw_line"].write_text("mesh_width_pes = 65536\nmesh_height_pes = 1\n")
    graph = onnx.load(str(tiny_bundle / "model.onnx"), load_external_data=False)
    kept = [t for t in graph.graph.initializer if "norm" not in t.name]  # parses, but the gammas are gone
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    for name, blob in {"corrupt": b"\x00garbage" * 100, "damaged": graph.SerializeToString()}.items():
        f[name] = d / name
        f[name].mkdir()
        for part in ("bundle.json", "tokenizer.json"):
            shutil.copy(tiny_bundle / part, f[name] / part)
        (f[name] / "model.onnx").write_bytes(blob)
    ggufs = {
        "heads0": {"llama.attention.head_count": (0, VT.UINT32)},
        "kv3": {"llama.attention.head_count_kv": (3, VT.UINT32)},
        "ffn_huge": {"llama.feed_forward_length": (10**12, VT.UINT64)},
        "ffn_vs_file": {"llama.feed_forward_length": (4096, VT.UINT32)},  # in range, absurd for this file's tensors
        "embd_str": {"llama.embedding_length": ("sixty-four", VT.STRING)},
        "eos_out": {"tokenizer.ggml.eos_token_id": (10**6, VT.UINT32)},
    }
    for name, over in ggufs.items():
        f["gguf_" + name] = rewrite_gguf(tiny_gguf, d / f"{name}.gguf", over)
    return f


Argv = Callable[[dict[str, Path], Path], list]
GEN: Argv = lambda f, b: ["generate", "--model", b, "--max-tokens", "4"]  # noqa: E731
REMOTE: Argv = lambda f, b: GEN(f, b) + ["--prompt", "x", "--backend", "openai-raw", "--fim-template", "qwen2.5-coder"]  # noqa: E731
SIM: Argv = lambda f, b: ["simulate", "--arch", "smollm2-135m"]  # noqa: E731
CASES: list[tuple[str, Argv, str]] = [  # (id, argv from the files and the tiny bundle, text the line must name)
    ("threads", lambda f, b: GEN(f, b) + ["--prompt", "x", "--threads", "100000"], "--threads"),
    ("temperature-nan", lambda f, b: GEN(f, b) + ["--prompt", "x", "--temperature", "nan"], "--temperature"),
    ("temperature-inf", lambda f, b: GEN(f, b) + ["--prompt", "x", "--temperature", "inf"], "--temperature"),
    ("temperature-negative", lambda f, b: GEN(f, b) + ["--prompt", "x", "--temperature", "-1"], "--temperature"),
    ("top-p-0", lambda f, b: GEN(f, b) + ["--prompt", "x", "--top-p", "0"], "--top-p"),
    ("top-p-2", lambda f, b: GEN(f, b) + ["--prompt", "x", "--top-p", "2"], "--top-p"),
    ("seed-negative", lambda f, b: GEN(f, b) + ["--prompt", "x", "--seed", "-1", "--temperature", "0.5"], "--seed"),
    ("max-tokens-0", lambda f, b: ["generate", "--model", b, "--prompt", "x", "--max-tokens", "0"], "--max-tokens"),
    ("max-tokens-huge", lambda f, b: ["generate", "--model", b, "--prompt", "x", "--max-tokens", str(10**11)], "--max-tokens"),
    ("prompt-not-utf8", lambda f, b: GEN(f, b) + ["--prompt", b"def \xff\xfe"], "--prompt"),
    ("file-binary", lambda f, b: GEN(f, b) + ["--file", f["binary"]], "not UTF-8"),
    ("file-latin1", lambda f, b: GEN(f, b) + ["--file", f["latin1"]], "not UTF-8"),
    ("file-missing", lambda f, b: GEN(f, b) + ["--file", f["dir"] / "nope.txt"], "not found"),
    ("file-directory", lambda f, b: GEN(f, b) + ["--file", f["dir"]], "directory"),
    ("file-dev-zero", lambda f, b: GEN(f, b) + ["--file", "/dev/zero"], "not a regular file"),
    ("arch-million-layers", lambda f, b: ["simulate", "--arch-file", f["layers"]], "n_layers"),
    ("arch-ffn-1e12", lambda f, b: ["simulate", "--arch-file", f["wide"]], "d_ff"),
    ("arch-heads-0", lambda f, b: ["simulate", "--arch-file", f["heads0"]], "n_heads"),
    ("arch-deep-json", lambda f, b: ["simulate", "--arch-file", f["deep"]], "nested too deeply"),
    ("hardware-dev-zero", lambda f, b: SIM(f, b) + ["--hardware", "/dev/zero"], "not a regular file"),
    ("hardware-directory", lambda f, b: SIM(f, b) + ["--hardware", f["dir"]], "directory"),
    ("hardware-not-utf8", lambda f, b: SIM(f, b) + ["--hardware", f["hw_latin1"]], "not UTF-8"),
    ("clock-inf", lambda f, b: SIM(f, b) + ["--clock-hz", "inf"], "clock_hz"),
    ("plot-unwritable", lambda f, b: SIM(f, b) + ["--plot", f["afile"] / "w.png"], "--plot"),
    ("model-onnx-corrupt", lambda f, b: ["simulate", "--model", f["corrupt"]], "model.onnx"),
    ("model-onnx-damaged", lambda f, b: ["simulate", "--model", f["damaged"]], "damaged"),
    ("gguf-head-count-0", lambda f, b: ["model", "convert", f["gguf_heads0"], "--out", f["dir"] / "o"], "head_count"),
    ("gguf-kv-not-divisor", lambda f, b: ["model", "convert", f["gguf_kv3"], "--out", f["dir"] / "o"], "head_count_kv"),
    ("gguf-ffn-1e12", lambda f, b: ["model", "convert", f["gguf_ffn_huge"], "--out", f["dir"] / "o"], "feed_forward_length"),
    ("gguf-ffn-vs-file", lambda f, b: ["model", "convert", f["gguf_ffn_vs_file"], "--out", f["dir"] / "o"], "ffn_gate"),
    ("gguf-dim-not-int", lambda f, b: ["model", "convert", f["gguf_embd_str"], "--out", f["dir"] / "o"], "embedding_length"),
    ("gguf-eos-out-of-vocab", lambda f, b: ["model", "convert", f["gguf_eos_out"], "--out", f["dir"] / "o"], "eos_token_id"),
    ("generate-remote-refused", lambda f, b: REMOTE(f, b) + ["--endpoint", "http://127.0.0.1:9/v1"], "refused"),
    ("generate-remote-no-endpoint", lambda f, b: REMOTE(f, b), "--endpoint"),
    ("generate-remote-not-http", lambda f, b: REMOTE(f, b) + ["--endpoint", "ftp://127.0.0.1/v1"], "http://"),
    ("generate-remote-template", lambda f, b: GEN(f, b) + ["--prompt", "x", "--backend", "openai-raw", "--fim-template",
                                                           "nope"], "--fim-template"),
    ("complete-binary", lambda f, b: ["complete", f"{f['binary']}:1:1"], "not UTF-8"),
    ("complete-unwritable-log", lambda f, b: ["complete", f"{f['ok']}:1:1", "--log", f["afile"] / "t.jsonl"], "--log"),
    ("complete-bad-location", lambda f, b: ["complete", "no-line-or-column"], "FILE:LINE:COL"),
    ("serve-port-out-of-range", lambda f, b: ["serve", "--tcp", "127.0.0.1:99999"], "--tcp"),
    ("serve-unwritable-log", lambda f, b: ["serve", "--log-file", f["afile"] / "s.log"], "log file"),
]


@pytest.mark.parametrize("argv, needle", [pytest.param(a, n, id=i) for i, a, n in CASES])
def test_bad_input_is_one_line(argv: Argv, needle: str, files: dict[str, Path], tiny_bundle: Path) -> None:
    assert_one_line_error(run_cli(*argv(files, tiny_bundle)), needle)
    assert not (files["dir"] / "o").exists()  # a refused conversion writes nothing


def _bytes(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


@pytest.mark.parametrize("hardware, source", [
    ("hw_thin", ["--arch", "smollm2-135m"]),
    ("hw_small", ["--arch", "smollm2-135m", "--wafers", "1"]),
    ("hw_line", ["--gemv", "4096x4096"]),
])
def test_shortfalls_never_contradict_themselves(hardware: str, source: list[str], files: dict[str, Path]) -> None:
    """A shortfall the message names must be one: it printed 'short by -169.9 MB', 'short by -219 wafers' and
    'needs 33.6 MB, more than one wafer holds (3.0 GB)' when the real reason was the per-PE fit on a narrow mesh."""
    line = assert_one_line_error(run_cli("simulate", *source, "--hardware", files[hardware]))
    assert not re.search(r"short by -|by 0 wafer", line), line
    more = re.search(r"needs (?:about )?([\d.]+ [KMG]?B), more than .*? holds \(([\d.]+ [KMG]?B)\)", line)
    assert more is None or _bytes(more[1]) > _bytes(more[2]), line


# ------------------------------------------------------------------------------------------------ GGUF mutations
ARCH_INTS = ["block_count", "embedding_length", "feed_forward_length", "attention.head_count",
             "attention.head_count_kv", "context_length", "vocab_size", "attention.key_length"]
INT_TYPES = [VT.UINT8, VT.UINT32, VT.INT32, VT.UINT64, VT.INT64]
BOUNDS = {VT.UINT8: (0, 255), VT.UINT32: (0, 2**32 - 1), VT.INT32: (-(2**31), 2**31 - 1), VT.UINT64: (0, 2**64 - 1),
          VT.INT64: (-(2**63), 2**63 - 1)}


@pytest.fixture(scope="module")
def base_gguf(tiny_gguf: Path, tmp_path_factory) -> Path:
    """The tiny GGUF, once checked to convert after an unchanged rewrite: else a mutation proves nothing."""
    d = tmp_path_factory.mktemp("base")
    proc = run_cli("model", "convert", rewrite_gguf(tiny_gguf, d / "same.gguf", {}), "--out", d / "out", timeout=120)
    assert proc.returncode == 0 and (d / "out" / "bundle.json").is_file(), proc.stderr.decode()[-1500:]
    return tiny_gguf


def convert_outcome(src: Path, work: Path) -> None:
    """Converting `src` either works or is refused in one line: never a traceback, a crash or a runaway."""
    proc = run_cli("model", "convert", src, "--out", work / "out", timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode in (0, 2), f"exit {proc.returncode}: {err[-1500:]}"
    assert "Traceback" not in err, err[-1500:]
    if proc.returncode == 2:  # a progress bar may share its line once conversion has begun
        assert err.count("waferline: error:") == 1, err[-1500:]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(ARCH_INTS), vtype=st.sampled_from(INT_TYPES), data=st.data())
@example(key="attention.head_count", vtype=VT.UINT32, data=None)  # 0: divided by before the fix
def test_random_metadata_values_convert_or_fail_in_one_line(key: str, vtype: VT, data, base_gguf: Path) -> None:
    lo, hi = BOUNDS[vtype]
    special = st.sampled_from([v for v in (0, 1, 3, 255, 2**20 + 1, 2**31 - 1, 2**32 - 1, 10**12, -1) if lo <= v <= hi])
    value = 0 if data is None else data.draw(st.one_of(special, st.integers(lo, hi)), label="value")
    with tempfile.TemporaryDirectory() as tmp:
        convert_outcome(rewrite_gguf(base_gguf, Path(tmp) / "m.gguf", {f"llama.{key}": (value, vtype)}), Path(tmp))


def _regions(path: Path) -> list[tuple[str, int, int]]:
    """(name, offset, length) of every metadata field and tensor description: the header, not the weights."""
    r = gguf.GGUFReader(path)
    fields = [(n, f.offset, sum(p.nbytes for p in f.parts)) for n, f in r.fields.items()]
    return fields + [(t.name, t.field.offset, sum(p.nbytes for p in t.field.parts)) for t in r.tensors]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
@example(flips=[(-1, 32 + len("tokenizer.ggml.tokens"), 0xFF)])  # the first token's text stops being UTF-8
def test_random_header_bytes_convert_or_fail_in_one_line(flips: list[tuple[int, int, int]], base_gguf: Path) -> None:
    regions = _regions(base_gguf)
    data = bytearray(base_gguf.read_bytes())
    for which, at, byte in flips:
        name, offset, length = next(r for r in regions if r[0] == "tokenizer.ggml.tokens") if which < 0 else regions[which % len(regions)]
        data[offset + at % length] = byte
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "m.gguf"
        src.write_bytes(bytes(data))
        convert_outcome(src, Path(tmp))
