"""Command-line and config-file options (layer 1), with Tornado's ``tornado.options`` API.

Modules declare options with `define` next to the code that uses them; the application calls
`parse_command_line` and/or `parse_config_file` once at startup, then reads ``options.name``.
Names may use dashes or underscores interchangeably.  The global parser comes with the logging
options (``--logging``, ``--log_file_prefix``, ...) and applies them after a final parse.

This module imports only from util and log; it must never touch the event loop.
"""

from __future__ import annotations

import datetime
import numbers
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from tornado_lite.log import define_logging_options
from tornado_lite.util import exec_in

__all__ = [
    "Error",
    "OptionParser",
    "add_parse_callback",
    "define",
    "options",
    "parse_command_line",
    "parse_config_file",
    "print_help",
]


class Error(Exception):
    """Raised for a bad definition, an unknown option, or a value of the wrong type."""


def _normalize(name: str) -> str:
    # Options are stored under their dashed spelling; "a_b", "a-b" and "a_b-c" are all one option.
    return name.replace("_", "-")


def _definer_file() -> str:
    """File of the code that called ``define`` (the default group); "" when it is this module.

    Walks out of OptionParser.define and, if present, the module-level `define` wrapper.
    """
    frame = sys._getframe(2)  # 0: here, 1: OptionParser.define, 2: its caller
    if frame.f_code.co_filename == _THIS_FILE and frame.f_code.co_name == "define":
        frame = frame.f_back or frame
    file_name = frame.f_code.co_filename
    return "" if file_name == _THIS_FILE else file_name


# Compared with code objects' co_filename, so take it from one rather than from __file__.
_THIS_FILE = _definer_file.__code__.co_filename


class OptionParser:
    """A set of defined options, readable as attributes or items (``opts.port``, ``opts["port"]``).

    Usually used through the module-level functions, which act on the global `options`.
    """

    def __init__(self) -> None:
        # Written through __dict__ because __setattr__ is reserved for option values.
        self.__dict__["_options"] = {}
        self.__dict__["_parse_callbacks"] = []
        self.define("help", type=bool, help="show this help information", callback=self._help_callback)

    # -- value access ---------------------------------------------------------------------------

    def _lookup(self, name: str) -> _Option:
        option = self._options.get(_normalize(name))
        if not isinstance(option, _Option):
            raise AttributeError(f"Unrecognized option {_normalize(name)!r}")  # noqa: TRY004
        return option

    def __getattr__(self, name: str) -> Any:
        return self._lookup(name).value()

    def __setattr__(self, name: str, value: Any) -> None:
        self._lookup(name).set(value)

    def __getitem__(self, name: str) -> Any:
        return self._lookup(name).value()

    def __setitem__(self, name: str, value: Any) -> None:
        self._lookup(name).set(value)

    def __contains__(self, name: str) -> bool:
        return _normalize(name) in self._options

    def __iter__(self) -> Iterator[str]:
        # Names as they were defined (not normalized), like the introspection methods below.
        return (option.name for option in self._options.values())

    def items(self) -> Iterable[tuple[str, Any]]:
        """``(name, value)`` pairs for every option."""
        return [(option.name, option.value()) for option in self._options.values()]

    def groups(self) -> set[str]:
        """Names of all option groups (by default, the file each option was defined in)."""
        return {option.group_name for option in self._options.values()}

    def group_dict(self, group: str) -> dict[str, Any]:
        """``{name: value}`` for the options in ``group`` (all options if ``group`` is empty).

        Handy for ``Application(handlers, **options.group_dict("application"))``.
        """
        return {
            option.name: option.value()
            for option in self._options.values()
            if not group or option.group_name == group
        }

    def as_dict(self) -> dict[str, Any]:
        """``{name: value}`` for every option."""
        return {option.name: option.value() for option in self._options.values()}

    # -- definition -----------------------------------------------------------------------------

    def define(
        self,
        name: str,
        default: Any = None,
        type: type | None = None,
        help: str | None = None,
        metavar: str | None = None,
        multiple: bool = False,
        group: str | None = None,
        callback: Callable[[Any], None] | None = None,
    ) -> None:
        """Define an option.

        ``type`` is str, int, float, bool, datetime.datetime, datetime.timedelta, or any callable
        that builds a value from a string; without it, the type of ``default`` (or str).  With
        ``multiple=True`` the value is a list (comma-separated on the command line; ``lo:hi``
        ranges for integer types).  ``help``/``metavar`` feed `print_help`.  ``group`` defaults
        to the defining file.  ``callback(value)`` runs every time the value changes.
        """
        key = _normalize(name)
        if key in self._options:
            raise Error(f"Option {key!r} already defined in {self._options[key].file_name}")
        file_name = _definer_file()
        if type is None:
            type = default.__class__ if (default is not None and not multiple) else str
        self._options[key] = _Option(
            name,
            default=default,
            type=type,
            help=help,
            metavar=metavar,
            multiple=multiple,
            file_name=file_name,
            group_name=group or file_name,
            callback=callback,
        )

    # -- parsing --------------------------------------------------------------------------------

    def parse_command_line(self, args: list[str] | None = None, final: bool = True) -> list[str]:
        """Apply ``--name=value`` arguments (default ``sys.argv``; ``args[0]`` is skipped).

        A bare ``--flag`` means true for bool options.  Parsing stops at the first argument not
        starting with ``-`` or after ``--``; the remaining arguments are returned.  With
        ``final=False`` the parse callbacks (e.g. logging setup) are not run.
        """
        if args is None:
            args = sys.argv
        remaining: list[str] = []
        for index in range(1, len(args)):
            arg = args[index]
            if not arg.startswith("-"):
                remaining = args[index:]
                break
            if arg == "--":
                remaining = args[index + 1 :]
                break
            name, has_value, value = arg.lstrip("-").partition("=")
            key = _normalize(name)
            option = self._options.get(key)
            if option is None:
                self.print_help()
                raise Error(f"Unrecognized command line option: {key!r}")
            if not has_value:
                if option.type is not bool:
                    raise Error(f"Option {key!r} requires a value")
                value = "true"
            option.parse(value)
        if final:
            self.run_parse_callbacks()
        return remaining

    def parse_config_file(self, path: str, final: bool = True) -> None:
        """Run the Python file at ``path`` and apply every global whose name is an option.

        The file is executed, so it must be trusted.  It is read as UTF-8 and sees ``__file__``
        (absolute path).  A string value is parsed like a command-line value unless the option
        is a single str; other values must already have the option's type (lists for
        ``multiple``).  ``final`` is as for `parse_command_line`.
        """
        namespace: dict[str, Any] = {"__file__": os.path.abspath(path)}
        with open(path, "rb") as f:
            source = f.read().decode("utf-8")
        exec_in(source, namespace, namespace)
        for name, value in namespace.items():
            option = self._options.get(_normalize(name))
            if option is None:
                continue
            if option.multiple and not isinstance(value, (list, str)):
                raise Error(
                    f"Option {option.name!r} is required to be a list of "
                    f"{option.type.__name__} or a comma-separated string"
                )
            if type(value) is str and (option.type is not str or option.multiple):
                option.parse(value)
            else:
                option.set(value)
        if final:
            self.run_parse_callbacks()

    # -- help and callbacks ---------------------------------------------------------------------

    def print_help(self, file: TextIO | None = None) -> None:
        """Write usage and every option, grouped by file, to ``file`` (default stderr)."""
        out = sys.stderr if file is None else file
        print(f"Usage: {sys.argv[0]} [OPTIONS]", file=out)
        print("\nOptions:\n", file=out)
        by_group: dict[str, list[_Option]] = {}
        for option in self._options.values():
            by_group.setdefault(option.group_name, []).append(option)
        for group_name, members in sorted(by_group.items()):
            if group_name:
                print(f"\n{os.path.normpath(group_name)} options:\n", file=out)
            for option in sorted(members, key=lambda o: o.name):
                for line in _help_lines(option):
                    print(line, file=out)
        print(file=out)

    def _help_callback(self, value: bool) -> None:
        if value:
            self.print_help()
            sys.exit(0)

    def add_parse_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` after every final parse."""
        self._parse_callbacks.append(callback)

    def run_parse_callbacks(self) -> None:
        for callback in self._parse_callbacks:
            callback()

    def mockable(self) -> _Mockable:
        """A view of this parser usable with ``mock.patch.object(options.mockable(), name, v)``."""
        return _Mockable(self)


_NAME_COLUMN = 30
_HELP_WIDTH = 79 - 35


def _help_lines(option: _Option) -> list[str]:
    """``  --name=METAVAR   help (default x)`` wrapped into an aligned second column."""
    flag = _normalize(option.name)  # the command line spelling always uses dashes
    if option.metavar:
        flag += "=" + option.metavar
    description = option.help or ""
    if option.default is not None and option.default != "":
        description += f" (default {option.default})"
    text = textwrap.wrap(description, _HELP_WIDTH)
    if len(flag) > _NAME_COLUMN or not text:
        # Long flags get their own line; the description starts below.
        text.insert(0, "")
    lines = [f"  --{flag:<{_NAME_COLUMN}} {text[0]}"]
    lines.extend(f"{'':<34} {more}" for more in text[1:])
    return lines


class _Mockable:
    """Adapter letting `unittest.mock.patch` set and restore an option.

    mock.patch deletes the attribute it set when the object has no such entry in ``__dict__``;
    here deleting restores the value saved when the attribute was set.
    """

    def __init__(self, options: OptionParser) -> None:
        self.__dict__["_options"] = options
        self.__dict__["_originals"] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._options, name)

    def __setattr__(self, name: str, value: Any) -> None:
        assert name not in self._originals, "don't reuse mockable objects"
        self._originals[name] = getattr(self._options, name)
        setattr(self._options, name, value)

    def __delattr__(self, name: str) -> None:
        setattr(self._options, name, self._originals.pop(name))


_DATETIME_FORMATS = (
    "%a %b %d %H:%M:%S %Y",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y%m%d %H:%M:%S",
    "%Y%m%d %H:%M",
    "%Y-%m-%d",
    "%Y%m%d",
    "%H:%M:%S",
    "%H:%M",
)

_TIMEDELTA_UNITS = {
    "d": "days",
    "h": "hours",
    "m": "minutes",
    "min": "minutes",
    "s": "seconds",
    "sec": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "w": "weeks",
}
# One "<number><unit>" term; a timedelta value is a sequence of them, e.g. "1h 30m" or "2.5".
_TIMEDELTA_TERM = re.compile(
    r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(\w*)\s*", re.IGNORECASE
)


def _parse_datetime(value: str) -> datetime.datetime:
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise Error(f"Unrecognized date/time format: {value!r}")


def _parse_timedelta(value: str) -> datetime.timedelta:
    total = datetime.timedelta()
    pos = 0
    while pos < len(value):
        match = _TIMEDELTA_TERM.match(value, pos)
        if match is None:
            raise Error(f"Unrecognized time delta: {value!r}")
        unit = match.group(2) or "seconds"
        # Full names ("hours", "weeks") pass straight to timedelta; an unknown unit is a TypeError.
        total += datetime.timedelta(**{_TIMEDELTA_UNITS.get(unit, unit): float(match.group(1))})
        pos = match.end()
    return total


def _parse_bool(value: str) -> bool:
    return value.lower() not in ("false", "0", "f")


def _parse_str(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


_PARSERS: dict[Any, Callable[[str], Any]] = {
    datetime.datetime: _parse_datetime,
    datetime.timedelta: _parse_timedelta,
    bool: _parse_bool,
    str: _parse_str,
}


class _Option:
    """One defined option: its metadata and current value (the default until set or parsed)."""

    __slots__ = (
        "_value",
        "callback",
        "default",
        "file_name",
        "group_name",
        "help",
        "metavar",
        "multiple",
        "name",
        "type",
    )

    # Distinguishes "never set" from an explicit None.
    UNSET: Any = object()

    def __init__(
        self,
        name: str,
        default: Any = None,
        type: type | None = None,
        help: str | None = None,
        metavar: str | None = None,
        multiple: bool = False,
        file_name: str | None = None,
        group_name: str | None = None,
        callback: Callable[[Any], None] | None = None,
    ) -> None:
        if type is None:
            raise ValueError("type must not be None")
        if default is None and multiple:
            default = []
        self.name = name
        self.type = type
        self.help = help
        self.metavar = metavar
        self.multiple = multiple
        self.file_name = file_name
        self.group_name = group_name
        self.callback = callback
        self.default = default
        self._value: Any = _Option.UNSET

    def value(self) -> Any:
        return self.default if self._value is _Option.UNSET else self._value

    def parse(self, value: str) -> Any:
        """Set the option from its string form; return the new value."""
        convert = _PARSERS.get(self.type, self.type)
        if not self.multiple:
            self._value = convert(value)
        else:
            parsed: list[Any] = []
            integral = issubclass(self.type, numbers.Integral)
            for part in value.split(","):
                if integral:
                    # "lo:hi" is the inclusive range lo..hi.
                    lo_text, _, hi_text = part.partition(":")
                    lo = convert(lo_text)
                    hi = convert(hi_text) if hi_text else lo
                    parsed.extend(range(lo, hi + 1))
                else:
                    parsed.append(convert(part))
            self._value = parsed
        if self.callback is not None:
            self.callback(self._value)
        return self.value()

    def set(self, value: Any) -> None:
        """Set the option from an already-typed value (no string parsing)."""
        if self.multiple:
            if not isinstance(value, list) or any(
                item is not None and not isinstance(item, self.type) for item in value
            ):
                raise Error(f"Option {self.name!r} is required to be a list of {self.type.__name__}")
        elif value is not None and not isinstance(value, self.type):
            raise Error(
                f"Option {self.name!r} is required to be a {self.type.__name__} "
                f"({type(value)} given)"
            )
        self._value = value
        if self.callback is not None:
            self.callback(self._value)


options = OptionParser()
"""The global parser: every `define` adds to it and every option is an attribute of it."""


def define(
    name: str,
    default: Any = None,
    type: type | None = None,
    help: str | None = None,
    metavar: str | None = None,
    multiple: bool = False,
    group: str | None = None,
    callback: Callable[[Any], None] | None = None,
) -> None:
    """Define an option on the global `options` (see `OptionParser.define`)."""
    return options.define(
        name,
        default=default,
        type=type,
        help=help,
        metavar=metavar,
        multiple=multiple,
        group=group,
        callback=callback,
    )


def parse_command_line(args: list[str] | None = None, final: bool = True) -> list[str]:
    """Parse the command line into the global `options` (see `OptionParser.parse_command_line`)."""
    return options.parse_command_line(args, final=final)


def parse_config_file(path: str, final: bool = True) -> None:
    """Load a config file into the global `options` (see `OptionParser.parse_config_file`)."""
    return options.parse_config_file(path, final=final)


def print_help(file: TextIO | None = None) -> None:
    """Print help for the global `options` to ``file`` (default stderr)."""
    return options.print_help(file)


def add_parse_callback(callback: Callable[[], None]) -> None:
    """Run ``callback()`` after each final parse of the global `options`."""
    options.add_parse_callback(callback)


# As in Tornado, the global parser always has the logging options, applied after a final parse.
define_logging_options(options)
