"""The bench workloads as a modeller would write them in SimPy 4: the same arrivals, RTT,
service time, port range and TIME-WAIT, with the port pool reduced to a free list (no
kernel selection order, no four-tuple table, no packets: a simpler model than portsim's,
so the comparison flatters SimPy). Used by compare.py.
"""

import random
import sys
import time
from collections import deque

import simpy

RTT = 200e-6
SERVICE = 1e-3
TIME_WAIT = 60.0


class Counts:
    def __init__(self):
        self.attempts = 0
        self.established = 0
        self.failed = 0


def churn_open_loop(duration, rate=1000.0, ports=28232, seed=1):
    """Poisson arrivals, one connection each, client closes, TIME-WAIT holds the port."""
    env = simpy.Environment()
    rng = random.Random(seed)
    free = deque(range(ports))
    c = Counts()

    def time_wait(port):
        yield env.timeout(TIME_WAIT)
        free.append(port)

    def connection(port):
        yield env.timeout(RTT)  # handshake
        c.established += 1
        yield env.timeout(RTT + SERVICE)  # request and response
        env.process(time_wait(port))  # the client closes first

    def arrivals():
        while True:
            yield env.timeout(rng.expovariate(rate))
            c.attempts += 1
            if free:
                env.process(connection(free.popleft()))
            else:
                c.failed += 1  # EADDRNOTAVAIL

    env.process(arrivals())
    env.run(until=duration)
    return c


def retry_storm(duration, workers=50, ports=1000, retry=1e-3):
    """A closed loop of workers; a failed connect is retried `retry` later."""
    env = simpy.Environment()
    free = deque(range(ports))
    c = Counts()

    def time_wait(port):
        yield env.timeout(TIME_WAIT)
        free.append(port)

    def worker():
        while True:
            c.attempts += 1
            if not free:
                c.failed += 1
                yield env.timeout(retry)
                continue
            port = free.popleft()
            yield env.timeout(RTT)
            c.established += 1
            yield env.timeout(RTT + SERVICE)
            env.process(time_wait(port))

    for _ in range(workers):
        env.process(worker())
    env.run(until=duration)
    return c


if __name__ == "__main__":
    name, duration = sys.argv[1], float(sys.argv[2])
    t = time.perf_counter()
    c = {"churn-open-loop": churn_open_loop, "retry-storm": retry_storm}[name](duration)
    wall = time.perf_counter() - t
    print(f"{name} {duration:g}s simulated: {c.attempts} attempts, {c.established} established, "
          f"{c.failed} failed, {wall:.2f} s wall, {c.attempts / wall:,.0f} attempts/s")
