"""app.domain.views.public_version: own version counter + the policy's revision, and its
inverse own_version (what user administration writes)."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.views import own_version, public_version


@dataclass(frozen=True)
class _Policy:
    revision: int


def test_public_version() -> None:
    assert public_version(5, None) == 5
    assert public_version(5, _Policy(3)) == 8


def test_own_version_is_the_inverse() -> None:
    for policy in (None, _Policy(0), _Policy(7)):
        assert public_version(own_version(1, policy), policy) == 1  # a new user's version


def test_moving_between_policies_grows_by_one() -> None:
    for old, new in ((_Policy(4), _Policy(9)), (None, _Policy(2)), (_Policy(6), None)):
        moved = own_version(public_version(10, old) + 1, new)
        assert public_version(moved, new) == public_version(10, old) + 1
