"""A real browser opens every page of `ganmatch explore`, moves the editor's sliders and sees the face change,
with no console errors: Debian's `chromium` and `chromium-driver` through Selenium, headless.

Skipped where the browser, its driver or selenium is absent (CI has no browser). Install them with
`apt-get install chromium chromium-driver` and `pip install -e ".[test]"`. With GANMATCH_SCREENSHOTS=<folder>
set, a PNG of every page is written there to look at.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")

from explore_synthetic import write_synthetic_run  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from ganmatch.explore.server import build_app, make_server  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1300,1400",
]

PIXELS = """
const img = arguments[0];
if (!img.complete || img.naturalWidth === 0) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
return Array.from(g.getImageData(0, 0, c.width, c.height).data).join(',');
"""
# images still loading (lazy ones out of view excepted) or loaded broken
BROKEN_IMAGES = (
    "return Array.from(document.images).filter(i => (i.loading !== 'lazy' && !i.complete) "
    "|| (i.complete && i.naturalWidth === 0)).map(i => i.src);"
)
THUMBS_LOADED = (
    "return Array.from(document.querySelectorAll('.thumbs img'))"
    ".every(i => i.complete && i.naturalWidth > 0);"
)


@pytest.fixture(scope="module")
def flags_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags") / "flags.csv"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, one_torch_thread, flags_file):
    run_dir = write_synthetic_run(tmp_path_factory.mktemp("browser"), n_images=90, n_pairs=12, shard_size=50)
    server = make_server(
        build_app(str(run_dir), log=lambda m: None, flags=str(flags_file)), "127.0.0.1", 0, threads=4
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, url: str, heading: str, shot: str) -> None:
    browser.get(url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert browser.find_element(By.TAG_NAME, "h1").text == heading
    wait.until(lambda d: not d.execute_script(BROKEN_IMAGES))
    folder = os.environ.get("GANMATCH_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{shot}.png"))


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_every_page_opens_and_the_editor_re_renders_when_a_slider_moves(browser, base_url):
    errors = []
    open_page(browser, f"{base_url}/", "Results of synthetic", "overview")
    errors += console_errors(browser)
    open_page(browser, f"{base_url}/balance?method=constrained", "Covariate balance", "balance")
    assert browser.find_element(By.ID, "love-plot").is_displayed()
    Select(browser.find_element(By.ID, "method-select")).select_by_value("propensity")  # submits on change
    WebDriverWait(browser, 30).until(lambda d: "method=propensity" in d.current_url)
    errors += console_errors(browser)
    open_page(browser, f"{base_url}/pairs?method=constrained", "Matched pairs", "pairs")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#pairs-table tbody tr")) == 12
    errors += console_errors(browser)

    open_page(browser, f"{base_url}/editor?method=constrained&pair=2", "Latent editor", "editor")
    browser.find_element(
        By.CSS_SELECTOR, "#image-browser summary"
    ).click()  # the thumbnail picker opens and loads
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(THUMBS_LOADED))
    browser.find_element(By.CSS_SELECTOR, "#image-browser summary").click()
    image = browser.find_element(By.ID, "edit-image")
    before = browser.execute_script(PIXELS, image)
    assert before
    score = browser.find_element(By.CSS_SELECTOR, 'span.score[data-direction="male"]').text
    slider = browser.find_element(By.CSS_SELECTOR, 'input.direction[data-direction="male"]')
    slider.click()
    slider.send_keys(Keys.END)  # to +5 SD: fires input events as a person's drag does
    wait = WebDriverWait(browser, 30)
    wait.until(
        lambda d: (
            "edit=male" in image.get_attribute("src")
            and image.get_attribute("data-loaded") == image.get_attribute("src")
        )
    )
    after = browser.execute_script(PIXELS, image)
    assert after and after != before, "the rendered face did not change"
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'span.score[data-direction="male"]').text != score)
    assert browser.find_element(By.CSS_SELECTOR, "output.strength").text == "5"

    interp = browser.find_element(By.ID, "interp-image")
    start = browser.execute_script(PIXELS, interp)
    t = browser.find_element(By.ID, "interp-slider")
    t.click()
    t.send_keys(Keys.HOME)
    wait.until(
        lambda d: "t=0&" in interp.get_attribute("src") + "&" or interp.get_attribute("src").endswith("t=0")
    )
    wait.until(lambda d: (p := d.execute_script(PIXELS, interp)) and p != start)
    folder = os.environ.get("GANMATCH_SCREENSHOTS")
    if folder:
        browser.save_screenshot(str(Path(folder) / "editor_moved.png"))
    errors += console_errors(browser)
    assert not errors, errors


# ---------------------------------------------------------------- issue 30: display and features in a browser

BBOXES = """
const svg = arguments[0];
return Array.from(svg.querySelectorAll('text')).map(t => {
  const b = t.getBBox(); return [t.textContent, b.x, b.y, b.x + b.width, b.y + b.height]; });
"""


def test_love_plot_labels_lie_inside_the_svg_and_the_balance_table_fits_1400_px(browser, base_url):
    browser.set_window_size(1400, 1000)
    try:
        for method in ("constrained", "propensity_full"):
            open_page(
                browser, f"{base_url}/balance?method={method}", "Covariate balance", f"balance_{method}"
            )
            svg = browser.find_element(By.ID, "love-plot")
            width, height = float(svg.get_attribute("width")), float(svg.get_attribute("height"))
            for text, x0, y0, x1, y1 in browser.execute_script(BBOXES, svg):
                assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height, (
                    text,
                    x0,
                    y0,
                    x1,
                    y1,
                    width,
                    height,
                )
            box = browser.find_element(By.ID, "balance-scroll")
            assert browser.execute_script(
                "return arguments[0].scrollWidth <= arguments[0].clientWidth", box
            ), "the balance table scrolls sideways at 1,400 px"
            last = browser.find_elements(By.CSS_SELECTOR, "#balance-table tbody tr td:last-child")[0]
            assert (
                last.is_displayed()
                and last.rect["x"] + last.rect["width"] <= box.rect["x"] + box.rect["width"]
            )
    finally:
        browser.set_window_size(1300, 1400)


def test_editor_layout_conditional_names_interpolation_panes_and_pair_edits(browser, base_url):
    open_page(browser, f"{base_url}/editor?method=gan_greedy&pair=1", "Latent editor", "editor_pair")
    label = browser.find_element(By.CSS_SELECTOR, 'input.direction[data-direction="male|young,smiling"]')
    label = label.find_element(By.XPATH, "preceding-sibling::label")
    line = float(
        browser.execute_script("return parseFloat(getComputedStyle(arguments[0]).lineHeight)", label)
    )
    assert label.rect["height"] < 1.6 * line, "a conditional direction's name wraps"
    assert label.text.count("young") == 1 and label.text.count("smiling") == 1
    panes = [browser.find_element(By.ID, i) for i in ("interp-treated", "interp-image", "interp-control")]
    sizes = {(p.rect["width"], p.rect["height"]) for p in panes}
    assert len(sizes) == 1, sizes
    img, slider = browser.find_element(By.ID, "interp-image"), browser.find_element(By.ID, "interp-slider")
    centre = lambda e: e.rect["x"] + e.rect["width"] / 2  # noqa: E731
    assert (
        abs(centre(slider) - centre(img)) <= 2 and slider.rect["y"] >= img.rect["y"] + img.rect["height"] - 1
    )
    assert slider.rect["width"] <= img.rect["width"] + 2
    both = [browser.find_element(By.ID, i) for i in ("edit-treated", "edit-control")]
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: all(d.execute_script(PIXELS, e) for e in both))
    before = [browser.execute_script(PIXELS, e) for e in both]
    slider = browser.find_element(By.CSS_SELECTOR, 'input.direction[data-direction="male"]')
    slider.click()
    slider.send_keys(Keys.END)
    for e, old in zip(both, before, strict=True):
        wait.until(
            lambda d, e=e, old=old: (
                "edit=male" in e.get_attribute("src") and (p := d.execute_script(PIXELS, e)) and p != old
            )
        )
    assert not console_errors(browser)


def test_from_a_balance_row_to_its_pairs_a_full_size_pair_and_a_flag(browser, base_url, flags_file):
    open_page(browser, f"{base_url}/balance?method=gan_greedy", "Covariate balance", "balance_link")
    browser.find_element(By.LINK_TEXT, "young").click()
    WebDriverWait(browser, 30).until(lambda d: "f_young=differ" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#pairs-table tbody tr")
    assert rows and all(
        "differ" in r.find_element(By.CSS_SELECTOR, "dd.differ").get_attribute("class") for r in rows
    )
    browser.find_elements(By.CSS_SELECTOR, "button.flag-pair")[0].click()
    WebDriverWait(browser, 30).until(
        lambda d: flags_file.is_file() and "gan_greedy" in flags_file.read_text()
    )
    assert "flagged" in browser.find_elements(By.CSS_SELECTOR, "button.flag-pair")[0].text
    browser.find_elements(By.CSS_SELECTOR, "figure.face a")[0].click()  # a face opens its pair at full size
    WebDriverWait(browser, 30).until(lambda d: "/pair?" in d.current_url)
    WebDriverWait(browser, 30).until(lambda d: not d.execute_script(BROKEN_IMAGES))
    for side in ("treated", "control"):
        views = browser.find_elements(By.CSS_SELECTOR, f"#{side}-side .views img.full")
        assert [v.get_attribute("alt") for v in views] == [
            f"{side} aligned crop",
            f"{side} GAN reconstruction",
        ]
        assert all(v.rect["width"] >= 250 for v in views)
    folder = os.environ.get("GANMATCH_SCREENSHOTS")
    if folder:
        browser.save_screenshot(str(Path(folder) / "pair.png"))
    open_page(browser, f"{base_url}/pairs?method=constrained&dist_max=0", "Matched pairs", "empty")
    assert browser.find_element(By.ID, "no-pairs").is_displayed()
    open_page(browser, f"{base_url}/distances", "Pair distances", "distances")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.histogram line.cutoff")) == 4
    assert not console_errors(browser)
