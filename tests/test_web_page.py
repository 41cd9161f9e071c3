"""The web page of `--enable_ui` (serving.web_ui, serving/ui/): its files, its HTTP answers from a real server
process, and the page itself in headless Chromium (Debian's chromium and chromium-driver through Selenium),
uploading real photographs."""

import io
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from export.parity import Tolerance
from serving.process import free_port
from serving.web_ui import _FILES, CONTENT_SECURITY_POLICY
from tests.helpers import REPO, ServerProcess, copy_version, raw_predict, run_module
from workflows.web_page import find_browser

UI = REPO / "serving" / "ui"
HTML = (UI / "index.html").read_text()


# ---- the files, read as the browser will ----

def test_the_page_needs_no_network_no_build_and_no_inline_code():
    for path in UI.iterdir():
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # a namespace's name, never fetched
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), f"{path.name} loads from afar"
        assert "import " not in text or path.suffix != ".js", "no modules to bundle"
    assert not re.search(r"<script(?![^>]*\bsrc=)", HTML), "inline script (the CSP forbids it)"
    assert not re.search(r"\son[a-z]+=", HTML), "inline event handler"
    assert not re.search(r"\sstyle=|<style", HTML), "inline style (the CSP forbids it)"
    # Everything the page refers to is a file the server serves, and every served file ships.
    referred = set(re.findall(r'(?:src|href)="([^"]+)"', HTML))
    assert referred <= set(_FILES) and all((UI / name).is_file() for name, _ in _FILES.values())
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY


def test_every_control_has_a_label():
    controls = re.findall(r'<(?:input|select|button)[^>]*\bid="([^"]+)"', HTML)
    labelled = set(re.findall(r'<label for="([^"]+)"', HTML))
    buttons = set(re.findall(r'<button[^>]*\bid="([^"]+)"[^>]*>[^<]+</button>', HTML))
    assert controls and set(controls) <= labelled | buttons


def test_the_page_needs_the_rest_port():
    refused = run_module("serving.server", "--enable_ui", "--model_base_path", str(REPO), timeout=120)
    assert refused.returncode == 2 and "--rest_api_port" in refused.stderr and "Traceback" not in refused.stderr


# ---- the server's answers ----

def get(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """A server with the page, serving versions 1 and 2 of srgan, labelled stable and canary."""
    folder = tmp_path_factory.mktemp("ui")
    base = folder / "srgan"
    base.mkdir()
    for version in (1, 2):
        copy_version(exported[0], base, version)
    config = folder / "models.config"
    config.write_text(f'''model_config_list {{ config {{
    name: "srgan" base_path: "{base}" model_platform: "tensorflow" model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }} version_labels {{ key: "canary" value: 2 }} }} }}''')
    port = free_port()
    # A small pixel limit, so that a too-large photograph is a small file.
    process = ServerProcess("--model_config_file", str(config), "--rest_api_port", str(port), "--enable_ui",
                            "--max_pixels_per_request", "20000", "--file_system_poll_wait_seconds", "0")
    process.rest = f"http://127.0.0.1:{port}"
    yield process
    assert process.stop() == 0


def test_the_page_is_served_under_a_strict_policy_and_only_from_its_folder(served):
    assert any(f"web page: {served.rest}/ui/" in line for line in served.lines)
    status, headers, body = get(served.rest + "/ui/")
    assert status == 200 and body == (UI / "index.html").read_bytes()
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY and headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = get(served.rest + "/ui/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert get(served.rest + "/")[0] == 200  # redirected to the page
    for path in ("/ui/../serving/rest.py", "/ui/%2e%2e/web_ui.py", "/ui/ui/app.js",
                 "/ui//etc/passwd", "/ui/%2Fetc%2Fpasswd", "/ui/app.js/", "/ui/.", "/ui/web_ui.py", "/favicon.ico"):
        status, _, body = get(served.rest + path)
        assert status == 404 and b"import" not in body, path
    assert get(served.rest + "/ui/", method="POST")[0] == 405
    status, _, body = get(served.rest + "/ui/config.json")
    assert status == 200 and b'"labels":{"canary":2,"stable":1}' in body and b'"max_pixels":20000' in body


# ---- in a real browser ----

@pytest.fixture(scope="module")
def browser():
    if find_browser() is None:
        pytest.skip("no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="the browser tests drive Chromium with Selenium (pip install selenium)")
    from workflows.web_page import open_browser
    driver = open_browser()
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, served):
    from workflows.web_page import open_page
    browser.set_window_size(1400, 1000)
    open_page(browser, served.rest + "/ui/")
    return browser


def photograph(path, size=(48, 40), box=(120, 60)) -> bytes:
    """A crop of a real photograph (scikit-image's cat), saved as PNG at `path`."""
    from training.data.sources import demo_photo_dir
    rgb = np.asarray(Image.open(demo_photo_dir() / "chelsea.png").convert("RGB"))
    crop = rgb[box[1]:box[1] + size[1], box[0]:box[0] + size[0]]
    Image.fromarray(crop).save(path)
    return path.read_bytes()


def pixels(png_bytes: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"))


def test_the_model_list_shows_the_versions_served_with_their_labels(page):
    from selenium.webdriver.common.by import By
    options = [o.text for o in page.find_elements(By.CSS_SELECTOR, "#model-a option")]
    assert options == ["srgan · version 2 · label canary", "srgan · version 1 · label stable"]


def test_an_uploaded_photograph_comes_back_4x_as_the_grpc_answer(page, served, tmp_path):
    from selenium.webdriver.support.ui import Select
    from workflows.web_page import result_png, upload
    Select(page.find_element("id", "model-b")).select_by_visible_text("srgan · version 1 · label stable")
    photo = photograph(tmp_path / "cat.png")
    said = upload(page, tmp_path / "cat.png")
    assert "srgan · version 2 · label canary: 192×160, answered in" in said
    grpc_png = raw_predict(served.target, {"image_bytes": np.array([photo], dtype=object)},
                           signature="predict_encoded", version=2).outputs["sr_png_bytes"].string_val[0]
    expected = pixels(grpc_png)
    for key in ("srgan/2", "srgan/1"):
        shown = pixels(result_png(page, key))
        assert shown.shape == (160, 192, 3)
        tolerance = Tolerance()
        difference = np.abs(shown.astype(int) - expected)
        assert difference.max() <= tolerance.max_uint8_diff and np.mean(difference == 0) >= tolerance.min_identical
    # The bicubic pane is the training pipeline's bicubic (tf.image.resize), computed in the browser.
    from training.samples import bicubic_upscale
    bicubic = pixels(canvas_png(page, "bicubic"))
    reference = bicubic_upscale(pixels(photo)[None], 4)[0]
    assert bicubic.shape == reference.shape and np.abs(bicubic.astype(int) - reference).max() <= 1


def test_a_photograph_dropped_on_the_page_is_upscaled(page, tmp_path):
    """The drop path (not the file picker): a real drop event carrying the file, as a browser makes it."""
    import base64

    from workflows.web_page import wait_for
    photo = photograph(tmp_path / "dropped.png", size=(40, 32))
    page.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    """, base64.b64encode(photo).decode())
    wait_for(page, lambda d: "160×128, answered in" in d.find_element("id", "status").text, 120)
    assert page.find_element("id", "chosen").text.startswith("dropped.png")


def canvas_png(page, key: str) -> bytes:
    import base64
    url = page.execute_script(f"return document.querySelector('#panes figure[data-key=\"{key}\"] canvas.whole')"
                              ".toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def test_downscale_first_compares_the_model_with_the_original(page, tmp_path):
    from selenium.webdriver.common.by import By
    from workflows.web_page import upload
    photograph(tmp_path / "cat.png", size=(130, 98))  # not a multiple of 4: cropped to 128×96
    said = upload(page, tmp_path / "cat.png", downscale=True)
    assert "128×96" in said, said
    keys = [f.get_attribute("data-key") for f in page.find_elements(By.CSS_SELECTOR, "#panes figure")]
    assert keys[0] == "bicubic" and keys[-1] == "original" and "srgan/2" in keys
    assert pixels(canvas_png(page, "original")).shape == (96, 128, 3)


@pytest.mark.parametrize("case", ["not an image", "too large"])
def test_a_refused_upload_shows_the_servers_sentence(page, tmp_path, case):
    from workflows.web_page import upload
    if case == "not an image":
        (tmp_path / "notes.png").write_text("these are my notes, not a photograph")
        said = upload(page, tmp_path / "notes.png")
        assert said.startswith("The server refused the photograph (HTTP 400): input 'image_bytes' image 0 is not a "
                               "PNG, JPEG, GIF or BMP file"), said
    else:
        photograph(tmp_path / "big.png", size=(200, 150))  # 30 000 pixels, over the server's 20 000
        said = upload(page, tmp_path / "big.png")
        assert said.startswith("The server refused the photograph as too large: ") and "20000" in said, said
        assert "serving.upscale" in said
    assert said.endswith(".") and "\n" not in said and "Traceback" not in said


def test_keyboard_alone_reaches_every_control_and_moves_the_slider(page, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from workflows.web_page import upload
    photograph(tmp_path / "cat.png")
    upload(page, tmp_path / "cat.png")
    from selenium.webdriver.common.action_chains import ActionChains
    reached = []
    page.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
    for _ in range(12):  # keys as a keyboard sends them (an element's send_keys would fill the file picker)
        ActionChains(page).send_keys(Keys.TAB).perform()
        reached.append(page.switch_to.active_element.get_attribute("id"))
    order = ["file", "downscale", "model-a", "model-b", "run", "left", "right", "split", "compare"]
    assert [i for i in reached if i in order][:len(order)] == order, reached
    split = page.find_element("id", "split")
    split.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert split.get_attribute("value") == "52"
    clip = page.execute_script("return document.getElementById('compare-right').style.clipPath")
    assert clip == "inset(0px 0px 0px 52%)" or clip == "inset(0 0 0 52%)", clip


@pytest.mark.parametrize("width", [360, 1800])
def test_no_layout_break_from_narrow_to_wide(page, tmp_path, width):
    from workflows.web_page import upload
    photograph(tmp_path / "cat.png", size=(96, 64))
    upload(page, tmp_path / "cat.png")
    page.set_window_size(width, 900)
    scroll, inner = page.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{scroll} px of page in a {inner} px window"


def test_the_screenshot_command_as_typed(exported, tmp_path):
    if find_browser() is None:
        pytest.skip("no Chromium and chromedriver on PATH")
    photo = tmp_path / "cat.png"
    photograph(photo)
    base = tmp_path / "models" / "srgan"
    base.mkdir(parents=True)
    copy_version(exported[0], base, 1)
    shot = tmp_path / "page.png"
    done = run_module("workflows.web_page", "--model-dir", str(base), "--photo", str(photo), "--screenshot",
                      str(shot), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "page: http://127.0.0.1:" in done.stdout and "192×160" in done.stdout
    assert Image.open(shot).size[0] >= 1000  # the whole page, as wide as the window
    refused = run_module("workflows.web_page", "--model-dir", str(base), "--photo", str(tmp_path / "missing.png"),
                         "--screenshot", str(shot))
    assert refused.returncode == 2 and "missing.png is not a file" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_make_serve_as_typed_prints_the_page_address(exported, tmp_path):
    import os
    import signal
    import subprocess
    missing = subprocess.run(["make", "-s", "serve", f"MODELS_CONFIG={tmp_path / 'none.config'}"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "run make demo first" in missing.stdout
    base = tmp_path / "srgan"
    base.mkdir()
    copy_version(exported[0], base, 1)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "srgan" base_path: "{base}" '
                      'model_platform: "tensorflow" } }')
    rest = free_port()
    make = subprocess.Popen(["make", "-s", "serve", f"MODELS_CONFIG={config}", "GRPC_PORT=0", f"REST_PORT={rest}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        lines = []
        for line in make.stdout:
            lines.append(line)
            if line.startswith("listening on"):
                break
        assert any(f"web page: http://127.0.0.1:{rest}/ui/" in line for line in lines), lines
        assert get(f"http://127.0.0.1:{rest}/ui/")[0] == 200
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # as Ctrl-C reaches make and the server alike
        try:
            make.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            raise
