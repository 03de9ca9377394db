"""Inline completion end to end: ranges in UTF-16, clamping, mid-word, metrics, completion fallback."""

from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_server.positions import units_len

from .conftest import SAMPLE, caps, inline, open_doc, start, until

URI = "file:///tmp/waferline-e2e/sample.py"


def tiny(bundle) -> dict:
    """The random tiny model loops within ~30 tokens, and a looping answer is dropped (stop_repetition): 8 tokens show."""
    return {"model": str(bundle), "maxNewTokens": 8}


async def test_inline_item_at_cursor_and_metrics(client: LanguageClient, tiny_bundle):
    await start(client, tiny(tiny_bundle))
    open_doc(client, URI, SAMPLE)
    res = await inline(client, URI, 6, 11)
    assert len(res.items) == 1
    item = res.items[0]
    assert item.insert_text.strip() and "\n" not in item.insert_text  # line mode
    pos = types.Position(line=6, character=11)
    assert item.range == types.Range(start=pos, end=pos)  # replaces exactly nothing: pure insertion
    assert await until(lambda: len(client.metrics) >= 1)
    m = client.metrics[-1]
    m = m._asdict() if hasattr(m, "_asdict") else m
    for key in ("uri", "cpu_ms", "new_tokens", "cpu_tokens_per_s", "prompt_tokens", "reused_tokens", "wafer_ms", "wafer_tokens_per_s"):
        assert key in m
    assert m["uri"] == URI and m["new_tokens"] > 0 and m["prompt_tokens"] > 0


async def test_mid_word_and_unknown_document_answer_empty(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    open_doc(client, URI, SAMPLE)
    assert not (await inline(client, URI, 3, 8)).items  # inside "fibonacci"
    assert not (await inline(client, "file:///never/opened.py", 0, 0)).items


async def test_utf16_positions_emoji_cjk(client: LanguageClient, tiny_bundle):
    await start(client, tiny(tiny_bundle))
    line = 's = "😀中é" + '
    text = "import os\n" + line + "\n"
    open_doc(client, URI, text)
    char = units_len(line)  # 16-bit units: the emoji counts 2
    assert char == len(line) + 1
    res = await inline(client, URI, 1, char)
    assert res.items, "no suggestion: the range check below would not run"
    for item in res.items:
        assert item.range.start == types.Position(line=1, character=char)
    # a position inside the surrogate pair clamps to the emoji's start
    inside = units_len('s = "') + 1
    res = await inline(client, URI, 1, inside)
    assert res.items, "no suggestion: the range check below would not run"
    for item in res.items:
        assert item.range.start.character == inside - 1


async def test_crlf_document(client: LanguageClient, tiny_bundle):
    await start(client, tiny(tiny_bundle))
    text = SAMPLE.replace("\n", "\r\n")
    open_doc(client, URI, text)
    res = await inline(client, URI, 6, 11)
    assert len(res.items) == 1
    assert res.items[0].range.start == types.Position(line=6, character=11)
    assert "\r" not in res.items[0].insert_text


async def test_out_of_range_positions_clamp(client: LanguageClient, tiny_bundle):
    """Past the end of a line clamps to its end; past the last line, to the end of the document."""
    await start(client, tiny(tiny_bundle))
    open_doc(client, URI, SAMPLE.rstrip("\n"))  # ends in "    return ": where the model has something to say
    for line, char, want in [(6, 500, (6, 11)), (500, 3, (6, 11)), (6, 11, (6, 11))]:
        res = await inline(client, URI, line, char)
        assert res.items, (line, char)
        for item in res.items:
            assert (item.range.start.line, item.range.start.character) == want


async def test_completion_fallback_without_inline_support(client: LanguageClient, tiny_bundle):
    await start(client, tiny(tiny_bundle), capabilities=caps(inline=False))
    open_doc(client, URI, SAMPLE)
    res = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=6, character=11))
    )
    assert res is not None and len(res.items) == 1
    item = res.items[0]
    assert item.text_edit.range.start == types.Position(line=6, character=11) and item.text_edit.new_text.strip()


async def test_completion_fallback_silent_when_client_has_inline(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    open_doc(client, URI, SAMPLE)
    res = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=6, character=11))
    )
    assert res is None
