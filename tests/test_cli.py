"""The command line: one module per verb with its own help, user errors as one line and exit 2,
bugs with their traceback."""

import importlib

import pytest

from voxmesh.cli import COMMANDS, build_parser, main


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_explains_itself(verb, capsys):
    module = importlib.import_module(f"voxmesh.commands.{COMMANDS[verb]}")
    assert len(module.HELP) > 20 and len(module.DESCRIPTION) > 80
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([verb, "--help"])
    assert exited.value.code == 0
    assert " ".join(module.DESCRIPTION.split()[:6]) in " ".join(capsys.readouterr().out.split())


def test_a_user_error_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "not-a-dataset"
    assert main(["stats", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("voxmesh stats: ") and str(missing) in err and "voxmesh build" in err


def test_a_non_empty_output_asks_for_resume(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and str(tmp_path / "out") in err


def test_bad_option_values_are_user_errors(tmp_path, capsys):
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--split-fractions", "a,b"]) == 2
    assert "--split-fractions" in capsys.readouterr().err


def test_options_for_beam_are_refused_by_other_verbs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(tmp_path), "--runner=DataflowRunner"])
    assert exited.value.code == 2
    assert "unrecognised arguments: --runner=DataflowRunner" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
    import voxmesh.commands.backends as backends

    def broken(args):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(backends, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["backends"])
