"""What an export will cost, before it starts: the multiplications it unrolls, and time and memory estimated from
the committed benchmark fit.

Every dense or convolutional layer becomes, in firmware, one ``x @ W`` per output position; the multiplications
unrolled are ``fan_in x outputs x positions`` summed over the layers. ``bench/export_scaling.py`` exports models of
growing size with every target and fits ``seconds = a * M ** b`` and ``peak MiB = c + d * M ** e`` (M: the
multiplications); ``FITS`` holds those numbers. The estimate is the fit, not a promise: the benchmark's machine,
load and models are not yours (its JSON names them); read it as "minutes or hours", not as a deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .facts import LayerFacts


@dataclass(frozen=True)
class Fit:
    """``seconds = fixed + a * M ** b`` (``a``, ``b``: the phase that grows, trace/compile; ``fixed``: the rest),
    ``peak MiB = base + d * M ** e``; ``largest``: the largest M the benchmark ran; ``growth_measured``: False when
    the benchmark's sizes did not grow the time measurably (then only ``fixed + a`` is known)."""

    fixed: float
    a: float
    b: float
    base: float
    d: float
    e: float
    largest: int
    growth_measured: bool = True
    rtl: bool = False  # the fit includes the verilated RTL simulation


#: From bench/results/export_scaling.json (the ``cost fit`` entry of each target), in CPU seconds, on an AMD EPYC
#: with 2 CPU cores, 2026-12-02, load average 2-3 from a test run beside it. Run 1 (``bench/export_scaling.py
#: --update --large --targets da4ml,alkaid,alkaid-rtl,vitis,vitis-stream,vitis-resource --max-multiplications 11000
#: --hls-max-multiplications 2000``): da4ml and alkaid (alkaid with and without the verilated RTL), 7 dense and conv
#: models up to 10,560 multiplications; hls4ml (Vitis io_parallel latency and resource, io_stream on models converted
#: with uniform activations): 4 models up to 1,920, whose time is g++'s nearly fixed cost (growth not measured).
#: da4ml/rtl is run 0's (``--targets da4ml-rtl,...``, the same sizes). An ``/rtl`` fit is the whole export
#: (verilator's time grows too). Keys: the target's tool, then its variant (``da4ml/rtl``,
#: ``hls4ml/io_parallel/resource``); the first that exists wins.
FITS: dict[str, Fit] = {
    'da4ml': Fit(fixed=0.067, a=1.05e-05, b=1.611, base=937.4, d=0.0003255, e=1.371, largest=10560),
    'da4ml/rtl': Fit(fixed=0.0, a=0.02151, b=1.113, base=886.7, d=0.08354, e=0.683, largest=10560, rtl=True),
    'alkaid': Fit(fixed=0.052, a=3.761e-05, b=1.471, base=925.6, d=0.001787, e=1.187, largest=10560),
    'alkaid/rtl': Fit(fixed=0.0, a=0.3323, b=0.635, base=941.9, d=0.0008453, e=0.93, largest=10560, rtl=True),
    'hls4ml': Fit(fixed=0.042, a=4.241, b=-0.002, base=890.0, d=0.004522, e=0.71, largest=1920, growth_measured=False),
    'hls4ml/io_parallel/resource': Fit(
        fixed=0.038, a=4.0, b=0.006, base=898.5, d=0.6, e=0.0, largest=1920, growth_measured=False
    ),
    'hls4ml/io_stream/latency': Fit(
        fixed=0.04, a=5.154, b=-0.021, base=896.7, d=0.05974, e=0.217, largest=1920, growth_measured=False
    ),
}
#: An export estimated to take longer than this, or more memory, gets a warning in check.
WARN_SECONDS = 600.0
WARN_MIB = 8192.0
#: A fit whose growth was not measured warns past this many times the largest model it ran: the time is unknown.
UNKNOWN_BEYOND = 100
#: Any fit warns past this many times the largest model it ran: its growth is extrapolated, and the dense
#: 16x256x128x5 model (37,504 multiplications, 3.6x beyond da4ml's fit, estimated 3-4 min) was still in da4ml's
#: export after 35 minutes (bench/export_scaling.py --large, stopped): the time grows with each matrix's size too.
EXTRAPOLATED_BEYOND = 3


def multiplications(facts: list[LayerFacts]) -> int:
    """Multiplications the firmware unrolls: ``fan_in x outputs x positions`` over the dense/conv layers."""
    return sum(f.fan_in * f.n_out * f.positions for f in facts if f.arithmetic and f.n_out)


def fit_key(target: Any) -> list[str]:
    """The FITS keys for a target's options, most specific first."""
    tool = str(getattr(target, 'tool', target))
    keys = [tool]
    if getattr(target, 'rtl', None) is not False and hasattr(target, 'rtl'):
        keys.insert(0, f'{tool}/rtl')
    if hasattr(target, 'io_type'):
        keys.insert(0, f'{tool}/{target.io_type}/{target.strategy}')
    return keys


def estimate(facts: list[LayerFacts], target: Any) -> tuple[int, float | None, float | None, Fit | None]:
    """(multiplications, seconds, peak MiB, the fit used); seconds/MiB are None when no fit covers the target."""
    m = multiplications(facts)
    fit = next((FITS[k] for k in fit_key(target) if k in FITS and FITS[k].a > 0), None)
    if fit is None or m == 0:
        return m, None, None, fit
    growth = m**fit.b if fit.growth_measured else 1.0
    return m, fit.fixed + fit.a * growth, fit.base + fit.d * m**fit.e, fit


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 5400:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def describe(facts: list[LayerFacts], target: Any) -> str:
    """One line: the multiplications and the estimate (or why there is none)."""
    m, seconds, mib, fit = estimate(facts, target)
    head = f'the export unrolls {m:,} multiplications'
    if seconds is None or mib is None or fit is None:
        return f'{head}; no benchmark fit for {target} yet, so no time estimate'
    beyond = f', {m / fit.largest:.2g}x beyond the largest model measured' if fit.largest and m > fit.largest else ''
    if not fit.growth_measured:
        beyond += '; how it grows with size was not measured, so this is a lower bound'
        head = f'{head}; estimated export time at least'
    else:
        head = f'{head}; estimated export time about'
    if getattr(target, 'rtl', False) is not False and hasattr(target, 'rtl') and not fit.rtl:
        beyond += '; the verilator RTL simulation is not in the fit'
    return (
        f'{head} {_duration(seconds)} of CPU and peak memory about {mib:,.0f} MiB '
        f'(an estimate from the fit of bench/export_scaling.py on 2 CPU cores{beyond})'
    )


def export_cost(facts: list[LayerFacts], target: Any) -> str | None:
    """The warning past WARN_SECONDS or WARN_MIB (a model rule: ``facts`` is every layer's)."""
    m, seconds, mib, fit = estimate(facts, target)
    if seconds is None or mib is None or fit is None:  # no fit for this target: warn on size alone
        return describe(facts, target) + f', more than {NO_FIT_WARN:,} multiplications' if m > NO_FIT_WARN else None
    unknown = m > (EXTRAPOLATED_BEYOND if fit.growth_measured else UNKNOWN_BEYOND) * fit.largest
    if seconds <= WARN_SECONDS and mib <= WARN_MIB and not unknown:
        return None
    if unknown and fit.growth_measured:
        return describe(facts, target) + '; so far beyond the measured sizes the real time can be many times longer'
    return describe(facts, target)


#: Without a benchmark fit for the target, warn past this many multiplications: 10x the largest model any fit
#: measured, where da4ml's export with RTL already took minutes.
NO_FIT_WARN = 100_000

FIX = (
    'hls4ml: --strategy resource with a larger --reuse-factor, or --io-type io_stream; any target: a smaller model, '
    'or hgqbridge finetune first (it narrows and prunes weights); export --timeout bounds the wait'
)
