"""`picochat --help`: every command on one line with its help, whatever the terminal's width."""

import pytest

from picochat.cli import main
from picochat.commands import COMMANDS


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_every_command_is_listed_on_one_line(columns, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for module in COMMANDS:
        name = module.__name__.rsplit(".", 1)[-1]
        # `import` is a Python keyword: its module is hf_import
        name = {"hf_import": "import"}.get(name, name)
        (line,) = [line for line in lines if line.split()[:1] == [name]]
        assert line.split(None, 1)[1] == module.HELP, line
        assert "\n" not in module.HELP and len(module.HELP) <= 90
