"""A device that several simulated workers share, as two vLLM workers share a core of the cpu profile or a GPU of
the gpu profile: the device time-slices them, so a step of one lasts as many times its own cost as workers have
work on the device when it starts (processor sharing). The workers are separate processes; each sets its byte
of a small shared file while it has work, and reads the others'.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from serve.sim.engine import SharedDevice


class Device:
    def __init__(self, shared: SharedDevice | None) -> None:
        self.shared = shared
        self.memory: mmap.mmap | None = None
        if shared is not None:
            path = Path(shared.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < shared.slots:
                    os.ftruncate(fd, shared.slots)  # zeros: nobody busy
                self.memory = mmap.mmap(fd, shared.slots)
            finally:
                os.close(fd)
            self.busy(False)  # a worker that died busy left its byte set

    def busy(self, busy: bool) -> None:
        if self.memory is not None and self.shared is not None:
            self.memory[self.shared.slot] = int(busy)

    def sharers(self) -> int:
        """Workers with work on this device, this one included (1 on a device of its own)."""
        return max(1, sum(self.memory[:])) if self.memory is not None else 1

    def stretch(self, device_share: float = 1.0) -> float:
        """How many times its cost a step starting now lasts: the workers busy on the device share it, and the
        device gives the simulated workers only `device_share` of itself (the rest goes to processes the simulation
        does not model)."""
        return self.sharers() / device_share
