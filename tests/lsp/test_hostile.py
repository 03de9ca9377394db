"""A hostile or broken client, and settings that outgrow the model: the server answers, stays up and stays safe.

The real server runs as a subprocess over stdio (raw bytes where the framing itself is under test); the settings
race is driven in-process with a fake loader, so its interleaving is exact rather than timed. Timeouts are hang
guards only."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from lsp_server.cli_serve import NO_PARAMS, StdioClient, server_command

T = 30  # seconds: hang guard for one answer
INVALID_REQUEST, INVALID_PARAMS = -32600, -32602
INLINE = "textDocument/inlineCompletion"


# ------------------------------------------------------------------------------------------------ helpers


def start(tmp_path: Path, options: dict, name: str = "server", root: str | None = None) -> StdioClient:
    c = StdioClient(server_command() + ["--log-level", "info"], stderr=open(tmp_path / f"{name}.stderr", "w"))
    c.stderr_path = tmp_path / f"{name}.stderr"  # type: ignore[attr-defined]
    resp, _ = c.request("initialize", {"processId": None, "rootUri": root, "capabilities": {}, "initializationOptions": options}, timeout=T)
    assert "result" in resp, resp
    c.notify("initialized", {})
    return c


def status(c: StdioClient) -> dict:
    resp, _ = c.request("waferline/status", None, timeout=T)
    return resp["result"]


def wait_state(c: StdioClient, states: set[str], timeout_s: float = T) -> dict:
    deadline = time.monotonic() + timeout_s
    while (st_ := status(c))["state"] not in states and time.monotonic() < deadline:
        time.sleep(0.05)
    return st_


def frame(body: bytes, header: bytes = b"Content-Length", length: int | None = None) -> bytes:
    return header + b": %d\r\n\r\n" % (len(body) if length is None else length) + body


def send_raw(c: StdioClient, data: bytes) -> None:
    c.write_raw(data)


def call_raw(c: StdioClient, msg: dict, wrap=frame) -> dict:
    """Send `msg` ({"method": ..., "params"?: ...}; an id is added) framed by `wrap`; its answer."""
    return c.send_request(msg["method"], msg.get("params", NO_PARAMS), wrap=wrap).wait(T)


def open_doc(c: StdioClient, uri: str, text: str) -> None:
    c.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}})


def inline(c: StdioClient, uri: str, line: int, character: int) -> dict:
    params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 1}}
    resp, _ = c.request(INLINE, params, timeout=T)
    return resp


_read_up_to: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> notifications already looked at


def notifications(c: StdioClient, method: str, timeout_s: float = 0.0) -> list[dict]:
    """Every notification of `method` received since the last call for this client (waiting up to timeout_s for the
    first): each call looks only at what is new, so `[-1]` after an action is that action's."""
    since = _read_up_to.get(c, 0)
    if timeout_s > 0 and not c.notifications_of(method, since):
        with contextlib.suppress(TimeoutError):
            c.wait_notification(method, timeout_s, since)
    until = c.seen()
    _read_up_to[c] = until
    return c.notifications_of(method, since, until)


def stderr_text(c: StdioClient) -> str:
    return c.stderr_path.read_text(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]


def end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1])


@pytest.fixture(scope="module")
def wire(tiny_bundle, tmp_path_factory):
    """One server for the framing tests: each test must leave it answering."""
    c = start(tmp_path_factory.mktemp("wire"), {"model": str(tiny_bundle)})
    assert wait_state(c, {"ready"})["state"] == "ready"
    yield c
    c.close()


# ------------------------------------------------------------------------------------------------ 3: simulate hardware


def test_simulate_accepts_only_presets_and_the_configured_file(tiny_bundle, tmp_path):
    configured, other, fifo = tmp_path / "mine.toml", tmp_path / "other.toml", tmp_path / "fifo.toml"
    configured.write_text('base = "wse2"\n')
    other.write_text('base = "wse2"\n')
    os.mkfifo(fifo)
    c = start(tmp_path, {"model": str(tiny_bundle), "hardware": str(configured)})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        for hw in (str(other), str(fifo), "/dev/zero", "/dev/stdin", "../../etc/passwd", 7):
            resp, _ = c.request("waferline/simulate", {"hardware": hw}, timeout=T)
            assert resp.get("error", {}).get("code") == INVALID_PARAMS, (hw, resp)
            assert "waferline.hardware" in resp["error"]["message"]
        for hw in (str(configured), "wse3"):
            resp, _ = c.request("waferline/simulate", {"hardware": hw}, timeout=120)
            assert "report" in resp.get("result", {}), (hw, resp)
        c.notify("workspace/didChangeConfiguration", {"settings": {"waferline": {"hardware": "/dev/zero"}}})
        assert status(c)["settings"]["hardware"] == str(configured)  # refused in settings too, old value kept
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------ 4: report image


def test_report_image_is_private_and_never_follows_a_link(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    c = start(tmp_path, {"model": str(tiny_bundle)})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        for attempt in range(2):
            resp, _ = c.request("waferline/simulate", {"hardware": "wse3"}, timeout=120)
            plot, chart = Path(resp["result"]["plot_path"]), Path(resp["result"]["explore_plot_path"])
            assert plot.is_file() and not plot.is_symlink() and chart.is_file() and not chart.is_symlink()
            assert stat.S_IMODE(os.lstat(plot.parent).st_mode) == 0o700 and chart.parent == plot.parent
            assert chart.read_bytes()[:4] == b"\x89PNG"
            if attempt == 0:  # plant a link where the next images go
                for image in (plot, chart):
                    image.unlink()
                    image.symlink_to(victim)
        assert victim.read_text() == "precious"
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------ 5: framing


def test_huge_content_length_is_skipped(wire):
    send_raw(wire, b"Content-Length: 99999999999999\r\n\r\n" + json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}).encode())
    assert status(wire)["state"] == "ready"
    assert wire.proc.poll() is None


def test_header_name_is_case_insensitive(wire):
    resp = call_raw(wire, {"method": "waferline/status", "params": None}, wrap=lambda b: frame(b, b"content-length"))
    assert resp["result"]["state"] == "ready"


@pytest.mark.parametrize("delta", [-7, +40, +5000])
def test_wrong_length_resynchronises(wire, delta):
    body = json.dumps({"jsonrpc": "2.0", "id": "wrong", "method": "waferline/status", "params": None}).encode()
    send_raw(wire, frame(body, length=len(body) + delta))
    assert status(wire)["state"] == "ready"


def test_length_in_characters_of_non_ascii_text(wire):
    text = "s = 'ünïcödé ✓ 日本'\n" * 3
    body = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///chars.py", "languageId": "python", "version": 1, "text": text}}}, ensure_ascii=False)
    send_raw(wire, frame(body.encode("utf-8"), length=len(body)))  # characters, not bytes
    assert status(wire)["state"] == "ready"


junk = st.binary(max_size=48)
mutated = st.builds(
    lambda name, sep, delta, eol, extra, cut: (name + sep + b"%d" % max(0, 60 + delta) + eol + extra + eol
                                               + b'{"jsonrpc": "2.0", "id": "m", "method": "waferline/status"}'[:cut]),
    st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Content-Lenght", b"Content-Type"]),
    st.sampled_from([b": ", b":", b" : ", b""]),
    st.integers(-70, 200) | st.sampled_from([10**13, 64 << 20, (64 << 20) + 1]),
    st.sampled_from([b"\r\n", b"\n", b"\r"]),
    st.sampled_from([b"", b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n", b"X: y"]),
    st.integers(0, 60),
)


@settings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a deaf server makes
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # every shrink step time out
@given(st.lists(junk | mutated, min_size=1, max_size=4))
def test_garbled_frames_then_a_valid_request_is_answered(wire, chunks):
    for chunk in chunks:
        send_raw(wire, chunk)
    resp = call_raw(wire, {"method": "waferline/status", "params": None})
    assert resp["result"]["state"] == "ready"
    assert wire.proc.poll() is None


@settings(max_examples=300, deadline=None)
@given(st.lists(junk | mutated, max_size=4), st.integers(1, 97))
def test_frame_reader_finds_the_next_valid_frame(chunks, split):
    """The same garbage in-process, fed in arbitrary pieces: the reader always reaches the valid frame after it."""
    import asyncio

    from lsp_server.stdio import FrameReader, parse_body

    good = {"jsonrpc": "2.0", "id": "good", "method": "waferline/status", "params": None}
    data = b"".join(chunks) + frame(json.dumps(good).encode())
    pieces = iter([data[i : i + split] for i in range(0, len(data), split)] + [b""])

    async def read() -> bytes:
        return next(pieces)

    async def bodies() -> list:
        reader, out = FrameReader(read), []
        while (body := await reader.next_body()) is not None:
            try:
                out.append(parse_body(body))
            except ValueError:
                reader.reject(body)
        return out

    assert asyncio.run(bodies())[-1:] == [good]


# ------------------------------------------------------------------------------------------------ 7: settings race


@pytest.mark.parametrize("b_broken", [False, True])
def test_settings_race_serves_the_model_configured_last(monkeypatch, b_broken):
    """A loads; B is configured (queued behind A); A finishes; A is configured again while B loads."""
    from lsprotocol import types

    from lsp_server import language_server, server as srv, wafer_bridge
    from runtime.complete import CompletionService
    from runtime.errors import ModelError

    gates = {m: threading.Event() for m in "AB"}
    started = {m: threading.Event() for m in "AB"}

    def fake_load(model: str, *, threads: int, max_context: int, kv_slots: int = 4):
        started[model].set()
        assert gates[model].wait(T)
        if model == "B" and b_broken:
            raise ModelError("B is broken")
        return SimpleNamespace(name=model, bundle=SimpleNamespace(path=model))

    monkeypatch.setattr(language_server, "load_service", fake_load)
    monkeypatch.setattr(CompletionService, "load", staticmethod(fake_load))  # what load_service wraps
    monkeypatch.setattr(wafer_bridge, "warm", lambda *a: None)
    ls = srv.create_server()
    ls.protocol.client_capabilities = types.ClientCapabilities()

    def configure(model: str) -> None:
        ls.settings = msgspec.structs.replace(ls.settings, model=model)
        ls.reconcile_model()

    try:
        configure("A")
        assert started["A"].wait(T)
        configure("B")
        gates["A"].set()
        assert started["B"].wait(T)  # A's load is over, B's is running
        configure("A")
        gates["B"].set()
        deadline = time.monotonic() + T
        while ls.scheduler.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        st_ = ls.status()
        assert getattr(ls.service, "name", None) == "A"
        assert (st_["state"], st_["model"], st_["served_model"]) == ("ready", "A", "A")
    finally:
        ls.scheduler.close()


# ------------------------------------------------------------------------------------------------ 8: settings over the model


def test_context_settings_above_the_model_are_clamped(tiny_bundle, tmp_path):
    """The tiny model holds 4096 tokens; valid settings ask for 8192."""
    c = start(tmp_path, {"model": str(tiny_bundle), "maxContext": 8192, "maxPromptTokens": 8000, "coldPromptTokens": 0})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        text = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(900))
        open_doc(c, "file:///long.py", text)
        resp = inline(c, "file:///long.py", *end_of(text))
        assert "error" not in resp, resp
        metrics = notifications(c, "waferline/metrics", T)
        assert metrics and 1000 < metrics[-1]["prompt_tokens"] <= 4096
    finally:
        c.close()


def test_a_very_long_path_does_not_overflow_the_header(tiny_bundle, tmp_path):
    """A 4,000-character path of CJK text (several tokens a character) under a small (valid) maxContext."""
    root = "file:///ws"
    uri = root + "/" + "".join(chr(0x4E00 + i * 7919 % 20000) + ("/" if i % 20 == 19 else "") for i in range(4000)) + ".py"
    c = start(tmp_path, {"model": str(tiny_bundle), "maxContext": 256}, root=root)
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        text = "import os\n\n\ndef main():\n    value = "
        open_doc(c, uri, text)
        resp = inline(c, uri, *end_of(text))
        assert "error" not in resp, resp
        metrics = notifications(c, "waferline/metrics", T)
        assert metrics and metrics[-1]["prompt_tokens"] <= 256
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------ 10: lifecycle and input


def test_requests_after_shutdown_are_refused_then_exit_0(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle)})
    resp = call_raw(c, {"method": "shutdown"})  # no params: optional for shutdown
    assert "result" in resp and resp["result"] is None, resp
    for method in ("waferline/status", INLINE, "shutdown"):
        resp = call_raw(c, {"method": method, "params": None})
        assert resp.get("error", {}).get("code") == INVALID_REQUEST, (method, resp)
    c.notify("exit", None)
    assert c.proc.wait(T) == 0


def test_exit_without_shutdown_exits_1(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle)})
    c.notify("exit", None)
    assert c.proc.wait(T) == 1


def test_requests_without_params(wire):
    assert call_raw(wire, {"method": "waferline/status"})["result"]["state"] == "ready"
    assert call_raw(wire, {"method": INLINE})["error"]["code"] == INVALID_PARAMS


def test_lone_surrogates_are_replaced_without_a_traceback(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle)})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        uri = "file:///surrogate.py"
        text = "x = '\ud800'\ny = x\n"  # json.dumps writes it as the escape "\ud800"
        open_doc(c, uri, text)
        assert "result" in inline(c, uri, 1, 5)
        changed = "z = '\udfff\ud800'\nprint(z, "
        c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": changed}]})
        assert "result" in inline(c, uri, *end_of(changed))
        assert status(c)["state"] == "ready"
        assert "Traceback" not in stderr_text(c)
    finally:
        c.close()


def test_bundle_json_that_disagrees_with_the_graph_is_refused_at_load(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle)})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        for field, value in (("n_kv_heads", 1), ("head_dim", 8), ("n_layers", 1), ("n_layers", 3)):
            bad = tmp_path / f"bad-{field}-{value}"
            shutil.copytree(tiny_bundle, bad)
            meta = json.loads((bad / "bundle.json").read_text())
            (bad / "bundle.json").write_text(json.dumps({**meta, field: value}))
            c.notify("workspace/didChangeConfiguration", {"settings": {"waferline": {"model": str(bad)}}})
            st_ = wait_state(c, {"ready", "error"})
            assert st_["state"] == "error" and "does not match model.onnx" in st_["message"], (field, st_)
            shown = notifications(c, "window/showMessage", T)
            assert any(m["type"] == 1 and field in m["message"] for m in shown), (field, shown)
        assert "Traceback" not in stderr_text(c)
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------ 6: huge documents


def test_a_20_mb_document_answers_within_bounded_memory(tiny_bundle, tmp_path):
    """Only windows around the cursor are tokenized and cached: a 20 MB file costs what a small one does."""
    c = start(tmp_path, {"model": str(tiny_bundle)})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        text = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(700_000))[: 20 << 20] + "\nvalue = "
        open_doc(c, "file:///huge.py", text)
        for line, char in (end_of(text), (350_000, 4), (3, 0)):
            resp = inline(c, "file:///huge.py", line, char)
            assert "error" not in resp, resp
        assert notifications(c, "waferline/metrics", T)
        hwm_kb = int(next(ln.split()[1] for ln in open(f"/proc/{c.proc.pid}/status") if ln.startswith("VmHWM")))
        assert hwm_kb < 1_200_000, hwm_kb  # was 5.0 GB peak on a 20 MB file when the whole prefix was tokenized
    finally:
        c.close()
