"""lsp_server.settings: fully defaulted, invalid values reported and replaced by the default."""

from lsp_server.settings import Settings, parse_settings, to_json


def test_defaults():
    s, errs = parse_settings(None)
    assert s == Settings() and errs == []
    assert to_json(s)["maxNewTokens"] == 64 and to_json(s)["mode"] == "line"


def test_section_wrapped_or_flat():
    a, _ = parse_settings({"waferline": {"mode": "block"}})
    b, _ = parse_settings({"mode": "block"})
    assert a.mode == b.mode == "block"


def test_invalid_values_keep_previous_and_are_reported():
    base, _ = parse_settings({"maxNewTokens": 32})
    s, errs = parse_settings({"maxNewTokens": "lots", "temperature": 9, "mode": "paragraph", "hardware": "wse3"}, base)
    assert s.max_new_tokens == 32 and s.temperature == 0.0 and s.mode == "line" and s.hardware == "wse3"
    assert len(errs) == 3
    assert any("waferline.maxNewTokens" in e and "'lots'" in e for e in errs)


def test_unknown_keys_ignored_and_null_resets():
    base, _ = parse_settings({"maxNewTokens": 32})
    s, errs = parse_settings({"pythonPath": "/x", "maxNewTokens": None}, base)
    assert errs == [] and s.max_new_tokens == 64


def test_not_an_object():
    s, errs = parse_settings([1, 2])
    assert s == Settings() and len(errs) == 1


def test_lenient_strings():
    s, errs = parse_settings({"maxNewTokens": "16", "enabled": "false"})
    assert errs == [] and s.max_new_tokens == 16 and s.enabled is False
