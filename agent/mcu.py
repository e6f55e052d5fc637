"""The agent and the shoulder light / body cam MCU, joined through ``firmware_bridge``.

- SOS long-press → an urgent ``Event`` (SOS) with the current position, at once.
- A dispatch arrives → the light flashes red/blue and the terminal beeps until the volunteer
  accepts with a short press (or the dispatch expires); the press answers "accepted". The light
  goes dark too when the dispatch is answered on the screen, cancelled by the station or expires.
- A published task arrives → a short beep (the screen shows it).
- Battery (when it moved by ``battery_step_pct`` or fell below ``battery_low_pct``) and tamper
  (case opened / closed) → ``Event``\\s.
- The cable pulled and put back: the bridge reopens the port by itself; when the link comes
  back up the light is set again to what it should show.

The bridge's reader thread only hands work to the agent's thread (``Agent.submit``), which
owns the outbox; the dispatch listener runs on the agent's thread and only sends commands.
"""

from __future__ import annotations

import logging

from firmware_bridge.connection import Event, LinkUp
from firmware_bridge.messages import (
    MAX_LIGHT_DURATION_MS,
    Alert,
    AlertKind,
    Battery,
    ButtonEvent,
    ButtonKind,
    LightPattern,
    SetLight,
    Tamper,
)
from firmware_bridge.serial_transport import SerialBridge
from protocol import DispatchCommand, EventKind, ResponseStatus, Task

from .agent import Agent

DISPATCH_FLASH_HZ = 4
TASK_BEEP_MS = 300


class McuLink:
    def __init__(
        self,
        agent: Agent,
        *,
        port: str,
        baudrate: int = 115200,
        battery_step_pct: int = 5,
        battery_low_pct: int = 20,
        logger: logging.Logger | None = None,
    ) -> None:
        self._agent = agent
        self._log = logger or logging.getLogger(f"yijing.agent.{agent.device_id}.mcu")
        self._battery_step = battery_step_pct
        self._battery_low = battery_low_pct
        self._battery_reported: int | None = None
        self.bridge = SerialBridge(
            port=port, baudrate=baudrate, on_event=self._on_event, logger=self._log
        )
        agent.dispatch_listeners.append(self._ring)
        agent.answer_listeners.append(self._answered)
        agent.cancel_listeners.append(self._stopped)
        agent.task_listeners.append(self._task)

    def start(self) -> None:
        self.bridge.start()

    def close(self) -> None:
        self.bridge.close()

    # --- device → agent (on the bridge's thread: hand over, never touch the outbox) ------------

    def _on_event(self, event: Event) -> None:
        agent = self._agent
        if isinstance(event, ButtonEvent):
            if event.kind is ButtonKind.SOS_LONG_PRESS:
                agent.submit(lambda: agent.raise_event(EventKind.SOS))
            elif event.kind is ButtonKind.ACK_SHORT_PRESS:
                agent.submit(self._accept)
            else:
                kind = int(event.kind)
                agent.submit(lambda: agent.raise_event(EventKind.BUTTON, value=kind))
        elif isinstance(event, Battery):
            if self._battery_news(event.percent):
                percent = event.percent
                agent.submit(lambda: agent.raise_event(EventKind.BATTERY, value=percent))
        elif isinstance(event, Tamper):
            opened = 1 if event.case_open else 0
            agent.submit(lambda: agent.raise_event(EventKind.TAMPER, value=opened))
        elif isinstance(event, LinkUp):
            agent.submit(self._restore_light)

    def _battery_news(self, percent: int) -> bool:
        last = self._battery_reported
        news = (
            last is None
            or abs(percent - last) >= self._battery_step
            or (percent < self._battery_low <= last)
        )
        if news:
            self._battery_reported = percent
        return news

    # --- agent → device (on the agent's thread) ------------------------------------------------

    def _ring(self, command: DispatchCommand) -> None:
        remaining = command.expires_ms - self._agent.now_ms()
        if remaining <= 0:
            return
        self.bridge.send(
            SetLight(
                LightPattern.FLASH_RED_BLUE,
                rate_hz=DISPATCH_FLASH_HZ,
                duration_ms=min(remaining, MAX_LIGHT_DURATION_MS),  # dark again at expiry
            )
        )
        self.bridge.send(Alert(AlertKind.BOTH, 1000))

    def _accept(self) -> None:
        self._agent.answer_dispatch(ResponseStatus.ACCEPTED)  # the light: see _answered

    def _answered(self, status: ResponseStatus) -> None:
        # Whether by the button or on the screen, an answer ends the ringing.
        if status in (ResponseStatus.ACCEPTED, ResponseStatus.DECLINED):
            self.bridge.send(SetLight(LightPattern.OFF))

    def _stopped(self, dispatch_id: str, reason: str) -> None:
        if self._agent.active_dispatch is None:  # not if another dispatch rings meanwhile
            self.bridge.send(SetLight(LightPattern.OFF))

    def _task(self, task: Task) -> None:
        self.bridge.send(Alert(AlertKind.BEEP, TASK_BEEP_MS))

    def _restore_light(self) -> None:
        command = self._agent.active_dispatch
        if command is not None:
            self._ring(command)
