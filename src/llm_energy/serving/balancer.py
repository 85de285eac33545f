"""Client-side load balancer over server replicas: round-robin or least-outstanding-requests.

The balancer is the seed study's "load balancer" box: it decides which replica (and so which GPU)
each request goes to, and so the batch each replica sees. It lives in the load generator's event
loop, so it needs no lock: `acquire` is called when a request is sent and `release` when its
record is complete.

- `round-robin`: replica i, i+1, ... in turn, whatever their load;
- `least-outstanding`: the replica with the fewest requests in flight, ties to the one with fewer
  requests sent so far, then the lowest index (so an idle pair alternates, and a slow replica,
  which holds its requests longer, gets fewer).
"""

from __future__ import annotations

from typing import Literal, get_args

from llm_energy.errors import ConfigError

__all__ = ["POLICIES", "Balancer", "Policy"]

Policy = Literal["round-robin", "least-outstanding"]
POLICIES: tuple[Policy, ...] = get_args(Policy)


class Balancer:
    """Pick a replica per request (see the module docstring).

    Args:
        replicas: Number of replicas (≥ 1).
        policy: `round-robin` or `least-outstanding`.

    Attributes:
        outstanding: Requests in flight per replica.
        sent: Requests sent per replica so far.
    """

    def __init__(self, replicas: int, policy: str = "round-robin") -> None:
        if isinstance(replicas, bool) or replicas < 1:
            raise ConfigError(f"a balancer needs ≥ 1 replica, got {replicas!r}")
        if policy not in POLICIES:
            raise ConfigError(f"unknown balancing policy {policy!r}; expected one of {', '.join(POLICIES)}")
        self.policy: Policy = "round-robin" if policy == "round-robin" else "least-outstanding"
        self.outstanding = [0] * replicas
        self.sent = [0] * replicas
        self._next = 0

    def acquire(self) -> int:
        """Return the replica for the next request and count it as in flight there."""
        n = len(self.outstanding)
        if self.policy == "round-robin":
            choice = self._next
            self._next = (self._next + 1) % n
        else:
            choice = min(range(n), key=lambda i: (self.outstanding[i], self.sent[i], i))
        self.outstanding[choice] += 1
        self.sent[choice] += 1
        return choice

    def release(self, replica: int) -> None:
        """Count a request of `replica` as finished."""
        self.outstanding[replica] -= 1
