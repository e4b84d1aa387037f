"""Targets comparing the simulated daily incidence with observed data.

The Python twins of the targets in ../sir/model.c, with the same numbers:

    targets.incidence:mse          mean squared error per day
    targets.incidence:poisson_nll  Poisson negative log-likelihood

An evaluator gets the replicates of one parameter set as serialised
SimReturns, {"task_id", "sim_root", "outputs": {name: {"size",
"checksum", "inline", "data"?, "cas_ref"}}, "error"}, and returns
{"loss", "diagnostics", "per_replicate_losses"}.  The observed data is
read once, when the runner first imports this module; the worker's
working directory is a scratch directory, so it is found next to this
file.  target_data is not used.
"""
import base64
import math
import os

BUNDLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBSERVED_FILE = os.path.join(BUNDLE, "data", "observed_incidence.csv")
RATE_FLOOR = 1e-9  # smallest Poisson rate: log() stays finite
MAX_DIGITS = 15


def parse_series(data, column, max_rows=None):
    """The counts of b"day,<column>\\n0,<n>\\n1,<n>\\n..." (the last newline
    may be missing); ValueError with the reason when malformed."""
    text = data.decode("ascii", errors="replace")
    header, newline, body = text.partition("\n")
    if header != f"day,{column}" or not newline:
        raise ValueError(f"the header is not 'day,{column}'")
    rows = body.split("\n")
    if rows[-1] == "":
        rows.pop()
    values = []
    for n, row in enumerate(rows):
        day, comma, count = row.partition(",")
        if not (comma and is_count(day) and is_count(count)):
            raise ValueError(f"row {n + 1} is not '<day>,<count>'")
        if int(day) != n:
            raise ValueError(f"row {n + 1} is day {int(day)}, expected {n}")
        if n == max_rows:
            raise ValueError(f"more than {max_rows} rows")
        values.append(int(count))
    return values


def is_count(text):
    return 1 <= len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()


def load_observed():
    with open(OBSERVED_FILE, "rb") as f:
        values = parse_series(f.read(), "incidence")
    if not values:
        raise ValueError(f"{OBSERVED_FILE}: no rows")
    return values


OBSERVED = load_observed()


def output_bytes(output):
    """An output's bytes: "data" (warmexec's runner) when present, else
    the base64 "inline" (the original runner's form)."""
    if output.get("data") is not None:
        return output["data"]
    if output.get("inline") is None:
        raise ValueError(f"its bytes are not inline (cas_ref "
                         f"{output.get('cas_ref')})")
    return base64.b64decode(output["inline"])


def replicate_incidence(i, sim_return):
    """The daily incidence of replicate i, checked against the observed."""
    output = sim_return["outputs"].get("incidence")
    if output is None:
        raise ValueError(f"replicate {i} has no output 'incidence'")
    try:
        values = parse_series(output_bytes(output), "incidence",
                              len(OBSERVED))
    except ValueError as e:
        raise ValueError(f"replicate {i}: output 'incidence': {e}") from None
    if len(values) != len(OBSERVED):
        raise ValueError(f"replicate {i} has {len(values)} days of "
                         f"incidence, the observed data has {len(OBSERVED)}")
    return values


def read_replicates(sim_returns):
    """The incidence of every replicate that ran (None for the others: an
    error set, or no outputs at all, as the original runner sends them)."""
    if not sim_returns:
        raise ValueError("no replicates to compare")
    series = [None if sr.get("error") or not sr.get("outputs")
              else replicate_incidence(i, sr)
              for i, sr in enumerate(sim_returns)]
    if all(values is None for values in series):
        raise ValueError(f"every replicate failed ({len(series)} of "
                         f"{len(series)}): no incidence to compare")
    return series


def diagnostics(target, series):
    return {"target": target, "n_days": len(OBSERVED),
            "n_replicates": len(series),
            "n_failed": sum(values is None for values in series)}


def mean_squared_error(sim):
    total = 0.0
    for simulated, observed in zip(sim, OBSERVED):
        diff = float(simulated - observed)
        total += diff * diff
    return total / len(OBSERVED)


def negative_log_likelihood(rates):
    """sum over days of rate - obs * ln(rate) + ln(obs!)"""
    total = 0.0
    for rate, k in zip(rates, OBSERVED):
        total += rate - k * math.log(rate) + math.lgamma(k + 1)
    return total


def mse(sim_returns, target_data=None):
    """Loss: the mean over replicates of each one's mean squared error.
    per_replicate_losses lists the replicates that ran, in order (the
    runner accepts numbers only, so a failed one has no entry)."""
    series = read_replicates(sim_returns)
    losses = [mean_squared_error(values) for values in series
              if values is not None]
    total = 0.0
    for loss in losses:
        total += loss
    return {"loss": total / len(losses),
            "diagnostics": diagnostics("incidence_mse", series),
            "per_replicate_losses": losses}


def poisson_nll(sim_returns, target_data=None):
    """Loss: the Poisson negative log-likelihood of the observed incidence
    when day d's rate is the mean simulated incidence of day d; each
    replicate's loss uses its own incidence as the rates."""
    series = read_replicates(sim_returns)
    ran = [values for values in series if values is not None]
    losses = [negative_log_likelihood([max(float(v), RATE_FLOOR)
                                       for v in values])
              for values in ran]
    rates = [max(sum(day) / len(ran), RATE_FLOOR) for day in zip(*ran)]
    return {"loss": negative_log_likelihood(rates),
            "diagnostics": diagnostics("incidence_poisson_nll", series),
            "per_replicate_losses": losses}
