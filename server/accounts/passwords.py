"""Password hashes: argon2id (RFC 9106), memory-hard, so a stolen ``accounts.db`` is slow and
costly to guess through on GPUs.

argon2-cffi's defaults are RFC 9106's second recommended option (t=3, 64 MiB, p=4). Each
hash takes tens of milliseconds and 64 MiB, so hashing runs on worker threads, at most
``concurrency`` at once: a burst of sign-ins queues rather than exhausting memory. A sign-in
for an unknown username still verifies (against a dummy hash), so the answer's timing does
not reveal which usernames exist.
"""

from __future__ import annotations

import asyncio
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None, *, concurrency: int = 4) -> None:
        self.hasher = hasher or PasswordHasher()
        self._slots = threading.BoundedSemaphore(concurrency)
        # Made lazily: hashing at construction would slow every server start and test.
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        with self._slots:
            return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Does ``password`` match ``stored``? ``None`` (no such account) spends the same
        time and answers False."""
        if stored is None:
            if self._dummy is None:
                self._dummy = self.hash("not a password of anyone's")
            stored = self._dummy
            password = password + "\0"  # never matches the dummy
        with self._slots:
            try:
                return self.hasher.verify(stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, stored: str) -> bool:
        """Made with other parameters than today's (older defaults, a test's cheap ones)."""
        try:
            return self.hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)
