"""Move a Tornado TCP application to tornado_lite: ``python -m tornado_lite.migrate PATH...``.

Shows a unified diff of what it would change (``--write`` applies it), then lists what it cannot
convert, with file:line.  It works on the token stream (never executes the code), so comments and
formatting survive.  What it rewrites:

- references to Tornado's core modules (``tornado.ioloop``, ``from tornado import gen``, ...) become
  ``tornado_lite``'s;
- a few asyncio idioms that have a tornado_lite equivalent: ``asyncio.run(main())`` becomes
  ``IOLoop.current().run_sync(main)``, ``asyncio.sleep`` becomes ``gen.sleep``, ``asyncio.Event``,
  ``Lock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition`` come from ``tornado_lite.locks`` and
  ``asyncio.Queue``, ``PriorityQueue``, ``LifoQueue``, ``QueueFull``, ``QueueEmpty`` from
  ``tornado_lite.queues``; ``asyncio.TimeoutError`` becomes the builtin ``TimeoutError``;
- ``import asyncio`` is dropped once nothing uses it.

Anything else from asyncio, and Tornado's HTTP layer (``tornado.web``, ``tornado.httpserver``, ...),
is reported, not changed.  This tool is a developer utility, not part of the runtime layers: it
imports only the package's list of its modules.
"""

import argparse
import difflib
import io
import os
import re
import sys
import tokenize
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

from tornado_lite import _SUBMODULES

# The modules tornado_lite provides (the package's own list, less this tool).
CORE_MODULES = _SUBMODULES - {"migrate"}

# asyncio name -> (tornado_lite module, name there)
ASYNCIO_NAMES: Dict[str, Tuple[str, str]] = {
    "sleep": ("gen", "sleep"),
    "Event": ("locks", "Event"),
    "Lock": ("locks", "Lock"),
    "Semaphore": ("locks", "Semaphore"),
    "BoundedSemaphore": ("locks", "BoundedSemaphore"),
    "Condition": ("locks", "Condition"),
    "Queue": ("queues", "Queue"),
    "PriorityQueue": ("queues", "PriorityQueue"),
    "LifoQueue": ("queues", "LifoQueue"),
    "QueueFull": ("queues", "QueueFull"),
    "QueueEmpty": ("queues", "QueueEmpty"),
}


class Problem(NamedTuple):
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class Result(NamedTuple):
    path: str
    original: str
    converted: str
    problems: List[Problem]


class _Edit(NamedTuple):
    start: Tuple[int, int]
    end: Tuple[int, int]
    text: str


def _significant(tokens: Sequence[tokenize.TokenInfo]) -> List[int]:
    """Indexes of the tokens that carry code (not comments, newlines or indentation)."""
    # NEWLINE (the end of a logical line) is kept: import statements are scanned up to it.
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    return [i for i, tok in enumerate(tokens) if tok.type not in skip]


class _Converter:
    """Rewrites one module's source.  Collects edits on token positions, then applies them at once."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self.edits: List[_Edit] = []
        self.problems: List[Problem] = []
        self.needed_imports: Set[str] = set()  # tornado_lite modules the new code names
        self.needs_ioloop_name = False

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    def convert(self) -> str:
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(self.source).readline))
        except (tokenize.TokenError, SyntaxError) as exc:
            self.problem(1, f"could not tokenize: {exc}")
            return self.source
        code = _significant(tokens)
        toks = [tokens[i] for i in code]
        self._rewrite_tornado_references(toks)
        self._rewrite_asyncio(toks)
        converted = self._apply(self.source, self.edits)
        converted = self._fix_imports(converted)
        return converted

    # -- tornado.X -> tornado_lite.X --------------------------------------------------------------------

    def _rewrite_tornado_references(self, toks: List[tokenize.TokenInfo]) -> None:
        n = len(toks)
        for i, tok in enumerate(toks):
            if tok.type != tokenize.NAME or tok.string != "tornado":
                continue
            if i > 0 and toks[i - 1].string == ".":
                continue  # an attribute that happens to be called tornado
            # "from tornado import a, b"
            if i > 0 and toks[i - 1].string == "from" and i + 1 < n and toks[i + 1].string == "import":
                self._rewrite_from_tornado_import(toks, i)
                continue
            if i + 2 < n and toks[i + 1].string == "." and toks[i + 2].type == tokenize.NAME:
                module = toks[i + 2].string
                if module in CORE_MODULES:
                    self.edits.append(_Edit(tok.start, tok.end, "tornado_lite"))
                else:
                    self.problem(tok.start[0], f"tornado.{module} is not part of tornado_lite (left as is)")
            elif i > 0 and toks[i - 1].string == "import":
                self.problem(tok.start[0], "bare 'import tornado': references through it are not converted")

    def _rewrite_from_tornado_import(self, toks: List[tokenize.TokenInfo], i: int) -> None:
        names = []
        j = i + 2
        while j < len(toks) and toks[j].type != tokenize.NEWLINE:
            if toks[j].type == tokenize.NAME and toks[j].string != "as" and toks[j - 1].string != "as":
                names.append(toks[j].string)
            j += 1
        outside = [name for name in names if name not in CORE_MODULES]
        if not outside:
            self.edits.append(_Edit(toks[i].start, toks[i].end, "tornado_lite"))
        else:
            self.problem(
                toks[i].start[0],
                "'from tornado import' mixes tornado_lite modules with others (%s): split it by hand"
                % ", ".join(outside),
            )

    # -- asyncio idioms ------------------------------------------------------------------------------

    def _rewrite_asyncio(self, toks: List[tokenize.TokenInfo]) -> None:
        n = len(toks)
        for i, tok in enumerate(toks):
            if tok.type != tokenize.NAME or tok.string != "asyncio":
                continue
            if i > 0 and toks[i - 1].string in (".", "import"):
                if toks[i - 1].string == "import" and i > 1 and toks[i - 2].string == "from":
                    pass
                else:
                    continue  # "import asyncio" is handled once the rest is known
            if i > 0 and toks[i - 1].string == "from":
                self.problem(tok.start[0], "'from asyncio import ...' is not converted: use module references")
                continue
            if not (i + 2 < n and toks[i + 1].string == "." and toks[i + 2].type == tokenize.NAME):
                self.problem(tok.start[0], "use of asyncio not converted")
                continue
            attr = toks[i + 2].string
            if attr == "run" and self._rewrite_asyncio_run(toks, i):
                continue
            if attr == "TimeoutError":
                self.edits.append(_Edit(tok.start, toks[i + 2].end, "TimeoutError"))
                continue
            if attr in ASYNCIO_NAMES:
                module, name = ASYNCIO_NAMES[attr]
                self.edits.append(_Edit(tok.start, toks[i + 2].end, f"tornado_lite.{module}.{name}"))
                self.needed_imports.add(module)
                continue
            self.problem(tok.start[0], f"asyncio.{attr} has no automatic tornado_lite equivalent")

    def _rewrite_asyncio_run(self, toks: List[tokenize.TokenInfo], i: int) -> bool:
        """``asyncio.run(NAME(ARGS))`` -> ``IOLoop.current().run_sync(NAME)`` or a lambda with args."""
        n = len(toks)
        if not (i + 4 < n and toks[i + 3].string == "(" and toks[i + 4].type == tokenize.NAME):
            return False
        # Find the callable expression (dotted name) and its argument list.
        j = i + 4
        while j + 2 < n and toks[j + 1].string == "." and toks[j + 2].type == tokenize.NAME:
            j += 2
        if j + 1 >= n or toks[j + 1].string != "(":
            return False
        depth = 0
        k = j + 1
        while k < n:
            if toks[k].string in "([{" and toks[k].type == tokenize.OP:
                depth += 1
            elif toks[k].string in ")]}" and toks[k].type == tokenize.OP:
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if k + 1 >= n or toks[k + 1].string != ")":
            return False
        func_text = self._text(toks[i + 4].start, toks[j].end)
        args_text = self._text(toks[j + 1].end, toks[k].start).strip()
        target = func_text if not args_text else f"lambda: {func_text}({args_text})"
        replacement = f"tornado_lite.ioloop.IOLoop.current().run_sync({target})"
        self.edits.append(_Edit(toks[i].start, toks[k + 1].end, replacement))
        self.needed_imports.add("ioloop")
        return True

    def _text(self, start: Tuple[int, int], end: Tuple[int, int]) -> str:
        lines = self.source.splitlines(keepends=True)
        if start[0] == end[0]:
            return lines[start[0] - 1][start[1] : end[1]]
        parts = [lines[start[0] - 1][start[1] :]]
        parts.extend(lines[start[0] : end[0] - 1])
        parts.append(lines[end[0] - 1][: end[1]])
        return "".join(parts)

    # -- applying --------------------------------------------------------------------------------------

    @staticmethod
    def _apply(source: str, edits: Iterable[_Edit]) -> str:
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line))

        def pos(p: Tuple[int, int]) -> int:
            return offsets[p[0] - 1] + p[1]

        out = source
        for edit in sorted(edits, key=lambda e: pos(e.start), reverse=True):
            out = out[: pos(edit.start)] + edit.text + out[pos(edit.end) :]
        return out

    def _fix_imports(self, text: str) -> str:
        """Adds ``import tornado_lite.X`` for new references, and drops an unused ``import asyncio``."""
        lines = text.splitlines(keepends=True)
        if not _uses_name(text, "asyncio"):
            for idx, line in enumerate(lines):
                if re.match(r"\s*import asyncio\s*(#.*)?$", line):
                    lines[idx] = ""
        wanted = sorted(
            mod for mod in self.needed_imports if not re.search(rf"^\s*import tornado_lite\.{mod}\b", text, re.M)
        )
        if wanted:
            insert_at = self._import_insertion_line(lines)
            new = "".join(f"import tornado_lite.{mod}\n" for mod in wanted)
            lines.insert(insert_at, new)
        return "".join(lines)

    @staticmethod
    def _import_insertion_line(lines: List[str]) -> int:
        """After the module docstring and any __future__ imports, before the first other import."""
        for idx, line in enumerate(lines):
            if re.match(r"(import |from )", line) and not line.startswith("from __future__"):
                return idx
        return 0


def _uses_name(text: str, name: str) -> bool:
    """Whether code (not comments or strings) refers to ``name`` other than in ``import name``."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return True
    previous = None
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.string == name and not (previous and previous.string == "import"):
            return True
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            previous = tok
    return False


def convert_source(path: str, source: str) -> Result:
    converter = _Converter(path, source)
    converted = converter.convert()
    return Result(path, source, converted, converter.problems)


def _python_files(paths: Sequence[str]) -> List[str]:
    found: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))
        else:
            found.append(path)
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tornado_lite.migrate",
        description="Show (or apply with --write) the changes that move a Tornado TCP app to tornado_lite.",
    )
    parser.add_argument("paths", nargs="+", help="files or directories")
    parser.add_argument("--write", action="store_true", help="apply the changes in place")
    args = parser.parse_args(argv)

    problems: List[Problem] = []
    changed = 0
    for path in _python_files(args.paths):
        with open(path, encoding="utf-8") as f:
            source = f.read()
        result = convert_source(path, source)
        problems.extend(result.problems)
        if result.converted == source:
            continue
        changed += 1
        diff = difflib.unified_diff(
            source.splitlines(keepends=True),
            result.converted.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
        sys.stdout.writelines(diff)
        if args.write:
            with open(path, "w", encoding="utf-8") as f:
                f.write(result.converted)
    verb = "changed" if args.write else "would change"
    print(f"\n{changed} file(s) {verb}.")
    if problems:
        print(f"{len(problems)} thing(s) not converted:")
        for problem in problems:
            print(f"  {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
