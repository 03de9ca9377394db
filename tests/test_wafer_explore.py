"""`waferline explore`: the sweep runs every point, says why a point does not run, and names each series' knee."""

import argparse
import json

import pytest

from runtime.wafer import cli
from runtime.wafer.errors import WaferError
from runtime.wafer.explore import draft_for, explore


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="waferline")
    cli.add_explore_parser(parser.add_subparsers(dest="command"))
    assert cli.run_explore(parser.parse_args(["explore", *argv])) == 0
    return capsys.readouterr().out


def test_drafts_share_the_vocabulary_and_are_much_smaller():
    assert draft_for("llama3.1-70b") == "llama3.2-1b"
    assert draft_for("qwen3-32b") == "qwen2.5-coder-0.5b"
    assert draft_for("gpt-oss-120b") is None  # no preset with its 201,088-token vocabulary
    assert draft_for("llama3.2-1b") is None  # nothing under a quarter of it


def test_a_small_sweep_has_every_point_and_its_knees():
    r = explore(("llama3.2-1b", "llama3-8b", "llama3.1-70b"), ("bf16",), (1, 4), (4096,), 0.7, 0, 1000.0, progress=False)
    assert len(r.points) == 3 * 2 * 2 and len(r.knees) == 2 * 2
    by = {(p.arch, p.wafers_limit, p.acceptance): p for p in r.points}
    assert by[("llama3.1-70b", 1, None)].decode_tokens_per_s is None
    assert "does not fit" in by[("llama3.1-70b", 1, None)].bottleneck
    assert by[("llama3-8b", 1, 0.7)].bottleneck == "the draft takes a wafer of its own"
    assert by[("llama3.2-1b", 4, 0.7)].bottleneck.startswith("no preset draft")
    small, big = by[("llama3.2-1b", 1, None)], by[("llama3-8b", 1, None)]
    assert small.decode_tokens_per_s > big.decode_tokens_per_s > 0  # bigger is slower on the same wafer
    spec = by[("llama3-8b", 4, 0.7)]
    assert spec.decode_tokens_per_s and 1 <= spec.draft_tokens <= 8 and spec.wafers_used <= 4
    for k in r.knees:  # the knee is the largest model that reaches the target in its series
        series = [p for p in r.points if (p.dtype, p.context, p.wafers_limit, p.acceptance) ==
                  (k.dtype, k.context, k.wafers_limit, k.acceptance)]
        reach = [p for p in series if p.decode_tokens_per_s and p.decode_tokens_per_s >= 1000.0]
        assert k.arch == (max(reach, key=lambda p: p.active_params).arch if reach else None)


def test_cli_prints_json_and_writes_the_plot(capsys, tmp_path):
    out = tmp_path / "explore.png"
    data = json.loads(_run(["--archs", "llama3.2-1b,llama3-8b", "--wafers", "1", "--contexts", "2048",
                            "--acceptance", "none", "--json", "--plot", str(out)], capsys))
    assert {p["arch"] for p in data["points"]} == {"llama3.2-1b", "llama3-8b"}
    assert all(p["acceptance"] is None for p in data["points"])
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, words", [
    (["--dtypes", "bf17"], "unknown dtype"),
    (["--acceptance", "often"], "--acceptance"),
    (["--archs", "gpt-5"], "unknown architecture"),
    (["--wafers", "0"], "positive"),
    (["--target", "0"], "--target"),
])
def test_bad_sweeps_are_one_clear_error(argv, words, capsys):
    with pytest.raises(WaferError, match=words):
        _run(argv + ["--contexts", "1024"], capsys)


def test_the_collective_is_the_sweeps_to_choose(capsys):
    """The vendor-kernel preset was fitted with the pipeline collective: a sweep on it can say so."""
    runs = {c: json.loads(_run(["--archs", "llama3-8b", "--wafers", "1", "--contexts", "4096", "--acceptance", "none",
                                "--hardware", "cs3", "--collective", c, "--json"], capsys))["points"][0]
            for c in ("ktree", "pipeline")}
    assert runs["pipeline"]["decode_tokens_per_s"] < runs["ktree"]["decode_tokens_per_s"]
