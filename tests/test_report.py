"""`snakemake --report`: the tables, the plot and the provenance of a finished run, with their
captions, as a browser shows them (issue 22).

A tiny run (tiny profile, denoise, Table 1 with the input and NAFNet, Table 3 with the same two
rows: one training job, about a minute on 2 cores) is built once for the module, then its
report. Snakemake's report is a React app that renders from data embedded in the page, so the
raw HTML says little: each test opens the report in headless Chromium, clicks its way to a
result as a reader would (category, subcategory, the result's view button), and checks the
*rendered* page through the DevTools protocol (``--remote-debugging-pipe``: Chromium's own
pipe, no driver or Python browser package): the DOM of the main page and of the frame the
report shows an HTML result in, whether an image decoded, and a screenshot's pixels where the
table or image is drawn.

Chromium (Debian's ``chromium``) is installed by the module's set-up when it is missing and the
tests run as root with apt-get (CI); otherwise the browser tests are skipped, saying why. The
install's duration is reported as a warning in the test summary.
"""
from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ugpnet.table_html import markdown_page
from workspace import REPO, copy_workflow, env_with, failure, snakemake

# the run: one task, two Table 1 rows (the input needs no training), the same two as Table 3's
# rows (so Table 3 adds only its table job), no FID (its Inception import is the costliest job)
OVERRIDES = """
overrides:
  metrics: {names: [psnr, ssim, lpips]}
  validation: {lpips: when_selected}
  table1: {methods: [input, nafnet], tasks: [denoise], compare: [nafnet]}
  table3: {task: denoise}
"""
ROWS = """    rows:
      input: {group: the input, row: "degraded input"}
      nafnet: {group: NAFNet, row: "NAFNet alone"}
"""
CONFIG = ["--config", "profile=tiny", "--configfile", "params.yaml", "report_test.yaml"]
TARGETS = ["results/table1.csv", "table3"]
RESULTS = Path("results/tiny/default")
WINDOW = (1400, 1000)


# ---------------------------------------------------------------- the HTML of a table's Markdown


def test_markdown_page_renders_the_tables_markdown():
    md = ("# Table 1 (tiny profile; <b>not</b> the paper's)\n\n## denoise\n\n"
          "| method | family | PSNR ↑ |\n|---|---|---|\n| input | reference | 11.50 [11.29, 11.71] |\n"
          "| nafnet * | regression | 11.02 [10.64, 11.40] |\n\n"
          "| group | psnr |\n|:------|-----:|\n| NAFNet | 18.03 |\n\n"
          "a paragraph with `code`\nover two lines\n\n\\* not the paper's:\n\n- nafnet: x < y\n")
    page = markdown_page(md)
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Table 1 (tiny profile; &lt;b&gt;not&lt;/b&gt; the paper&#x27;s)</title>" in page
    assert "<h1>Table 1 (tiny profile; &lt;b&gt;not&lt;/b&gt; the paper&#x27;s)</h1>" in page
    assert "<h2>denoise</h2>" in page
    assert page.count("<table>") == 2
    assert "<th>method</th><th>family</th><th>PSNR ↑</th>" in page
    assert ('<tr><td>input</td><td>reference</td><td class="num">11.50 [11.29, 11.71]</td></tr>'
            in page)
    assert "<td>nafnet *</td>" in page
    assert '<th class="num">psnr</th>' in page and '<td class="num">18.03</td>' in page
    assert "<p>a paragraph with <code>code</code> over two lines</p>" in page
    assert "<p>* not the paper&#x27;s:</p>" in page
    assert "<ul>\n<li>nafnet: x &lt; y</li>\n</ul>" in page


# ---------------------------------------------------------------- Chromium


def _find_chromium() -> str | None:
    named = os.environ.get("UGPNET_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _install_chromium() -> tuple[str | None, str]:
    """Debian's chromium by apt-get (root only): (the binary, how long it took) or (None, why
    not)."""
    if not shutil.which("apt-get"):
        return None, "no Chromium and no apt-get to install it (set UGPNET_CHROMIUM=/path)"
    if os.geteuid() != 0:
        return None, ("no Chromium, and installing it needs root: apt-get install chromium "
                      "(or set UGPNET_CHROMIUM=/path)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q"]
    start = time.monotonic()
    out = ""
    # the package lists first only when the install cannot find the package without them
    for steps in ([apt + ["install", "-y", "chromium"]],
                  [apt + ["update"], apt + ["install", "-y", "chromium"]]):
        for cmd in steps:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"{' '.join(cmd)} failed: {e}"
            out = r.stdout[-1500:] + r.stderr[-1500:]
            if r.returncode != 0:
                break
        else:
            exe = _find_chromium()
            if exe:
                return exe, f"{time.monotonic() - start:.0f} s"
    return None, f"apt-get install chromium failed:\n{out}"


@pytest.fixture(scope="module")
def chromium():
    exe = _find_chromium()
    if exe is None:
        exe, said = _install_chromium()
        if exe is None:
            pytest.skip(f"headless Chromium unavailable: {said}")
        warnings.warn(f"test_report: Chromium installed by the test set-up "
                      f"(apt-get install chromium) in {said}", stacklevel=1)
    return exe


class Browser:
    """Headless Chromium driven over its DevTools pipe (fd 3: commands in, fd 4: replies out;
    each message JSON ended by a NUL), one page (target) attached."""

    def __init__(self, exe: str, timeout: float = 60):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ugpnet-chromium-")
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", "--no-first-run",
                "--no-default-browser-check", "--force-device-scale-factor=1", "about:blank"]
        self.log = open(os.path.join(self.profile, "chromium.log"), "w")
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w}',
                                      exe, *args], pass_fds=(cmd_r, out_w),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(cmd_r)
        os.close(out_w)
        self._w, self._r = cmd_w, out_r
        self._buf, self._id = b"", 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")

    def chromium_log(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError(f"no reply from Chromium:\n{self.chromium_log()}")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe:\n{self.chromium_log()}")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:  # anything else is an event: not used
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def page(self, method: str, **params) -> dict:
        return self.send(method, session=self.session, **params)

    def js(self, expression: str, context: int | None = None):
        """The value of ``expression`` (awaited if a promise) in the page, or in ``context``."""
        extra = {"contextId": context} if context else {}
        r = self.page("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True, **extra)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:200]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, what: str, context: int | None = None, seconds: float = 30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.js(expression, context)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def open(self, url: str) -> None:
        self.page("Page.navigate", url=url)
        # the app has rendered: its navigation (React, from the embedded data) is on the page
        self.wait("document.readyState === 'complete' && typeof app !== 'undefined' && "
                  "document.querySelector('#app') !== null && "
                  "document.querySelector('#app').textContent.includes('Results')",
                  "the report's app to render")

    def click(self, text: str) -> None:
        """Click the link (a menu item: a category, a subcategory) whose text is ``text``."""
        self.wait(f"""(() => {{
            const a = [...document.querySelectorAll('a')].find(
                x => x.textContent.trim() === {json.dumps(text)});
            if (a) a.click();
            return !!a; }})()""", f"a link {text!r}")

    def result_button(self, label: str, which: int) -> None:
        """Click a button of the result whose row shows ``label``: 0 view, 1 information."""
        self.wait(f"""(() => {{
            const row = [...document.querySelectorAll('tr')].find(tr => [...tr.children].some(
                td => td.textContent.trim() === {json.dumps(label)}));
            const buttons = row ? row.querySelectorAll('td:last-child a') : [];
            if (buttons.length > {which}) buttons[{which}].click();
            return buttons.length > {which}; }})()""", f"the buttons of result {label!r}")

    def frame_context(self) -> int:
        """An execution context in the (single) frame the report shows an HTML result in."""
        def child():
            kids = self.page("Page.getFrameTree")["frameTree"].get("childFrames", [])
            return kids[0]["frame"]["id"] if kids else None

        deadline = time.monotonic() + 30
        while (frame := child()) is None:
            if time.monotonic() > deadline:
                raise AssertionError("the report shows no frame")
            time.sleep(0.1)
        context = self.page("Page.createIsolatedWorld", frameId=frame,
                            worldName="test_report")["executionContextId"]
        self.wait("document.readyState === 'complete' && document.body !== null",
                  "the frame to load", context=context)
        return context

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.page("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=20)
        finally:
            os.close(self._w)
            os.close(self._r)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


# ---------------------------------------------------------------- the run and its report


def _params_with_rows(text: str) -> str:
    """params.yaml with Table 3's rows replaced by ROWS (configuration files merge rows)."""
    start = text.index("    rows:\n", text.index("\n  table3:"))
    end = text.index("\n  # ", start) + 1
    return text[:start] + ROWS + text[end:]


@pytest.fixture(scope="module")
def report(chromium, tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("report"))
    (work / "params.yaml").write_text(_params_with_rows((work / "params.yaml").read_text()))
    (work / "report_test.yaml").write_text(OVERRIDES.lstrip())
    env = env_with(REPO)  # the jobs run this checkout's ugpnet, whatever the venv points at
    r = snakemake(["--cores", "2", *TARGETS, *CONFIG], work, env=env)
    if r.returncode != 0:
        pytest.fail(failure(r, work))
    start = time.monotonic()
    r = snakemake(["--report", "results/report.html", *TARGETS, *CONFIG], work, env=env,
                  timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # every marked output added, and every caption rendered without a docutils complaint
    for name in ("table1.csv", "table1.png", "table1.html", "table1_stats.csv", "table1.json",
                 "table3.csv", "table3.html", "table3.json"):
        assert f"Adding {name} (" in r.stderr, r.stderr[-3000:]
    assert "(WARNING/" not in r.stderr and "(ERROR/" not in r.stderr, r.stderr[-3000:]
    print(f"snakemake --report: {time.monotonic() - start:.1f} s")
    return work


@pytest.fixture
def browser(chromium, report):
    b = Browser(chromium)
    try:
        b.open((report / "results" / "report.html").resolve().as_uri())
        yield b
    finally:
        b.close()


def _crop(shot: np.ndarray, rect) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in rect)
    return shot[max(y, 0):y + h, max(x, 0):x + w]


def _drawn(pixels: np.ndarray) -> tuple[float, float, int]:
    """(share of dark pixels: text and lines, share not near-white, distinct colours)."""
    flat = pixels.reshape(-1, 3).astype(int)
    dark = float((flat.max(axis=1) < 110).mean())
    ink = float((flat.min(axis=1) < 235).mean())
    return dark, ink, len(np.unique(flat // 8, axis=0))


# ---------------------------------------------------------------- the tests


@pytest.mark.long
def test_report_names_the_profile_on_its_front_page(browser):
    text = browser.js("document.body.innerText")
    assert "UGPNet benchmark: profile tiny, experiment default" in text
    assert "NOT the paper's numbers" in text
    # the categories of the marked outputs are in the menu
    assert "Tables" in text and "Provenance" in text


@pytest.mark.long
def test_table1_renders_with_intervals_and_tests(browser, report):
    browser.click("Tables")
    browser.click("Table 1")
    browser.result_button("Table 1: mean [95 % interval], paired tests", 0)
    frame = browser.frame_context()
    tables = browser.wait("""(() => {
        const t = [...document.querySelectorAll('table')];
        return t.length ? t.map(x => {
            const r = x.getBoundingClientRect();
            return {rect: [r.x, r.y, r.width, r.height],
                    rows: [...x.querySelectorAll('tr')].map(
                        tr => [...tr.children].map(c => c.textContent.trim()))}; }) : null; })()""",
                          "Table 1's tables in the frame", context=frame)
    title = browser.js("document.querySelector('h1').textContent", frame)
    assert "tiny profile" in title and "not the paper's" in title
    means, tests = tables  # the task's table, then the paired tests of nafnet (compare)
    assert means["rows"][0][:3] == ["method", "family", "PSNR ↑"]
    assert [row[0] for row in means["rows"][1:]] == ["input", "nafnet"]
    # the cell is the mean with its 95 % interval (table1_stats.csv: the same numbers)
    stats = pd.read_csv(report / RESULTS / "table1_stats.csv")
    row = stats[(stats["method"] == "nafnet") & (stats["metric"] == "psnr")].iloc[0]
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    want = f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    assert means["rows"][2][2] == want
    assert tests["rows"][1][:2] == ["nafnet", "input"] and "(n 2," in tests["rows"][1][2]
    # drawn: the table has a size, and the screenshot shows text and the header's shading there
    assert means["rect"][2] > 200 and means["rect"][3] > 40, means["rect"]
    offset = browser.js("(() => { const r = document.querySelector('iframe')"
                        ".getBoundingClientRect(); return [r.x, r.y]; })()")
    rect = [means["rect"][0] + offset[0], means["rect"][1] + offset[1], *means["rect"][2:]]
    region = _crop(browser.screenshot(), rect)
    dark, ink, colours = _drawn(region)
    assert dark > 0.02 and ink > 0.1 and colours >= 4, (dark, ink, colours, rect)
    header = np.array([0xE2, 0xE8, 0xF0])  # th background (ugpnet.table_html.STYLE)
    assert (np.abs(region.astype(int) - header).max(axis=2) <= 3).mean() > 0.05


@pytest.mark.long
def test_table1_plot_decodes_and_is_drawn(browser, report):
    browser.click("Tables")
    browser.click("Table 1")
    browser.result_button("Table 1: bar chart (PNG)", 0)
    img = browser.wait("""(async () => {
        const img = document.querySelector('img[src^="data:image/png"]');
        if (!img) return null;
        await img.decode().catch(() => null);
        const r = img.getBoundingClientRect();
        return img.complete && img.naturalWidth > 0 ? {w: img.naturalWidth, h: img.naturalHeight,
            rect: [r.x, r.y, r.width, r.height]} : null; })()""", "the plot to decode")
    png = Image.open(report / RESULTS / "table1.png").convert("RGB")
    assert (img["w"], img["h"]) == png.size
    x, y, w, h = img["rect"]
    assert w > 200 and h > 50 and x + w <= WINDOW[0] + 1, img["rect"]
    # the screenshot where the image is drawn is the PNG (scaled to its box)
    shot = _crop(browser.screenshot(), img["rect"])
    want = np.asarray(png.resize((shot.shape[1], shot.shape[0]), Image.BILINEAR))
    assert np.abs(shot.astype(int) - want.astype(int)).mean() < 12
    dark, ink, colours = _drawn(shot)
    assert ink > 0.05 and colours >= 8, (dark, ink, colours)


@pytest.mark.long
def test_table3_renders(browser, report):
    browser.click("Tables")
    browser.click("Table 3")
    browser.result_button("Table 3: the ablations", 0)
    frame = browser.frame_context()
    rows = browser.wait("""(() => { const t = document.querySelector('table');
        return t ? [...t.querySelectorAll('tr')].map(
            tr => [...tr.children].map(c => c.textContent.trim())) : null; })()""",
                        "Table 3 in the frame", context=frame)
    head = rows[0]
    assert head[:3] == ["group", "row", "method"] and "psnr" in head
    assert [r[1] for r in rows[1:]] == ["degraded input", "NAFNet alone"]
    numbers = json.loads((report / RESULTS / "table3_metrics.json").read_text())["denoise"]
    assert rows[2][head.index("psnr")] == f"{numbers['nafnet']['psnr']:.2f}"
    height = browser.js("document.querySelector('table').getBoundingClientRect().height", frame)
    assert height > 40


@pytest.mark.long
def test_captions_and_provenance(browser, report):
    browser.click("Tables")
    browser.click("Table 1")
    browser.result_button("Table 1: the means (CSV)", 1)  # its information: the caption
    text = browser.wait("""(() => { const t = document.body.innerText;
        return t.includes('Intervals:') ? t : null; })()""", "Table 1's caption")
    assert "profile tiny" in text and "not the paper's numbers" in text
    assert "tasks: denoise" in text and "PSNR, SSIM, LPIPS" in text
    browser.click("Results")
    browser.click("Provenance")
    browser.click("Table 3")
    browser.result_button("Table 3: provenance (JSON)", 1)
    text = browser.wait("""(() => { const t = document.body.innerText;
        return t.includes('SHA-256') ? t : null; })()""", "the provenance caption")
    assert "rule table3" in text and "profile tiny" in text
    meta = json.loads((report / RESULTS / "table3.json").read_text())
    assert meta["profile"] == "tiny" and {"sha256", "file"} <= set(meta["sources"]["nafnet"])
