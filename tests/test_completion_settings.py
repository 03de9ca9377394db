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


from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.floats(allow_nan=True), st.text(max_size=8),
                    st.sampled_from(["line", "block", "wse2", "wse3", "/dev/zero", "/etc/passwd.toml", "debug"]),
                    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_KEYS = st.sampled_from(sorted(to_json(Settings())) + ["unknown", "server.pythonPath"])


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=4), max_size=6))
def test_any_sequence_of_settings_changes_leaves_valid_settings(changes):
    """Whatever a client sends, in any order: every field stays valid, the last valid value of each field wins,
    and every invalid value is reported."""
    current, _ = parse_settings(None)
    expected = to_json(current)
    for change in changes:
        current, errors = parse_settings(change, current)
        for key, value in change.items():
            if key not in expected:
                continue
            one, errs = parse_settings({key: value})
            if value is None:
                expected[key] = to_json(Settings())[key]
            elif not errs:
                expected[key] = to_json(one)[key]
            else:
                assert any(key in e for e in errors), (key, value, errors)
        assert to_json(current) == expected
        Settings(**{f: getattr(current, f) for f in current.__struct_fields__})  # still constructible
