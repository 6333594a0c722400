"""Exposition parsing on real bodies: trimtab's parser vs prometheus_client's, cold and steady.

The corpus is scraped at run time from real programs (``benchmarks/corpus.py``): the apt
Prometheus server's own ``/metrics``, HAProxy's built-in exporter (three backends of four
servers), a prometheus_client process (default collectors, labels with escapes, exemplars)
and a demo instance, each in the text format 0.0.4 and, where offered, OpenMetrics. Each
body is several successive scrapes of its target, values changed in between.

- cold: a fresh :class:`TargetParser` per parse of the target's first scrape, the caches the
  parsers of a process share forgotten before each (no line of it seen before, as on the
  first target of a fleet; the next targets that print the same lines find them);
- steady: a parser that has read the target's first scrape, timed on each later one in
  order, each body once (a fresh parser every round): values it has never seen, as a
  scrape engine's parser for that target meets them (cycling through a few bodies would
  let its value cache remember them);
- reference: prometheus_client's parser for the body's format on the first scrape (it keeps
  nothing between calls, so its cold and steady are the same).

trimtab's parser runs with its C helpers (``collectors/exposition/_native.c``: a repeated
scrape's values, a first scrape's label sets) when the install built them, as ``trimtab`` does;
``--python`` turns them off to measure the Python paths alone. The first line says which ran.

trimtab's parse returns columns (``Exposition.columns()``): the parse alone is timed, as the
scrape engine reads it. Timings interleave the parsers and take medians of CPU time per parse
(the machine is shared and noisy). The last line is the figure: the *minimum* over bodies of
the steady and of the cold ratio.

Run: ``.venv/bin/python benchmarks/parse.py [--python]``
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_om_reference,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text_reference  # noqa: E402
from trimtab.collectors.exposition import TargetParser, forget_shared_caches, native  # noqa: E402

from benchmarks.corpus import Body, build_corpus  # noqa: E402

ROUNDS = 9


def timed_ms(run: Callable[[], object], calls: int,
             setup: Callable[[], object] | None = None) -> list[float]:
    """CPU time of each of ``calls`` calls, in milliseconds (``setup`` runs untimed before each).

    process_time, not wall time: on a busy shared machine wall time counts
    other processes' turns; CPU time counts this parse's work.
    """
    out, kept = [], None
    for _ in range(calls):
        if setup is not None:
            setup()
        t0 = time.process_time()
        result = run()
        out.append((time.process_time() - t0) * 1e3)
        # A consumer holds a scrape until the next one arrives: keep the previous result
        # alive during the next parse, so the garbage collector sees what it would in use.
        kept = result
    del kept
    return out


def measure(body: Body) -> dict[str, float]:
    """Median ms per parse of this body: reference, cold, steady."""
    scrapes, content_type = body.scrapes, body.content_type
    reference_parser = parse_om_reference if body.openmetrics else parse_text_reference
    steady_parser, later = TargetParser(), iter(())  # both replaced every round, below

    def steady() -> object:
        return steady_parser.parse(next(later), content_type)

    def cold() -> object:  # a first scrape of lines no target in this process printed before
        return TargetParser().parse(scrapes[0], content_type)

    def reference() -> object:
        return list(reference_parser(scrapes[0]))

    runs = {"reference": (reference, 2), "cold": (cold, 5), "steady": (steady, len(scrapes) - 1)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):  # interleaved, so load on the machine hits all of them alike
        steady_parser = TargetParser()
        steady_parser.parse(scrapes[0], content_type)  # the target's first scrape came before
        later = iter(scrapes[1:])
        for name, (run, calls) in runs.items():
            times[name] += timed_ms(run, calls, forget_shared_caches if name == "cold" else None)
    return {name: median(t) for name, t in times.items()}


def main() -> None:
    if "--python" in sys.argv[1:]:
        native.ENABLED = False
    elif not native.ENABLED:
        print("note: the C helpers are not built (no C compiler at install): the Python paths run")
    print(f"trimtab's parser: {'C helpers and Python' if native.ENABLED else 'Python paths alone'}")
    corpus = build_corpus()
    steady_ratios, cold_ratios = {}, {}
    for body in corpus:
        ms = measure(body)
        n = sum(1 for line in body.scrapes[0].splitlines() if line and not line.startswith("#"))
        steady_ratios[body.name] = ms["reference"] / ms["steady"]
        cold_ratios[body.name] = ms["reference"] / ms["cold"]
        print(f"{body.name:26s} {n:5d} samples {len(body.scrapes[0]) / 1024:5.0f} KiB | reference "
              f"{ms['reference']:7.2f} ms | cold {ms['cold']:6.3f} ms {cold_ratios[body.name]:5.1f}x | "
              f"steady {ms['steady']:6.3f} ms {steady_ratios[body.name]:6.1f}x")
    worst_steady = min(steady_ratios, key=steady_ratios.__getitem__)
    worst_cold = min(cold_ratios, key=cold_ratios.__getitem__)
    print(f"minimum over {len(corpus)} real bodies: steady {steady_ratios[worst_steady]:.1f}x ({worst_steady}), "
          f"cold {cold_ratios[worst_cold]:.1f}x ({worst_cold})")


if __name__ == "__main__":
    main()
