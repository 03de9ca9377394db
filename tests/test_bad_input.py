"""Every user mistake at conversion gets one clear message and writes nothing."""

import subprocess
import sys

import gguf
import numpy as np
import pytest

from runtime.convert import convert
from runtime.errors import GGUFError, ModelError
from runtime.models import resolve_model


def minimal_gguf(path, arch="llama", tokens=True, tensor_type=None):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    if tokens:
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b"])
    if tensor_type is not None:  # an IQ4_NL block: 2 bytes scale + 16 bytes codes per 32 values
        w.add_tensor("token_embd.weight", np.zeros((2, 18), np.uint8), raw_dtype=tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def check(tmp_path, src, message):
    out = tmp_path / "out"
    with pytest.raises(GGUFError, match=message):
        convert(src, out, progress=False)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no partial left behind


def test_not_a_gguf(tmp_path):
    src = tmp_path / "x.gguf"
    src.write_text("hello, this is not a model")
    check(tmp_path, src, "not a GGUF file")


def test_empty_file(tmp_path):
    src = tmp_path / "x.gguf"
    src.write_bytes(b"")
    check(tmp_path, src, "not a GGUF file")


def test_missing_file(tmp_path):
    check(tmp_path, tmp_path / "nope.gguf", "does not exist")


def test_wrong_version(tmp_path, tiny_gguf):
    data = bytearray(tiny_gguf.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    src = tmp_path / "v.gguf"
    src.write_bytes(bytes(data))
    check(tmp_path, src, "version 99")


def test_truncated(tmp_path, tiny_gguf):
    src = tmp_path / "t.gguf"
    src.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    check(tmp_path, src, "damaged or truncated|missing")


def test_unsupported_architecture(tmp_path):
    check(tmp_path, minimal_gguf(tmp_path / "a.gguf", arch="mamba"), "architecture 'mamba' is not supported")


def test_unsupported_quant_type(tmp_path):
    check(tmp_path, minimal_gguf(tmp_path / "q.gguf", tensor_type=gguf.GGMLQuantizationType.IQ4_NL), "IQ4_NL, which is not supported")


def test_missing_tokenizer(tmp_path):
    check(tmp_path, minimal_gguf(tmp_path / "n.gguf", tokens=False), "no tokenizer")


def test_cli_error_is_one_line_without_traceback(tmp_path):
    src = tmp_path / "x.gguf"
    src.write_text("junk")
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "model", "convert", str(src), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("waferline: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resolve_unknown_and_gguf(tmp_path, tiny_gguf):
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model("no-such-model")
    with pytest.raises(ModelError, match="convert it first"):
        resolve_model(str(tiny_gguf))


def test_broken_model_file_is_a_model_error(tmp_path, tiny_bundle):
    import shutil

    from runtime.bundle import load_bundle
    from runtime.engine import Decoder

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="cannot load"):
        Decoder(load_bundle(broken))
