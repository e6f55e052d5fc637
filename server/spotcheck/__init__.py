"""Spot checks (抽查): an inspector's roll call of terminals, with results and a history.

``model`` holds the records and the rules, ``store`` keeps them in their own SQLite file,
``service`` picks terminals, sends roll calls and matches the answers, ``errors`` is the
exception tree. The REST routes are ``server.web.spotcheck_routes``; docs/spotchecks.md.
"""
