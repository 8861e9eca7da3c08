"""The instructor's GitHub Actions grading workflow: it parses and runs `course grade --points-line`."""

import re

import yaml
from click.testing import CliRunner

from course.cli import main
from course.submission import repo_root

WORKFLOW = repo_root() / ".github" / "workflows" / "grade.yml"


def _steps():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow["jobs"]) == {"grade"}, workflow["jobs"]
    # YAML 1.1 reads the key `on` as True; GitHub reads it as the trigger.
    assert "push" in workflow[True] and "workflow_dispatch" in workflow[True]
    return workflow["jobs"]["grade"]["steps"]


def test_workflow_installs_the_project_and_grades_with_the_points_line():
    runs = [step.get("run", "") for step in _steps()]
    assert any(re.search(r"pip install .*\.$", run.strip()) for run in runs), runs
    grade = next(run for run in runs if "course grade" in run)
    assert re.search(r'course grade "\$SUBMISSION" --seed "\$SEED" --out out/grade --points-line', grade), grade
    assert "set -o pipefail" in grade  # a grader error (exit 1) fails the job despite the tee


def test_the_points_line_is_what_the_workflow_greps(tmp_path):
    # The workflow's grep pattern matches the line `course grade --points-line` prints.
    grade = next(step["run"] for step in _steps() if "course grade" in step.get("run", ""))
    pattern = re.search(r"grep -E '([^']+)'", grade).group(1)
    result = CliRunner().invoke(main, ["grade", str(repo_root() / "exercises"), "-e", "positional_encoding",
                                       "--out", str(tmp_path), "--seed", "1", "--points-line"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if re.match(pattern, line)]
    assert lines == ["Points 0/11"], result.output
