"""Kopf's settings as the operator configures them."""

import kopf

from rightsizer.controller.handlers import configure


def test_a_deleted_policy_is_released_within_seconds_not_kopfs_minute() -> None:
    # A timer in the middle of an evaluation when its policy is deleted is polled until it stops;
    # Kopf's default (60 s) kept the finalizer, and `kubectl delete`, waiting for a minute.
    settings = kopf.OperatorSettings()
    assert settings.background.cancellation_polling == 60
    configure(settings)
    assert settings.background.cancellation_polling <= 1
    assert settings.peering.standalone
