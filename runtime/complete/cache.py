"""The result cache: repeated requests and "typing along" a shown suggestion cost no model call."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import msgspec


class _CacheEntry(msgspec.Struct):
    prefix_tail: str  # the last `tail_chars` of the prefix: all of it a prompt can see
    prefix_len: int
    suffix_head: str
    options: tuple
    text: str


class ResultCache:
    """A small LRU of shown suggestions.

    Besides exact repeats it serves "typing along": when the new prefix is an old prefix plus characters that the
    old suggestion starts with, the rest of that suggestion is still right and costs no model call. Entries keep
    only the tail of the prefix that a prompt can see (`tail_chars`), never the whole document: 32 entries of a
    20 MB file would otherwise hold 640 MB.
    """

    SUFFIX_CHARS = 256

    def __init__(self, size: int = 32):
        self.size = size
        self._entries: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(tail: str, length: int, suffix_head: str, options: tuple) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((options, length)).encode())
        h.update(b"\0")
        h.update(suffix_head.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(tail.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def get(self, prefix: str, suffix: str, options: tuple, tail_chars: int = 1 << 15) -> str | None:
        suffix_head = suffix[: self.SUFFIX_CHARS]
        key = self._key(prefix[-tail_chars:], len(prefix), suffix_head, options)
        with self._lock:
            e = self._entries.get(key)
            if e is not None:
                self._entries.move_to_end(key)
                return e.text
            for e in reversed(self._entries.values()):
                if e.options != options or e.suffix_head != suffix_head or not e.text:
                    continue
                start = e.prefix_len - len(e.prefix_tail)
                if len(prefix) > e.prefix_len and prefix.startswith(e.prefix_tail, start):
                    typed = prefix[e.prefix_len :]
                    if len(typed) < len(e.text) and e.text.startswith(typed):
                        return e.text[len(typed) :]
        return None

    def put(self, prefix: str, suffix: str, options: tuple, text: str, tail_chars: int = 1 << 15) -> None:
        suffix_head = suffix[: self.SUFFIX_CHARS]
        tail = prefix[-tail_chars:]
        key = self._key(tail, len(prefix), suffix_head, options)
        with self._lock:
            self._entries[key] = _CacheEntry(tail, len(prefix), suffix_head, options, text)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
