"""The scenario registry: every recorded trace is one registered scenario."""

from deviations import DEVIATIONS

ALL = []
_NAMES = set()


class Scenario:
    def __init__(self, name, fn, client, profile, covers311, covers5, deviation, expect, linger):
        self.name = name
        self.fn = fn
        self.client = client
        self.profile = profile
        self.covers311 = covers311
        self.covers5 = covers5
        self.deviation = deviation
        self.expect = expect
        self.linger = linger

    def run(self, port):
        self.fn(port)

    def header(self, broker_version):
        h = [("scenario", self.name), ("client", self.client), ("broker", broker_version),
             ("profile", self.profile)]
        if self.covers311:
            h.append(("covers-3.1.1", self.covers311))
        if self.covers5:
            h.append(("covers-5.0", self.covers5))
        if self.deviation:
            h.append(("deviation", self.deviation))
            h += [("expect", line) for line in self.expect]
        return h


def add(name, fn, client, profile="default", covers311="", covers5="", deviation=None,
        expect=(), linger=0.3):
    """Registers a scenario. `deviation` explains where mosquitto departs from the specification;
    `expect` then gives, per connection, the broker output the specification requires instead
    (lines `cN < PACKET` as the replayer renders them after normalisation)."""
    if name in _NAMES:
        raise ValueError(f"scenario {name} registered twice")
    if deviation is None and name in DEVIATIONS:
        deviation, expect = DEVIATIONS[name]
    _NAMES.add(name)
    ALL.append(Scenario(name, fn, client, profile, covers311, covers5, deviation, list(expect),
                        linger))


def scenario(name, client, **kw):
    """Decorator form of add()."""
    def register(fn):
        add(name, fn, client, **kw)
        return fn
    return register
