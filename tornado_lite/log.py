"""Logging for tornado_lite: the same logger names as Tornado, so existing logging config keeps working.

Placeholder with the three loggers; LogFormatter and friends are added by the util/log work.
"""
import logging

access_log = logging.getLogger("tornado.access")
app_log = logging.getLogger("tornado.application")
gen_log = logging.getLogger("tornado.general")
