"""Tests for tornado_lite.log.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_log.py`` (in a venv that has tornado).
"""

import importlib
import io
import itertools
import logging
import logging.config
import logging.handlers
import os
import re
import subprocess
import sys
import types
from unittest import mock

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
log = importlib.import_module(impl + ".log")
options_mod = importlib.import_module(impl + ".options")

_names = itertools.count()  # unique logger names per test

# "[I 240101 12:34:56 test_log:123] "
PREFIX = re.compile(r"^\[(?P<level>[DIWEC]) \d{6} \d{2}:\d{2}:\d{2} test_log:\d+\] ")


@pytest.fixture
def logger_and_stream():
    """A private logger writing through LogFormatter(color=False) into a StringIO."""
    logger = logging.getLogger(f"tornado_lite_test.stream.{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log.LogFormatter(color=False))
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)
    handler.close()


@pytest.fixture
def fresh_logger():
    """A logger with no handlers; whatever a test adds is closed and removed afterwards.

    It propagates: pytest attaches its capture handlers to non-propagating loggers, which would
    defeat the "no handlers yet" logic being tested.
    """
    logger = logging.getLogger(f"tornado_lite_test.fresh.{next(_names)}")
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


def logging_options(**overrides):
    """An OptionParser with the logging options defined, values overridden as given."""
    parser = options_mod.OptionParser()
    log.define_logging_options(parser)
    for name, value in overrides.items():
        setattr(parser, name, value)
    return parser


# -- loggers --------------------------------------------------------------------------------------


def test_logger_names() -> None:
    assert log.access_log is logging.getLogger("tornado.access")
    assert log.app_log is logging.getLogger("tornado.application")
    assert log.gen_log is logging.getLogger("tornado.general")


# -- LogFormatter ---------------------------------------------------------------------------------


def test_default_format(logger_and_stream) -> None:
    logger, stream = logger_and_stream
    logger.info("hello %s", "world")
    logger.warning("careful")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = PREFIX.match(lines[0])
    assert first is not None and first.group("level") == "I"
    assert lines[0][first.end() :] == "hello world"
    second = PREFIX.match(lines[1])
    assert second is not None and second.group("level") == "W"
    assert lines[1][second.end() :] == "careful"


def test_format_defaults_and_date_format() -> None:
    assert log.LogFormatter.DEFAULT_DATE_FORMAT == "%y%m%d %H:%M:%S"
    assert "%(color)s" in log.LogFormatter.DEFAULT_FORMAT
    assert "%(end_color)s" in log.LogFormatter.DEFAULT_FORMAT
    assert set(log.LogFormatter.DEFAULT_COLORS) == {
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
        logging.CRITICAL,
    }


def test_custom_fmt_and_datefmt() -> None:
    formatter = log.LogFormatter(fmt="%(levelname)s|%(asctime)s|%(message)s", datefmt="%Y", color=False)
    record = logging.LogRecord("n", logging.ERROR, __file__, 1, "m %d", (5,), None)
    record.created = 0.0  # 1970 in every timezone but the far east; check the shape only
    out = formatter.format(record)
    level, year, message = out.split("|")
    assert level == "ERROR"
    assert re.fullmatch(r"19(69|70)", year)
    assert message == "m 5"


def test_unicode_message(logger_and_stream) -> None:
    logger, stream = logger_and_stream
    logger.error("caf\u00e9 \u2603")
    assert stream.getvalue().rstrip("\n").endswith("caf\u00e9 \u2603")


def test_bytes_message_is_logged_as_repr(logger_and_stream) -> None:
    logger, stream = logger_and_stream
    logger.error(b"\xe9")
    logger.error("\u00e9".encode())
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(r"b'\xe9'")
    assert lines[1].endswith(r"b'\xc3\xa9'")


def test_bad_format_arguments_are_reported_not_raised() -> None:
    # Formatted directly: pytest's own capture handlers would re-raise the error first.
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    out = log.LogFormatter(color=False).format(record)
    assert out.startswith("[I ")
    assert "Bad message" in out
    assert "TypeError" in out
    assert "not a number" in out


def test_exception_traceback_is_indented(logger_and_stream) -> None:
    logger, stream = logger_and_stream
    try:
        raise ValueError("bad \u00e9 value")
    except ValueError:
        logger.exception("it failed")
    lines = stream.getvalue().rstrip("\n").split("\n")
    assert PREFIX.match(lines[0]) and lines[0].endswith("it failed")
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])
    assert lines[-1] == "    ValueError: bad \u00e9 value"


def test_multiline_message_is_indented(logger_and_stream) -> None:
    logger, stream = logger_and_stream
    logger.info("one\ntwo")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("one")
    assert lines[1] == "    two"


def test_exc_text_is_cached_on_record() -> None:
    formatter = log.LogFormatter(color=False)
    try:
        raise KeyError("x")
    except KeyError:
        record = logging.LogRecord("n", logging.ERROR, __file__, 1, "msg", None, sys.exc_info())
    first = formatter.format(record)
    assert record.exc_text and "KeyError" in record.exc_text
    assert formatter.format(record) == first


def test_no_color_when_not_a_tty(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    formatter = log.LogFormatter(color=True)
    record = logging.LogRecord("n", logging.ERROR, __file__, 1, "msg", None, None)
    out = formatter.format(record)
    assert "\033" not in out
    assert out.startswith("[E ")


def test_dict_config_builds_formatter() -> None:
    stream = io.StringIO()
    name = f"tornado_lite_test.dictconfig.{id(stream)}"
    logging.config.dictConfig(
        {
            "version": 1,
            "incremental": False,
            "disable_existing_loggers": False,
            "formatters": {
                "t": {
                    "()": log.LogFormatter,
                    "fmt": "%(color)s%(levelname)s%(end_color)s %(message)s",
                    "color": False,
                }
            },
            "handlers": {
                "h": {"class": "logging.StreamHandler", "formatter": "t", "stream": stream}
            },
            "loggers": {name: {"handlers": ["h"], "level": "INFO", "propagate": False}},
        }
    )
    logger = logging.getLogger(name)
    try:
        logger.info("configured")
        assert stream.getvalue() == "INFO configured\n"
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


COLOR_SCRIPT = """
import importlib, logging, sys
log = importlib.import_module(sys.argv[1] + ".log")
formatter = log.LogFormatter(color={color})
for level in (logging.INFO, logging.ERROR):
    record = logging.LogRecord("n", level, "f.py", 1, "msg", None, None)
    sys.stdout.write(repr(formatter.format(record)) + "\\n")
"""


def run_with_tty_stderr(color: bool) -> list[str]:
    """Format records in a child whose stderr is a pseudo-terminal with TERM=xterm."""
    import pty  # POSIX only, like the terminal colour support being tested

    master, slave = pty.openpty()
    try:
        env = dict(os.environ, TERM="xterm")
        proc = subprocess.run(
            [sys.executable, "-c", COLOR_SCRIPT.format(color=color), impl],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            timeout=60,
            check=True,
        )
    finally:
        os.close(slave)
        os.close(master)
    return [eval(line) for line in proc.stdout.decode().splitlines()]  # noqa: S307 - our own reprs


def test_color_on_a_terminal() -> None:
    info, error = run_with_tty_stderr(color=True)
    # xterm's setaf for green (INFO) and red (ERROR), then the sgr0 reset before the message.
    assert info.startswith("\033[32m[I ")
    assert error.startswith("\033[31m[E ")
    for line in (info, error):
        prefix, _, message = line.partition("]")
        assert message.endswith(" msg")
        assert message[: -len(" msg")] != ""  # the reset sequence sits between "]" and the text
        assert "\033" in message[: -len(" msg")]


def test_color_false_on_a_terminal() -> None:
    info, error = run_with_tty_stderr(color=False)
    assert info.startswith("[I ") and info.endswith("] msg")
    assert error.startswith("[E ") and error.endswith("] msg")


# -- enable_pretty_logging ------------------------------------------------------------------------


def test_enable_pretty_logging_stderr_handler(fresh_logger) -> None:
    log.enable_pretty_logging(logging_options(logging="debug"), logger=fresh_logger)
    assert fresh_logger.level == logging.DEBUG
    assert len(fresh_logger.handlers) == 1
    handler = fresh_logger.handlers[0]
    assert type(handler) is logging.StreamHandler
    assert isinstance(handler.formatter, log.LogFormatter)


def test_enable_pretty_logging_none_leaves_logger_alone(fresh_logger) -> None:
    fresh_logger.setLevel(logging.CRITICAL)
    for value in ("none", "None", "NONE"):
        log.enable_pretty_logging(logging_options(logging=value), logger=fresh_logger)
    log.enable_pretty_logging(logging_options(logging=None), logger=fresh_logger)
    assert fresh_logger.level == logging.CRITICAL
    assert fresh_logger.handlers == []


def test_enable_pretty_logging_respects_existing_handlers(fresh_logger) -> None:
    existing = logging.NullHandler()
    fresh_logger.addHandler(existing)
    log.enable_pretty_logging(logging_options(logging="warning"), logger=fresh_logger)
    assert fresh_logger.level == logging.WARNING
    assert fresh_logger.handlers == [existing]  # log_to_stderr=None: don't double-log
    log.enable_pretty_logging(
        logging_options(logging="warning", log_to_stderr=True), logger=fresh_logger
    )
    assert len(fresh_logger.handlers) == 2


def test_enable_pretty_logging_stderr_disabled(fresh_logger) -> None:
    log.enable_pretty_logging(
        logging_options(logging="error", log_to_stderr=False), logger=fresh_logger
    )
    assert fresh_logger.level == logging.ERROR
    assert fresh_logger.handlers == []


def test_enable_pretty_logging_size_rotated_file(fresh_logger, tmp_path) -> None:
    path = tmp_path / "app.log"
    opts = logging_options(
        logging="info", log_file_prefix=str(path), log_file_max_size=1234, log_file_num_backups=3
    )
    log.enable_pretty_logging(opts, logger=fresh_logger)
    # A file is configured, so no stderr handler is added by default.
    assert len(fresh_logger.handlers) == 1
    handler = fresh_logger.handlers[0]
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert (handler.maxBytes, handler.backupCount) == (1234, 3)
    fresh_logger.info("to the file \u00e9")
    fresh_logger.debug("below the level")
    handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "to the file \u00e9" in text
    assert "below the level" not in text
    assert "\033" not in text  # files never get colour codes
    assert re.match(r"\[I \d{6} \d{2}:\d{2}:\d{2} test_log:\d+\] ", text)


def test_enable_pretty_logging_time_rotated_file(fresh_logger, tmp_path) -> None:
    path = tmp_path / "timed.log"
    opts = logging_options(
        log_file_prefix=str(path), log_rotate_mode="time", log_rotate_when="H", log_rotate_interval=2
    )
    log.enable_pretty_logging(opts, logger=fresh_logger)
    handler = fresh_logger.handlers[0]
    assert isinstance(handler, logging.handlers.TimedRotatingFileHandler)
    assert handler.when == "H"
    assert handler.interval == 2 * 3600
    fresh_logger.info("timed entry")
    handler.flush()
    assert "timed entry" in path.read_text(encoding="utf-8")


def test_enable_pretty_logging_bad_rotate_mode(fresh_logger, tmp_path) -> None:
    opts = logging_options(log_file_prefix=str(tmp_path / "x.log"), log_rotate_mode="sideways")
    with pytest.raises(ValueError, match="sideways"):
        log.enable_pretty_logging(opts, logger=fresh_logger)


def test_enable_pretty_logging_accepts_any_object_with_the_attributes(fresh_logger) -> None:
    opts = types.SimpleNamespace(logging="warning", log_file_prefix=None, log_to_stderr=None)
    log.enable_pretty_logging(opts, logger=fresh_logger)
    assert fresh_logger.level == logging.WARNING
    assert len(fresh_logger.handlers) == 1


def test_enable_pretty_logging_defaults_to_global_options(fresh_logger) -> None:
    global_options = options_mod.options
    with mock.patch.object(global_options.mockable(), "logging", "error"):
        log.enable_pretty_logging(logger=fresh_logger)
    assert fresh_logger.level == logging.ERROR


# -- define_logging_options -----------------------------------------------------------------------

LOGGING_OPTION_DEFAULTS = {
    "logging": "info",
    "log_to_stderr": None,
    "log_file_prefix": None,
    "log_file_max_size": 100 * 1000 * 1000,
    "log_file_num_backups": 10,
    "log_rotate_when": "midnight",
    "log_rotate_interval": 1,
    "log_rotate_mode": "size",
}


def test_define_logging_options_on_a_new_parser() -> None:
    parser = logging_options()
    values = parser.as_dict()
    for name, default in LOGGING_OPTION_DEFAULTS.items():
        assert values[name] == default
    # Typed: these parse from strings as the right types.
    parser.parse_command_line(
        ["prog", "--log_file_max_size=5", "--log-to-stderr", "--logging=none"], final=False
    )
    assert parser.log_file_max_size == 5
    assert parser.log_to_stderr is True


def test_global_options_have_logging_options() -> None:
    values = options_mod.options.as_dict()
    for name in LOGGING_OPTION_DEFAULTS:
        assert name in values
    assert any(os.path.basename(group) == "log.py" for group in options_mod.options.groups())


def test_define_logging_options_defaults_to_global_parser() -> None:
    # The global parser already has them, so defining again there is an error.
    with pytest.raises(options_mod.Error, match="already defined"):
        log.define_logging_options()


def test_final_parse_applies_logging_options() -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        parser = logging_options()
        parser.parse_command_line(["prog", "--logging=debug", "--log_to_stderr=false"])
        assert root.level == logging.DEBUG
        assert root.handlers == saved_handlers
        parser.parse_command_line(["prog", "--logging=warning"], final=False)
        assert root.level == logging.DEBUG  # not final: callbacks did not run
    finally:
        root.setLevel(saved_level)
