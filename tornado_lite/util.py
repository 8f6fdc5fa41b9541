"""Small helpers shared by every other tornado_lite module (layer 0).

This is the bottom layer: it holds pure utilities (``Configurable``, ``ArgReplacer``, the
gzip stream decoder, errno extraction, ...) with Tornado 6's names and behaviour.  It must
never import another tornado_lite module, never touch an event loop, and never import
asyncio: ``TimeoutError`` is simply the builtin, which is what asyncio's alias resolves to
on every Python tornado_lite supports.
"""

from __future__ import annotations

import builtins
import datetime
import re
import typing
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from inspect import getfullargspec
from types import TracebackType
from typing import Any

if typing.TYPE_CHECKING:
    import unittest

__all__ = [
    "ArgReplacer",
    "Configurable",
    "GzipDecompressor",
    "ObjectDict",
    "TimeoutError",
    "basestring_type",
    "bytes_type",
    "doctests",
    "errno_from_exception",
    "exec_in",
    "import_object",
    "raise_exc_info",
    "re_unescape",
    "timedelta_to_seconds",
    "unicode_type",
]

# Python 2 era spellings Tornado still exports; third-party code imports them.
bytes_type = bytes
unicode_type = str
basestring_type = str

# Tornado 6.2+ exposes the standard class here (asyncio.TimeoutError is builtins.TimeoutError
# since 3.11), so ``except tornado_lite.util.TimeoutError`` catches gen.with_timeout's error.
TimeoutError = builtins.TimeoutError


class ObjectDict(dict[str, Any]):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            # AttributeError (not KeyError) keeps hasattr/getattr(default) working.
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class GzipDecompressor:
    """Incremental gzip decoder with a ``zlib.decompressobj``-like interface.

    Handles streams made of several gzip members back to back.  Anything after the last member
    that is not a new member, and a stream cut off inside a member, are errors (``zlib.error``).
    """

    __slots__ = ("_member", "_tail")

    _GZIP_MAGIC = b"\x1f\x8b"

    def __init__(self) -> None:
        # Decoder for the member being read; None before the first member and between members,
        # the only points where the input may legitimately end (an empty body is valid gzip).
        self._member: zlib._Decompress | None = None
        # Input not yet fed to zlib because max_length stopped early; the caller hands it back.
        self._tail = b""

    def decompress(self, value: bytes, max_length: int = 0) -> bytes:
        """Feed ``value``; return whatever output it makes available.

        With ``max_length``, at most that many bytes come back per call and the rest of the
        input waits in `unconsumed_tail`, which the caller must pass back in until it is empty.
        Calling without ``max_length`` is deprecated (unbounded output), as in Tornado 6.6.
        """
        if not max_length:
            warnings.warn(
                "GzipDecompressor.decompress without max_length is deprecated",
                DeprecationWarning,
                stacklevel=2,
            )
            # No limit: the caller expects everything now, including following members.
            out = self._step(value, 0)
            while self._tail:
                out += self._step(self._tail, 0)
            return out
        return self._step(value, max_length)

    def _step(self, value: bytes, max_length: int) -> bytes:
        # One zlib call per step; member boundaries surface as a non-empty tail.
        if not value:
            self._tail = b""
            return b""
        member = self._member
        if member is None:
            # Check the magic ourselves for a clearer error than zlib's; a single byte is
            # accepted as a prefix and zlib validates the rest when it arrives.
            if not self._GZIP_MAGIC.startswith(bytes(value[:2])):
                raise zlib.error(f"expected a gzip member, got {bytes(value[:2])!r}")
            # wbits 16+MAX_WBITS: parse and verify the gzip header and trailer.
            member = self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = member.decompress(value, max_length)
        if member.eof:
            # Bytes after this member's trailer are the next member (or garbage). Take them from
            # unused_data: unconsumed_tail can hold a stale copy at end of stream.
            self._tail = member.unused_data
            self._member = None
        else:
            self._tail = member.unconsumed_tail
        return out

    @property
    def unconsumed_tail(self) -> bytes:
        """Input held back by ``max_length``; pass it to `decompress` again."""
        return self._tail

    def flush(self) -> bytes:
        """Declare the end of input; always returns ``b""``.

        Raises ``ValueError`` if `unconsumed_tail` was not drained first, and ``zlib.error``
        if the stream stopped in the middle of a member.
        """
        if self._tail:
            raise ValueError("unconsumed_tail must be passed to decompress before flush")
        if self._member is not None:
            raise zlib.error("incomplete or truncated gzip stream")
        return b""


def import_object(name: str) -> Any:
    """Import a module or an object by dotted name.

    ``import_object("a.b")`` is ``from a import b`` (or ``import a.b`` when b is a submodule);
    a name without dots is a plain ``import``.  A missing attribute raises ``ImportError``.
    """
    if "." not in name:
        return __import__(name)
    module_name, _, attr = name.rpartition(".")
    # fromlist makes __import__ return the leaf module and import attr if it is a submodule.
    module = __import__(module_name, fromlist=[attr])
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"No module named {attr}") from None


def exec_in(code: Any, glob: dict[str, Any], loc: Mapping[str, Any] | None = None) -> None:
    """Run ``code`` (source string or code object) in the given namespaces."""
    if isinstance(code, str):
        # Compile here so the string does not inherit this module's __future__ flags.
        code = compile(code, "<string>", "exec", dont_inherit=True)
    exec(code, glob, loc)  # noqa: S102 - running caller-supplied code is the point


def raise_exc_info(
    exc_info: tuple[type | None, BaseException | None, TracebackType | None],
) -> typing.NoReturn:
    """Re-raise an exception captured as a ``sys.exc_info()`` triple, keeping its traceback."""
    try:
        exc = exc_info[1]
        if exc is None:
            raise TypeError("raise_exc_info called with no exception")
        raise exc.with_traceback(exc_info[2])
    finally:
        # Drop frame references so the traceback does not keep a reference cycle alive.
        exc = None
        exc_info = (None, None, None)


def errno_from_exception(e: BaseException) -> int | None:
    """Return the errno carried by an exception, or None.

    Uses ``e.errno`` when the attribute exists (even if None), else the first argument.
    """
    if hasattr(e, "errno"):
        return e.errno  # type: ignore[no-any-return]
    if e.args:
        return e.args[0]  # type: ignore[no-any-return]
    return None


_ESCAPED_CHAR = re.compile(r"\\(.)", re.DOTALL)
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _unescape_one(match: re.Match[str]) -> str:
    char = match.group(1)
    # re.escape never escapes letters or digits, so "\d" etc. is a regex class, not an escape.
    if char in _ALNUM:
        raise ValueError(f"cannot unescape '\\\\{char}'")
    return char


def re_unescape(s: str) -> str:
    """Reverse `re.escape`; ``ValueError`` for escapes re.escape cannot produce (``\\d``)."""
    return _ESCAPED_CHAR.sub(_unescape_one, s)


class Configurable:
    """Base for interfaces whose constructor picks an implementation subclass.

    Subclasses define the classmethods `configurable_base` and `configurable_default` and put
    their setup in `initialize` (not ``__init__``).  ``Base()`` builds the class chosen with
    ``Base.configure(impl, **kwargs)`` (or the default), merging the configured kwargs under the
    call's kwargs.  Each level of a hierarchy may be configured separately.
    """

    # Per-base configuration, set only on the class returned by configurable_base(); read via
    # the class __dict__ so a base never inherits a configuration made higher up.
    _configured_impl: type[Configurable] | None = None
    _configured_kwargs: dict[str, Any] | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        base = cls.configurable_base()
        init_kwargs: dict[str, Any] = {}
        if cls is base:
            impl = cls.configured_class()
            saved_kwargs = base.__dict__.get("_configured_kwargs")
            if saved_kwargs:
                init_kwargs.update(saved_kwargs)
        else:
            # Instantiating a concrete subclass directly: no factory lookup, no saved kwargs.
            impl = cls
        init_kwargs.update(kwargs)
        if impl.configurable_base() is not base:
            # The chosen class is itself a configurable base: let it choose in turn.
            return impl(*args, **init_kwargs)
        instance = super().__new__(impl)
        # initialize() rather than __init__: Python would call __init__ again with the caller's
        # arguments (without the configured kwargs) when __new__ returns an instance of cls.
        instance.initialize(*args, **init_kwargs)
        return instance

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        """Return the root class of this configurable hierarchy (usually the defining class)."""
        raise NotImplementedError()

    @classmethod
    def configurable_default(cls) -> type[Configurable]:
        """Return the implementation used when none has been configured."""
        raise NotImplementedError()

    def _initialize(self) -> None:
        pass

    # A class attribute (not a def) so subclasses may define initialize with any signature.
    initialize: Callable[..., None] = _initialize

    @classmethod
    def configure(cls, impl: None | str | type[Configurable], **kwargs: Any) -> None:
        """Choose the class (or dotted name) ``Base()`` builds, plus default constructor kwargs.

        ``impl=None`` goes back to `configurable_default` while still saving ``kwargs``.
        """
        base = cls.configurable_base()
        if isinstance(impl, str):
            impl = typing.cast("type[Configurable]", import_object(impl))
        if impl is not None and not (isinstance(impl, type) and issubclass(impl, cls)):
            raise ValueError(f"Invalid subclass of {cls}")
        base._configured_impl = impl
        base._configured_kwargs = kwargs

    @classmethod
    def configured_class(cls) -> type[Configurable]:
        """Return the class ``Base()`` currently builds."""
        base = cls.configurable_base()
        impl = base.__dict__.get("_configured_impl")
        if impl is None:
            impl = cls.configurable_default()
            base._configured_impl = impl
        return impl

    @classmethod
    def _save_configuration(cls) -> tuple[type[Configurable] | None, dict[str, Any] | None]:
        base = cls.configurable_base()
        return (base.__dict__.get("_configured_impl"), base.__dict__.get("_configured_kwargs"))

    @classmethod
    def _restore_configuration(
        cls, saved: tuple[type[Configurable] | None, dict[str, Any] | None]
    ) -> None:
        base = cls.configurable_base()
        base._configured_impl, base._configured_kwargs = saved


class ArgReplacer:
    """Find (and optionally swap) one named argument in an ``(args, kwargs)`` pair.

    The argument is located whether it was passed by position or by keyword; meant for
    decorators that wrap a function and need to rewrite, e.g., its ``callback`` argument.
    """

    __slots__ = ("arg_pos", "name")

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.name = name
        names = self._positional_names(func)
        self.arg_pos: int | None = names.index(name) if name in names else None

    @staticmethod
    def _positional_names(func: Callable[..., Any]) -> list[str]:
        try:
            return getfullargspec(func).args
        except TypeError:
            # Cython functions are not inspectable but expose a Python 2 style func_code.
            code = getattr(func, "func_code", None)
            if code is None:
                raise
            return list(code.co_varnames[: code.co_argcount])

    def _passed_positionally(self, args: Sequence[Any]) -> bool:
        return self.arg_pos is not None and len(args) > self.arg_pos

    def get_old_value(
        self, args: Sequence[Any], kwargs: dict[str, Any], default: Any = None
    ) -> Any:
        """Return the argument's current value, or ``default`` when it was not passed."""
        if self._passed_positionally(args):
            return args[self.arg_pos]  # type: ignore[index]
        return kwargs.get(self.name, default)

    def replace(
        self, new_value: Any, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[Any, Sequence[Any], dict[str, Any]]:
        """Put ``new_value`` in place of the argument; return ``(old_value, args, kwargs)``.

        When the argument was not passed at all it is added to ``kwargs`` and ``old_value`` is
        None.  ``kwargs`` may be mutated; ``args`` comes back as a new list if changed.
        """
        if self._passed_positionally(args):
            pos = typing.cast(int, self.arg_pos)
            old_value = args[pos]
            new_args = list(args)
            new_args[pos] = new_value
            return old_value, new_args, kwargs
        old_value = kwargs.get(self.name)
        kwargs[self.name] = new_value
        return old_value, args, kwargs


def timedelta_to_seconds(td: datetime.timedelta) -> float:
    """``td.total_seconds()``; kept because Tornado code and users still call it."""
    return td.total_seconds()


def _websocket_mask_python(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    if not data:
        return b""
    # One big-int XOR instead of a per-byte Python loop.
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")


# Tornado names its pure-Python version separately from the (possibly C) one; its tests use both.
# install() may swap a C one in here: see use_websocket_mask.
_websocket_mask: Callable[[bytes, bytes], bytes] = _websocket_mask_python


def use_websocket_mask(mask_function: Callable[[bytes, bytes], bytes]) -> None:
    """Makes ``_websocket_mask`` ``mask_function``: a faster one with the same result (a C extension).

    This module never imports Tornado, so it cannot find Tornado's C ``tornado.speedups`` itself:
    ``tornado_lite.install()`` hands it over here.  Only code that looks the name up afterwards sees
    the new function; ``tornado.websocket`` copies it when it is imported, so call this before that.
    ``_websocket_mask_python`` always stays the pure-Python version.
    """
    global _websocket_mask
    _websocket_mask = mask_function


def doctests() -> unittest.TestSuite:
    """Return a unittest suite of this module's doctests (Tornado's test runner calls this)."""
    import doctest  # lazy: only the test runner needs it

    return doctest.DocTestSuite()
