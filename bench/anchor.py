"""Make the benchmark anchor (llama-cpp-python, installed by `pip install -e .[bench]`) run on this machine, and prove it.

A native build can die with SIGILL in `ggml_backend_amx_mul_mat` where a VM advertises AMX that it does not permit.
So: install, smoke-test in a child process on a tiny GGUF written by our own code, and when the child crashes,
rebuild without native CPU detection (AVX/AVX2/FMA/F16C, plus AVX-512 where the CPU has it) and test again.

    python bench/anchor.py        # run by `make bench` after the install; exits 0 when llama.cpp evaluates tokens here
"""

from __future__ import annotations

import os
import signal
from importlib.metadata import version
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line  # noqa: E402
from runtime.cpu import cpu_flags  # noqa: E402
from runtime.tiny import write_tiny_gguf  # noqa: E402

SMOKE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=2, verbose=False)
llm.eval([1, 2, 3, 4, 5, 6, 7, 8])
print("ok", llm.n_tokens)
"""


def smoke(gguf: Path) -> str | None:
    """None when llama.cpp loads the GGUF and evaluates 8 tokens in a fresh process, else why not (one line)."""
    proc = subprocess.run([sys.executable, "-c", SMOKE, str(gguf)], capture_output=True, text=True, timeout=300)
    if proc.returncode == 0 and proc.stdout.startswith("ok"):
        return None
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}"
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return f"exit {proc.returncode}: {tail}"


def portable_cmake_args() -> str:
    """CPU features named explicitly instead of GGML_NATIVE: never AMX, AVX-512 only where /proc/cpuinfo has it."""
    flags = cpu_flags()
    args = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]
    if {"avx512f", "avx512bw"} <= flags:
        args += ["-DGGML_AVX512=ON", "-DGGML_AVX512_BW=ON"]
        if "avx512_vnni" in flags:
            args.append("-DGGML_AVX512_VNNI=ON")
    return " ".join(args)


def rebuild(cmake_args: str) -> None:
    """The installed llama-cpp-python version again, compiled from source with these CMake options."""
    spec = f"llama-cpp-python=={version('llama-cpp-python')}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", "--no-cache-dir",
                    "--no-binary", "llama-cpp-python", spec], check=True,
                   env={**os.environ, "CMAKE_ARGS": cmake_args, "FORCE_CMAKE": "1"})


def main() -> int:
    print(cpu_line())
    with tempfile.TemporaryDirectory() as tmp:
        gguf = write_tiny_gguf(Path(tmp) / "smoke.gguf")
        why = smoke(gguf)
        if why is None:
            print("llama.cpp anchor: ok")
            return 0
        cmake = portable_cmake_args()
        print(f"llama.cpp anchor failed its smoke test ({why}); rebuilding with CMAKE_ARGS={cmake!r}", flush=True)
        rebuild(cmake)
        why = smoke(gguf)
        if why is None:
            print("llama.cpp anchor: ok after the portable rebuild")
            return 0
        print(f"error: llama.cpp anchor still fails after a portable rebuild: {why}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
