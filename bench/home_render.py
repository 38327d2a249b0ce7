"""Home page first render with no model loaded (report seconds).

Streamlit's AppTest runs Home.py the way the server runs a page for a new session, in a fresh
process each time: the figure is the time of that first run (it includes importing the page's
modules and building the catalogue and the idle queue), with the second run of the same session
beside it. The run must raise nothing and leave no model loaded.

For scale, the same is measured side by side for a one-line page (`st.title`), so the ratio says
what the Home page costs over Streamlit itself.

Child process entry (used by the benchmark itself):
    python -m bench.home_render --child SCRIPT
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import SideBySide, Spread, Timing
from bench.workspace import REPOSITORY, Workspace, child_report

NAME = "home_render"
HOME = REPOSITORY / "Home.py"
BLANK_PAGE = 'import streamlit as st\n\nst.title("Canvas Studio")\n'


def run(workspace: Workspace) -> Outcome:
    if not HOME.is_file():
        raise RuntimeError("Home.py does not exist yet")
    blank = workspace.scratch("home") / "blank_page.py"
    blank.write_text(BLANK_PAGE, encoding="utf-8")
    environment = workspace.environment(STUDIO_CACHE_DIR=str(workspace.scratch("home-cache")))
    environment.pop("STUDIO_MODELS_FILE", None)  # the built-in catalogue, as a fresh install has
    repeats = workspace.repeats(5, quick=2)
    home_reports, blank_reports = [], []
    for repeat in range(repeats):
        pages = [(HOME, home_reports), (blank, blank_reports)]
        if repeat % 2:
            pages.reverse()
        for script, reports in pages:
            report = child_report("bench.home_render", ["--child", str(script)], environment)
            if report["exceptions"]:
                raise RuntimeError(f"{script.name} raised while rendering: {report['exceptions'][0]}")
            reports.append(report)
    if any(report["resident"] for report in home_reports):
        raise RuntimeError(f"the Home page loaded a model: {home_reports[0]['resident']}")
    first = [report["first_render_s"] for report in home_reports]
    pairs = SideBySide(
        tuple(Timing(report["first_render_s"], report["first_render_cpu_s"]) for report in home_reports),
        tuple(Timing(report["first_render_s"], report["first_render_cpu_s"]) for report in blank_reports),
    )
    case = "Home.py, fresh process, AppTest, no model loaded"
    figures = [
        Figure(
            figure="Home page first render",
            case=case,
            value=Spread.of(first),
            unit="s",
            target=Target.report("report seconds"),
            details={
                "second_render_s": Spread.of([report["second_render_s"] for report in home_reports]).as_json(),
                "import_streamlit_testing_s": Spread.of([report["import_s"] for report in home_reports]).as_json(),
                "process_wall_s": Spread.of([report["process_wall_s"] for report in home_reports]).as_json(),
                "models_resident_after": home_reports[-1]["resident"],
            },
        ),
        Figure(
            figure="Home first render / one-line page first render",
            case=case,
            value=Spread.of(pairs.ratios),
            unit="x",
            target=Target.report(),
            details=pairs.details("home", "one_line_page"),
        ),
    ]
    return Outcome(figures, {"what": __doc__.strip().splitlines()[0]})


def _child(script: str) -> dict:
    started = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    imported = time.perf_counter()
    app = AppTest.from_file(str(Path(script).resolve()), default_timeout=300)
    cpu_started = time.process_time()
    app.run()
    first_cpu = time.process_time() - cpu_started
    rendered = time.perf_counter()
    app.run()
    second = time.perf_counter() - rendered
    from core import services

    resident = services.studio().pool.resident()  # the process-wide pool the page used
    return {
        "import_s": imported - started,
        "first_render_s": rendered - imported,
        "first_render_cpu_s": first_cpu,
        "second_render_s": second,
        "exceptions": [str(exception.value) for exception in app.exception],
        "resident": resident,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.home_render")
    parser.add_argument("--child", required=True, metavar="SCRIPT")
    print(json.dumps(_child(parser.parse_args().child)))
