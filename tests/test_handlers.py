"""Kopf's settings as the operator configures them."""

import kopf

from rightsizer.controller.handlers import configure
from rightsizer.settings import HANDLER_THREADS


def test_a_deleted_policy_is_released_within_seconds_not_kopfs_minute() -> None:
    # A timer in the middle of an evaluation when its policy is deleted is polled until it stops;
    # Kopf's default (60 s) kept the finalizer, and `kubectl delete`, waiting for a minute.
    settings = kopf.OperatorSettings()
    assert settings.background.cancellation_polling == 60
    configure(settings)
    assert settings.background.cancellation_polling <= 1
    assert settings.peering.standalone


def test_evaluations_run_in_a_fixed_number_of_threads_whatever_the_node() -> None:
    # Python's default (cores + 4, up to 32) would make the batches fetched at once, and the memory
    # they take, grow with the node the operator lands on.
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.execution.max_workers == HANDLER_THREADS
    assert settings.execution.executor._max_workers == HANDLER_THREADS  # type: ignore[attr-defined]
