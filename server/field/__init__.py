"""Field reports: tasks published to volunteers (任务发布), clues they report (线索举报), and
their SOS alerts.

``model`` holds the records, ``store`` keeps them in their own SQLite file (``field.db``) with
an append-only audit of every step, ``targets`` turns a task's target into terminals,
``service`` (``FieldReports``) applies what terminals send and what officers do, ``errors`` is
the exception tree. The REST routes are ``server.web.field_routes``; docs/field.md.
"""
