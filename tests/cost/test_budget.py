"""The Budget owns the cap: holds in flight, settle/release once, set_cap floors, slices."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuiagent.cost.budget import Budget, BudgetError, BudgetSnapshot

D = Decimal


def test_a_hold_is_in_flight_until_settled() -> None:
    budget = Budget(D("1.00"))
    hold = budget.reserve(D("0.30"), "turn 1")
    assert hold is not None
    assert (budget.in_flight, budget.settled, budget.remaining) == (D("0.30"), 0, D("0.70"))
    hold.settle(D("0.10"))
    assert (budget.in_flight, budget.settled, budget.remaining) == (0, D("0.10"), D("0.90"))


def test_a_reservation_that_does_not_fit_is_refused() -> None:
    budget = Budget(D("1.00"))
    assert budget.reserve(D("0.60")) is not None
    assert budget.reserve(D("0.41")) is None  # 0.60 in flight: 0.40 left
    assert budget.reserve(D("0.40")) is not None


def test_release_gives_the_hold_back_and_a_hold_closes_once() -> None:
    budget = Budget(D("1"))
    hold = budget.reserve(D("0.5"))
    assert hold is not None
    hold.release()
    assert budget.remaining == D("1")
    with pytest.raises(BudgetError):
        hold.settle(D("0.1"))
    with pytest.raises(BudgetError):
        hold.release()


def test_overbilling_is_spent_all_the_same_and_said() -> None:
    budget = Budget(D("1"))
    hold = budget.reserve(D("0.2"))
    assert hold is not None
    hold.settle(D("0.5"))
    assert budget.settled == D("0.5")
    assert hold.over == D("0.3")


def test_set_cap_never_below_settled_plus_in_flight() -> None:
    budget = Budget(D("1"))
    done = budget.reserve(D("0.2"))
    assert done is not None
    done.settle(D("0.2"))
    flying = budget.reserve(D("0.3"))
    assert flying is not None
    assert budget.set_cap(D("0.1")) == D("0.5")  # settled 0.2 + in flight 0.3
    assert budget.reserve(D("0.000001")) is None
    flying.settle(D("0.05"))
    assert budget.remaining == D("0.25")  # the cap stays 0.5 once set
    assert budget.set_cap(D("2")) == D("2")


def test_negative_amounts_are_errors() -> None:
    budget = Budget(D("1"))
    with pytest.raises(BudgetError):
        budget.reserve(D("-1"))
    hold = budget.reserve(D("0.1"))
    assert hold is not None
    with pytest.raises(BudgetError):
        hold.settle(D("-0.1"))
    with pytest.raises(ValueError):
        budget.set_cap(D("-1"))


def test_a_slice_is_capped_by_what_is_left_and_rolls_up() -> None:
    parent = Budget(D("1"))
    flying = parent.reserve(D("0.7"))
    assert flying is not None
    child = parent.slice(D("0.5"), "a1")
    assert child.cap == D("0.3")  # never more than is left
    hold = child.reserve(D("0.2"))
    assert hold is not None
    assert parent.in_flight == D("0.9")
    hold.settle(D("0.15"))
    assert (child.settled, parent.settled, parent.in_flight) == (D("0.15"), D("0.15"), D("0.7"))


def test_slices_together_never_pass_the_parent() -> None:
    parent = Budget(D("1"))
    a, b = parent.slice(D("0.8"), "a1"), parent.slice(D("0.8"), "a2")
    assert a.reserve(D("0.6")) is not None
    assert b.reserve(D("0.6")) is None  # the parent has 0.4 left
    assert b.reserve(D("0.4")) is not None
    assert parent.remaining == 0


def test_listeners_hear_every_change() -> None:
    budget = Budget(D("1"))
    heard: list[BudgetSnapshot] = []
    stop = budget.subscribe(heard.append)
    hold = budget.reserve(D("0.4"))
    assert hold is not None
    hold.settle(D("0.1"))
    budget.set_cap(D("2"))
    assert [(h.settled, h.in_flight, h.cap) for h in heard] == [
        (0, D("0.4"), 1),
        (D("0.1"), 0, 1),
        (D("0.1"), 0, 2),
    ]
    assert heard[-1].remaining == D("1.9")
    stop()
    budget.set_cap(D("3"))
    assert len(heard) == 3


def test_concurrent_reservations_never_pass_the_cap() -> None:
    budget = Budget(D("1"))
    got: list[object] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        for _ in range(50):
            hold = budget.reserve(D("0.01"))
            if hold is not None:
                got.append(hold)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 100
    assert budget.in_flight == D("1.00")


ops = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "settle", "release", "cap", "slice"]),
        st.integers(0, 3),  # which budget
        st.decimals(min_value=0, max_value=2, places=4),
        st.integers(0, 50),  # which hold
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(cap=st.decimals(min_value=0, max_value=2, places=4), steps=ops)
def test_property_settled_within_reservations_never_passes_the_cap(
    cap: Decimal, steps: list[tuple[str, int, Decimal, int]]
) -> None:
    """Whatever the order of holds, settlements (within each hold), cap changes and slices:
    every budget's settled + in flight stays within its cap, and the root's settled is the
    sum of every settlement made anywhere below it."""
    root = Budget(cap)
    budgets = [root]
    holds = []
    settled_total = D(0)
    for op, which, amount, pick in steps:
        budget = budgets[which % len(budgets)]
        if op == "reserve":
            hold = budget.reserve(amount)
            if hold is not None:
                holds.append(hold)
        elif op in ("settle", "release") and holds:
            hold = holds.pop(pick % len(holds))
            if op == "settle":
                actual = min(amount, hold.amount)
                hold.settle(actual)
                settled_total += actual
            else:
                hold.release()
        elif op == "cap":
            budget.set_cap(amount)
        elif op == "slice" and len(budgets) < 4:
            budgets.append(budget.slice(amount, f"a{len(budgets)}"))
        for b in budgets:
            assert b.settled + b.in_flight <= b.cap
            assert b.remaining >= 0
    assert root.settled == settled_total
