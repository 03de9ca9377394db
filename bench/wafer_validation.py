"""Predicted vs published wafer-scale figures, as the simulator papers report them (LLMCompass, vidur): absolute
percentage error per case, mean and max APE, one summary line.

    python bench/wafer_validation.py                 # all cases of bench/wafer_cases.toml
    python bench/wafer_validation.py --cases F.toml  # another data file (same fields as `waferline simulate`)
    python bench/wafer_validation.py --fit           # re-fit the three fitted PE-software constants to the fit=true cases
    python bench/wafer_validation.py --fit cs3       # fit the vendor-kernel preset (cs3.toml) to its fit="cs3" cases

Speculative cases (`speculation = true`) all take the data file's one [speculation] setup (draft, draft_tokens,
acceptance, and why it was chosen), printed with the results; a case may not carry a rate of its own.

The fit is exact and linear: every time the model predicts is affine in vector_op_issue_cycles, loop_step_cycles and
map_step_cycles (placement is fixed by the forced grids), so three calibration points give three equations.
It prints the constants to paste into runtime/wafer/presets/wse2.toml (and wse3.toml, same PE software).
"""

from __future__ import annotations

import argparse
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.wafer import cli as wcli  # noqa: E402
from runtime.wafer import hardware as whw  # noqa: E402
from runtime.wafer.explore import draft_for  # noqa: E402

CASES = Path(__file__).with_name("wafer_cases.toml")
FIT_FIELDS = ("vector_op_issue_cycles", "loop_step_cycles", "map_step_cycles")
# per fit group: the constants it solves (as many as its cases). true = WaferLLM's three calibration points; "cs3" =
# the vendor service's two decode figures (decode reads no MeshGEMM, so map_step_cycles is not theirs to fit)
FIT_GROUPS = {True: FIT_FIELDS, "cs3": ("vector_op_issue_cycles", "loop_step_cycles")}


META = ("name", "metric", "published", "fit", "source", "needs", "expressible", "why_not")
SPEC_FIELDS = ("draft", "draft_tokens", "acceptance")
# [speculation] draft = this: every case takes the smallest preset with its target's vocabulary (explore.draft_for)
SAME_VOCABULARY = "smallest-same-vocabulary"


def load_cases(path: Path) -> list[dict]:
    """The cases, each speculative one (`speculation = true`) given the file's single [speculation] setup: one stated
    draft and acceptance rate for all (issue 11: "the same rate for all"), so no case can carry a rate tuned to it."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    cases, spec = data["case"], data.get("speculation")
    for c in cases:
        own = [k for k in SPEC_FIELDS if k in c]
        if own:
            raise SystemExit(f"case '{c.get('name')}': {', '.join(own)} belong to the file's one [speculation] setup; "
                             "set speculation = true instead")
        if c.pop("speculation", False):
            if not spec or any(k not in spec for k in SPEC_FIELDS) or not spec.get("why"):
                raise SystemExit(f"case '{c.get('name')}' asks for speculation: the file needs a [speculation] table "
                                 f"with {', '.join(SPEC_FIELDS)} and why")
            c.update({k: spec[k] for k in SPEC_FIELDS})
            if spec["draft"] == SAME_VOCABULARY:  # the rule, resolved per target: explore's draft for that vocabulary
                c["draft"] = draft_for(c["arch"])
                if c["draft"] is None:
                    raise SystemExit(f"case '{c.get('name')}': no preset draft shares {c['arch']}'s vocabulary")
        if not c.get("needs"):
            raise SystemExit(f"case '{c.get('name')}': every case names the capability it needs (needs = ...)")
        if c.get("expressible", True) is False and not c.get("why_not"):
            raise SystemExit(f"case '{c.get('name')}': a case the simulator cannot express says why (why_not = ...)")
    return cases


def speculation_setup(path: Path) -> dict | None:
    with open(path, "rb") as f:
        return tomllib.load(f).get("speculation")


def simulate(case: dict):
    fields = {k: v for k, v in case.items() if k not in META}
    return wcli.run_case(fields)


def predict(case: dict) -> float:
    return float(getattr(simulate(case), case["metric"]))


def as_time(case: dict, value: float) -> float:
    """Seconds per unit of work (affine in the constants): tok/s -> s/token."""
    return value if case["metric"] == "seconds" else 1.0 / value


def _solve_nonneg(a: np.ndarray, t0: np.ndarray, target: np.ndarray) -> np.ndarray:
    """x >= 0 minimising the relative error of t0 + a x against target (exact when the exact solution is >= 0)."""
    n = a.shape[1]
    best = None
    for mask in range(1 << n):  # which constants are pinned at 0
        free = [j for j in range(n) if not mask >> j & 1]
        x = np.zeros(n)
        if free:
            sol, *_ = np.linalg.lstsq(a[:, free] / target[:, None], (target - t0) / target, rcond=None)
            x[free] = sol
        if (x < 0).any():
            continue
        err = np.max(np.abs((t0 + a @ x) / target - 1))
        if best is None or err < best[0] - 1e-12:
            best = (err, x)
    return best[1]


def fit(cases: list[dict], group=True) -> dict[str, float]:
    fields = FIT_GROUPS[group]
    fit_cases = [c for c in cases if c.get("fit") == group and c.get("fit") is not False and c.get("expressible", True)]
    if len(fit_cases) != len(fields):
        raise SystemExit(f"--fit needs exactly {len(fields)} fit={group!r} cases, found {len(fit_cases)}")
    hw_names = {c.get("hardware", "wse3") for c in fit_cases}
    if len(hw_names) != 1:
        raise SystemExit("--fit: calibration cases must share one hardware preset")
    hw_name = hw_names.pop()
    base = whw.load_preset_dict(hw_name)
    original = whw.load_preset_dict

    def run_with(values: dict) -> np.ndarray:
        def patched(name: str) -> dict:
            d = original(name)
            if name == hw_name:
                d.update(values)
            return d

        whw.load_preset_dict = patched
        try:
            return np.array([as_time(c, predict(c)) for c in fit_cases])
        finally:
            whw.load_preset_dict = original

    target = np.array([as_time(c, c["published"]) for c in fit_cases])
    x = np.array([float(base[k]) for k in fields])
    for _ in range(6):  # Newton steps: times are affine in the constants except where a MeshGEMM round's max() flips
        vals = {k: float(v) for k, v in zip(fields, x)}  # (or an auto placement moves)
        t0 = run_with(vals)
        a = np.stack([run_with({**vals, k: vals[k] + 1.0}) - t0 for k in fields], axis=1)
        x = _solve_nonneg(a, t0 - a @ x, target)
    err = np.max(np.abs(run_with({k: float(v) for k, v in zip(fields, x)}) / target - 1))
    print(f"  worst calibration residual {100 * err:.2f}% (time)")
    print(f"fitted on {hw_name} ({', '.join(c['name'].split(',')[0] for c in fit_cases)}):")
    for k, v in zip(fields, x):
        print(f"  {k} = {v:.2f}   (preset now {base[k]})")
    return dict(zip(fields, x))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--fit", nargs="?", const=True, default=None, metavar="GROUP",
                    help="solve the PE-software constants from the fit cases (fit=true: WaferLLM's; GROUP cs3: the vendor's)")
    args = ap.parse_args(argv)
    cases = load_cases(args.cases)
    spec = speculation_setup(args.cases)
    if args.fit is not None:
        fit(cases, args.fit)
        return 0
    rows, apes, fit_apes, other_apes, cannot = [], [], [], [], []
    for c in cases:
        if not c.get("expressible", True):
            cannot.append(c)
            continue
        report = simulate(c)
        pred = float(getattr(report, c["metric"]))
        wafers = getattr(report, "wafers_used", 1)
        ape = 100.0 * abs(pred - c["published"]) / c["published"]
        apes.append(ape)
        (fit_apes if c.get("fit") else other_apes).append(ape)
        role = "fit" if c.get("fit") is True else (f"fit:{c['fit']}" if c.get("fit") else "check")
        rows.append((c["name"], c["metric"], pred, c["published"], ape, wafers, role, c["needs"]))
    w = max(len(r[0]) for r in rows)
    # "wafers" is what the simulator placed the case on, whatever the published system count in the case's name
    print(f"{'case':<{w}}  {'metric':<21}{'predicted':>13}{'published':>13}{'APE %':>8}{'wafers':>7}  role     needs")
    for name, metric, pred, pub, ape, wafers, role, needs in rows:
        fmt = (lambda v: f"{v:13.3e}") if metric == "seconds" else (lambda v: f"{v:13,.1f}")
        print(f"{name:<{w}}  {metric:<21}{fmt(pred)}{fmt(pub)}{ape:8.1f}{wafers:7d}  {role:<8} {needs}")
    if cannot:  # listed, never dropped: what the simulator cannot express yet, and why
        print("cases the simulator cannot express (not scored):")
        for c in cannot:
            print(f"  {c['name']}: published {c['published']:,} {c['metric']}; needs {c['needs']}: {c['why_not']}")
            if c.get("arch"):  # what the simulator says with the facts that are published (not scored)
                r = simulate(c)
                print(f"    simulator with the published facts only: {float(getattr(r, c['metric'])):,.1f} on "
                      f"{r.wafers_used} wafers ({r.dtype}, no speculation)")
    # the headline is the cases the constants were not fitted to; fitted cases only show the fit's residual
    summary = (f"wafer validation: {len(other_apes)} unfitted cases, mean APE {np.mean(other_apes):.1f}%, "
               f"max APE {np.max(other_apes):.1f}%" if other_apes else "wafer validation: no unfitted cases")
    if fit_apes:
        summary += f" (plus {len(fit_apes)} calibration cases the constants were fitted to: max residual {max(fit_apes):.1f}%)"
    if cannot:
        summary += f"; {len(cannot)} published case{'s' if len(cannot) != 1 else ''} it cannot express yet"
    n_spec = sum(1 for c in cases if c.get("draft") and c.get("expressible", True))
    if spec and n_spec:
        drafts = sorted({c["draft"] for c in cases if c.get("draft") and c.get("expressible", True)})
        draft = f"{spec['draft']} ({', '.join(drafts)})" if spec["draft"] == SAME_VOCABULARY else spec["draft"]
        print(f"speculative cases ({n_spec}): one stated setup for all -- draft {draft}, "
              f"{spec['draft_tokens']} draft tokens, acceptance {spec['acceptance']} ({spec['why']})")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
