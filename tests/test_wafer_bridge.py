"""The server's wafer report: simulated aside, in an idle-priority child, and cached for every completion's estimate."""

import time

import pytest

from lsp_server import wafer_bridge
from runtime.wafer import simulate_bundle


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(wafer_bridge, "_reports", {})
    monkeypatch.setattr(wafer_bridge, "_warming", set())


def _wait_for_report(key, timeout_s=180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with wafer_bridge._lock:
            if key in wafer_bridge._reports:
                return wafer_bridge._reports[key]
        time.sleep(0.05)
    raise AssertionError("no report")


def test_warm_caches_what_a_child_simulated_and_estimate_prices_with_it(tiny_bundle, fresh_cache):
    """The child's report (`waferline simulate --json`, decoded as a Report) is the in-process one, field for field."""
    assert wafer_bridge.estimate(tiny_bundle, "wse3", 10, 5) is None  # nothing cached yet: never simulates itself
    wafer_bridge.warm(tiny_bundle, "wse3")
    report = _wait_for_report((str(tiny_bundle), "wse3"))
    here = simulate_bundle(tiny_bundle, "wse3")
    assert type(report) is type(here) and report == here
    ms, tok_s = wafer_bridge.estimate(tiny_bundle, "wse3", 10, 5)
    assert tok_s == here.decode_tokens_per_s
    assert ms == pytest.approx(1e3 * (10 / here.prefill_tokens_per_s + 5 * here.per_token_latency_s))


def test_warm_remembers_why_a_model_has_no_report(tmp_path, fresh_cache):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bundle.json").write_text("{not json")
    wafer_bridge.warm(broken, "wse3")
    why = _wait_for_report((str(broken), "wse3"))
    assert isinstance(why, wafer_bridge.WaferUnavailable) and "wafer simulation failed" in str(why)
    assert "\n" not in str(why) and wafer_bridge.estimate(broken, "wse3", 10, 5) is None


def test_completions_that_ask_while_a_report_is_simulated_start_no_second_child(tiny_bundle, fresh_cache, monkeypatch):
    """The server calls warm after every completion that found no report; one child per (model, hardware) at a time."""
    import threading

    started, release = [], threading.Event()
    real = wafer_bridge._simulate_aside

    def slow(*args):
        started.append(args)
        release.wait(60)
        return real(*args)

    monkeypatch.setattr(wafer_bridge, "_simulate_aside", slow)
    for _ in range(5):  # five completions while the first child runs
        wafer_bridge.warm(tiny_bundle, "wse3")
    release.set()
    _wait_for_report((str(tiny_bundle), "wse3"))
    wafer_bridge.warm(tiny_bundle, "wse3")  # cached now: nothing to start
    assert len(started) == 1 and not wafer_bridge._warming
