"""Commit and reservation ids never repeat: within a process (a count) nor across processes, a forked
child included (a random prefix drawn again after fork)."""

from __future__ import annotations

import os

from conclave.core.ids import unique_id


def test_ids_never_repeat_within_a_process() -> None:
    ids = [unique_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(w, " ".join(unique_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child = os.read(r, 4096).decode().split()
    os.close(r)
    mine = [unique_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(mine), (child, mine)
