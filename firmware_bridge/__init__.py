"""The terminal's side of the shoulder light / body cam serial link (issue #4).

Spec: ``docs/firmware-protocol.md``. Sans-IO: ``framing``, ``messages``, ``connection`` (the
host), ``device`` (the device, for the simulator and tests). With I/O: ``serial_transport``
(``SerialBridge``) and ``simulator`` (``DeviceSimulator`` on a pty).
"""
