"""The demo's simulated volunteers answer dispatches the way people do.

Each one rings, thinks for a few seconds, then mostly accepts and walks straight to the scene
(the server sees them arrive by position), sometimes declines (busy with something else);
when the dispatch is called off or the incident closed, they walk back to patrol their post.
Deterministic per seed, like the walker, so a demo run can be repeated.
"""

from __future__ import annotations

import random
import threading

from agent.agent import Agent
from agent.sim_gps import SimulatedWalker
from protocol import DispatchCommand, ResponseStatus

#: Share of dispatches a simulated volunteer accepts.
ACCEPT_SHARE = 0.8
#: Seconds between the ring and the answer.
THINK_S = (3.0, 10.0)


class DemoVolunteer:
    def __init__(self, agent: Agent, walker: SimulatedWalker, *, seed: int) -> None:
        self._agent = agent
        self._walker = walker
        self._rng = random.Random(seed)
        self._timers: list[threading.Timer] = []
        agent.dispatch_listeners.append(self._rang)
        agent.cancel_listeners.append(self._called_off)

    def _rang(self, command: DispatchCommand) -> None:
        # On the agent's thread: never sleep here; answer later, through the agent's inbox.
        accept = self._rng.random() < ACCEPT_SHARE
        timer = threading.Timer(
            self._rng.uniform(*THINK_S),
            lambda: self._agent.submit(lambda: self._answer(command, accept)),
        )
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _answer(self, command: DispatchCommand, accept: bool) -> None:
        active = self._agent.active_dispatch
        if active is None or active.dispatch_id != command.dispatch_id:
            return  # expired or called off while thinking
        if accept:
            if self._agent.answer_dispatch(ResponseStatus.ACCEPTED):
                self._walker.go_to(command.lat, command.lon)
        else:
            self._agent.answer_dispatch(ResponseStatus.DECLINED, reason="正在处理其他事情")

    def _called_off(self, dispatch_id: str, reason: str) -> None:
        self._walker.resume()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
