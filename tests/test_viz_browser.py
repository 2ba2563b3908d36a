"""The offline HTML export, in a real browser: a notebook holding every view is executed, exported with
``workbench.viz.notebook_to_html`` and opened in headless Chromium with the network closed; every view must
draw (its plot element is there), the console must stay free of errors, and no request may leave the page.

Chromium comes from Debian (``apt-get install chromium chromium-driver``, done by ``.ci/run``) and is driven
by Playwright's Python package with the system browser (no browser download). Screenshots are saved in the
test's tmp dir.
"""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from tiny_gpt2 import save_tiny_gpt2

from workbench.viz import export

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CELLS = [
    """import os
import pandas as pd
import workbench as wb
from workbench import viz

lm = wb.load("minilm", device="cpu")
gpt = wb.load(os.environ["WB_VIZ_TINY_GPT2"], device="cpu")  # a tiny random GPT-2 saved by the test
text = "The capital of France is Paris."
""",
    'viz.attention(lm, text, view="head")',
    'viz.attention(lm, text, view="model", layer=2, head=3)',
    'viz.attention(gpt, text, view="matrix")',
    'viz.attention(gpt, text, view="neuron", query=3)',
    'viz.compare({"minilm": lm, "gpt2": gpt}, text)',
    'attr = wb.attribute(gpt, "The capital of France", target=" is", method=["saliency", "input_x_gradient"])\n'
    "viz.token_attributions(attr)",
    'viz.faithfulness_curves(wb.attribution.evaluate(gpt, "The capital of France", target=" is",\n'
    '                                                methods=["saliency", "input_x_gradient"]))',
    "import probes\nprobes.treebank_projection(lm, max_sentences=10)",
    "viz.logit_lens_table(gpt, text)",
    'viz.generation_explorer(gpt, "The capital of")',
    """frame = pd.DataFrame([
    {"model": model, "task": "upos", "layer": layer, "split": "test", "metric": "accuracy",
     "value": 0.6 + 0.05 * layer - 0.1 * i, "control": 0.5, "selectivity": 0.1 + 0.05 * layer - 0.1 * i}
    for i, model in enumerate(["minilm", "gpt2"]) for layer in range(4)
])
viz.probe_results(frame, show="both")""",
]
PLOTTED_VIEWS = [
    "head_view",
    "model_view",
    "attention_matrix",
    "neuron_view",
    "compare",
    "faithfulness_curves",
    "projection",
    "logit_lens",
    "generation_explorer",
    "probe_results",
]


def views_notebook():
    cells = [new_markdown_cell("# Every workbench view\nExported with `workbench.viz.notebook_to_html`.")]
    cells += [new_code_cell(source) for source in CELLS]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return new_notebook(cells=cells, metadata={"kernelspec": kernelspec})


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(html path, executed notebook): every view, executed in a kernel and exported."""
    folder = tmp_path_factory.mktemp("viz-export")
    (folder / "gpt2").mkdir()
    save_tiny_gpt2(folder / "gpt2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WB_VIZ_TINY_GPT2", str(folder / "gpt2"))
        executed = export.execute_notebook(views_notebook(), timeout=300, cwd=folder)
    path = export.notebook_to_html(executed, folder / "views.html", title="views")
    return path, executed


def test_export_keeps_the_static_rendering_and_inlines_plotly_once(exported):
    from plotly.offline import get_plotlyjs

    path, executed = exported
    outputs = [
        o
        for cell in executed.cells
        for o in cell.get("outputs", [])
        if o.get("output_type") == "execute_result"
    ]
    assert len(outputs) == len(CELLS) - 1
    assert all(
        export.WIDGET_VIEW in o["data"] and "text/html" in o["data"] for o in outputs
    )  # both renderings
    page = path.read_text(encoding="utf-8")
    assert page.count(get_plotlyjs()[:200]) == 1  # one copy of plotly.js for 10+ figures
    # Nothing is fetched: no script, stylesheet or image comes from an address (plotly.js's own text
    # mentions map-tile servers, which only map traces would use).
    remote = re.findall(r"<(?:script|link|img)[^>]*(?:src|href)=[\"']?(?:https?:)?//[^\s\"'>]+", page)
    assert remote == []
    assert export.WIDGET_VIEW not in page and export.WIDGET_STATE not in page
    assert path.stat().st_size < 8 * 2**20


def test_static_notebook_replaces_widgets_by_their_html_and_keeps_plain_outputs():
    notebook = new_notebook(cells=[new_code_cell("x")], metadata={"widgets": {export.WIDGET_STATE: {}}})
    notebook.cells[0].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={export.WIDGET_VIEW: {"model_id": "1"}, "text/html": "<b>x</b>", "text/plain": "x"},
        ),
        nbformat.v4.new_output(
            "display_data", data={export.WIDGET_VIEW: {"model_id": "2"}, "text/plain": "slider"}
        ),
        nbformat.v4.new_output("stream", name="stdout", text="hello"),
    ]
    static = export.static_notebook(notebook)
    assert "widgets" not in static.metadata and "widgets" in notebook.metadata  # the input is untouched
    first, second, third = static.cells[0].outputs
    assert dict(first["data"]) == {"text/html": "<b>x</b>", "text/plain": "x"}
    assert dict(second["data"]) == {"text/plain": "slider"}
    assert third["text"] == "hello"
    assert not export.needs_plotly(static)


def test_export_names_a_missing_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook at .*missing.ipynb"):
        export.notebook_to_html(tmp_path / "missing.ipynb", tmp_path / "out.html")


def test_exported_views_draw_offline_in_chromium(exported, tmp_path):
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium: install the Debian packages chromium and chromium-driver (.ci/run does)")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="Playwright's Python package is not installed"
    )
    path, _ = exported
    errors, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))

            def offline(route):  # the network is closed: only the file itself may load
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    requests.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            drawn = page.eval_on_selector_all(
                ".wb-view",
                "views => views.map(v => [v.dataset.wbView, v.querySelectorAll('.js-plotly-plot .main-svg').length,"
                " v.querySelectorAll('.wb-token').length])",
            )
            page.screenshot(path=str(tmp_path / "all_views.png"), full_page=True)
            for kind in ("head_view", "neuron_view"):
                page.locator(f'.wb-view[data-wb-view="{kind}"]').screenshot(
                    path=str(tmp_path / f"{kind}.png")
                )
        finally:
            browser.close()
    by_kind = {kind: (plots, tokens) for kind, plots, tokens in drawn}
    assert sorted(by_kind) == sorted([*PLOTTED_VIEWS, "token_attributions"])
    for kind in PLOTTED_VIEWS:
        assert by_kind[kind][0] > 0, f"{kind} drew no plotly figure"
    assert by_kind["token_attributions"][1] > 0
    assert errors == [], f"console errors: {errors}"
    assert requests == [], f"the page tried the network: {requests}"
    assert (tmp_path / "all_views.png").stat().st_size > 50_000


# JupyterLab, live ------------------------------------------------------------------------------------

LAB_CELLS = [
    "import os\nimport workbench as wb\nfrom workbench import viz\n"
    'gpt = wb.load(os.environ["WB_VIZ_TINY_GPT2"], device="cpu")\ntext = "The capital of France is Paris."',
    'viz.attention(gpt, text, view="head")',
    'viz.token_attributions(wb.attribute(gpt, "The capital of France", target=" is", method="saliency"))',
    'viz.generation_explorer(gpt, "The capital of")',
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_views_draw_and_respond_live_in_jupyterlab(tmp_path):
    """In JupyterLab (no network): the widgets draw, a dropdown changed in the page redraws the figure through
    the kernel, and a click on a candidate extends the generation explorer's prompt."""
    import subprocess
    import sys
    import time
    import urllib.request

    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium: install the Debian packages chromium and chromium-driver (.ci/run does)")
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install -e '.[dev]')")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="Playwright's Python package is not installed"
    )
    (tmp_path / "gpt2").mkdir()
    save_tiny_gpt2(tmp_path / "gpt2")
    cells = [new_code_cell(source) for source in LAB_CELLS]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": kernelspec}), tmp_path / "live.ipynb")
    port = free_port()
    env = dict(__import__("os").environ, WB_VIZ_TINY_GPT2=str(tmp_path / "gpt2"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={tmp_path}",
            "--allow-root",
            "--LabApp.news_url=None",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    errors, external = [], []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("JupyterLab did not start within 60 s")
                time.sleep(0.5)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("pageerror", lambda error: errors.append(str(error)))

                def local_only(route):
                    if route.request.url.startswith(url):
                        route.continue_()
                    else:
                        external.append(route.request.url)
                        route.abort()

                page.route("**/*", local_only)
                page.goto(f"{url}/lab/tree/live.ipynb")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                page.wait_for_selector(
                    "text=/Python 3 \\(ipykernel\\) \\| Idle/", timeout=60_000
                )  # kernel ready
                page.locator(".jp-Cell").first.click()
                page.keyboard.press("Escape")
                for _ in LAB_CELLS:
                    page.keyboard.press("Shift+Enter")
                    time.sleep(0.3)
                outputs = ".jp-OutputArea-output"
                try:
                    page.wait_for_selector(f"{outputs} .widget-button", timeout=90_000)  # the last cell drew
                finally:
                    page.screenshot(path=str(tmp_path / "jupyterlab_run.png"), full_page=True)
                plots = page.locator(f"{outputs} .js-plotly-plot")
                assert plots.count() >= 2 and page.locator(f"{outputs} .wb-token").count() > 0
                head = plots.first
                head.locator(".main-svg").first.wait_for(timeout=30_000)
                page.locator(f"{outputs} select").first.select_option(index=1)  # layer 0 -> layer 1
                page.wait_for_function(
                    "el => /(^|· )layer 1 ·/.test(el.layout.title.text)",  # after the model's name
                    arg=head.element_handle(),
                    timeout=30_000,
                )
                prompt = page.locator(f"{outputs} textarea").first
                before = prompt.input_value()
                page.locator(f"{outputs} .widget-button").first.click()
                page.wait_for_function(
                    "([el, old]) => el.value !== old", arg=[prompt.element_handle(), before], timeout=30_000
                )
                assert prompt.input_value().startswith(before) and len(prompt.input_value()) > len(before)
                page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert errors == [], f"page errors: {errors}"
    assert external == [], f"JupyterLab tried the network: {external}"
