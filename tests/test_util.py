"""Tests for tornado_lite.util.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_util.py`` (in a venv that has tornado).
"""

import builtins
import datetime
import gzip
import importlib
import os
import re
import sys
import unittest
import warnings
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
util = importlib.import_module(impl + ".util")

THIS_MODULE = __name__


# -- simple names ---------------------------------------------------------------------------------


def test_timeout_error_is_the_builtin() -> None:
    assert util.TimeoutError is builtins.TimeoutError
    with pytest.raises(util.TimeoutError):
        raise TimeoutError("x")


def test_type_aliases() -> None:
    assert util.unicode_type is str
    assert util.basestring_type is str
    assert util.bytes_type is bytes


def test_timedelta_to_seconds() -> None:
    assert util.timedelta_to_seconds(datetime.timedelta(minutes=1, milliseconds=500)) == 60.5
    assert util.timedelta_to_seconds(datetime.timedelta(days=-1)) == -86400.0


def test_doctests_returns_a_suite() -> None:
    suite = util.doctests()
    assert isinstance(suite, unittest.TestSuite)


# -- ObjectDict -----------------------------------------------------------------------------------


def test_object_dict_attribute_and_item_access() -> None:
    d = util.ObjectDict(a=1)
    assert isinstance(d, dict)
    assert d.a == 1
    d.b = 2
    assert d["b"] == 2
    d["c"] = 3
    assert d.c == 3
    assert d == {"a": 1, "b": 2, "c": 3}


def test_object_dict_missing_attribute_is_attribute_error() -> None:
    d = util.ObjectDict()
    with pytest.raises(AttributeError):
        d.missing  # noqa: B018
    assert not hasattr(d, "missing")
    assert getattr(d, "missing", "fallback") == "fallback"


# -- import_object / exec_in / raise_exc_info / errno_from_exception ------------------------------


def test_import_object_module_and_attribute() -> None:
    pkg = importlib.import_module(impl)
    assert util.import_object(impl) is pkg
    assert util.import_object(impl + ".util") is util
    assert util.import_object(impl + ".util.import_object") is util.import_object
    assert util.import_object("os.path.join") is os.path.join


def test_import_object_missing() -> None:
    with pytest.raises(ImportError, match="No module named no_such_thing"):
        util.import_object(impl + ".util.no_such_thing")
    with pytest.raises(ImportError):
        util.import_object("no_such_top_level_module_xyz")


def test_exec_in_uses_given_namespaces() -> None:
    glob: dict = {"x": 20}
    util.exec_in("y = x + 1", glob)
    assert glob["y"] == 21

    loc: dict = {}
    util.exec_in(compile("z = x * 2", "<test>", "exec"), glob, loc)
    assert loc == {"z": 40}
    assert "z" not in glob


def test_exec_in_does_not_inherit_future_flags() -> None:
    # The util module uses "from __future__ import annotations"; a string passed to exec_in must
    # not pick that up, so annotations are evaluated eagerly.
    glob: dict = {}
    util.exec_in("def f(x: int) -> None: pass", glob)
    assert glob["f"].__annotations__["x"] is int


def test_raise_exc_info_keeps_traceback() -> None:
    def fail() -> None:
        raise KeyError("k")

    try:
        fail()
    except KeyError:
        info = sys.exc_info()
    with pytest.raises(KeyError) as caught:
        util.raise_exc_info(info)
    assert caught.value is info[1]
    names = []
    tb = caught.value.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "fail" in names


def test_raise_exc_info_without_exception() -> None:
    with pytest.raises(TypeError):
        util.raise_exc_info((None, None, None))


def test_errno_from_exception() -> None:
    assert util.errno_from_exception(OSError(32, "broken pipe")) == 32
    assert util.errno_from_exception(Exception(104, "reset")) == 104
    assert util.errno_from_exception(Exception()) is None
    # An errno attribute wins even when it is None.
    assert util.errno_from_exception(OSError("no errno")) is None


# -- re_unescape ----------------------------------------------------------------------------------


def test_re_unescape_known_values() -> None:
    assert util.re_unescape(r"a\.b\*c") == "a.b*c"
    assert util.re_unescape("\\\\") == "\\"
    assert util.re_unescape("\\\n") == "\n"
    assert util.re_unescape("plain") == "plain"


@pytest.mark.parametrize("escaped", [r"\d", r"\b", r"\Z", r"\1"])
def test_re_unescape_rejects_regex_classes(escaped: str) -> None:
    with pytest.raises(ValueError, match="cannot unescape"):
        util.re_unescape(escaped)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_re_unescape_inverts_re_escape(s: str) -> None:
    assert util.re_unescape(re.escape(s)) == s


# -- Configurable ---------------------------------------------------------------------------------


class Base(util.Configurable):
    @classmethod
    def configurable_base(cls):
        return Base

    @classmethod
    def configurable_default(cls):
        return Impl1


class Impl1(Base):
    def initialize(self, pos=None, a=None):
        self.pos = pos
        self.a = a


class Impl2(Base):
    def initialize(self, pos=None, b=None):
        self.pos = pos
        self.b = b


class SubBase(Base):
    """A second configurable level below Base."""

    @classmethod
    def configurable_base(cls):
        return SubBase

    @classmethod
    def configurable_default(cls):
        return SubImplA


class SubImplA(SubBase):
    def initialize(self, a=None):
        self.a = a


class SubImplB(SubBase):
    def initialize(self, a=None):
        self.a = a


class NotASubclass(util.Configurable):
    pass


@pytest.fixture(autouse=True)
def restore_configuration():
    saved = Base._save_configuration()
    saved_sub = SubBase._save_configuration()
    yield
    Base._restore_configuration(saved)
    SubBase._restore_configuration(saved_sub)


def test_configurable_default() -> None:
    assert Base.configured_class() is Impl1
    obj = Base()
    assert type(obj) is Impl1
    assert isinstance(obj, Base)
    assert obj.a is None
    obj = Base(7, a=1)
    assert (obj.pos, obj.a) == (7, 1)


def test_configure_with_class_and_kwargs() -> None:
    Base.configure(Impl2, b=5)
    assert Base.configured_class() is Impl2
    obj = Base()
    assert type(obj) is Impl2
    assert obj.b == 5
    # Call-time kwargs override configured ones; positional args pass through.
    obj = Base(42, b=6)
    assert (obj.pos, obj.b) == (42, 6)
    # Concrete classes built directly do not receive the configured kwargs.
    assert Impl2().b is None
    assert type(Impl1()) is Impl1


def test_configure_with_dotted_string() -> None:
    Base.configure(THIS_MODULE + ".Impl2")
    obj = Base(b=2)
    assert type(obj) is Impl2
    assert obj.b == 2


def test_configure_none_keeps_default_with_kwargs() -> None:
    Base.configure(None, a=3)
    obj = Base()
    assert type(obj) is Impl1
    assert obj.a == 3
    obj = Base(42, a=4)
    assert (obj.pos, obj.a) == (42, 4)


def test_configure_rejects_non_subclass() -> None:
    with pytest.raises(ValueError):
        Base.configure(NotASubclass)
    with pytest.raises(ValueError):
        # Configuring through a subclass requires an implementation below that subclass.
        Impl1.configure(Impl2)


def test_configure_is_shared_by_the_hierarchy() -> None:
    # Calling configure on an implementation class configures its configurable_base.
    Impl1.configure(Impl1, a=9)
    assert Base().a == 9


def test_multi_level_configuration() -> None:
    Base.configure(SubBase, a=1)
    obj = Base()
    # Base picked SubBase, which is itself configurable and picked its default.
    assert type(obj) is SubImplA
    assert obj.a == 1

    SubBase.configure(SubImplB)
    obj = Base()
    assert type(obj) is SubImplB
    assert obj.a == 1  # Base's kwargs flow down to the nested choice
    assert type(SubBase()) is SubImplB
    assert SubBase().a is None
    # The two levels are configured independently.
    assert Base.configured_class() is SubBase
    assert SubBase.configured_class() is SubImplB


def test_save_and_restore_configuration() -> None:
    saved = Base._save_configuration()
    Base.configure(Impl2, b=1)
    assert Base._save_configuration() == (Impl2, {"b": 1})
    Base._restore_configuration(saved)
    assert type(Base()) is Impl1
    assert Base().a is None


def test_initialize_runs_once_with_merged_arguments() -> None:
    calls = []

    class Counting(Base):
        def initialize(self, *args, **kwargs):
            calls.append((args, kwargs))

    Base.configure(Counting, x=1)
    Base("p", y=2)
    assert calls == [(("p",), {"x": 1, "y": 2})]


def test_default_initialize_accepts_no_arguments() -> None:
    class Plain(Base):
        pass

    Base.configure(Plain)
    assert type(Base()) is Plain


# -- ArgReplacer ----------------------------------------------------------------------------------


def target(a, b, callback=None, *args, **kwargs):
    pass


def test_arg_replacer_positional() -> None:
    replacer = util.ArgReplacer(target, "callback")
    args = (1, 2, "old", 4)
    kwargs = {"k": 1}
    assert replacer.get_old_value(args, kwargs) == "old"
    old, new_args, new_kwargs = replacer.replace("new", args, kwargs)
    assert old == "old"
    assert list(new_args) == [1, 2, "new", 4]
    assert new_kwargs == {"k": 1}


def test_arg_replacer_keyword() -> None:
    replacer = util.ArgReplacer(target, "callback")
    args = (1, 2)
    kwargs = {"callback": "old"}
    assert replacer.get_old_value(args, kwargs) == "old"
    old, new_args, new_kwargs = replacer.replace("new", args, kwargs)
    assert old == "old"
    assert list(new_args) == [1, 2]
    assert new_kwargs == {"callback": "new"}


def test_arg_replacer_omitted() -> None:
    replacer = util.ArgReplacer(target, "callback")
    assert replacer.get_old_value((1, 2), {}) is None
    assert replacer.get_old_value((1, 2), {}, default="d") == "d"
    old, _, kwargs = replacer.replace("new", (1, 2), {})
    assert old is None
    assert kwargs == {"callback": "new"}


def test_arg_replacer_keyword_only_parameter() -> None:
    def func(a, *, timeout=None):
        pass

    replacer = util.ArgReplacer(func, "timeout")
    assert replacer.arg_pos is None
    # Never taken from the positional arguments, even if there are enough of them.
    assert replacer.get_old_value((1, 2, 3), {"timeout": 5}) == 5
    old, args, kwargs = replacer.replace(6, (1,), {"timeout": 5})
    assert (old, list(args), kwargs) == (5, [1], {"timeout": 6})


def test_arg_replacer_method() -> None:
    class C:
        def m(self, callback):
            pass

    # Unbound: "self" counts as a position.
    assert util.ArgReplacer(C.m, "callback").arg_pos == 1


# -- GzipDecompressor -----------------------------------------------------------------------------


def drain(decompressor, data: bytes, max_length: int) -> bytes:
    """Feed ``data`` and its unconsumed tails, as callers must."""
    out = decompressor.decompress(data, max_length)
    while decompressor.unconsumed_tail:
        out += decompressor.decompress(decompressor.unconsumed_tail, max_length)
    return out


def test_gzip_single_member() -> None:
    payload = b"hello world " * 100
    d = util.GzipDecompressor()
    assert drain(d, gzip.compress(payload), 1 << 20) == payload
    assert d.unconsumed_tail == b""
    assert d.flush() == b""


def test_gzip_max_length_limits_each_call() -> None:
    payload = os.urandom(2000) * 20
    d = util.GzipDecompressor()
    chunk = d.decompress(gzip.compress(payload), 1000)
    assert len(chunk) <= 1000
    assert d.unconsumed_tail
    out = chunk
    while d.unconsumed_tail:
        chunk = d.decompress(d.unconsumed_tail, 1000)
        assert len(chunk) <= 1000
        out += chunk
    assert out == payload
    assert d.flush() == b""


def test_gzip_multiple_members() -> None:
    data = gzip.compress(b"first ") + gzip.compress(b"second ") + gzip.compress(b"")
    d = util.GzipDecompressor()
    assert drain(d, data, 64) == b"first second "
    d.flush()


def test_gzip_empty_stream_is_valid() -> None:
    d = util.GzipDecompressor()
    assert d.decompress(b"", 10) == b""
    assert d.flush() == b""


def test_gzip_one_byte_at_a_time() -> None:
    payload = b"abc" * 50
    data = gzip.compress(payload) + gzip.compress(b"xyz")
    d = util.GzipDecompressor()
    out = b""
    for i in range(len(data)):
        out += drain(d, data[i : i + 1], 7)
    assert out == payload + b"xyz"
    d.flush()


def test_gzip_truncated_stream_fails_on_flush() -> None:
    data = gzip.compress(b"some data" * 10)
    d = util.GzipDecompressor()
    drain(d, data[:-4], 1000)
    with pytest.raises(zlib.error):
        d.flush()


def test_gzip_not_gzip() -> None:
    d = util.GzipDecompressor()
    with pytest.raises(zlib.error):
        d.decompress(b"definitely not gzip", 100)


def test_gzip_garbage_after_member() -> None:
    d = util.GzipDecompressor()
    with pytest.raises(zlib.error):
        drain(d, gzip.compress(b"ok") + b"trailing junk", 100)


def test_gzip_corrupt_checksum() -> None:
    data = bytearray(gzip.compress(b"payload"))
    data[-8] ^= 0xFF  # CRC32 of the trailer
    d = util.GzipDecompressor()
    with pytest.raises(zlib.error):
        drain(d, bytes(data), 100)


def test_gzip_flush_with_pending_tail_is_value_error() -> None:
    d = util.GzipDecompressor()
    d.decompress(gzip.compress(os.urandom(5000)), 100)
    assert d.unconsumed_tail
    with pytest.raises(ValueError):
        d.flush()


def test_gzip_without_max_length_is_deprecated_and_returns_everything() -> None:
    data = gzip.compress(b"one") + gzip.compress(b"two")
    d = util.GzipDecompressor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = d.decompress(data)
    assert out == b"onetwo"
    assert d.unconsumed_tail == b""
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    d.flush()


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=6),
    max_length=st.integers(min_value=1, max_value=5000),
)
def test_gzip_any_chunking_round_trips(members, cuts, max_length) -> None:
    data = b"".join(gzip.compress(m) for m in members)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    d = util.GzipDecompressor()
    out = b""
    for start, end in zip(bounds, bounds[1:]):
        out += drain(d, data[start:end], max_length)
    assert out == b"".join(members)
    assert d.flush() == b""


# -- websocket mask (private, but iostream-level code in Tornado relies on it) --------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 17, 1000])
def test_websocket_mask(size: int) -> None:
    mask = b"\x01\x80\xff\x3c"
    data = os.urandom(size)
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert util._websocket_mask(mask, data) == expected
    assert util._websocket_mask(mask, expected) == data
