"""The Kopf operator.

Decorators live in ``main`` only; ``evaluate`` is one evaluation of one policy; ``kube`` makes the
Kubernetes API calls.
"""
