"""The acceptance tally: counted per completion, written atomically, read back by `simulate --acceptance measured`."""

import argparse
import json
import pytest

from runtime.acceptance import MIN_TESTED, AcceptanceLedger, latest_tally, read_tally, tally_path
from runtime.wafer import cli
from runtime.wafer.errors import WaferError


def test_the_rate_counts_only_tested_tokens(tmp_path):
    led = AcceptanceLedger("m", tmp_path, flush_seconds=3600)
    led.add(4, 4, 0)  # all four kept
    led.add(4, 1, 1)  # one kept, the second rejected, two never tested
    led.add(0, 0, 0)  # no draft: not a completion that drafted
    t = read_tally("m", tmp_path)
    assert (t.drafted, t.accepted, t.misses, t.completions) == (4, 4, 0, 1)  # the first add writes at once
    led.flush()
    t = read_tally("m", tmp_path)
    assert (t.drafted, t.accepted, t.misses, t.completions) == (8, 5, 1, 2)
    assert t.rate == pytest.approx(5 / 6) and t.updated
    assert AcceptanceLedger("m", tmp_path).tally.accepted == 5  # a restarted server goes on from the file


def test_a_broken_or_unwritable_tally_loses_nothing(tmp_path):
    path = tally_path("m", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert read_tally("m", tmp_path) is None
    assert AcceptanceLedger("m", tmp_path).tally.accepted == 0  # a damaged tally starts again, the server goes on
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the acceptance folder would be")
    led = AcceptanceLedger("m", blocked)
    led.add(3, 2, 1)  # cannot write: no exception, it is only a measurement
    assert led.tally.accepted == 2 and blocked.read_text().startswith("a file")


def _simulate(argv, capsys):
    parser = argparse.ArgumentParser(prog="waferline")
    cli.add_parser(parser.add_subparsers(dest="command"))
    assert cli.run(parser.parse_args(["simulate", *argv])) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_takes_the_measured_rate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WAFERLINE_ACCEPTANCE_DIR", str(tmp_path / "acceptance"))
    argv = ["--arch", "llama3-8b", "--draft", "llama3.2-1b", "--draft-tokens", "2", "--acceptance", "measured", "--json"]
    with pytest.raises(WaferError, match="no drafts recorded yet"):
        _simulate(argv, capsys)
    led = AcceptanceLedger("qwen2.5-coder-0.5b")
    led.add(MIN_TESTED - 2, 10, 1)
    led.flush()
    with pytest.raises(WaferError, match="only 11 draft tokens tested"):
        _simulate(argv, capsys)
    led.add(200, 150, 40)
    led.flush()
    assert latest_tally().model == "qwen2.5-coder-0.5b"
    data = _simulate(argv, capsys)
    assert data["acceptance"] == pytest.approx(160 / 201)
    assert data["acceptance_source"].startswith("measured by the local runtime on qwen2.5-coder-0.5b")
    stated = _simulate(argv[:-2] + ["0.5", "--json"], capsys)
    assert stated["acceptance"] == 0.5 and stated["acceptance_source"] == "stated"


def test_a_served_catalog_model_counts_its_drafts_and_a_scratch_bundle_does_not(smollm2_bundle, tiny_bundle,
                                                                                tmp_path, monkeypatch):
    from runtime.complete import CompletionRequest, CompletionService

    monkeypatch.setenv("WAFERLINE_ACCEPTANCE_DIR", str(tmp_path))
    code = "".join(f"def f{i}(a, b):\n    return a + b * {i}\n\n\n" for i in range(6)) + "def f6(a, b):\n    return"
    svc = CompletionService.load(smollm2_bundle.name)
    for n in (24, 32):  # two requests: the second is not a cache hit
        svc.complete(CompletionRequest(prefix=code, suffix="", doc_key="d", max_new_tokens=n, mode="block"))
    svc.acceptance.flush()
    t = read_tally(smollm2_bundle.name)
    assert t is not None and t.completions >= 1 and t.drafted > 0 and t.accepted + t.misses <= t.drafted
    assert CompletionService.load(str(tiny_bundle)).acceptance is None  # not a catalog model: not the user's figure
