"""Logging for tornado_lite (layer 0): Tornado's logger names, formatter and setup helpers.

The loggers are the ones Tornado uses (``tornado.access``, ``tornado.application``,
``tornado.general``), so an application's existing logging configuration keeps working after
switching imports.  `LogFormatter` gives the familiar ``[I 240101 12:00:00 module:12]`` lines,
coloured on a terminal.  This module must never import an event loop module, and may import
``tornado_lite.options`` only lazily inside functions (see `enable_pretty_logging`).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from typing import Any, ClassVar

try:
    import curses
except ImportError:  # e.g. Windows, or a Python built without curses
    curses = None  # type: ignore[assignment]

try:
    # Optional, never required: lets Windows consoles show colour when the app initialised it.
    import colorama  # type: ignore[import-not-found]
except ImportError:
    colorama = None

__all__ = [
    "LogFormatter",
    "access_log",
    "app_log",
    "define_logging_options",
    "enable_pretty_logging",
    "gen_log",
]

access_log = logging.getLogger("tornado.access")
app_log = logging.getLogger("tornado.application")
gen_log = logging.getLogger("tornado.general")


def _stderr_supports_color() -> bool:
    """True when stderr is a terminal we know how to colour."""
    try:
        isatty = getattr(sys.stderr, "isatty", None)
        if isatty is None or not isatty():
            return False
        if curses is not None:
            curses.setupterm()
            return bool(curses.tigetnum("colors") > 0)
        if colorama is not None:
            # colorama colours only the stream it wrapped in colorama.init().
            return sys.stderr is getattr(colorama.initialise, "wrapped_stderr", object())
    except Exception:  # noqa: BLE001, S110 - any terminfo failure just means no colour
        # Logging setup must never take the application down; plain output is fine.
        pass
    return False


def _to_text(value: Any) -> str:
    """Decode bytes as UTF-8 for the log, falling back to repr() rather than failing."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return repr(value)
    return value  # type: ignore[no-any-return]


def _terminal_colors(colors: dict[int, int]) -> tuple[dict[int, str], str]:
    """Escape sequences for each level and the reset sequence, for the current terminal."""
    if curses is not None:
        set_fg = curses.tigetstr("setaf") or curses.tigetstr("setf") or b""
        by_level = {level: str(curses.tparm(set_fg, code), "ascii") for level, code in colors.items()}
        reset = curses.tigetstr("sgr0")
        return by_level, str(reset, "ascii") if reset is not None else ""
    # No terminfo (colorama on Windows): plain ANSI sequences.
    return {level: f"\033[2;3{code}m" for level, code in colors.items()}, "\033[0m"


class LogFormatter(logging.Formatter):
    """Tornado's log formatter: level letter, timestamp and location on every line.

    Between ``%(color)s`` and ``%(end_color)s`` the text is coloured by level when ``color`` is
    true and stderr is a colour terminal.  Byte-string messages are decoded (or repr()'d when not
    UTF-8), a message that fails to format is logged as "Bad message", and multi-line output
    (including tracebacks) is indented under the first line.  The keyword signature matches
    Tornado's so `logging.config.dictConfig` can build it.
    """

    DEFAULT_FORMAT = (
        "%(color)s[%(levelname)1.1s %(asctime)s %(module)s:%(lineno)d]%(end_color)s %(message)s"
    )
    DEFAULT_DATE_FORMAT = "%y%m%d %H:%M:%S"
    # Terminal colour numbers: blue, green, yellow, red, magenta.
    DEFAULT_COLORS: ClassVar[dict[int, int]] = {
        logging.DEBUG: 4,
        logging.INFO: 2,
        logging.WARNING: 3,
        logging.ERROR: 1,
        logging.CRITICAL: 5,
    }

    def __init__(
        self,
        fmt: str = DEFAULT_FORMAT,
        datefmt: str = DEFAULT_DATE_FORMAT,
        style: str = "%",
        color: bool = True,
        colors: dict[int, int] = DEFAULT_COLORS,
    ) -> None:
        # ``style`` is accepted for dictConfig compatibility; the format is always %-style.
        super().__init__(datefmt=datefmt)
        self._fmt = fmt
        self._colors: dict[int, str] = {}
        self._normal = ""
        if color and _stderr_supports_color():
            self._colors, self._normal = _terminal_colors(colors)

    def format(self, record: Any) -> str:
        try:
            record.message = _to_text(record.getMessage())
        except Exception as e:  # noqa: BLE001 - bad user format strings must still be logged
            # A broken %-format in a log call must not lose the record (or raise in a handler).
            record.message = f"Bad message ({e!r}): {record.__dict__!r}"

        record.asctime = self.formatTime(record, self.datefmt)
        color = self._colors.get(record.levelno)
        if color is None:
            record.color = record.end_color = ""
        else:
            record.color = color
            record.end_color = self._normal

        formatted = self._fmt % record.__dict__  # type: ignore[operator]

        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # Decode line by line so one undecodable line does not repr() the whole traceback.
            lines = [formatted.rstrip()]
            lines.extend(_to_text(line) for line in record.exc_text.split("\n"))
            formatted = "\n".join(lines)
        return formatted.replace("\n", "\n    ")


def _file_handler(options: Any) -> logging.Handler:
    mode = options.log_rotate_mode
    if mode == "size":
        return logging.handlers.RotatingFileHandler(
            filename=options.log_file_prefix,
            maxBytes=options.log_file_max_size,
            backupCount=options.log_file_num_backups,
            encoding="utf-8",
        )
    if mode == "time":
        return logging.handlers.TimedRotatingFileHandler(
            filename=options.log_file_prefix,
            when=options.log_rotate_when,
            interval=options.log_rotate_interval,
            backupCount=options.log_file_num_backups,
            encoding="utf-8",
        )
    raise ValueError(
        'The value of log_rotate_mode option should be "size" or "time", not "%s".' % mode  # noqa: UP031
    )


def _default_options() -> Any:
    # Lazy import: options (layer 1) imports this module, and Tornado's API makes
    # options=None mean "the global tornado options", so the dependency must point upward here.
    from tornado_lite import options

    return options.options


def enable_pretty_logging(options: Any = None, logger: logging.Logger | None = None) -> None:
    """Configure ``logger`` (default: the root logger) from the logging options.

    ``options`` is any object with the attributes `define_logging_options` defines (default: the
    global ``tornado_lite.options.options``).  ``--logging=none`` leaves logging untouched.
    Called automatically after ``parse_command_line`` / ``parse_config_file``.
    """
    if options is None:
        options = _default_options()
    if options.logging is None or options.logging.lower() == "none":
        return
    if logger is None:
        logger = logging.getLogger()
    logger.setLevel(getattr(logging, options.logging.upper()))
    if options.log_file_prefix:
        handler = _file_handler(options)
        handler.setFormatter(LogFormatter(color=False))
        logger.addHandler(handler)
    # log_to_stderr=None means "only if nothing else is set up", so we never double-log.
    if options.log_to_stderr or (options.log_to_stderr is None and not logger.handlers):
        stream_handler = logging.StreamHandler()
        stream_handler.setFormatter(LogFormatter())
        logger.addHandler(stream_handler)


def define_logging_options(options: Any = None) -> None:
    """Define the ``--logging`` / ``--log_*`` options on ``options`` (an `OptionParser`).

    The global ``tornado_lite.options.options`` already has them; call this only for a parser
    you created yourself.  Parsing that parser then runs `enable_pretty_logging` with it.
    """
    if options is None:
        options = _default_options()
    options.define(
        "logging",
        default="info",
        help="Python log level to set; 'none' leaves the logging configuration alone.",
        metavar="debug|info|warning|error|none",
    )
    options.define(
        "log_to_stderr",
        type=bool,
        default=None,
        help=(
            "Log to stderr (in colour when possible). Default: only when --log_file_prefix "
            "is unset and no other handler is configured."
        ),
    )
    options.define(
        "log_file_prefix",
        type=str,
        default=None,
        metavar="PATH",
        help=(
            "Log file path prefix. Each process needs its own (e.g. include the port "
            "number) when running several."
        ),
    )
    options.define(
        "log_file_max_size",
        type=int,
        default=100 * 1000 * 1000,
        help="size in bytes at which a log file is rotated",
    )
    options.define(
        "log_file_num_backups", type=int, default=10, help="how many rotated log files to keep"
    )
    options.define(
        "log_rotate_when",
        type=str,
        default="midnight",
        help="TimedRotatingFileHandler interval unit; also 'S', 'M', 'H', 'D', 'W0'-'W6'",
    )
    options.define(
        "log_rotate_interval",
        type=int,
        default=1,
        help="how many log_rotate_when units between timed rotations",
    )
    options.define(
        "log_rotate_mode",
        type=str,
        default="size",
        help="rotate log files by 'size' or by 'time'",
    )
    options.add_parse_callback(lambda: enable_pretty_logging(options))
