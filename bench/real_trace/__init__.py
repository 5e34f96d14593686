"""The real-trace benchmark: rightsizer and its baselines on a month of real VM usage.

``trace`` reads the trace and turns its 5-minute samples into 60 s scrapes, ``baselines`` computes
the other strategies from the trace itself, ``learn`` runs ``rightsizer recommend`` on a real
Prometheus backfilled with the learning days, ``scoring`` scores every strategy on the days after,
``report`` writes the table and the plots. ``bench/real_trace_bench.py`` runs it all.
"""
