"""The objects a web handler reaches through ``request.app[...]``, one key each.

Route modules (``server.web.app`` and the ``*_routes`` modules beside it) import their keys
from here, so no route module imports another.
"""

from __future__ import annotations

from aiohttp import web

from ..live import Hub, LiveState
from ..snapshots import SnapshotFiles

STORE = web.AppKey("store", object)  # server.store.Store
LIVE = web.AppKey("live", LiveState)
HUB = web.AppKey("hub", Hub)
AUTH = web.AppKey("auth", object)  # server.web.access.Authenticator
STATS = web.AppKey("stats", object)  # server.ingest.IngestStats
CLOCK = web.AppKey("clock", object)  # Callable[[], float], seconds
FILES = web.AppKey("snapshot_files", SnapshotFiles)
ORG = web.AppKey("org", object)  # server.org.store.OrgStore
DUTY = web.AppKey("duty", object)  # server.duty.service.DutyService
SPOTCHECKS = web.AppKey("spotchecks", object)  # server.spotcheck.service.SpotChecks
REPORTS = web.AppKey("reports", object)  # server.reports.service.Reports
DISPATCH = web.AppKey("dispatch", object)  # server.dispatch.service.Dispatcher
FIELD = web.AppKey("field", object)  # server.field.service.FieldReports
SITE = web.AppKey("site", object)  # server.web.config_routes.SiteConfig
AUDIT = web.AppKey("audit", object)  # server.audit.AuditLog
DEVICES = web.AppKey("devices", object)  # server.devices.DeviceRegistry
PHONES = web.AppKey("phones", object)  # server.phones.service.Phones
