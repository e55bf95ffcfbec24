"""Selection rules on constructed fronts: knee, weights, constraints, trial, and the errors."""

from __future__ import annotations

import pytest

from automtl.errors import AutomtlError
from automtl.search.front import FrontRow
from automtl.search.selection import Selection, knee_scores, parse_selection, select

OBJ = ["ctr_auc", "cvr_auc"]


def _row(n: int, **values: float) -> FrontRow:
    return FrontRow(trial_number=n, values=dict(values), test={}, config={}, params={})


# Normalised over the front (ctr 0.70..0.80, cvr 0.60..0.80) the points are
# E1 (1, 0), A (0.95, 0.5), B (0.72, 0.72), E2 (0, 1): A is farthest from the line through the
# extremes (x + y = 1), B is closest to the utopia point (1, 1).
FRONT = [
    _row(3, ctr_auc=0.80, cvr_auc=0.60),   # E1
    _row(7, ctr_auc=0.795, cvr_auc=0.70),  # A
    _row(11, ctr_auc=0.772, cvr_auc=0.744),  # B
    _row(12, ctr_auc=0.70, cvr_auc=0.80),  # E2
]


def pick(rule: Selection, front=FRONT, objectives=OBJ, directions=None) -> int:
    return select(front, objectives, rule, directions).trial_number


def test_knee_2d_is_farthest_from_extremes_line():
    assert pick(Selection(pick="knee")) == 7
    scores = knee_scores(FRONT, OBJ)
    # extremes lie on the line; A beats B by line distance although B is nearer utopia
    assert scores[0][0] == pytest.approx(0.0, abs=1e-12)
    assert scores[3][0] == pytest.approx(0.0, abs=1e-12)
    assert scores[1][0] > scores[2][0] > 0
    assert scores[2][1] > scores[1][1]


def test_knee_nd_is_closest_to_utopia():
    # A third objective without spread cannot decide; with 3 objectives the utopia rule applies.
    front3 = [_row(r.trial_number, **r.values, ctcvr_auc=0.9) for r in FRONT]
    assert pick(Selection(pick="knee"), front3, OBJ + ["ctcvr_auc"]) == 11


def test_knee_is_invariant_to_objective_scale_and_order():
    scaled = [_row(r.trial_number, ctr_auc=10 * r.values["ctr_auc"] - 3,
                   cvr_auc=r.values["cvr_auc"]) for r in FRONT]
    assert pick(Selection(pick="knee"), scaled) == 7
    assert pick(Selection(pick="knee"), list(reversed(FRONT)), ["cvr_auc", "ctr_auc"]) == 7


def test_knee_degenerate_fronts():
    assert pick(Selection(pick="knee"), FRONT[:1]) == 3
    # two points normalise to (1, 0) and (0, 1): a full tie, the lower trial number wins
    two = [_row(4, ctr_auc=0.8, cvr_auc=0.5), _row(2, ctr_auc=0.79, cvr_auc=0.9)]
    assert pick(Selection(pick="knee"), two) == 2
    # single objective: the best point
    assert pick(Selection(pick="knee"), FRONT, ["ctr_auc"]) == 3


def test_weights_task_and_metric_names():
    assert pick(parse_selection(weights="ctr=0.7,cvr=0.3")) == 7
    assert pick(parse_selection(weights="ctr_auc=0.5,cvr_auc=0.5")) == 11
    assert pick(parse_selection(weights=["cvr=1"])) == 12  # missing objectives weigh 0


def test_constraint_then_maximise():
    assert pick(parse_selection(minimums=["ctr=0.77"], maximize="cvr")) == 11
    assert pick(parse_selection(minimums=["ctr_auc=0.78"], maximize="cvr_auc")) == 7
    # without --maximize the one unconstrained objective is maximised
    assert pick(parse_selection(minimums="cvr=0.7")) == 7
    # --maximize alone: best on that objective
    assert pick(parse_selection(maximize="ctr")) == 3
    # several bounds at once (repeated and comma-separated forms)
    assert pick(parse_selection(minimums=["ctr=0.75", "cvr=0.65"], maximize="ctr")) == 7
    assert pick(parse_selection(minimums="ctr=0.75,cvr=0.72", maximize="ctr")) == 11


def test_minimised_objective_is_flipped():
    front = [_row(1, ctr_auc=0.80, ctr_logloss=0.50), _row(2, ctr_auc=0.78, ctr_logloss=0.30),
             _row(3, ctr_auc=0.70, ctr_logloss=0.29)]
    dirs = {"ctr_auc": "maximize", "ctr_logloss": "minimize"}
    objs = ["ctr_auc", "ctr_logloss"]
    assert pick(parse_selection(weights="ctr_logloss=1"), front, objs, dirs) == 3
    assert pick(parse_selection(maximize="ctr_logloss"), front, objs, dirs) == 3
    assert pick(Selection(pick="knee"), front, objs, dirs) == 2


def test_extreme_weights_choose_as_their_ratio_does():
    """Weights are a direction: 1e308 each must not overflow the sums into a tie, nor the
    smallest float underflow them."""
    assert pick(parse_selection(weights="ctr=1e308,cvr=1e308")) == 11
    assert pick(parse_selection(weights="ctr=1.7e308,cvr=1.7e308")) == 11
    assert pick(parse_selection(weights="ctr=5e-324,cvr=0")) == 3
    assert pick(parse_selection(weights="cvr=5e-324")) == 12


def test_one_objective_spelled_twice_names_both_spellings():
    with pytest.raises(AutomtlError, match=r"'ctr_auc' is given twice \('ctr' and 'ctr_auc'\)"):
        pick(parse_selection(weights="ctr=0.5,ctr_auc=0.5"))


def test_ties_go_to_lower_trial_number():
    front = [_row(5, ctr_auc=0.8, cvr_auc=0.7), _row(2, ctr_auc=0.7, cvr_auc=0.8)]
    assert pick(parse_selection(weights="ctr=1,cvr=1"), front) == 2


def test_trial_rule():
    assert pick(parse_selection(trial=12)) == 12
    with pytest.raises(AutomtlError,
                       match=r"--trial 99: no such completed trial \(candidates: 3, 7, 11, 12\)"):
        pick(parse_selection(trial=99))
    # a conditioned trial is several points of the front: named once
    points = [_row(4, ctr_auc=0.8, cvr_auc=0.6), _row(4, ctr_auc=0.7, cvr_auc=0.7),
              _row(2, ctr_auc=0.6, cvr_auc=0.8)]
    with pytest.raises(AutomtlError, match=r"\(candidates: 2, 4\)$"):
        pick(parse_selection(trial=99), points)


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": "ctcvr=1"}, r"--weights: unknown objective 'ctcvr'; the study's objectives are "
                             r"ctr_auc, cvr_auc \(or ctr, cvr\)"),
    ({"minimums": "ctr=0.81", "maximize": "cvr"},
     r"no front trial satisfies ctr_auc >= 0.81.*best ctr_auc on the front is 0.8000"),
    ({"minimums": "income=0.5", "maximize": "cvr"}, r"--min: unknown objective 'income'"),
    ({"minimums": "ctr=0.5", "maximize": "gmv"}, r"--maximize: unknown objective 'gmv'"),
])
def test_selection_errors(kwargs, message):
    with pytest.raises(AutomtlError, match=message) as info:
        pick(parse_selection(**kwargs))
    assert "\n" not in str(info.value)


def test_constraint_needs_a_target_when_ambiguous():
    front3 = [_row(r.trial_number, **r.values, ctcvr_auc=0.9) for r in FRONT]
    with pytest.raises(AutomtlError, match="--maximize NAME"):
        pick(parse_selection(minimums="ctr=0.7"), front3, OBJ + ["ctcvr_auc"])


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": "ctr:0.7"}, r"--weights: expected NAME=NUMBER pairs .* got 'ctr:0.7'"),
    ({"weights": "ctr=abc"}, r"--weights: expected NAME=NUMBER"),
    ({"weights": "ctr=-1,cvr=2"}, r"weights must be >= 0"),
    ({"weights": "ctr=0,cvr=0"}, r"at least one weight must be > 0"),
    ({"minimums": "ctr=nan", "maximize": "cvr"}, r"not a finite number"),
    ({"pick": "knee", "weights": "ctr=1"}, r"choose one selection rule, got --pick and --weights"),
    ({"trial": 1, "pick": "knee", "weights": "ctr=1"}, r"got --pick and --weights"),
    ({"pick": "elbow"}, r"--pick: unknown rule 'elbow' \(known: knee\)"),
])
def test_parse_errors(kwargs, message):
    with pytest.raises(AutomtlError, match=message):
        parse_selection(**kwargs)


def test_no_rule_and_empty_front():
    assert parse_selection() is None
    with pytest.raises(AutomtlError, match="Pareto front is empty"):
        select([], OBJ, Selection(pick="knee"))
    with pytest.raises(AutomtlError, match="choose a trial"):
        select(FRONT, OBJ, Selection())


def test_describe():
    assert parse_selection(minimums="ctr=0.72", maximize="cvr").describe() == \
        "ctr >= 0.72, then max cvr"
    assert parse_selection(weights="ctr=0.7,cvr=0.3").describe() == "max 0.7*ctr + 0.3*cvr"


def test_knee_points_on_the_extremes_line_tie_to_utopia():
    # (5/7, 2/7) lies on the line through (1, 0) and (0, 1) up to float noise: the tie goes to
    # the point nearest utopia, not to whichever extreme the rounding favours.
    front = [_row(0, ctr_auc=0.70, cvr_auc=0.60), _row(1, ctr_auc=0.72, cvr_auc=0.58),
             _row(3, ctr_auc=0.65, cvr_auc=0.65)]
    assert pick(Selection(pick="knee"), front) == 0
