from __future__ import annotations

import pytest

from tagindex.cli import build_parser

CONTRACT = ["index", "tag", "similar", "convert", "evaluate"]


def test_parser_builds_with_every_command_and_keeps_the_contract() -> None:
    parser = build_parser()  # argparse raises on conflicting options between merged features
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(CONTRACT) <= set(commands)
    args = parser.parse_args(["tag", "--index", "i", "--products", "p", "--out", "o", "--top-k", "3"])
    assert (args.index, args.products, args.out, args.top_k) == ("i", "p", "o", 3)
    args = parser.parse_args(["index", "--tags", "t", "--out", "o", "--model", "m", "--index", "hnsw"])
    assert (args.tags, args.model, args.index) == ("t", "m", "hnsw")


@pytest.mark.parametrize("command", ["index", "tag", "similar", "convert", "evaluate", "update", "train"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: tagindex {command}" in capsys.readouterr().out
