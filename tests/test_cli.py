"""The command line is built from the step table and the steps' signatures (ftgen.cli): every
step resolves, every rule's `python -m ftgen <step> --flag ...` line names only the step's
parameters and all its required ones, and argument errors are one line with exit status 2."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ftgen import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("step", sorted(cli.STEPS))
def test_every_step_is_a_keyword_only_function_with_annotated_parameters(step):
    fn = cli.step_function(step)
    arguments = cli.step_arguments(fn)  # raises TypeError for a positional or unannotated parameter
    assert arguments or step == "launch"
    sub = next(a for a in cli.build_parser(step)._actions if a.dest == "step").choices[step]
    built = {a.dest for a in sub._actions} - {"help"}
    assert built == {name for name, _, _ in arguments}


def rule_commands() -> dict[str, str]:
    """rule -> its `python -m ftgen ...` shell line, from the .smk files as written."""
    out = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            shell = re.search(r"shell:\n((?:\s+\".*\"\n?)+)", body)
            if shell:
                out[rule] = "".join(re.findall(r"\"(.*)\"", shell[1]))
    return out


def flags_of(command: str) -> tuple[str, list[str]]:
    """The ftgen step a shell line runs (the inner one after `launch ... --`) and its flags."""
    words = shlex.split(command.split(">")[0].replace("{", "").replace("}", ""))
    words = words[words.index("ftgen") + 1 :]
    if words[0] == "launch":
        words = words[words.index("--") + 1 :]
    return words[0], [w.split("=")[0][2:].replace("-", "_") for w in words[1:] if w.startswith("--")]


def test_every_rule_passes_exactly_its_steps_parameters():
    commands = rule_commands()
    assert len(commands) >= 17, sorted(commands)
    for rule, command in commands.items():
        step, flags = flags_of(command)
        arguments = {name: (arg, required) for name, arg, required in cli.step_arguments(cli.step_function(step))}
        unknown = set(flags) - set(arguments)
        assert not unknown, f"rule {rule}: {step} has no parameter(s) {unknown}"
        missing = {n for n, (arg, required) in arguments.items() if required and not arg.positional} - set(flags)
        assert not missing, f"rule {rule}: required parameter(s) {missing} of {step} are not passed"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "ftgen", *args], capture_output=True, text=True, env=env)


def test_help_lists_every_step_without_importing_them():
    proc = run("-h")
    assert proc.returncode == 0
    for step in cli.STEPS:
        assert step in proc.stdout


def test_argument_errors_are_one_line_naming_the_argument(tmp_path):
    proc = run("plot", "--table", str(tmp_path / "missing.parquet"), "--outputs", "a.png", "a.pdf")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"ftgen plot: error: argument --table: no such file or folder: "
        f"{str(tmp_path / 'missing.parquet')!r}"
    )
    proc = run(
        "aggregate", "--spec", "[1]", "--scores", "x", "--parquet", "p", "--csv", "c", "--md", "m", "--manifest", "f"
    )
    assert proc.returncode == 2 and "argument --spec: must be a JSON object" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_check_config_reports_ok_and_bad_files(tmp_path):
    assert run("check-config", str(REPO / "config" / "studies" / "smoke.yaml")).stdout.endswith("smoke.yaml: ok\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nstudy: y\n")
    proc = run("check-config", str(bad))
    assert proc.returncode == 2 and f"{bad}:2: duplicate key 'study'" in proc.stderr
