"""The stdio harness's public API (lsp_server.cli_serve.StdioClient) against the real server on the tiny model: what
the benches rely on -- ids, waiting by id, cancellation, notifications read without consuming them. Timeouts are
hang guards only; nothing here asserts a duration."""

from __future__ import annotations


import pytest

from lsp_server.cli_serve import REQUEST_CANCELLED, Pending, ServerExited, StdioClient, frame, server_command, wait_ready

T = 60  # seconds: hang guard
INLINE = "textDocument/inlineCompletion"
METRICS = "waferline/metrics"
URI = "file:///client/sample.py"
TEXT = "import os\n\n\ndef fibonacci(n):\n    if n < 2:\n        return n\n    return \n"


def inline_params(line: int = 6, character: int = 11) -> dict:
    return {"textDocument": {"uri": URI}, "position": {"line": line, "character": character}, "context": {"triggerKind": 1}}


@pytest.fixture(scope="module")
def client(tiny_bundle):
    """One ready server with TEXT open; each test leaves it answering."""
    c = StdioClient(server_command() + ["--log-level", "warning"])
    resp, _ = c.request("initialize", {"processId": None, "capabilities": {"textDocument": {"inlineCompletion": {}}},
                                       "initializationOptions": {"waferline": {"model": str(tiny_bundle)}}}, timeout=T)
    assert "result" in resp, resp
    c.notify("initialized", {})
    c.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": TEXT}})
    assert wait_ready(c, T)["state"] == "ready"
    yield c
    c.close()


def test_request_returns_answer_and_round_trip(client):
    resp, ms = client.request("waferline/status", None, timeout=T)
    assert resp["result"]["state"] == "ready"
    assert ms >= 0


def test_send_request_gives_distinct_ids_and_each_answer_by_id(client):
    a = client.send_request("waferline/status", None)
    b = client.send_request(INLINE, inline_params())
    assert isinstance(a, Pending) and b.id > a.id
    # by id and by handle, in the other order than sent: answers are matched by id, not by arrival
    assert "items" in client.wait(b.id, T)["result"]
    assert client.wait(a, T)["result"]["state"] == "ready"
    assert a.done() and b.done() and a.ms >= 0 and b.ms >= 0
    assert a.received >= a.sent


def test_many_requests_in_flight_all_answered(client):
    sent = [client.send_request(INLINE, inline_params(6, k)) for k in range(4, 12)]
    answers = [p.wait(T) for p in sent]
    assert [m["id"] for m in answers] == [p.id for p in sent]
    assert all("result" in m or "error" in m for m in answers)


def test_cancel_still_gets_exactly_one_answer(client):
    """LSP: a cancelled request is answered anyway, with a result or RequestCancelled; the benches count on it."""
    p = client.send_request(INLINE, inline_params())
    client.cancel(p.id)
    msg = p.wait(T)
    assert "result" in msg or p.error_code == REQUEST_CANCELLED
    assert p.cancelled or p.done()
    client.cancel(p)  # already answered: harmless, nothing sent
    assert client.request("waferline/status", None, timeout=T)[0]["result"]["state"] == "ready"


def test_unknown_id_is_a_key_error(client):
    with pytest.raises(KeyError):
        client.wait(10**9, 0)


def test_wait_times_out_without_consuming_the_answer(client):
    p = client.send_request(INLINE, inline_params())
    try:
        p.wait(0)
    except TimeoutError:
        pass  # not answered yet: the answer is still delivered later
    assert "result" in p.wait(T)


def test_notifications_are_kept_for_every_reader(client):
    mark = client.seen()
    p = client.send_request(INLINE, inline_params())
    assert "result" in p.wait(T)
    first = client.wait_notification(METRICS, T, since=mark)  # published before the answer
    assert {"prompt_tokens", "new_tokens", "cached"} <= set(first)
    assert client.notifications_of(METRICS, since=mark)[0] == first  # reading consumed nothing
    assert client.notifications_of(METRICS, since=mark, until=p.seen)[-1] == first  # sent while it was answered
    assert client.seen() > mark
    assert client.notifications_of(METRICS, since=client.seen()) == []
    with pytest.raises(TimeoutError):
        client.wait_notification("no/such/notification", 0.05, since=client.seen())


def test_write_raw_and_custom_framing(client):
    client.write_raw(frame(b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}'))
    p = client.send_request("waferline/status", wrap=lambda b: b"content-length: %d\r\n\r\n" % len(b) + b)
    assert p.wait(T)["result"]["state"] == "ready"


def test_request_without_params_member(client):
    p = client.send_request(INLINE)  # no "params": the server must answer with an error, not hang
    assert "error" in p.wait(T)


def test_server_exit_fails_waiting_requests_at_once(tiny_bundle):
    c = StdioClient(server_command() + ["--log-level", "warning"])
    try:
        c.request("initialize", {"processId": None, "capabilities": {}}, timeout=T)
        c.proc.kill()
        c.proc.wait(T)
        p = c.send_request("waferline/status", None)
        with pytest.raises(ServerExited):
            p.wait(T)
        with pytest.raises(ServerExited):
            c.wait_notification(METRICS, T)
    finally:
        c.close()
