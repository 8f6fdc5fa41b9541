"""Tests for tornado_lite.options.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_options.py`` (in a venv that has tornado).
"""

import datetime
import importlib
import io
import logging
import os
import sys
from unittest import mock

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
options_mod = importlib.import_module(impl + ".options")
OptionParser = options_mod.OptionParser
Error = options_mod.Error

THIS_FILE = sys._getframe(0).f_code.co_filename


class Email:
    """A user-defined option type: built from a string, validating it."""

    def __init__(self, value: str) -> None:
        if "@" not in value:
            raise ValueError(value)
        self.value = value


def parser_with(**defs) -> "OptionParser":
    parser = OptionParser()
    for name, kwargs in defs.items():
        parser.define(name, **kwargs)
    return parser


def write_config(tmp_path, text: str, name: str = "app.cfg") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- command line ---------------------------------------------------------------------------------


def test_parse_command_line_basic() -> None:
    parser = parser_with(port={"default": 80})
    assert parser.port == 80
    assert parser.parse_command_line(["prog", "--port=443"]) == []
    assert parser.port == 443
    assert isinstance(parser.port, int)


def test_parse_command_line_remaining_arguments() -> None:
    parser = parser_with(verbose={"default": False}, name={"type": str})
    rest = parser.parse_command_line(["prog", "--verbose", "sub", "--name=x"])
    assert rest == ["sub", "--name=x"]
    assert parser.verbose is True
    assert parser.name is None  # parsing stopped at "sub"
    assert parser.parse_command_line(["prog", "-name=y", "--", "--verbose=false"]) == [
        "--verbose=false"
    ]
    assert parser.name == "y"
    assert parser.verbose is True


def test_parse_command_line_uses_sys_argv(monkeypatch) -> None:
    parser = parser_with(level={"type": int})
    monkeypatch.setattr(sys, "argv", ["prog", "--level=3", "extra"])
    assert parser.parse_command_line() == ["extra"]
    assert parser.level == 3


def test_separate_parsers_are_independent(capsys) -> None:
    base = parser_with(verbose={"default": False})
    sub = parser_with(foo={"type": str})
    rest = base.parse_command_line(["main.py", "--verbose", "subcommand", "--foo=bar"])
    assert sub.parse_command_line(rest) == []
    assert sub.foo == "bar"
    with pytest.raises(Error):
        sub.parse_command_line(["subcommand", "--verbose"])


def test_unknown_option_prints_help_and_raises(capsys) -> None:
    parser = parser_with(known={"help": "a known option"})
    with pytest.raises(Error, match="Unrecognized command line option: 'unknown-opt'"):
        parser.parse_command_line(["prog", "--unknown_opt=1"])
    err = capsys.readouterr().err
    assert "Usage:" in err
    assert "--known" in err


def test_value_required_for_non_bool() -> None:
    parser = parser_with(port={"type": int})
    with pytest.raises(Error, match="requires a value"):
        parser.parse_command_line(["prog", "--port"])


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("--flag", True),
        ("--flag=true", True),
        ("--flag=yes", True),
        ("--flag=1", True),
        ("--flag=false", False),
        ("--flag=False", False),
        ("--flag=0", False),
        ("--flag=f", False),
        ("--flag=F", False),
    ],
)
def test_bool_parsing(arg: str, expected: bool) -> None:
    parser = parser_with(flag={"type": bool})
    parser.parse_command_line(["prog", arg])
    assert parser.flag is expected


def test_help_exits(capsys) -> None:
    parser = parser_with(thing={"help": "a thing", "default": 3})
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_command_line(["prog", "--help"])
    assert exit_info.value.code == 0
    err = capsys.readouterr().err
    assert "Usage:" in err
    assert "--thing" in err
    assert "(default 3)" in err


def test_help_false_does_not_exit() -> None:
    parser = OptionParser()
    parser.parse_command_line(["prog", "--help=false"])
    assert parser.help is False


# -- types ----------------------------------------------------------------------------------------


def typed_parser() -> "OptionParser":
    return parser_with(
        str={"type": str},
        int={"type": int},
        float={"type": float},
        datetime={"type": datetime.datetime},
        timedelta={"type": datetime.timedelta},
        email={"type": Email},
        list_of_int={"type": int, "multiple": True},
        list_of_str={"type": str, "multiple": True},
    )


def check_typed_values(parser) -> None:
    assert parser.str == "asdf"
    assert parser.int == 42
    assert parser.float == 1.5
    assert parser.datetime == datetime.datetime(2013, 4, 28, 5, 16)
    assert parser.timedelta == datetime.timedelta(seconds=45)
    assert isinstance(parser.email, Email) and parser.email.value == "tornado@web.com"
    assert parser.list_of_int == [1, 2, 3]
    assert parser.list_of_str == ["a", "b", "c"]


TYPED_ARGS = [
    "--str=asdf",
    "--int=42",
    "--float=1.5",
    "--datetime=2013-04-28 05:16",
    "--timedelta=45s",
    "--email=tornado@web.com",
    "--list-of-int=1,2,3",
    "--list-of-str=a,b,c",
]


def test_types_from_command_line() -> None:
    parser = typed_parser()
    parser.parse_command_line(["prog", *TYPED_ARGS])
    check_typed_values(parser)


def test_custom_type_rejects_bad_value() -> None:
    parser = typed_parser()
    with pytest.raises(ValueError):
        parser.parse_command_line(["prog", "--email=nope"])
    with pytest.raises(ValueError):
        parser.parse_command_line(["prog", "--int=forty"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sun Apr 28 05:16:07 2013", datetime.datetime(2013, 4, 28, 5, 16, 7)),
        ("2013-04-28 05:16:07", datetime.datetime(2013, 4, 28, 5, 16, 7)),
        ("2013-04-28 05:16", datetime.datetime(2013, 4, 28, 5, 16)),
        ("2013-04-28T05:16", datetime.datetime(2013, 4, 28, 5, 16)),
        ("20130428 05:16:07", datetime.datetime(2013, 4, 28, 5, 16, 7)),
        ("20130428 05:16", datetime.datetime(2013, 4, 28, 5, 16)),
        ("2013-04-28", datetime.datetime(2013, 4, 28)),
        ("20130428", datetime.datetime(2013, 4, 28)),
        ("05:16:07", datetime.datetime(1900, 1, 1, 5, 16, 7)),
        ("05:16", datetime.datetime(1900, 1, 1, 5, 16)),
    ],
)
def test_datetime_formats(text: str, expected: datetime.datetime) -> None:
    parser = parser_with(when={"type": datetime.datetime})
    parser.parse_command_line(["prog", "--when=" + text])
    assert parser.when == expected


def test_datetime_unrecognized() -> None:
    parser = parser_with(when={"type": datetime.datetime})
    with pytest.raises(Error, match="Unrecognized date/time format"):
        parser.parse_command_line(["prog", "--when=28/04/2013"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45", datetime.timedelta(seconds=45)),
        ("45s", datetime.timedelta(seconds=45)),
        ("1.5", datetime.timedelta(seconds=1.5)),
        ("2sec", datetime.timedelta(seconds=2)),
        ("10m", datetime.timedelta(minutes=10)),
        ("10min", datetime.timedelta(minutes=10)),
        ("3h", datetime.timedelta(hours=3)),
        ("2d", datetime.timedelta(days=2)),
        ("1w", datetime.timedelta(weeks=1)),
        ("250ms", datetime.timedelta(milliseconds=250)),
        ("7us", datetime.timedelta(microseconds=7)),
        ("1h 30m", datetime.timedelta(hours=1, minutes=30)),
        ("1h 30m 15s", datetime.timedelta(hours=1, minutes=30, seconds=15)),
        ("2 hours", datetime.timedelta(hours=2)),
        ("-1.5e1s", datetime.timedelta(seconds=-15)),
        (".5h", datetime.timedelta(minutes=30)),
    ],
)
def test_timedelta_formats(text: str, expected: datetime.timedelta) -> None:
    parser = parser_with(delay={"type": datetime.timedelta})
    parser.parse_command_line(["prog", "--delay=" + text])
    assert parser.delay == expected


# "1h30m" fails in Tornado too: the unit pattern is \w*, so the unit is read as "h30m".
@pytest.mark.parametrize("text", ["abc", "5 parsecs", "1h x", "1h30m"])
def test_timedelta_invalid(text: str) -> None:
    parser = parser_with(delay={"type": datetime.timedelta})
    with pytest.raises(Exception):  # noqa: B017 - Tornado raises a bare Exception/TypeError here
        parser.parse_command_line(["prog", "--delay=" + text])


def test_multiple_int_ranges() -> None:
    parser = parser_with(ports={"type": int, "multiple": True})
    parser.parse_command_line(["prog", "--ports=1,3,5:7,10:10"])
    assert parser.ports == [1, 3, 5, 6, 7, 10]


def test_multiple_defaults_to_empty_list() -> None:
    parser = parser_with(names={"multiple": True})
    assert parser.names == []
    parser.parse_command_line(["prog", "--names=x"])
    assert parser.names == ["x"]


def test_type_inferred_from_default() -> None:
    parser = parser_with(
        i={"default": 1}, f={"default": 0.5}, s={"default": "x"}, none={}, flag={"default": False}
    )
    parser.parse_command_line(["prog", "--i=2", "--f=2.5", "--s=y", "--none=7", "--flag"])
    assert parser.i == 2
    assert parser.f == 2.5
    assert parser.s == "y"
    assert parser.none == "7"  # no default, no type: str
    assert parser.flag is True


def test_multiple_with_list_default_is_str_typed() -> None:
    parser = parser_with(xs={"default": [1, 2], "multiple": True})
    assert parser.xs == [1, 2]
    parser.parse_command_line(["prog", "--xs=3,4"])
    assert parser.xs == ["3", "4"]


# -- attribute / item access ----------------------------------------------------------------------


def test_setattr_and_type_check() -> None:
    parser = parser_with(foo={"default": 1, "type": int})
    parser.foo = 2
    assert parser.foo == 2
    parser.foo = None
    assert parser.foo is None
    with pytest.raises(Error, match="required to be a int"):
        parser.foo = "2"  # no string parsing on assignment


def test_setattr_multiple_requires_list_of_type() -> None:
    parser = parser_with(xs={"type": int, "multiple": True})
    parser.xs = [1, None, 3]
    assert parser.xs == [1, None, 3]
    with pytest.raises(Error, match="list of int"):
        parser.xs = (1, 2)
    with pytest.raises(Error, match="list of int"):
        parser.xs = [1, "2"]


def test_unknown_attribute() -> None:
    parser = OptionParser()
    with pytest.raises(AttributeError, match="Unrecognized option 'no-such'"):
        parser.no_such  # noqa: B018
    with pytest.raises(AttributeError):
        parser.no_such = 1
    with pytest.raises(AttributeError):
        parser["no_such"]  # noqa: B018
    assert not hasattr(parser, "no_such")


def test_callback_runs_on_set_and_parse() -> None:
    seen = []
    parser = parser_with(foo={"default": 1, "type": int, "callback": seen.append})
    parser.foo = 2
    parser["foo"] = 3
    parser.parse_command_line(["prog", "--foo=4"])
    assert seen == [2, 3, 4]


def test_items_iter_contains_getitem() -> None:
    parser = parser_with(a={"default": 1}, b={"default": 2})
    assert set(parser) == {"a", "b", "help"}
    assert "a" in parser and "help" in parser and "zzz" not in parser
    assert parser["a"] == 1
    parser["b"] = 5
    assert parser.b == 5
    assert sorted(parser.items()) == [("a", 1), ("b", 5), ("help", None)]
    assert parser.as_dict() == {"a": 1, "b": 5, "help": None}


def test_groups_and_group_dict() -> None:
    parser = parser_with(a={"default": 1}, b={"group": "b_group", "default": 2})
    # "help" is defined by the parser itself, which counts as no file.
    assert parser.groups() == {"b_group", "", THIS_FILE}
    assert parser.group_dict("b_group") == {"b": 2}
    assert parser.group_dict(THIS_FILE) == {"a": 1}
    assert parser.group_dict("nonexistent") == {}
    assert parser.group_dict("") == {"a": 1, "b": 2, "help": None}


def test_dash_and_underscore_are_interchangeable() -> None:
    for defined in ("foo-bar", "foo_bar"):
        for flag in ("--foo-bar=a", "--foo_bar=a"):
            parser = parser_with(**{defined: {}})
            parser.parse_command_line(["prog", flag])
            assert parser.foo_bar == "a"
            assert parser["foo-bar"] == "a"
            assert parser["foo_bar"] == "a"
            assert "foo-bar" in parser and "foo_bar" in parser


def test_original_names_in_introspection() -> None:
    parser = parser_with(**{"with-dash": {"group": "g"}, "with_underscore": {"group": "g"}})
    expected = ["help", "with-dash", "with_underscore"]
    assert sorted(parser) == expected
    assert sorted(name for name, _ in parser.items()) == expected
    assert sorted(parser.as_dict()) == expected
    assert sorted(parser.group_dict("g")) == ["with-dash", "with_underscore"]
    out = io.StringIO()
    parser.print_help(out)
    assert "--with-dash" in out.getvalue()
    assert "--with-underscore" in out.getvalue()


@pytest.mark.parametrize(("first", "second"), [("a-b", "a-b"), ("a_b", "a-b"), ("a-b", "a_b")])
def test_redefinition_is_an_error(first: str, second: str) -> None:
    parser = parser_with(**{first: {}})
    with pytest.raises(Error, match=r"Option 'a-b' already defined in .*test_options"):
        parser.define(second)


def test_mockable_with_mock_patch() -> None:
    parser = parser_with(foo={"default": 1})
    parser.parse_command_line(["prog", "--foo=2"])
    mockable = parser.mockable()
    assert type(mockable) is options_mod._Mockable
    assert mockable.foo == 2
    with mock.patch.object(parser.mockable(), "foo", 3):
        assert parser.foo == 3
    assert parser.foo == 2
    with mock.patch.object(parser.mockable(), "foo", 4):
        assert parser.foo == 4
        parser.foo = 5
        with mock.patch.object(parser.mockable(), "foo", 6):
            assert parser.foo == 6
        assert parser.foo == 5
    assert parser.foo == 2


# -- config files ---------------------------------------------------------------------------------


def test_parse_config_file(tmp_path) -> None:
    path = write_config(tmp_path, "port = 443\nusername = '\u674e\u5eb7'\nmy_path = __file__\nother = 1\n")
    parser = parser_with(port={"default": 80}, username={"default": "foo"}, my_path={})
    parser.parse_config_file(path)
    assert parser.port == 443
    assert parser.username == "\u674e\u5eb7"
    assert parser.my_path == os.path.abspath(path)
    assert "other" not in parser


def test_config_file_typed_values(tmp_path) -> None:
    path = write_config(
        tmp_path,
        "from datetime import datetime, timedelta\n"
        "import sys\n"
        f"Email = sys.modules[{__name__!r}].Email\n"
        "str = 'asdf'\n"
        "int = 42\n"
        "float = 1.5\n"
        "datetime = datetime(2013, 4, 28, 5, 16)\n"
        "timedelta = timedelta(0, 45)\n"
        "email = Email('tornado@web.com')\n"
        "list_of_int = [1, 2, 3]\n"
        "list_of_str = ['a', 'b', 'c']\n",
    )
    parser = typed_parser()
    parser.parse_config_file(path)
    check_typed_values(parser)


def test_config_file_string_values_are_parsed(tmp_path) -> None:
    path = write_config(
        tmp_path,
        "str = 'asdf'\n"
        "int = '42'\n"
        "float = '1.5'\n"
        "datetime = '2013-04-28 05:16'\n"
        "timedelta = '45s'\n"
        "email = 'tornado@web.com'\n"
        "list_of_int = '1,2,3'\n"
        "list_of_str = 'a,b,c'\n",
    )
    parser = typed_parser()
    parser.parse_config_file(path)
    check_typed_values(parser)


def test_config_file_dash_underscore(tmp_path) -> None:
    path = write_config(tmp_path, "foo_bar = 'a'\n")
    for defined in ("foo-bar", "foo_bar"):
        parser = parser_with(**{defined: {}})
        parser.parse_config_file(path)
        assert parser.foo_bar == "a"


def test_config_file_type_errors(tmp_path) -> None:
    parser = parser_with(xs={"type": int, "multiple": True}, n={"type": int})
    with pytest.raises(Error, match="list of int or a comma-separated string"):
        parser.parse_config_file(write_config(tmp_path, "xs = 5\n", "a.cfg"))
    with pytest.raises(Error, match="required to be a int"):
        parser.parse_config_file(write_config(tmp_path, "n = 1.5\n", "b.cfg"))


def test_config_file_callback_chaining(tmp_path) -> None:
    # The documented pattern: --config loads a file whose values later flags can override.
    path = write_config(tmp_path, "port = 1000\nhost = 'from-file'\n")
    parser = OptionParser()
    parser.define("port", default=1)
    parser.define("host", default="h")
    parser.define("config", type=str, callback=lambda p: parser.parse_config_file(p, final=False))
    parser.parse_command_line(["prog", "--port=5", f"--config={path}", "--host=cli"])
    assert parser.port == 1000
    assert parser.host == "cli"


# -- parse callbacks ------------------------------------------------------------------------------


def test_parse_callbacks_run_on_final_parse_only(tmp_path) -> None:
    parser = OptionParser()
    calls = []
    parser.add_parse_callback(lambda: calls.append("cb"))
    parser.parse_command_line(["prog"], final=False)
    assert calls == []
    parser.parse_command_line(["prog"])
    assert calls == ["cb"]
    parser.parse_command_line(["prog"])
    assert calls == ["cb", "cb"]
    path = write_config(tmp_path, "")
    parser.parse_config_file(path, final=False)
    assert calls == ["cb", "cb"]
    parser.parse_config_file(path)
    assert calls == ["cb", "cb", "cb"]
    parser.run_parse_callbacks()
    assert len(calls) == 4


# -- print_help -----------------------------------------------------------------------------------


def test_print_help_layout(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["myprog"])
    parser = OptionParser()
    parser.define("port", default=8888, help="port to listen on", metavar="PORT")
    parser.define("empty_default", default="", help="no default shown")
    parser.define(
        "a_really_long_option_name_over_thirty", help="goes on the next line", group="zz"
    )
    parser.define(
        "wordy",
        help="this help text is deliberately long enough that it has to wrap onto more "
        "than one line of output",
        group="zz",
    )
    out = io.StringIO()
    parser.print_help(out)
    text = out.getvalue()
    lines = text.split("\n")
    assert lines[0] == "Usage: myprog [OPTIONS]"
    assert "\nOptions:\n" in text
    assert f"\n{os.path.normpath(THIS_FILE)} options:\n" in text
    assert "\nzz options:\n" in text
    assert "  --help" + " " * 26 + " show this help information" in lines
    port_line = "  --" + "port=PORT".ljust(30) + " port to listen on (default 8888)"
    assert port_line in lines
    empty_line = next(line for line in lines if "--empty-default" in line)
    assert empty_line.endswith("no default shown")
    long_index = lines.index("  --a-really-long-option-name-over-thirty ")
    assert lines[long_index + 1] == " " * 35 + "goes on the next line"
    wordy_index = next(i for i, line in enumerate(lines) if line.startswith("  --wordy"))
    assert lines[wordy_index + 1].startswith(" " * 35)
    assert all(len(line) <= 79 for line in lines)
    assert text.endswith("\n\n")


def test_print_help_defaults_to_stderr(capsys) -> None:
    parser = parser_with(thing={})
    parser.print_help()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--thing" in captured.err


# -- the global parser and module-level functions -------------------------------------------------


@pytest.fixture
def quiet_logging_options():
    """Keep the global parser's logging callback from reconfiguring the root logger."""
    with mock.patch.object(options_mod.options.mockable(), "logging", "none"):
        yield


def define_global_once(name: str, **kwargs) -> None:
    if name not in options_mod.options:
        options_mod.define(name, **kwargs)


def test_global_define_and_parse_command_line(quiet_logging_options) -> None:
    define_global_once("tl_test_global_port", default=1, group="tl_test_group")
    options = options_mod.options
    assert isinstance(options, OptionParser)
    assert options_mod.parse_command_line(["prog", "--tl_test_global_port=9", "rest"]) == ["rest"]
    assert options.tl_test_global_port == 9
    assert options.group_dict("tl_test_group") == {"tl_test_global_port": 9}


def test_global_define_records_the_calling_file() -> None:
    define_global_once("tl_test_global_where")
    assert THIS_FILE in options_mod.options.groups()
    assert "tl_test_global_where" in options_mod.options.group_dict(THIS_FILE)


def test_global_parse_config_file_and_callback(tmp_path, quiet_logging_options) -> None:
    define_global_once("tl_test_global_cfg", type=str)
    calls = []
    options_mod.add_parse_callback(lambda: calls.append(options_mod.options.tl_test_global_cfg))
    options_mod.parse_config_file(write_config(tmp_path, "tl_test_global_cfg = 'v'\n"))
    assert calls == ["v"]
    options_mod.parse_config_file(write_config(tmp_path, "tl_test_global_cfg = 'w'\n"), final=False)
    assert calls == ["v"]


def test_global_print_help(capsys) -> None:
    options_mod.print_help()
    err = capsys.readouterr().err
    assert "--logging=debug|info|warning|error|none" in err
    assert "--log-file-prefix=PATH" in err


def test_global_final_parse_configures_logging() -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    options = options_mod.options
    try:
        with mock.patch.object(options.mockable(), "log_to_stderr", False):
            options_mod.parse_command_line(["prog", "--logging=error"])
            assert root.level == logging.ERROR
            assert root.handlers == saved_handlers
    finally:
        options.logging = "info"
        root.setLevel(saved_level)
