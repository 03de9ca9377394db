"""Nothing lost: convert/tiny never delete what they did not create, swap bundles atomically, survive SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import bundle_store, models
from runtime.bundle import read_meta
from runtime.convert import convert
from runtime.errors import ModelError

CLI = [sys.executable, "-m", "lsp_server.cli"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=cwd or ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("waferline: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture()
def project(tmp_path):
    """A user's folder with their work and the GGUF they want converted."""
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "main.py").write_text("print('my work')\n")
    (folder / "notes.txt").write_text("do not lose me\n")
    return folder


def test_convert_refuses_a_folder_that_is_not_ours(tiny_gguf, project):
    shutil.copy(tiny_gguf, project / "m.gguf")
    before = snapshot(project)
    for out in (project, project / "src"):
        with pytest.raises(ModelError, match="not a waferline bundle"):
            convert(project / "m.gguf", out, progress=False)
    # a bundle the user added a file to is no longer only ours
    bundle = convert(project / "m.gguf", project / "bundle", progress=False)
    (bundle / "mine.txt").write_text("x")
    with pytest.raises(ModelError, match="not a waferline bundle"):
        convert(project / "m.gguf", bundle, progress=False)
    assert (bundle / "mine.txt").read_text() == "x"
    assert {k: v for k, v in snapshot(project).items() if not k.startswith("bundle")} == before


def test_cli_convert_and_tiny_refuse_with_one_line(tiny_gguf, project, tmp_path):
    shutil.copy(tiny_gguf, project / "m.gguf")
    before = snapshot(project)
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "alink").symlink_to(project)
    cases = [
        ("model", "convert", str(project / "m.gguf"), "--out", str(project)),
        ("model", "convert", str(project / "m.gguf"), "--out", "."),
        ("model", "tiny", "--out", str(project)),
        ("model", "tiny", "--out", "."),
        ("model", "convert", str(project / "m.gguf"), "--out", str(tmp_path / "afile")),
        ("model", "convert", str(project / "m.gguf"), "--out", str(tmp_path / "alink")),
    ]
    for args in cases:
        one_line_error(run_cli(*args, cwd=project))
    assert snapshot(project) == before
    assert (tmp_path / "afile").read_text() == "keep"


@pytest.mark.parametrize("stem", [".", "x" * 200])
def test_default_output_name_never_escapes_the_models_folder(tiny_gguf, tmp_path, stem):
    cache = tmp_path / "cache"
    kept = convert(tiny_gguf, cache / "models" / "kept", progress=False)
    gguf = tmp_path / f"{stem}.gguf"
    shutil.copy(tiny_gguf, gguf)
    one_line_error(run_cli("model", "convert", str(gguf), env={"WAFERLINE_CACHE": str(cache)}))
    assert read_meta(kept)  # the cached bundle is still there


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "x" * 5000, ".hidden", "a\0b"])
def test_model_names_never_leave_the_cache(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WAFERLINE_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="not a valid model name"):
        models.bundle_dir(name)


def test_cache_at_a_file_is_one_line(tmp_path, tiny_gguf):
    (tmp_path / "file").write_text("x")
    one_line_error(run_cli("model", "convert", str(tiny_gguf), env={"WAFERLINE_CACHE": str(tmp_path / "file")}))


def test_reconvert_replaces_our_bundle_and_leaves_nothing_behind(tiny_gguf, tmp_path):
    out = convert(tiny_gguf, tmp_path / "b", progress=False)
    first = (out / "bundle.json").stat().st_ino
    convert(tiny_gguf, out, progress=False)
    assert (out / "bundle.json").stat().st_ino != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_meta(convert(tiny_gguf, empty, progress=False))


def test_concurrent_converts_of_one_model_both_succeed(tiny_gguf, tmp_path):
    out = tmp_path / "same"
    procs = [subprocess.Popen(CLI + ["model", "convert", str(tiny_gguf), "--out", str(out)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert bundle_store.is_our_bundle(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


def test_a_partial_is_never_seen_unlocked_by_a_concurrent_recover(tiny_gguf, tmp_path, monkeypatch):
    """Another process's recover runs right after our partial directory is created: it must wait for the parent's
    lock, not take the not-yet-locked partial for a dead builder's and remove it (seen once in CI: a traceback)."""
    import tempfile

    out = tmp_path / "b"
    real_mkdtemp = tempfile.mkdtemp
    waited = []

    def mkdtemp_then_recover_elsewhere(*args, **kwargs):
        made = real_mkdtemp(*args, **kwargs)
        if ".partial-" in made and not waited:
            code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from runtime import bundle_store; bundle_store.recover({str(out)!r})"
            try:
                subprocess.run([sys.executable, "-c", code], timeout=3, check=True)
                waited.append(False)  # it ran to the end: it was not kept out while the partial was unlocked
            except subprocess.TimeoutExpired:
                waited.append(True)  # blocked on the parent's lock, as it must be
        return made

    monkeypatch.setattr(bundle_store.tempfile, "mkdtemp", mkdtemp_then_recover_elsewhere)
    convert(tiny_gguf, out, progress=False)
    assert waited == [True]
    assert bundle_store.is_our_bundle(out) and sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def _kill_during_convert(gguf: Path, out: Path, delay_s: float) -> None:
    proc = subprocess.Popen(CLI + ["model", "convert", str(gguf), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_at_any_moment_keeps_a_whole_bundle(tiny_gguf, tmp_path):
    """Kills spread over the whole conversion; after each, the next lookup finds a complete bundle (old or new)."""
    out = convert(tiny_gguf, tmp_path / "b", progress=False)
    for delay_s in (0.3, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0):
        _kill_during_convert(tiny_gguf, out, delay_s)
        bundle_store.recover(out)
        assert bundle_store.is_our_bundle(out), (delay_s, os.listdir(tmp_path))
        assert set(os.listdir(out)) == bundle_store.BUNDLE_FILES
    convert(tiny_gguf, out, progress=False)  # cleans whatever dead builders left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_recover_finishes_a_swap_cut_between_its_two_renames(tiny_gguf, tmp_path):
    out = convert(tiny_gguf, tmp_path / "b", progress=False)
    old = tmp_path / ".b.old-x1"
    os.rename(out, old)  # what a kill right after the first rename leaves (the new partial died unfinished)
    (tmp_path / ".b.partial-x2").mkdir()
    models_dir = tmp_path
    bundle_store.recover(out)
    assert bundle_store.is_our_bundle(out)
    assert sorted(p.name for p in models_dir.iterdir()) == ["b"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.sampled_from(["bundle.json", "model.onnx", "tokenizer.json", "x.py", ".git", "README"]),
                      min_size=1, max_size=4, unique=True))
def test_check_target_refuses_any_folder_with_foreign_content(tmp_path, names):
    folder = tmp_path / "t"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in names:
        (folder / name).write_text("{}")
    # bundle.json "{}" never decodes as a bundle, so every one of these folders is foreign
    with pytest.raises(ModelError):
        bundle_store.check_target(folder)
