"""The API half of `make compat`: tornado_lite's public names against Tornado's ``api.txt``.

Tornado 6.6.1 ships a snapshot of its public API (``tornado/test/api.txt``) and the describer that
writes it (``tornado.test.api_test.describe_module``).  This script runs that describer, from the
scratch venv's Tornado, on each ``tornado_lite.<module>`` of the in-scope areas, maps the names
back to ``tornado.<module>`` and compares them with the snapshot, name by name:

* *present*: ``tornado_lite.<module>.<name>`` exists (found by the describer, or by attribute
  lookup when tornado_lite defines it differently, e.g. on a base class or without the
  ``# re-exported`` comment the describer looks for);
* *same*: and its description (kind, and for callables the parameter names, kinds and simple
  defaults, as the describer renders them) is Tornado's;
* *missing*: the rest, listed by name.

For tornado_lite it runs under ``python -m tornado_lite`` (``run_compat.py`` does that): the
describer's module imports ``tornado.test.util``, hence ``tornado.testing`` and ``tornado.web``, and
only under ``install()`` are those tornado_lite's and Tornado's on tornado_lite, which lets
``tornado_lite.testing`` hand out its ``AsyncHTTP(S)TestCase``.  Run directly, without install, the
real Tornado core gets loaded first and those two classes count as missing.

Every name of the 14 modules counts, ``tornado.testing.AsyncHTTP(S)TestCase`` included (they were
counted apart, as out of scope, until tornado_lite.testing had them).  ``--impl tornado`` compares
Tornado with its own snapshot, which must give 100% (a check of this script).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import sys
import typing

from tornado.test import api_test

IN_SCOPE = (
    "concurrent gen ioloop iostream locks log netutil options process queues tcpclient tcpserver testing util"
).split()
_REFERENCE_KINDS = ("alias of ", "import of ")


def expected_api() -> dict[str, list[tuple[str, str]]]:
    with open(api_test.SNAPSHOT_PATH, encoding="utf-8") as f:
        snapshot = api_test.parse_snapshot(f.read())
    wanted = ["tornado"] + [f"tornado.{m}" for m in IN_SCOPE]
    return {mod: [tuple(line.split(": ", 1)) for line in snapshot[mod]] for mod in wanted}  # type: ignore[misc]


def _to_tornado_names(text: str, package: str) -> str:
    if package == "tornado":
        return text
    return re.sub(r"(?<![\w.])" + re.escape(package) + r"(?![\w])", "tornado", text)


def _normalize(desc: str) -> str:
    # "alias of X" (assigned) and "import of X" (re-exported) both say: this name is X.
    for kind in _REFERENCE_KINDS:
        if desc.startswith(kind):
            return "refers to " + desc[len(kind) :]
    return desc


def _resolve(module: typing.Any, path: list[str]) -> tuple[bool, typing.Any, typing.Any]:
    """(found, object, owner) for a dotted path under a module, looking through instance attributes."""
    obj, owner = module, None
    for part in path:
        owner = obj
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            if inspect.isclass(obj) and any(
                part in api_test._instance_attributes(k) or part in getattr(k, "__slots__", ()) for k in obj.__mro__
            ):
                return True, api_test._INSTANCE_ATTRIBUTE, owner
            return False, None, owner
    return True, obj, owner


def _describe_found(obj: typing.Any, owner: typing.Any, expected_desc: str, package: str) -> str:
    """Describe an object that the describer did not list, in the describer's terms."""
    fmt = api_test._format_signature
    if expected_desc.startswith(_REFERENCE_KINDS) and (inspect.isclass(obj) or inspect.isfunction(obj)):
        return "refers to " + _to_tornado_names(api_test._qualified_name(obj), package)
    if isinstance(obj, (classmethod, staticmethod)):
        return type(obj).__name__ + fmt(obj.__func__)
    if inspect.isclass(obj):
        bases = ", ".join(api_test._qualified_name(b) for b in obj.__bases__ if b is not object)
        return _to_tornado_names(f"class({bases})", package)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj):
        kind = "function" if inspect.ismodule(owner) else "method"
        return kind + fmt(obj)
    if isinstance(obj, property):
        return "property"
    if obj is api_test._INSTANCE_ATTRIBUTE:
        return "attribute"
    return "data" if inspect.ismodule(owner) else "attribute"


def _lazy_names(module: typing.Any, modname: str, package: str, expected: list[str]) -> dict[str, str]:
    """Descriptions of the classes a module-level ``__getattr__`` (PEP 562) hands out on demand.

    The describer lists only what is in the module's namespace; ``tornado_lite.testing`` builds its
    ``AsyncHTTP(S)TestCase`` on first access (that access runs ``install()``), so they are asked for
    by name and described as the describer describes a class.
    """
    if "__getattr__" not in vars(module):
        return {}
    found: dict[str, str] = {}
    for top in sorted({name[len(modname) + 1 :].split(".")[0] for name in expected}):
        if top in vars(module):
            continue
        try:
            value = getattr(module, top)
        except (AttributeError, ImportError):  # not provided, or needs a Tornado that is not there
            continue
        if inspect.isclass(value):
            for line in api_test._describe_class(f"{module.__name__}.{top}", value):
                name, _, desc = _to_tornado_names(line, package).partition(": ")
                found[name] = desc
    return found


def compare_module(modname: str, expected: list[tuple[str, str]], package: str) -> dict[str, typing.Any]:
    target = package + modname[len("tornado") :]
    row: dict[str, typing.Any] = {
        "module": modname,
        "target": target,
        "names": 0,
        "present": 0,
        "same": 0,
        "missing": [],
        "different": [],
        "extra": [],
        "error": "",
    }
    ours: dict[str, str] = {}
    module = None
    try:
        module = importlib.import_module(target)
        for line in api_test.describe_module(target):
            name, _, desc = _to_tornado_names(line, package).partition(": ")
            ours[name] = desc
        ours.update(_lazy_names(module, modname, package, [name for name, _ in expected]))
    except Exception as e:  # an unimportable or undescribable module: every name is missing
        row["error"] = f"{type(e).__name__}: {e}"
    wanted = {name for name, _ in expected}
    for name, desc in expected:
        row["names"] += 1
        if name in ours:
            mine = ours[name]
        elif module is not None:
            found, obj, owner = _resolve(module, name[len(modname) + 1 :].split("."))
            if not found:
                row["missing"].append(name)
                continue
            mine = _describe_found(obj, owner, desc, package)
        else:
            row["missing"].append(name)
            continue
        row["present"] += 1
        if _normalize(mine) == _normalize(desc):
            row["same"] += 1
        else:
            row["different"].append({"name": name, "tornado": desc, "ours": mine})
    row["extra"] = sorted(n for n in ours if n not in wanted)
    return row


def compare(impl: str) -> dict[str, typing.Any]:
    package = "tornado_lite" if impl == "lite" else "tornado"
    rows = [compare_module(mod, exp, package) for mod, exp in expected_api().items()]
    names = sum(r["names"] for r in rows)
    present = sum(r["present"] for r in rows)
    same = sum(r["same"] for r in rows)

    def pct(n: int) -> str:
        return f"{100.0 * n / names:.1f}%" if names else "n/a"

    summary = f"{present} of {names} names present ({pct(present)}), {same} with Tornado's signature ({pct(same)})"
    return {
        "impl": impl,
        "names": names,
        "present": present,
        "same": same,
        "summary": summary,
        "modules": rows,
    }


def print_report(result: dict[str, typing.Any], out: typing.TextIO, detail: int) -> None:
    print(f"\n== API: {result['summary']}", file=out)
    print(f"{'module':<20}{'names':>7}{'present':>9}{'same':>7}{'missing':>9}  notes", file=out)
    for r in result["modules"]:
        print(
            f"{r['module']:<20}{r['names']:>7}{r['present']:>9}{r['same']:>7}{len(r['missing']):>9}  {r['error']}",
            file=out,
        )
    for r in result["modules"]:
        if r["missing"]:
            shown = r["missing"] if detail < 0 else r["missing"][:detail]
            more = f" ... and {len(r['missing']) - len(shown)} more" if len(shown) < len(r["missing"]) else ""
            print(
                f"  missing in {r['target']}: "
                + ", ".join(
                    n.rsplit(".", 1)[-1] if n.count(".") > 1 else n for n in (x[len(r["module"]) + 1 :] for x in shown)
                )
                + more,
                file=out,
            )
    for r in result["modules"]:
        for d in r["different"][: (None if detail < 0 else detail)]:
            print(f"  differs: {d['name']}: tornado {d['tornado']!r} / ours {d['ours']!r}", file=out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=("lite", "tornado"), default="lite")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout, the table on stderr")
    parser.add_argument("--detail", type=int, default=-1, help="names listed per module (-1: all)")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    result = compare(args.impl)
    print_report(result, sys.stderr if args.json else sys.stdout, args.detail)
    if args.json:
        json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
