"""Synthetic but realistic workload history, and a real Prometheus serving it, for demos and benchmarks.

Nothing in here is imported by the operator itself: it exists so that rightsizer can be exercised end to end
against the real query engine without a Kubernetes cluster.
"""
