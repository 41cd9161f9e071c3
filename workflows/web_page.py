"""`python -m workflows.web_page`: the server's web page (`--enable_ui`) in headless Chromium, a photograph
uploaded to it, and a screenshot of the result.

    python -m workflows.web_page --model-dir models/srgan --model-dir models/srgan_gan --photo photo.png \\
        --screenshot docs/images/web-page.png

It starts the embedded server with the page on free ports of 127.0.0.1, drives Debian's `chromium` through its
`chromium-driver` with Selenium (nothing is downloaded: Selenium Manager is never asked), and prints the
page's address and what the page said. The tests drive the page through the same functions.
"""

import base64
import shutil
import sys
import tempfile
from pathlib import Path

from core.cli import UserError, exit_on_user_error, parser, setup_logging

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver", "chromium-driver")


def find_browser() -> tuple[str, str] | None:
    """(browser, driver) executables on PATH, or None where either is missing."""
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = next((path for name in DRIVER_NAMES if (path := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


def open_browser(width: int = 1400, height: int = 1000):
    """A headless Chromium driven by the system's chromedriver; a UserError saying what to install otherwise."""
    found = find_browser()
    if found is None:
        raise UserError("no Chromium and chromedriver on PATH: install them (Debian: apt-get install chromium "
                        "chromium-driver).")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError("this command drives the browser with Selenium: pip install selenium.") from None
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=found[1]), options=options)


def wait_for(driver, condition, seconds: float = 60):
    """`condition(driver)` once true (a Selenium wait that names what it waited for when it times out)."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition)


def open_page(driver, url: str) -> None:
    """The page at `url`, its model list read."""
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"
                                                " || !document.getElementById('error').hidden"
                                                " || document.getElementById('limits').textContent"
                                                ".startsWith('The server')"), 30)


def upload(driver, photo: Path, downscale: bool = False, seconds: float = 120) -> str:
    """Choose `photo` in the page's file picker; once the page has answered, what it said: its error sentence
    (refusals) or its status line (results)."""
    from selenium.webdriver.common.by import By
    box = driver.find_element(By.ID, "downscale")
    if box.is_selected() != downscale:
        box.click()
    driver.execute_script("document.getElementById('status').textContent = '';"
                          "document.getElementById('error').hidden = true;")
    driver.find_element(By.ID, "file").send_keys(str(Path(photo).resolve()))
    wait_for(driver, lambda d: d.execute_script(
        "const e = document.getElementById('error'); const s = document.getElementById('status').textContent;"
        "return !e.hidden || s.endsWith('.') && !document.getElementById('run').disabled"), seconds)
    error = driver.find_element(By.ID, "error")
    return error.text if error.is_displayed() else driver.find_element(By.ID, "status").text


def result_png(driver, key: str) -> bytes:
    """The PNG the page offers for download in the pane of `key` ("name/version")."""
    script = """
        const [key, done] = arguments;
        const link = document.querySelector(`#panes figure[data-key="${key}"] a.download`);
        if (!link) { done(null); return; }
        fetch(link.href).then((r) => r.arrayBuffer()).then((buffer) => {
            let text = ""; const bytes = new Uint8Array(buffer);
            for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            done(btoa(text));
        }).catch((error) => done("error: " + error.message));
    """
    encoded = driver.execute_async_script(script, key)
    if encoded is None or encoded.startswith("error: "):
        raise UserError(f"the page shows no result for {key}{encoded and ' (' + encoded + ')' or ''}")
    return base64.b64decode(encoded)


def save_whole_page(driver, path: Path) -> None:
    """A PNG of the whole page, below the window's fold too (Chromium's DevTools protocol)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})
    Path(path).write_bytes(base64.b64decode(shot["data"]))


def parse_args(argv=None):
    p = parser("python -m workflows.web_page", __doc__)
    p.add_argument("--model-dir", type=Path, action="append", required=True,
                   help="a model folder to serve (repeatable; each is served under its folder's name)")
    p.add_argument("--photo", type=Path, required=True, help="the photograph to upload")
    p.add_argument("--downscale", action="store_true", help="tick the page's 'downscale ×4 first'")
    p.add_argument("--screenshot", type=Path, required=True, help="where to write the PNG of the page")
    args = p.parse_args(argv)
    for folder in args.model_dir:
        if not folder.is_dir():
            p.error(f"--model-dir {folder} is not a folder; export a model first (python -m export.to_onnx)")
    if not args.photo.is_file():
        p.error(f"--photo {args.photo} is not a file")
    return args


@exit_on_user_error
def run(args) -> None:
    from serving.process import EmbeddedServer, free_port
    from workflows.demo import write_model_config
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    driver = open_browser()
    try:
        with tempfile.TemporaryDirectory() as scratch, EmbeddedServer(
                "--model_config_file", str(write_model_config(args.model_dir, Path(scratch) / "models.config")), "--rest_api_port", str(port), "--enable_ui"):
            url = f"http://127.0.0.1:{port}/ui/"
            print(f"page: {url}")
            open_page(driver, url)
            print(upload(driver, args.photo, args.downscale))
            save_whole_page(driver, args.screenshot)
    finally:
        driver.quit()
    print(f"screenshot: {args.screenshot}")


def main(argv=None) -> int:
    setup_logging()
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
