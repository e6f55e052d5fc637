"""Inspectors' reports: on-duty, terminal-usage and spot-check answer rates per unit and period,
rolled up the organisation tree, with drill-down to one shift's timeline, CSV and charts.

``period`` (the window), ``aggregate`` (pure sums), ``service`` (reads the stores, runs jobs),
``shapes`` (JSON), ``csv_export`` and ``charts`` (files). ``docs/reports.md`` explains every
figure.
"""
