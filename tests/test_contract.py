"""The CLI contract: the same commands on the same real sample give the outputs that the code before
the architecture change gave (references in ``tests/data/contract/``): byte for byte outside the
numbers, and every number within :data:`TOLERANCE` of the reference.

Why numbers get a tolerance: the references were written on a CPU with AVX2 kernels; on one with
AVX-512 kernels (session 12's machine) PyTorch and BLAS sum in another order, and a score's 6th
decimal moves by one (a calibrated probability by up to 9e-5). Names, ids, order, decisions and
the format are what outside checks read, and they must not move at all.

The commands, the sample and how the references were made: ``benchmarks/contract.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.contract import OUTPUTS, run_contract

REFERENCE = Path(__file__).parent / "data" / "contract"
TOLERANCE = 5e-4
_NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")


def first_difference(expected: str, actual: str) -> tuple[int, str, str] | None:
    """(line number, expected line, actual line) of the first line that differs outside its numbers
    or by more than :data:`TOLERANCE` in one; None when the texts agree."""
    exp_lines, act_lines = expected.splitlines(), actual.splitlines()
    for i, (e, a) in enumerate(zip(exp_lines, act_lines, strict=False), 1):
        if e == a:
            continue
        e_nums, a_nums = _NUMBER.findall(e), _NUMBER.findall(a)
        if _NUMBER.split(e) != _NUMBER.split(a) or len(e_nums) != len(a_nums):
            return i, e, a
        if any(abs(float(x) - float(y)) > TOLERANCE for x, y in zip(e_nums, a_nums, strict=True)):
            return i, e, a
    if len(exp_lines) != len(act_lines):
        n = min(len(exp_lines), len(act_lines))
        return n + 1, "\n".join(exp_lines[n : n + 1]), "\n".join(act_lines[n : n + 1])
    return None


def test_the_comparison_tolerates_rounding_and_nothing_else() -> None:
    ref = '{"tag": "a", "score": 0.512061}\n{"tag": "b", "score": 0.5}\n'
    assert first_difference(ref, ref.replace("0.512061", "0.512062")) is None
    assert first_difference(ref, ref.replace("0.512061", "0.513061")) is not None  # beyond rounding
    assert first_difference(ref, ref.replace('"a"', '"c"')) is not None  # another tag
    assert first_difference(ref, ref.replace('"score"', '"scores"')) is not None  # another field
    assert first_difference(ref, ref.splitlines()[0]) is not None  # a lost line


@pytest.mark.slow
def test_cli_outputs_equal_the_reference(shared_data: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    written = run_contract(shared_data, tmp_path / "out", work)
    assert [p.name for p in written] == list(OUTPUTS)
    different = []
    for path in written:
        first = first_difference((REFERENCE / path.name).read_text(), path.read_text())
        if first is not None:
            different.append(f"{path.name}: first difference {first}")
    assert not different, "\n".join(different)
