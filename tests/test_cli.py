"""The command line: one module per verb with its own help, user errors as one line and exit 2,
bugs with their traceback."""

import importlib
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_video

from voxmesh.cli import COMMANDS, build_parser, main
from voxmesh.logs import interrupted, logging_setup
from voxmesh.pipelines.build.pipeline import build_pipeline_args, local_pipeline_args
from voxmesh.schemas.errors import UserError


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
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["validate", str(a_file)]) == 2
    assert f"{a_file}: is a file, not a folder; pass the folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse's own mistakes are one line too
        main(["build", "--input", str(tmp_path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert err.startswith("voxmesh build: the following arguments are required: --output; see `voxmesh build --help`")


def test_each_process_that_torchrun_started_names_its_rank_in_its_error(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capfd.readouterr().err
    assert err.startswith("voxmesh train (rank 1 of 2): ") and err.count("\n") == 1 and "missing.toml" in err, err


def test_a_non_empty_output_asks_for_resume(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_video(str(tmp_path / "in" / "noise.mp4"), np.zeros((5, 32, 32, 3), np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    assert main(["build", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and str(tmp_path / "out") in err


def test_a_build_that_finds_no_input_stops_before_writing_anything(tmp_path, capsys):
    """A mistyped --input is one line naming it, not an empty dataset and exit 0."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "listing.csv").write_text("uri\n")
    cases = {str(tmp_path / "missing"): "no such file or folder", str(tmp_path / "empty"): "no videos found",
             str(tmp_path / "empty" / "*.mp4"): "no videos found", str(tmp_path / "listing.csv"): "the listing has no rows"}
    for source, why in cases.items():
        assert main(["build", "--input", source, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"voxmesh build: --input {source}: {why}"), err
    assert not (tmp_path / "out").exists()


def test_missing_files_of_the_other_verbs_are_one_line_naming_them(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    for argv in (["validate", missing], ["preview", missing, "key", "-o", str(tmp_path / "p.mp4")],
                 ["train", "--config", missing + ".toml"], ["eval", "--pred", missing, "--ref", str(tmp_path)],
                 ["train", "--config", os.path.join(os.path.dirname(__file__), "..", "models", "configs", "rvq.toml"),
                  "--set", f"data.dataset={missing}", "--set", f"out={tmp_path / 'run'}"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"voxmesh {argv[0]}: ") and missing in err, err


def test_the_summary_counts_seconds_exactly_and_words_one_of_a_kind_in_the_singular(tmp_path, capsys):
    """The build's summary gave the clips' seconds from hours rounded to 4 places (19.4 s for
    19.56) and said "1 shards", "1 speakers"; stats printed unrounded means, and 0.0 for figures
    over clips when there were none. ``stats --report`` naming a file was a FileExistsError."""
    from voxmesh.commands.build import print_summary
    from voxmesh.pipelines.dataset.report import summarize
    rows = [{"n_frames": n, "speaker": "s", "split": "train", "confidence_mean": c, "av_offset": 0, "av_offset_ok": True}
            for n, c in ((200, 0.91234567), (125, 0.9), (164, 0.8))]
    summary = summarize(rows, [])
    assert summary["seconds"] == 19.56 and summary["hours"] == 0.0054
    assert summary["clip_seconds"] == {"min": 5.0, "median": 6.56, "max": 8.0} and summary["confidence_mean"] == 0.8708
    empty = summarize([], [])
    assert empty["clip_seconds"] == {"min": None, "median": None, "max": None} and empty["confidence_mean"] is None
    print_summary({**summary, "inputs": 3, "inputs_with_clips": 3, "inputs_failed": 0, "shards": 1}, str(tmp_path))
    assert "clips: 3 (19.56 s, 1 speaker) in 1 shard; by split: {\"train\": 3}" in capsys.readouterr().out
    report = tmp_path / "report.html"
    report.write_text("")
    assert main(["stats", str(tmp_path), "--report", str(report)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"voxmesh stats: --report {report} is a file; give a folder for the report's index.html and plots"


def test_verbs_that_write_local_files_refuse_an_object_store_output(tmp_path, monkeypatch, capsys):
    """A URI there became a local folder named ``s3:`` (train and generate said they wrote to the
    bucket, preview crashed in FFmpeg)."""
    monkeypatch.chdir(tmp_path)
    config = os.path.join(os.path.dirname(__file__), "..", "models", "configs", "rvq.toml")
    cases = {"-o s3://b/p.mp4": ["preview", "s3://b/ds", "key", "-o", "s3://b/p.mp4"],
             "--out s3://b/pred": ["generate", "--checkpoint", "c.pt", "--data", "d", "--out", "s3://b/pred"],
             "--out s3://b/results": ["eval", "--pred", "p", "--ref", "d", "--out", "s3://b/results"],
             f"{config}: out s3://b/run": ["train", "--config", config, "--set", "out=s3://b/run"]}
    for option, argv in cases.items():
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == (f"voxmesh {argv[0]}: {option}: give a local path (this command "
                                                   f"writes local files), then copy what it writes to the object store")
    assert os.listdir(tmp_path) == []


def test_a_damaged_table_is_one_line_and_a_log_files_folder_is_made(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.parquet").write_bytes(b"not parquet")
    (tmp_path / "ds" / "failures.parquet").write_bytes(b"not parquet")
    for verb in (["stats"], ["preview", "--out", str(tmp_path / "p.mp4")]):
        argv = [verb[0], str(tmp_path / "ds"), *(["key"] if verb[0] == "preview" else []), *verb[1:]]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "manifest.parquet: not a readable Parquet table" in err, err
        assert f"run `voxmesh validate {tmp_path / 'ds'}`" in err
    unfinished = tmp_path / "unfinished"  # a build stopped before its tables: say to resume it
    (unfinished / "_meta").mkdir(parents=True)
    (unfinished / "_meta" / "build.json").write_text("{}")
    assert main(["stats", str(unfinished)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"voxmesh stats: {unfinished / 'manifest.parquet'}: no such file: the build writing {unfinished} has not "
        f"finished; run the same `voxmesh build` with --resume")
    log_file = tmp_path / "new" / "folder" / "run.log"
    assert main(["--log-file", str(log_file), "backends"]) == 0
    assert log_file.exists()


def test_a_training_run_whose_loss_diverged_says_what_to_change(tmp_path, monkeypatch, capfd):
    import voxmesh.commands.train as train_command
    monkeypatch.setattr(train_command, "train", lambda config, resume: [0.78, float("nan")])
    config = tmp_path / "run.toml"
    config.write_text(f'kind = "tokenizer"\nout = "{tmp_path / "run"}"\n[data]\ndataset = "d"\n')
    assert main(["train", "--config", str(config)]) == 0
    captured = capfd.readouterr()
    assert "loss 0.7800 -> nan" in captured.out
    assert "warning: the loss diverged (nan at step 2): lower train.lr" in captured.err


def test_options_neither_voxmesh_nor_beam_knows_are_refused(tmp_path, capsys):
    """Beam drops an option it does not know with a warning, and arguments for Beam without a
    runner would run on its default runner: a typo must stop the build instead."""
    inputs, output = str(tmp_path / "in"), str(tmp_path / "out")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mp4").write_bytes(b"")
    log_file = tmp_path / "x.log"
    cases = {("--wokers", "2"): "unrecognised option --wokers", ("-q",): "go before the verb",
             ("--log-file", str(log_file)): "go before the verb",
             (str(tmp_path / "in" / "a.mp4"),): "quote a glob", ("stray",): "unexpected argument stray"}
    for extra, why in cases.items():
        assert main(["build", "--input", inputs, "--output", output, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("voxmesh build: ") and why in err, err
    assert not (tmp_path / "out").exists()
    assert not log_file.exists()  # refused, so not acted on first


def test_beam_options_keep_the_local_runner_unless_they_name_one():
    s3 = ["--s3_endpoint_url=http://127.0.0.1:9000", "--direct_num_workers", "3"]
    assert build_pipeline_args(s3, workers=2) == local_pipeline_args(2) + s3
    dataflow = ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/tmp"]
    assert build_pipeline_args(dataflow, workers=2) == dataflow
    for cluster in (["--runner=FlinkRunner", "--flink_master=localhost:8081", "--parallelism=4"],
                    ["--runner=SparkRunner", "--spark_master_url=spark://localhost:7077"],
                    ["--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=DOCKER"]):
        assert build_pipeline_args(cluster, workers=2) == cluster
    assert build_pipeline_args([], workers=None) == local_pipeline_args()


@pytest.mark.parametrize("option", [
    ("--split-fractions", "a,b"), ("--split-fractions", "0.5,0.5"), ("--split-fractions", "0.5,0.5,0.5"),
    ("--workers", "0"), ("--inputs-per-part", "0"), ("--frames-per-part", "-1"), ("--min-clip-seconds", "-1"),
    ("--min-clip-seconds", "30"), ("--min-confidence", "2"), ("--max-av-offset", "-1"), ("--shard-max-mb", "0"),
    ("--shard-max-samples", "0"), ("--detect-every", "0")])
def test_bad_option_values_are_user_errors(option, tmp_path, capsys):
    """A value that could only give a useless or failing build is refused with one line naming
    the option, before anything is written."""
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "o"), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and option[0] in err, err
    assert not (tmp_path / "o").exists()


def test_an_output_that_is_a_file_and_a_listing_with_a_bad_duration_are_user_errors(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_video(str(tmp_path / "in" / "a.mp4"), np.zeros((5, 32, 32, 3), np.uint8))
    (tmp_path / "file").write_text("x")
    assert main(["build", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    (tmp_path / "listing.csv").write_text("uri,duration\nin/a.mp4,abc\n")
    assert main(["build", "--input", str(tmp_path / "listing.csv"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "listing.csv: the duration of" in err and "'abc'" in err, err


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


def test_a_build_from_the_command_line_loads_only_what_the_build_needs(tmp_path):
    """The launcher imports the verb it runs and nothing else: the other verbs' modules import
    torch (``train``: 1.4 s) and scipy.signal (``demo``: 1.1 s), which a build never uses."""
    frames = np.random.default_rng(0).integers(0, 255, (25, 64, 64, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    write_video(str(tmp_path / "in" / "noise.mp4"), frames)
    code = ("import sys; from voxmesh.cli import main; "
            f"code = main(['-q', 'build', '--input', {str(tmp_path / 'in')!r}, '--output', {str(tmp_path / 'out')!r}, "
            "'--workers', '1']); "
            "print(code, sorted(m for m in ('torch', 'scipy.signal', 'mediapipe', 'webdataset') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["counts"]["inputs"] == 1


def test_the_command_exits_with_mains_code_and_its_output_flushed(tmp_path):
    """``voxmesh`` (cli.entry_point) freezes what it loaded before exiting; what it printed reaches a
    pipe, and its exit status is main's code."""
    listed = subprocess.run([sys.executable, "-m", "voxmesh", "backends"], capture_output=True, text=True)
    assert listed.returncode == 0 and "mediapipe" in listed.stdout
    missing = tmp_path / "not-a-dataset"
    failed = subprocess.run([sys.executable, "-m", "voxmesh", "stats", str(missing)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0 and str(missing) in failed.stderr


def test_what_the_command_prints_for_a_person_reaches_the_terminal(tmp_path):
    """By default descriptor 2 goes to the null device while a verb runs (MediaPipe's and Beam's
    native logs), but Python's own writes to stderr still reach the terminal: argparse's usage
    errors and a verb's summary line."""
    usage = subprocess.run([sys.executable, "-m", "voxmesh", "stats"], capture_output=True, text=True)
    assert usage.returncode == 2 and "the following arguments are required: DATASET" in usage.stderr
    assert usage.stderr.count("\n") == 1 and usage.stderr.startswith("voxmesh stats: ")  # no usage block
    assert usage.stderr.strip().endswith("see `voxmesh stats --help`")
    log_file = tmp_path / "run.log"  # and the log file keeps them too
    logged = subprocess.run([sys.executable, "-m", "voxmesh", "--log-file", str(log_file), "stats"],
                            capture_output=True, text=True)
    assert logged.returncode == 2 and "required: DATASET" in logged.stderr and "required: DATASET" in log_file.read_text()
    unfinished = tmp_path / "unfinished"
    (unfinished / "_meta").mkdir(parents=True)
    (unfinished / "_meta" / "build.json").write_text("{}")
    checked = subprocess.run([sys.executable, "-m", "voxmesh", "validate", str(unfinished)], capture_output=True,
                             text=True)
    assert checked.returncode == 1 and "has not finished (no dataset.json)" in checked.stdout
    assert checked.stderr.strip() == "checked 0 shards, 0 samples: 1 problem"
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    foreign = subprocess.run([sys.executable, "-m", "voxmesh", "validate", str(tmp_path / "photos")],
                             capture_output=True, text=True)
    assert foreign.returncode == 2 and foreign.stderr.strip() == (
        f"voxmesh validate: {tmp_path / 'photos'}: no shards/ folder, dataset.json or build record: not a dataset; "
        f"pass the folder that `voxmesh build` wrote (its --output)")


def test_a_reader_that_goes_away_stops_the_command_quietly():
    """``voxmesh backends | head -1``: the command's output meets a closed pipe; it stops with
    status 1 and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "voxmesh", "backends"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == ""


def test_a_workers_report_of_ctrl_c_is_not_shown_even_before_the_launcher_hears_it(capfd):
    """Ctrl-C reaches the local workers and the launcher at once; a worker's harness can report its
    KeyboardInterrupt through the runner's log service before the launcher's own handler runs.
    That report, and the libraries' errors after it, stay off the terminal; voxmesh's lines do not."""
    runner = logging.getLogger("apache_beam.runners.portability.local_job_service")
    with logging_setup():
        runner.error("Worker: %s", "severity: ERROR message: \"an input failed\" trace: \"ValueError\"")
        runner.critical("Worker: %s", 'severity: CRITICAL message: "Python sdk harness failed: '
                        'Traceback (most recent call last): ... KeyboardInterrupt" trace: "...KeyboardInterrupt"')
        runner.error("Worker: %s", "severity: ERROR message: \"Socket closed\"")
        logging.getLogger("voxmesh.cli").error("voxmesh build: interrupted")
        assert interrupted.is_set()
    shown = capfd.readouterr().err.splitlines()
    assert shown == ['error: Worker: severity: ERROR message: "an input failed" trace: "ValueError"',
                     "error: voxmesh build: interrupted"], shown


def test_a_workers_entries_about_an_error_for_the_user_stay_off_the_terminal(capfd):
    """A backend whose weights file is not there fails in each worker's set-up; Beam's runner passes
    on the workers' entries (thousands of characters each, newlines escaped) before the command
    ends with the error's one line. They go to the log file only; a worker's other errors do not."""
    runner = logging.getLogger("apache_beam.runners.portability.local_job_service")
    entry = ('severity: ERROR message: "toy weights missing [while running \\\'BuildPart\\\']\\nTraceback (most '
             'recent call last):\\n  File \\"backend.py\\", line 9, in setup\\n{error}: toy weights missing" trace: '
             '"Traceback (most recent call last):\\n"')
    with logging_setup():
        runner.error("Worker: %s", entry.format(error="voxmesh.schemas.errors.MissingFileError"))
        runner.error("Worker: %s", entry.format(error=f"{__name__}.PluginError"))
        runner.error("Worker: %s", entry.format(error="ValueError"))
    shown = capfd.readouterr().err.splitlines()
    assert len(shown) == 1 and shown[0].startswith("error: Worker: ") and "\\nValueError: toy weights" in shown[0]


class PluginError(UserError):
    """A backend package's own error for the user."""


def test_a_librarys_malformed_logging_call_is_reported_by_logging_not_raised_in_the_library(capfd):
    with logging_setup():
        logging.getLogger("somelib").error("value %s %s", 1)  # one argument short
    assert "--- Logging error ---" in capfd.readouterr().err


def test_ctrl_c_is_left_alone_where_it_is_ignored():
    """A build started in the background of a script runs with SIGINT ignored; the command must
    not take Ctrl-C back (it would stop with the foreground job)."""
    code = ("import signal; from voxmesh.logs import logging_setup\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "with logging_setup():\n    print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "with logging_setup():\n    print(signal.getsignal(signal.SIGINT) is not signal.default_int_handler)\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True", "True"], done.stdout
