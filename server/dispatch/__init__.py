"""Dispatch (调度): incidents, the terminals sent to them, their answers, escalation, audit.

``model`` holds the records and the lifecycle table, ``store`` keeps them in their own SQLite
file ``dispatch.db``, ``proposals`` finds who could go (the walking circles), ``core`` is the
state and the one way it changes, ``service`` the ``Dispatcher`` itself, ``errors`` the
exception tree. The REST routes are ``server.web.dispatch_routes``; docs/dispatch.md.
"""
