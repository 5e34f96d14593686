"""The quality benchmark: learn from N days of generated history, score the M days that follow.

``scenarios`` defines the workloads; ``allocation`` the requests and limits every strategy answers with;
``strategies`` the competitors computed from the learning ground truth (current allocation, KRR ``simple``,
a VPA-style recommender); ``learn`` runs rightsizer through a real Prometheus; ``scoring`` scores an
allocation against the scoring period (pure functions); ``run`` does one seed; ``report`` renders the
markdown. ``bench/quality_bench.py`` is the command line.
"""
