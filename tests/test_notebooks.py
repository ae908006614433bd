"""The notebooks in notebooks/ execute (nbclient, a real IPython kernel) on tiny settings, and print what they
should: the walkthrough's ground-truth-as-detections mAP is 1.0; the quickstart trains, loads, detects and
draws."""
from __future__ import annotations

import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")


def execute(name: str, parameters: str | None = None, timeout: int = 600) -> str:
    """Runs notebooks/<name> in a fresh kernel (cwd notebooks/); returns all its printed text. ``parameters``
    replaces the cell tagged 'parameters'."""
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    if parameters is not None:
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
        cells[0].source = parameters
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = ROOT + (os.pathsep + env_path if env_path else "")  # the kernel imports this tree
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": NOTEBOOKS}}).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
        if not env_path:
            del os.environ["PYTHONPATH"]
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                   if out.get("output_type") == "stream")


@pytest.mark.slow
def test_walkthrough_notebook():
    text = execute("walkthrough.ipynb")
    assigned = re.search(r"objects assigned: (\d+) of (\d+)", text)
    assert assigned and assigned.group(1) == assigned.group(2) != "0"
    loss = re.search(r"loss ([0-9.eE+-]+) \{", text)
    assert loss and 0 < float(loss.group(1)) < 1e4
    untrained = float(re.search(r"untrained model mAP@0.5 \(VOC07\): ([0-9.]+)", text).group(1))
    assert 0.0 <= untrained < 1.0
    assert "ground truth as detections mAP@0.5 (VOC07): 1.0\n" in text


@pytest.mark.slow
def test_quickstart_notebook(tmp_path):
    workdir = tmp_path / "run"
    text = execute("quickstart.ipynb", f"WORKDIR = {str(workdir)!r}\nTOTAL_STEPS = 2\nSMALL = True\n")
    assert "tiny_yolov2 width 0.125 at 64 px, 2 steps" in text
    m = re.search(r"trained (\d+) steps; held-out mAP@0.5 \(VOC07\) ([0-9.]+) on (\d+) images", text)
    assert m and m.group(1) == "2" and 0.0 <= float(m.group(2)) <= 1.0 and m.group(3) == "8"
    assert len(re.findall(r"image \d: \d+ detection\(s\)", text)) == 4
    assert "drawn: [(64, 64, 3), (64, 64, 3), (64, 64, 3), (64, 64, 3)]" in text
    assert (workdir / "detections_0.png").is_file()
