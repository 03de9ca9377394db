"""Random JSON-RPC messages (valid framing, arbitrary content) never crash the server: it answers afterwards.

Driven with the harness's synchronous stdio client so hypothesis can run plain (non-async) examples against one
server process; example count is bounded to keep the suite quick."""

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lsp_server.cli_serve import StdioClient, server_command

METHODS = [
    "textDocument/inlineCompletion", "textDocument/completion", "textDocument/codeAction", "codeAction/resolve",
    "workspace/executeCommand", "workspace/didChangeConfiguration", "textDocument/didOpen", "textDocument/didChange",
    "textDocument/didClose", "$/cancelRequest", "waferline/status", "waferline/simulate", "initialized",
    "$/setTrace", "window/workDoneProgress/cancel", "no/such/method",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
positions = st.fixed_dictionaries({"line": st.integers(-5, 2**31), "character": st.integers(-5, 2**31)})
plausible_params = st.fixed_dictionaries(
    {"textDocument": st.fixed_dictionaries({"uri": st.sampled_from(["file:///fuzz.py", "file:///x.py", "", "bad uri"])}),
     "position": positions},
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0"]), "method": st.sampled_from(METHODS) | st.text(max_size=15)},
    optional={
        "id": st.integers(10**6, 10**9) | st.text(min_size=1, max_size=8).map(lambda s: "fuzz-" + s) | st.none(),
        "params": json_values | plausible_params,
    },
)
bodies = messages.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=40)


@pytest.fixture(scope="module")
def fuzz_client(tiny_bundle):
    c = StdioClient(server_command() + ["--log-level", "error"])
    resp, _ = c.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": {"model": str(tiny_bundle)}})
    assert "result" in resp
    c.notify("initialized", {})
    c.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///fuzz.py", "languageId": "python", "version": 1, "text": "x = 1\nprint(\n"}})
    yield c
    c.close()


def _send_raw(c: StdioClient, body: str) -> None:
    data = body.encode("utf-8", "surrogatepass")
    c.write_raw(b"Content-Length: %d\r\n\r\n" % len(data) + data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(bodies, min_size=1, max_size=5))
def test_random_messages_then_server_still_answers(fuzz_client, batch):
    for body in batch:
        _send_raw(fuzz_client, body)
    resp, _ = fuzz_client.request("waferline/status", None, timeout=30)
    assert fuzz_client.proc.poll() is None, "server exited"
    assert "result" in resp and resp["result"]["state"] in ("loading", "ready", "error", "disabled")
    resp, _ = fuzz_client.request(
        "textDocument/inlineCompletion",
        {"textDocument": {"uri": "file:///fuzz.py"}, "position": {"line": 1, "character": 6}, "context": {"triggerKind": 1}},
        timeout=30,
    )
    assert "result" in resp or "error" in resp
