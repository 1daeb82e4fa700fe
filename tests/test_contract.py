"""The CLI contract: the same commands on the same real sample give byte-identical outputs to those
the code before the architecture change gave (references in ``tests/data/contract/``).

The commands, the sample and how the references were made: ``benchmarks/contract.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.contract import OUTPUTS, run_contract

REFERENCE = Path(__file__).parent / "data" / "contract"


@pytest.mark.slow
def test_cli_outputs_are_byte_identical_to_the_reference(shared_data: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    written = run_contract(shared_data, tmp_path / "out", work)
    assert [p.name for p in written] == list(OUTPUTS)
    different = []
    for path in written:
        expected = (REFERENCE / path.name).read_bytes()
        actual = path.read_bytes()
        if actual != expected:
            lines = zip(expected.decode().splitlines(), actual.decode().splitlines(), strict=False)
            first = next(((i, e, a) for i, (e, a) in enumerate(lines, 1) if e != a), None)
            different.append(f"{path.name}: first difference {first}")
    assert not different, "\n".join(different)
