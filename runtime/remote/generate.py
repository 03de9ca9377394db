"""`waferline generate --backend ... --endpoint ...`: the prompt completed by a remote server, streamed to stdout.

The same backend the language server uses (RemoteBackend: probe, dialect fallback, marker cutting, one-line
RemoteError per failure mode); nothing loads locally. The prompt is the text before the cursor, with nothing after
it: `/infill`'s input_prefix, the OpenAI `prompt` (and an empty `suffix`), or the FIM template's prefix part.
"""

from __future__ import annotations

import argparse
import sys
import threading

import msgspec

from .backend import RemoteBackend, RemoteConfig
from .fim import PromptParts
from .transport import RemoteError


def generate_remote(args: argparse.Namespace, prompt: str) -> int:
    """Stream the completion of `prompt`; a failure raises RemoteError (the CLI prints it as one line)."""
    if not args.endpoint:
        raise RemoteError(f"--backend {args.backend} needs --endpoint URL (http://127.0.0.1:8080 for llama.cpp, "
                          "http://HOST:8000/v1 for an OpenAI-compatible server)", "config")
    if not prompt:
        raise RemoteError("the prompt is empty", "config")
    backend = RemoteBackend(RemoteConfig(
        dialect=args.backend, endpoint=args.endpoint, model=args.remote_model, fim_template=args.fim_template,
        api_key_env=args.api_key_env, max_tokens=args.max_tokens, temperature=0.0 if args.greedy else args.temperature,
        stop=list(args.stop)))
    probe = backend.probe()
    if probe.dialect is None:
        raise RemoteError(probe.message, probe.error_kind or "connection")  # type: ignore[arg-type]
    if backend.fallback_reason:
        print(f"waferline: {backend.fallback_reason}", file=sys.stderr)
    pieces: list[str] = []
    stream = backend.stream(PromptParts(prefix=prompt), threading.Event())
    try:
        for piece in stream:
            pieces.append(piece)
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
    finally:
        stream.close()  # an interrupted generate closes the connection: the server stops generating
    stats = backend.last_stats
    if args.json:
        print(msgspec.json.encode({"text": "".join(pieces), "backend": backend.dialect, "endpoint": backend.endpoint.url(),
                                   "model": backend.model, "pieces": len(pieces),
                                   "stats": stats}).decode())
        return 0
    first = f"first text after {stats.first_piece_s * 1e3:.0f} ms" if stats and stats.first_piece_s is not None else "no text"
    rate = ""
    if stats and stats.first_piece_s is not None and len(pieces) > 1 and stats.total_s > stats.first_piece_s:
        rate = f", {(len(pieces) - 1) / (stats.total_s - stats.first_piece_s):.1f} pieces/s after it"
    told = ""
    if stats and stats.prompt_tokens is not None:
        told = f"; server: {stats.prompt_tokens} prompt tokens" + (
            f", {stats.cached_tokens} cached" if stats.cached_tokens is not None else "")
    print(f"\n\n[{probe.server or 'server'} at {backend.endpoint.url()}, dialect {backend.dialect}: {len(pieces)} pieces, "
          f"{first}{rate}; stop: {stats.finish if stats else '?'}; {stats.bytes_sent if stats else 0} bytes sent{told}]",
          file=sys.stderr)
    return 0
