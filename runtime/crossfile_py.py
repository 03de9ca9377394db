"""Python's part of the cross-file context: imports, top-level definitions, and which open document a module is.

Imports are read with a regex, line by line, because the file being edited often does not parse; definitions with
`ast` when the file parses (signature + docstring; a class with its attributes and method signatures), else by
indentation. Pure functions: runtime.crossfile indexes documents with them and asks them what F imports.
"""

from __future__ import annotations

import ast
import keyword
import re
from typing import Iterable, NamedTuple, Protocol

from runtime.sequences import common_prefix_len

PY_EXT = (".py", ".pyi")
SUMMARY_MAX_LINES, DOC_MAX_LINES, ASSIGN_MAX_LINES = 60, 12, 6
PARTIAL_MAX_DEFS = 8  # `alias.pa|`: at most this many definitions of the module starting with "pa"
IMPORT_SCAN_CHARS = 1 << 18  # imports are read from the head of the prefix (and the lines near the cursor)
USE_SCAN_CHARS = 16_000  # imported names used in this much text before the cursor come first, nearest first

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHAIN = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")  # a name, or a.b.c
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*)[ \t]*([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n;#]*)|import[ \t]+([^\n;#]+))", re.M)
_LINE_DEF = re.compile(r"(?:async[ \t]+)?(def|class)[ \t]+(\w+)|([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)")
_LINE_MEMBER = re.compile(r"[ \t]+(?:@|(?:async[ \t]+)?def[ \t]|\w+[ \t]*(?::[^=\n]*)?=(?!=))")


class Import(NamedTuple):
    local: str  # the name bound in the importing file
    level: int  # leading dots of a relative import
    module: tuple[str, ...]
    name: str | None  # None: `import a.b [as c]` binds the module itself


class Definition(NamedTuple):
    start: int  # 1-based lines of the whole definition
    end: int
    text: str  # its summary


def parse_imports(text: str) -> list[Import]:
    """Import statements found line by line (regex, so a file being edited that does not parse still has them)."""
    out = []
    for m in _IMPORT.finditer(text):
        if m.group(4) is not None:
            items, level, module = m.group(4), 0, ()
        else:
            items, level = re.sub(r"#[^\n]*", "", m.group(3)).strip("()"), len(m.group(1))
            module = tuple(p for p in m.group(2).split(".") if p)
        for item in items.replace("\\\n", " ").split(","):
            words = item.split()
            if not words or not all(p.isidentifier() for p in words[0].split(".")):
                continue
            local = words[2] if len(words) == 3 and words[1] == "as" and words[2].isidentifier() else words[0]
            if m.group(4) is not None:
                out.append(Import(local, 0, tuple(words[0].split(".")), None))
            elif "." not in words[0]:
                out.append(Import(local, level, module, words[0]))
    return out


def module_of(path: str) -> tuple[str, ...] | None:
    if not path.endswith(PY_EXT):
        return None
    parts = path.rsplit(".", 1)[0].split("/")
    return tuple(parts[:-1] if parts[-1] == "__init__" else parts)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


DefNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _header(node: DefNode, lines: list[str]) -> list[str]:
    """Decorators and signature of a def or class, up to its colon (comments and blank lines after it dropped)."""
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    end = max(node.body[0].lineno - 1, node.lineno)
    while end > node.lineno and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return lines[start - 1 : end]


def _docstring(node: DefNode, lines: list[str]) -> list[str]:
    b = node.body[0]
    if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
        return []
    doc = lines[b.lineno - 1 : b.end_lineno]
    if len(doc) > DOC_MAX_LINES:  # its first lines, closed again
        quote = doc[0].lstrip(" \trRuUbB")[:3]
        doc = doc[: DOC_MAX_LINES - 4] + [_indent(doc[0]) + (quote if quote in ('"""', "'''") else '"""')]
    return doc


def _body_indent(node: DefNode, lines: list[str]) -> str:
    return _indent(lines[node.body[0].lineno - 1])


def _elided(node: DefNode, lines: list[str]) -> list[str]:
    """`...` at body indentation where a body is left out (none after a one-line `def f(): ...`)."""
    return [_body_indent(node, lines) + "..."] if node.body[0].lineno > node.lineno else []


def _span(node: ast.stmt, lines: list[str], cap: int) -> list[str]:
    return lines[node.lineno - 1 : min(node.end_lineno or node.lineno, node.lineno - 1 + cap)]


def _summary(node: DefNode, lines: list[str]) -> list[str]:
    """A function's signature + docstring; a class's header, docstring, attributes and method signatures."""
    if node.body[0].lineno == node.lineno:
        return _header(node, lines)  # `def f(): return 1`: the header is all of it
    doc = _docstring(node, lines)
    out = _header(node, lines) + doc
    inner = _body_indent(node, lines)
    body = node.body[1:] if doc else node.body
    if not isinstance(node, ast.ClassDef):
        return out + ([inner + "..."] if body else [])
    for stmt in body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            out += _span(stmt, lines, 3)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += _header(stmt, lines)
            if stmt.name in ("__init__", "__post_init__"):  # where instance attributes are set
                out += [lines[s.lineno - 1] for s in stmt.body if isinstance(s, (ast.Assign, ast.AnnAssign))
                        and any(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                                for t in (s.targets if isinstance(s, ast.Assign) else [s.target]))]
            out += _elided(stmt, lines)
        elif isinstance(stmt, ast.ClassDef):
            out += _header(stmt, lines) + _elided(stmt, lines)
    return out[:SUMMARY_MAX_LINES] + ([inner + "..."] if len(out) > SUMMARY_MAX_LINES else [])


def _top_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Module statements, looking one level into `if`/`try`/`with` (TYPE_CHECKING blocks, optional imports)."""
    for stmt in body:
        if isinstance(stmt, (ast.If, ast.Try, ast.With)):
            handlers = [s for h in getattr(stmt, "handlers", []) for s in h.body]
            yield from (*stmt.body, *getattr(stmt, "orelse", []), *handlers, *getattr(stmt, "finalbody", []))
        else:
            yield stmt


def python_defs(text: str, lines: list[str]) -> dict[str, Definition]:
    """Top-level definitions by name (the first binding wins), from `ast`, else line by line."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _line_defs(lines)
    out: dict[str, Definition] = {}
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            out.setdefault(node.name, Definition(start, node.end_lineno or start, "\n".join(_summary(node, lines))))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            text_ = "\n".join(_span(node, lines, ASSIGN_MAX_LINES))
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out.setdefault(n.id, Definition(node.lineno, node.end_lineno or node.lineno, text_))
    return out


def _line_defs(lines: list[str]) -> dict[str, Definition]:
    """Fallback for a file that does not parse: column-0 `def`/`class`/assignments, by indentation."""
    out: dict[str, Definition] = {}
    for i, line in enumerate(lines):
        m = _LINE_DEF.match(line)
        if not m or (m.group(2) or m.group(3)) in out or (m.group(2) or m.group(3)) in _KEYWORDS:
            continue
        if m.group(3):
            out[m.group(3)] = Definition(i + 1, i + 1, line)
            continue
        start = i
        while start > 0 and lines[start - 1].startswith("@"):
            start -= 1
        sig = i
        while sig < min(len(lines) - 1, i + 15) and not lines[sig].split("#")[0].rstrip().endswith(":"):
            sig += 1
        end = next((j for j in range(sig + 1, len(lines)) if lines[j][:1].strip()), len(lines))  # back at column 0
        inner = [ln for ln in lines[sig + 1 : end] if ln.strip()]
        keep = lines[start : sig + 1]
        if inner and inner[0].lstrip(" \trRuUbB").startswith(('"""', "'''")):
            q = inner[0].lstrip(" \trRuUbB")[:3]
            close = next((k for k in range(len(inner)) if inner[k].count(q) >= (2 if k == 0 else 1)), 0)
            keep += inner[: min(close + 1, DOC_MAX_LINES)]
        if m.group(1) == "class" and inner:
            member = _indent(inner[0])
            keep += [ln for ln in inner if _indent(ln) == member and _LINE_MEMBER.match(ln)]
        out[m.group(2)] = Definition(start + 1, end, "\n".join(keep[:SUMMARY_MAX_LINES]))
    return out


class Module(Protocol):
    """What resolution needs of an indexed document (runtime.crossfile.Index)."""

    path: str
    module: tuple[str, ...] | None  # None: not a Python file
    defs: dict[str, Definition]
    imports: dict[str, Import]  # for re-exports (`from .impl import n` in a package __init__)


class Modules:
    """The open Python documents by every trailing run of their module path (`a.b.c` under `c`, `b.c`, `a.b.c`):
    a module name is a dict look-up, not a scan, however many names a file imports."""

    def __init__(self, mods: Iterable[Module]):
        self.by_suffix: dict[tuple[str, ...], list[Module]] = {}
        for m in mods:
            parts = m.module or ()
            for k in range(len(parts)):
                self.by_suffix.setdefault(parts[k:], []).append(m)

    def find(self, fpath: str, level: int, parts: tuple[str, ...]) -> Module | None:
        """The document a module name refers to, seen from the file at `fpath`: a relative import from its folder,
        an absolute one by the trailing components of a document's path; the full match, then the nearest folder."""
        here = fpath.split("/")[:-1]
        targets = [parts] if parts else []
        if level:
            if level - 1 > len(here):
                return None
            targets.insert(0, tuple(here[: len(here) - (level - 1)]) + parts)
        for t in targets:
            found = self.by_suffix.get(t)
            if found:
                return min(found, key=lambda m: (len(m.module or ()) != len(t),
                                                 -common_prefix_len(m.path.split("/"), here), m.path))
        return None

    def lookup(self, fpath: str, level: int, parts: tuple[str, ...], name: str, depth: int = 0):
        """(module, definition) of `name`, following a re-export (`from .impl import name`) twice at most."""
        mod = self.find(fpath, level, parts)
        if mod is None:
            return None
        if name in mod.defs:
            return mod, mod.defs[name]
        again = mod.imports.get(name)
        if again is not None and again.name is not None and depth < 2:
            return self.lookup(mod.path, again.level, again.module, again.name, depth + 1)
        return None


def imported_definitions(fpath: str, prefix: str, owner: str | None, word: str,
                         mods: Modules) -> list[tuple[Module, Definition]]:
    """Definitions of the names F imports, most wanted first: the name being typed, then the names used in the
    last USE_SCAN_CHARS before the cursor (nearest first, `alias.attr` included), then the others in import order."""
    recent = prefix[-USE_SCAN_CHARS:]
    imports = parse_imports(prefix[:IMPORT_SCAN_CHARS])
    if len(prefix) > IMPORT_SCAN_CHARS:
        imports += parse_imports(recent)
    if not imports:
        return []
    bound = {i.local: i for i in imports}

    def module(imp: Import) -> Module | None:  # the module a bound name stands for, if it is one
        return mods.find(fpath, imp.level, imp.module if imp.name is None else imp.module + (imp.name,))

    wanted: list[tuple[Import, str | None]] = []  # (import, attribute of a module alias)
    if owner is not None and owner in bound and (mod := module(bound[owner])) is not None:
        names = sorted((d.start, n) for n, d in mod.defs.items() if n.startswith(word))[:PARTIAL_MAX_DEFS]
        wanted += [(bound[owner], n) for _, n in names]
    elif owner is None and word:
        typed = [i for i in bound.values() if i.local.startswith(word)]
        wanted += [(i, None) for i in sorted(typed, key=lambda i: i.local != word)]  # the exact name first
    last: dict[tuple[str, str | None], int] = {}
    aliases = {a for a, i in bound.items() if "." in a or i.name is None or module(i) is not None}
    for m in _CHAIN.finditer(recent):  # one pass over names and dotted chains (a regex per alias took ~2 ms each)
        parts, at = m.group().split("."), m.start()
        for part in parts:  # every name in bound, wherever it stands
            if part in bound:
                last[(part, None)] = at
            at += len(part) + 1
        if len(parts) > 1 and aliases and not (m.start() and recent[m.start() - 1] == "."):  # `x().a.b`: no alias
            for k in range(1, len(parts)):
                if (alias := ".".join(parts[:k])) in aliases:
                    last[(alias, parts[k])] = m.start()
    wanted += [(bound[a], attr) for (a, attr), _ in sorted(last.items(), key=lambda kv: -kv[1])]
    wanted += [(i, None) for i in bound.values() if i.name is not None]
    out, seen = [], set()
    for imp, attr in wanted:
        if attr is not None:
            mod = module(imp)
            got = (mod, mod.defs[attr]) if mod is not None and attr in mod.defs else None
        else:
            got = mods.lookup(fpath, imp.level, imp.module, imp.name) if imp.name is not None else None
        if got is not None and (got[0].path, got[1].start) not in seen:
            seen.add((got[0].path, got[1].start))
            out.append(got)
    return out
