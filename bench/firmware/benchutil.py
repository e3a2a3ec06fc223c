# Helpers the MicroPython benchmark scripts share.


def median(xs):
    """Median of a non-empty list: what the benchmarks report, as the host is noisy."""
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n & 1 else (xs[n // 2 - 1] + xs[n // 2]) / 2
