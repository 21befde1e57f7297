"""Warn, judge, dispatch, supervise, notify: from readings to closed work orders."""
