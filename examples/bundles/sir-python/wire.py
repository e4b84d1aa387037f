"""A stochastic SIR model (chain-binomial, daily steps): the modelops wire.

The Python twin of ../sir/model.c.  Every random draw follows the
operation order written down at the top of model.c (splitmix64 seeding,
xoshiro256**, inversion or normal-approximation binomials), so for the
same parameters and seed both write byte-identical outputs.  Arithmetic
is done in floats (IEEE-754 doubles) with math.exp/log/pow/sqrt/cos,
which call the same C library functions as the C model.

    wire("sir.model/baseline", {"beta": 0.3, "gamma": 0.1}, seed)
        -> {"incidence": b"day,incidence\\n0,...", "prevalence": b"..."}

Run by hand: python3 wire.py '{"beta": 0.3, "gamma": 0.1}' SEED [OUTPUT]
prints one output (default incidence).  Standard library only.
"""
import json
import math
import sys

ENTRYPOINT = "sir.model/baseline"
MASK64 = (1 << 64) - 1
TWO_PI = 6.283185307179586  # the double nearest 2 pi, as in model.c
INVERSION_LIMIT = 30.0      # n * p below it: inversion
MAX_POPULATION = 1_000_000_000
MAX_DAYS = 10_000


# ---------------------------------------------------------- random numbers


def splitmix64(x):
    """One splitmix64 step: (new state, output)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return x, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK64


class Rng:
    """xoshiro256** seeded with four splitmix64 outputs of the seed."""

    def __init__(self, seed):
        self.s = []
        x = seed
        for _ in range(4):
            x, out = splitmix64(x)
            self.s.append(out)

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self):
        """A double in [0, 1): the top 53 bits, scaled (exact)."""
        return (self.next() >> 11) * 2.0 ** -53


def binomial_inversion(rng, n, p):
    q = 1.0 - p
    odds = p / q
    pmf = math.pow(q, n)
    u = rng.uniform()
    k = 0
    while u > pmf and k < n:
        u -= pmf
        k += 1
        pmf = pmf * odds * (n - k + 1) / k
    return k


def binomial_normal(rng, n, p):
    u1 = rng.uniform()
    u2 = rng.uniform()
    z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(TWO_PI * u2)
    mean = n * p
    sd = math.sqrt(mean * (1.0 - p))
    x = math.floor(mean + sd * z + 0.5)
    return min(max(x, 0), n)


def binomial(rng, n, p):
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p < INVERSION_LIMIT:
        return binomial_inversion(rng, n, p)
    return binomial_normal(rng, n, p)


# -------------------------------------------------------------- parameters


def json_type(value):
    """The JSON type name of a parameter value, as the native runner says."""
    if isinstance(value, bool):
        return "boolean"
    names = {int: "integer", float: "float", str: "string", list: "array",
             dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def number_param(params, name):
    """A required number (an integer reads as a float)."""
    if name not in params:
        raise ValueError(f"parameter '{name}' is missing")
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"parameter '{name}' must be a number, "
                         f"got {json_type(value)}")
    return float(value)


def int_param(params, name, default):
    """An optional integer (an integral float reads as an integer)."""
    value = params.get(name, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 9e18:
        return int(value)
    raise ValueError(f"parameter '{name}' must be an integer, "
                     f"got {json_type(value)}")


def check_range(name, value, lo, hi):
    if not lo <= value <= hi:
        raise ValueError(f"parameter '{name}' must be in {lo}..{hi}, "
                         f"got {value}")
    return value


def read_params(params):
    """The parameters, checked in model.c's order with its messages."""
    beta = number_param(params, "beta")
    if not math.isfinite(beta) or beta < 0.0:
        raise ValueError(f"parameter 'beta' must be >= 0, got {beta:g}")
    gamma = number_param(params, "gamma")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"parameter 'gamma' must be in (0, 1], "
                         f"got {gamma:g}")
    population = check_range("population",
                             int_param(params, "population", 10000),
                             1, MAX_POPULATION)
    infected = int_param(params, "initial_infected", 10)
    if not 0 <= infected <= population:
        raise ValueError(f"parameter 'initial_infected' must be in "
                         f"0..population ({population}), got {infected}")
    days = check_range("days", int_param(params, "days", 120), 1, MAX_DAYS)
    return beta, gamma, population, infected, days


# -------------------------------------------------------------- simulation


def simulate(beta, gamma, population, initial_infected, days, seed):
    """New infections and end-of-day prevalence for each day."""
    rng = Rng(seed)
    p_recover = 1.0 - math.exp(-gamma)
    susceptible, infected = population - initial_infected, initial_infected
    incidence, prevalence = [], []
    for _ in range(days):
        force = beta * infected / population
        infections = binomial(rng, susceptible, 1.0 - math.exp(-force))
        recoveries = binomial(rng, infected, p_recover)
        susceptible -= infections
        infected += infections - recoveries
        incidence.append(infections)
        prevalence.append(infected)
    return incidence, prevalence


def series_csv(column, values):
    """b"day,<column>\\n0,<v0>\\n1,<v1>\\n..."."""
    rows = [f"day,{column}\n"]
    rows += [f"{day},{value}\n" for day, value in enumerate(values)]
    return "".join(rows).encode("ascii")


def wire(entrypoint, params, seed):
    """Run one simulation: {"incidence": CSV bytes, "prevalence": ...}."""
    if entrypoint != ENTRYPOINT:
        raise ValueError(f"unknown entrypoint '{entrypoint}' "
                         f"(this bundle has: {ENTRYPOINT})")
    if isinstance(seed, bool) or not isinstance(seed, int) \
            or not 0 <= seed <= MASK64:
        raise ValueError(f"seed must be an integer in 0..2^64-1, got {seed!r}")
    incidence, prevalence = simulate(*read_params(params), seed)
    return {"incidence": series_csv("incidence", incidence),
            "prevalence": series_csv("prevalence", prevalence)}


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python3 wire.py PARAMS_JSON SEED [OUTPUT]")
    outputs = wire(ENTRYPOINT, json.loads(sys.argv[1]), int(sys.argv[2]))
    sys.stdout.buffer.write(outputs[sys.argv[3] if len(sys.argv) == 4
                                    else "incidence"])
