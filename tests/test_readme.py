"""The README's promises: its first two commands are the ones .ci/run and a user run, and its Python example runs."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_demo_and_test_commands_ci_runs() -> None:
    """Line one installs and runs the demo, line two installs the test extra and runs pytest, as .ci/run does."""
    block = re.search(r"```sh\n(.*?)```", README, re.S).group(1).splitlines()
    assert block[0].split("#")[0].strip() == "pip install -e . && emu demo"
    test_command = block[1].split("#")[0].strip()
    assert test_command == "pip install -e '.[test]' && pytest"
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(test_command)


def test_readme_python_example_prints_what_it_says() -> None:
    """The Session example under "Debugging" runs from the repository root and prints its `# prints:` lines."""
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "Session" in b)
    run = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    promised = [line.split("# prints: ", 1)[1].split("  (")[0] for line in block.splitlines() if "# prints: " in line]
    assert run.stdout.splitlines() == promised
