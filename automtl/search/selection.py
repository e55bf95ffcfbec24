"""Choosing one trial from a study's Pareto front by a rule the user can state.

Shared by `automtl export`, `automtl pareto` and the dashboard. Rules (exactly one per choice):

- ``trial``: the trial with that number.
- ``knee``: the knee of the front after normalising every objective to [0, 1] over the front
  (0 = the front's worst value, 1 = its best; minimised objectives are flipped). With two
  objectives the knee is the point farthest from the straight line through the two extreme
  points (the best point of each objective), on the side of the utopia point (1, 1): the point
  where giving up a little of one objective buys the most of the other. With one objective it
  is the best point; with three or more it is the point closest (Euclidean) to the utopia point
  (1, ..., 1). Ties (also a 2-D front with no point beyond the line) go to the point closer to
  utopia, then to the lower trial number.
- ``weights``: the largest weighted sum of the raw validation values (``ctr=0.7,cvr=0.3``);
  objectives without a weight count 0; minimised objectives enter with a minus sign.
- ``constraints``: keep the points whose values satisfy every lower bound (``--min ctr=0.72``),
  then take the best on one objective (``--maximize cvr``). Without ``--maximize`` the single
  unconstrained objective is maximised.
- ``within``: ``--trial N`` together with ``--pick``/``--min`` applies that rule to the sweep
  points of the preference-conditioned trial N (issue 16) instead of the study front; with
  ``--weights`` it names the task-weight vector trial N is conditioned on (see
  `automtl.export.trial.choose_trial`).

Names may be given as objective (metric) names (``ctr_auc``) or task names (``ctr`` for
``ctr_auc``). Unknown names, malformed rule text and empty feasible sets raise a one-line
`AutomtlError`. Among maximal candidates the lower trial number wins, so a choice is
deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Protocol, Sequence, TypeVar

from automtl.errors import AutomtlError
from automtl.search.objectives import direction

Direction = Literal["maximize", "minimize"]


class Candidate(Protocol):
    """What selection needs from a front point (`automtl.search.front.FrontRow` qualifies)."""

    trial_number: int
    values: dict[str, float]


C = TypeVar("C", bound=Candidate)


@dataclass(frozen=True)
class Selection:
    """One selection rule; build it with `parse_selection` (CLI text) or directly."""

    trial: int | None = None
    pick: Literal["knee"] | None = None
    weights: dict[str, float] = field(default_factory=dict)
    minimums: dict[str, float] = field(default_factory=dict)
    maximize: str | None = None
    within: int | None = None  # a conditioned trial whose sweep points the rule chooses among

    def describe(self) -> str:
        """Human-readable rule, e.g. ``ctr_auc >= 0.72, then max cvr_auc``."""
        if self.within is not None:
            inner = Selection(pick=self.pick, minimums=self.minimums, maximize=self.maximize)
            if self.weights:
                vec = ",".join(f"{n}={w:g}" for n, w in self.weights.items())
                return f"trial {self.within} conditioned on {vec}"
            return f"trial {self.within}, {inner.describe()} of its sweep"
        if self.trial is not None:
            return f"trial {self.trial}"
        if self.pick:
            return f"{self.pick} of the normalised front"
        if self.weights:
            return "max " + " + ".join(f"{w:g}*{n}" for n, w in self.weights.items())
        bounds = ", ".join(f"{n} >= {v:g}" for n, v in self.minimums.items())
        target = f"max {self.maximize}" if self.maximize else "max the unconstrained objective"
        return f"{bounds}, then {target}" if bounds else target


PICK_RULES = ("knee",)


def _pairs(option: str, texts: Sequence[str] | str | None) -> dict[str, float]:
    """Parse ``a=1,b=2`` (possibly repeated) into a dict; malformed text is one-line error."""
    if texts is None:
        return {}
    if isinstance(texts, str):
        texts = [texts]
    out: dict[str, float] = {}
    for text in texts:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, num = part.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                value = float(num)
            except ValueError:
                raise AutomtlError(f"{option}: expected NAME=NUMBER pairs like ctr=0.7,cvr=0.3, "
                                   f"got {part!r}") from None
            if not math.isfinite(value):
                raise AutomtlError(f"{option}: {name.strip()}={num.strip()} is not a finite number")
            if name.strip() in out:  # the last one would silently win
                raise AutomtlError(f"{option}: {name.strip()!r} is given twice; give each "
                                   "objective once")
            out[name.strip()] = value
    if not out:  # `--weights ''` would silently mean no rule (or, after --trial, the knee)
        raise AutomtlError(f"{option}: no NAME=NUMBER pair given; write e.g. ctr=0.7,cvr=0.3")
    return out


def parse_selection(trial: int | None = None, pick: str | None = None,
                    weights: Sequence[str] | str | None = None,
                    minimums: Sequence[str] | str | None = None,
                    maximize: str | None = None) -> Selection | None:
    """Build a `Selection` from CLI option values; None when no rule was given.

    More than one kind of rule (e.g. ``--trial`` with ``--pick``) is an `AutomtlError`.
    """
    w = _pairs("--weights", weights)
    mins = _pairs("--min", minimums)
    for option, text in (("--pick", pick), ("--maximize", maximize)):
        if text is not None and not text.strip():  # else silently no rule
            raise AutomtlError(f"{option}: empty; give a value (see `automtl export --help`)")
    given = [name for name, on in (("--trial", trial is not None), ("--pick", bool(pick)),
                                   ("--weights", bool(w)),
                                   ("--min/--maximize", bool(mins) or bool(maximize))) if on]
    within = None
    if len(given) >= 2 and given[0] == "--trial":  # a rule inside one conditioned trial
        within, trial = trial, None
        given = given[1:]
    if len(given) > 1:
        raise AutomtlError(f"choose one selection rule, got {' and '.join(given)}")
    if not given:
        return None
    if pick and pick not in PICK_RULES:
        raise AutomtlError(f"--pick: unknown rule {pick!r} (known: {', '.join(PICK_RULES)})")
    if any(v < 0 for v in w.values()):
        raise AutomtlError(f"--weights: weights must be >= 0, got {weights}")
    if w and not any(v > 0 for v in w.values()):
        raise AutomtlError("--weights: at least one weight must be > 0")
    return Selection(trial=trial, pick=pick if pick else None,  # type: ignore[arg-type]
                     weights=w, minimums=mins, maximize=maximize or None, within=within)


def _resolved(pairs: dict[str, float], objectives: Sequence[str],
              option: str) -> dict[str, float]:
    """Pairs keyed by full objective names; two spellings of one objective are refused."""
    out: dict[str, float] = {}
    named: dict[str, str] = {}
    for name, value in pairs.items():
        full = resolve_name(name, objectives, option)
        if full in out:
            raise AutomtlError(f"{option}: {full!r} is given twice ({named[full]!r} and "
                               f"{name!r}); give each objective once")
        out[full], named[full] = value, name
    return out


def resolve_name(name: str, objectives: Sequence[str], option: str = "name") -> str:
    """The objective meant by `name`: itself, or ``{name}_auc`` (task name for its AUC)."""
    if name in objectives:
        return name
    if f"{name}_auc" in objectives:
        return f"{name}_auc"
    short = [o[:-4] for o in objectives if o.endswith("_auc")]
    hint = f" (or {', '.join(short)})" if short else ""
    raise AutomtlError(f"{option}: unknown objective {name!r}; the study's objectives are "
                       f"{', '.join(objectives)}{hint}")


def _sign(direction: Direction) -> float:
    return 1.0 if direction == "maximize" else -1.0


def _directions(objectives: Sequence[str],
                directions: Mapping[str, Direction] | Sequence[Direction] | None,
                ) -> dict[str, Direction]:
    if directions is None:  # from the names: a cost objective is minimised
        return {o: direction(o) for o in objectives}
    if isinstance(directions, Mapping):
        return {o: directions.get(o, direction(o)) for o in objectives}
    return dict(zip(objectives, directions))


def _best(cands: Sequence[C], score: Mapping[int, float]) -> C:
    """Highest score; ties to the lower trial number."""
    return max(cands, key=lambda c: (score[id(c)], -c.trial_number))


def normalised(cands: Sequence[Candidate], objectives: Sequence[str],
               directions: Mapping[str, Direction]) -> list[list[float]]:
    """Per candidate, each objective scaled to [0, 1] over `cands` (1 = best, flipped if minimised).

    An objective with no spread on the front scales to 1 for everyone (it cannot decide).
    """
    cols = []
    for o in objectives:
        vals = [_sign(directions[o]) * c.values[o] for c in cands]
        lo, hi = min(vals), max(vals)
        span = hi - lo
        cols.append([1.0 if span <= 0 else (v - lo) / span for v in vals])
    return [list(row) for row in zip(*cols)]


def knee_scores(cands: Sequence[Candidate], objectives: Sequence[str],
                directions: Mapping[str, Direction] | None = None) -> list[tuple[float, float]]:
    """Per candidate (knee score, -distance to utopia); the knee maximises this pair.

    2-D: knee score = signed distance to the line through the two extreme points (positive on
    the utopia side). Other dimensions: knee score = -distance to utopia.
    """
    dirs = _directions(objectives, directions)
    pts = normalised(cands, objectives, dirs)
    utopia = [-math.dist(p, [1.0] * len(objectives)) for p in pts]
    if len(objectives) != 2:
        return [(u, u) for u in utopia]
    # Extremes: the best point on each objective (ties: better on the other objective).
    a = max(pts, key=lambda p: (p[0], p[1]))
    b = max(pts, key=lambda p: (p[1], p[0]))
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length == 0:
        return [(u, u) for u in utopia]
    # Cross product sign: the utopia corner (1, 1) lies on the positive side of a->b for a
    # maximisation front where a is best on x and b is best on y.
    side = 1.0 if dx * (1.0 - a[1]) - dy * (1.0 - a[0]) >= 0 else -1.0
    # Rounded so points on the line (exactly, up to float noise) tie and utopia decides.
    dist = [round(side * (dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / length, 12) for p in pts]
    return list(zip(dist, utopia))


def select(cands: Sequence[C], objectives: Sequence[str], rule: Selection,
           directions: Mapping[str, Direction] | Sequence[Direction] | None = None) -> C:
    """The candidate chosen by `rule` among `cands` (normally the study's Pareto front).

    `objectives` are the study's objective names (the keys of each candidate's ``values``),
    `directions` their optimisation directions (default: all maximised, like AUCs).
    """
    objectives = list(objectives)
    dirs = _directions(objectives, directions)
    if rule.trial is not None:
        for c in cands:
            if c.trial_number == rule.trial:
                return c
        # one entry per trial: a conditioned trial is several points of the front
        known = ", ".join(str(n) for n in sorted({c.trial_number for c in cands}))
        raise AutomtlError(f"--trial {rule.trial}: no such completed trial (candidates: "
                           f"{known or 'none'})")
    if not cands:
        raise AutomtlError("the Pareto front is empty: no trial of the study has completed; "
                           "run `automtl search` longer or check failed trials")
    for c in cands:
        missing = [o for o in objectives if o not in c.values]
        if missing:
            raise AutomtlError(f"trial {c.trial_number} has no value for objective "
                               f"{missing[0]!r}; the study's objectives are "
                               f"{', '.join(objectives)}")
    if rule.pick == "knee":
        scores = knee_scores(cands, objectives, dirs)
        return max(zip(cands, scores), key=lambda cs: (cs[1], -cs[0].trial_number))[0]
    if rule.weights:
        weights = _resolved(rule.weights, objectives, "--weights")
        top = max(weights.values())  # scaled to 1: huge weights do not overflow, tiny ones
        score = {id(c): sum(_sign(dirs[o]) * (w / top) * c.values[o]  # do not underflow
                            for o, w in weights.items())
                 for c in cands}
        return _best(cands, score)
    if rule.minimums or rule.maximize:
        bounds = _resolved(rule.minimums, objectives, "--min")
        if rule.maximize:
            target = resolve_name(rule.maximize, objectives, "--maximize")
        else:
            free = [o for o in objectives if o not in bounds]
            if len(free) != 1:
                raise AutomtlError("--min: say which objective to maximise with --maximize NAME "
                                   f"(one of {', '.join(objectives)})")
            target = free[0]
        # A lower bound on a minimised objective still reads "value >= bound" literally.
        feasible = [c for c in cands if all(c.values[o] >= v for o, v in bounds.items())]
        if not feasible:
            resolved = Selection(minimums=bounds, maximize=target)
            best = ", ".join(f"best {o} on the front is {max(c.values[o] for c in cands):.4f}"
                             for o in bounds)
            raise AutomtlError(f"no front trial satisfies {resolved.describe()} ({best}); "
                               "lower the --min bounds")
        score = {id(c): _sign(dirs[target]) * c.values[target] for c in feasible}
        return _best(feasible, score)
    raise AutomtlError("choose a trial: --trial N, --pick knee, --weights ctr=0.7,cvr=0.3, "
                       "or --min ctr=0.72 --maximize cvr")


__all__ = ["Candidate", "Direction", "PICK_RULES", "Selection", "knee_scores", "normalised",
           "parse_selection", "resolve_name", "select"]
