"""Build a HF `tokenizers` tokenizer.json from a GGUF's BPE vocabulary, merges and pre-tokenizer name.

Ids must equal llama.cpp's on code text, so the pre-tokenizer regexes are llama.cpp's (llama-vocab.cpp), keyed by
`tokenizer.ggml.pre`.
"""

from __future__ import annotations

from .errors import GGUFError

# GPT-2's split; with individual digits in front it is llama.cpp's STARCODER/SMOLLM/REFACT family.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level(use_regex: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def _split(pattern: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def _digits_then_gpt2() -> dict:
    return {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _byte_level(True)]}


def _regex_then_bytes(pattern: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [_split(pattern), _byte_level(False)]}


# tokenizer.ggml.pre -> HF pre-tokenizer (llama-vocab.cpp groups these names under the same regexes)
PRE_TOKENIZERS = {
    "gpt-2": lambda: _byte_level(True),
    "default": lambda: _byte_level(True),
    "smollm": _digits_then_gpt2,
    "starcoder": _digits_then_gpt2,
    "refact": _digits_then_gpt2,
    "codeshell": _digits_then_gpt2,
    "qwen2": lambda: _regex_then_bytes(QWEN2_REGEX),
    "deepseek-r1-qwen": lambda: _regex_then_bytes(QWEN2_REGEX),
    "llama-bpe": lambda: _regex_then_bytes(LLAMA3_REGEX),
    "llama3": lambda: _regex_then_bytes(LLAMA3_REGEX),
}

TOKEN_TYPE_CONTROL = 3  # gguf TokenType.CONTROL
TOKEN_TYPE_USER_DEFINED = 4


def tokenizer_json(fields: dict[str, object], source: str) -> dict:
    """tokenizer.json content for a GGUF with `tokenizer.ggml.model == gpt2` (byte-level BPE)."""
    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFError(f"{source}: tokenizer model '{model}' is not supported (only byte-level BPE, 'gpt2')")
    pre = fields.get("tokenizer.ggml.pre") or "default"
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"{source}: pre-tokenizer '{pre}' is not supported (supported: {', '.join(PRE_TOKENIZERS)})")
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    merges = fields.get("tokenizer.ggml.merges")
    if not merges:
        raise GGUFError(f"{source}: BPE tokenizer has no merges (tokenizer.ggml.merges is missing)")
    types = list(fields.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": types[i] == TOKEN_TYPE_CONTROL,
        }
        for i, tok in enumerate(tokens)
        if types[i] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre](),
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": [m.split(" ", 1) for m in merges],
        },
    }


def special_ids(fields: dict[str, object]) -> dict[str, int | None]:
    """FIM and repo/file header ids: the GGUF's explicit keys first, else by token text.

    StarCoder-style `<fim_prefix>` text alone does not make a FIM model: SmolLM2 carries those tokens from its
    tokenizer but was not trained on FIM, so that spelling counts only through the explicit GGUF keys.
    """
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    index = {t: i for i, t in enumerate(tokens)}

    def first(*names: str, key: str | None = None) -> int | None:
        if key and fields.get(key) is not None:
            return int(fields[key])
        return next((index[n] for n in names if n in index), None)

    return {
        "fim_prefix_id": first("<|fim_prefix|>", key="tokenizer.ggml.fim_pre_token_id"),
        "fim_suffix_id": first("<|fim_suffix|>", key="tokenizer.ggml.fim_suf_token_id"),
        "fim_middle_id": first("<|fim_middle|>", key="tokenizer.ggml.fim_mid_token_id"),
        "fim_pad_id": first("<|fim_pad|>", key="tokenizer.ggml.fim_pad_token_id"),
        "file_sep_id": first("<|file_sep|>", "<file_sep>", key="tokenizer.ggml.fim_sep_token_id"),
        "repo_name_id": first("<|repo_name|>", "<repo_name>", key="tokenizer.ggml.fim_rep_token_id"),
    }
