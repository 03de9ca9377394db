"""The names in the prompt's repo-level header (`<repo_name>NAME<file_sep>PATH`), cut by one rule.

A path can be thousands of characters (generated or deeply nested folders); the header must not take the prompt.
A repo name keeps its head; a path keeps its tail, the file name mattering more than the folders above it. The
server cuts further to fit a small model's context (lsp_server.fit) with the same rule and a smaller limit; the
prompt planner (runtime.complete.prompt) writes the header with these.
"""

from __future__ import annotations

HEADER_NAME_CHARS = 200  # a repo name or path longer than this is cut
CUT_MARK = "..."  # stands before a path's kept tail


def header_repo(name: str | None) -> str:
    """The repo name as the header shows it ("repo" when there is none)."""
    return (name or "repo")[:HEADER_NAME_CHARS]


def header_path(path: str, limit: int = HEADER_NAME_CHARS) -> str:
    """`path`, or its last `limit` characters after CUT_MARK. Cutting again with the same limit changes nothing."""
    return path if len(path) <= limit else CUT_MARK + path[-limit:]
