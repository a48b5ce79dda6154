#!/usr/bin/env python3
"""The segment builder page in a real browser (Debian's chromium + chromedriver, driven by
selenium) against a real `segd serve --demo 20000`: build a segment by clicking and see the
API's CountSegment answer; edit the WHERE text and see the tree follow; save it; write a
customer through the HTTP API and see the saved count follow; provoke an error and see it
next to the condition it names. Screenshots of each step go to --shots.

usage: builder_test.py --segd target/release/segd --shots DIR [--readme-shot docs/builder.png]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 15  # seconds for any one expectation


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        assert status == 200, f"{method} {path}: {status} {answer}"
        return answer

    def count(self, where):
        return int(self.ok("POST", "/v1/segments:count", {"where": where}).get("count", "0"))


def start_segd(segd, tmp, http_port):
    cmd = [segd, "serve", "--demo", "20000", "--data-dir", os.path.join(tmp, "data"),
           "--listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{http_port}"]
    log = open(os.path.join(tmp, "segd.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    api = Api(f"http://127.0.0.1:{http_port}")
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"segd exited with {proc.returncode}:\n" + open(log.name).read()[-3000:])
        try:
            if api.call("GET", "/v1/schema")[0] == 200:
                return proc, api
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("segd did not answer on HTTP within 120 s")


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1360,900", "--force-device-scale-factor=1"]:
        opts.add_argument(a)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=opts, service=service)


def fmt(n):
    return f"{n:,}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segd", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--readme-shot")
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="segd-browser-")
    proc, api = start_segd(os.path.abspath(args.segd), tmp, free_port())
    d = browser()
    wait = WebDriverWait(d, WAIT)
    step = [0]

    def shot(name):
        step[0] += 1
        d.save_screenshot(os.path.join(args.shots, f"{step[0]}-{name}.png"))

    def where_text():
        return d.find_element(By.ID, "where").get_attribute("value")

    def shown_count():
        return d.find_element(By.ID, "count").text

    def expect_count_of(where, what):
        want = fmt(api.count(where))
        try:
            wait.until(lambda _: shown_count() == want)
        except Exception:
            raise AssertionError(f"{what}: page shows {shown_count()!r}, CountSegment says {want}")
        return want

    try:
        d.get(api.base + "/")
        wait.until(lambda _: d.find_elements(By.ID, "attr-country"))
        total = int(api.ok("GET", "/v1/schema")["total"])
        wait.until(lambda _: shown_count() == fmt(total))  # no conditions: everyone

        # 1. Build a segment by clicking: country in {DE, FR} and age 25..34.
        d.find_element(By.ID, "attr-country").click()
        cond = d.find_element(By.CSS_SELECTOR, '#tree .cond[data-column="country"]')
        for box in cond.find_elements(By.CSS_SELECTOR, "input[type=checkbox]"):
            label = box.find_element(By.XPATH, "..").text.strip()
            if box.is_selected() != (label in ("DE", "FR")):
                box.click()
        d.find_element(By.ID, "attr-age").click()
        age = d.find_element(By.CSS_SELECTOR, '#tree .cond[data-column="age"]')
        lo, hi = age.find_elements(By.CSS_SELECTOR, "input[type=number]")
        lo.send_keys("25")
        hi.send_keys("34")
        built = "country IN ('DE', 'FR') AND age BETWEEN 25 AND 34"
        wait.until(lambda _: where_text() == built)
        n = expect_count_of(built, "clicked segment")
        share = d.find_element(By.ID, "share").text
        assert share.endswith("%") and float(share[:-1]) > 0, share
        assert "µs" in d.find_element(By.ID, "server-time").text
        print(f"built by clicking: {built} -> {n}")
        shot("built-by-clicking")

        # 2. Edit the WHERE text: the tree follows (an OR group and a NOT group).
        edited = "(country = 'FR' OR tier = 'GOLD') AND NOT email_opt_in"
        box = d.find_element(By.ID, "where")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(edited)

        def tree_follows(_):
            groups = d.find_elements(By.CSS_SELECTOR, "#tree > .group > .group")
            if len(groups) != 2:
                return False
            or_group, not_group = groups
            cols = [c.get_attribute("data-column") for c in or_group.find_elements(By.CSS_SELECTOR, ".cond")]
            op = or_group.find_element(By.CSS_SELECTOR, ".group-head select").get_attribute("value")
            negated = [c.get_attribute("data-column") for c in not_group.find_elements(By.CSS_SELECTOR, ".cond")]
            return cols == ["country", "tier"] and op == "OR" and "not" in not_group.get_attribute("class") \
                and negated == ["email_opt_in"]

        wait.until(tree_follows)
        n = expect_count_of(edited, "edited text")
        print(f"tree follows the text: {edited} -> {n}")
        shot("text-edited")

        # 3. Save it; the list shows the saved count.
        d.find_element(By.ID, "save-id").send_keys("fr_or_gold")
        d.find_element(By.ID, "save-btn").click()
        row = '#saved tr[data-id="fr_or_gold"] td.count'
        wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, row))
        saved = int(api.ok("GET", "/v1/segments/fr_or_gold").get("count", "0"))
        assert fmt(saved) == n, (saved, n)
        wait.until(lambda _: d.find_element(By.CSS_SELECTOR, row).text == n)

        # 4. A customer written through the HTTP API enters it: the saved count follows.
        new = {"customerId": "99000001", "attributes": {
            "country": {"stringValue": "FR"}, "tier": {"stringValue": "BRONZE"}, "email_opt_in": {"boolValue": False}}}
        api.ok("POST", "/v1/customers:upsert", {"customers": [new]})
        after = int(api.ok("GET", "/v1/segments/fr_or_gold")["count"])
        assert after == saved + 1, (saved, after)
        try:
            wait.until(lambda _: d.find_element(By.CSS_SELECTOR, row).text == fmt(after))
        except Exception:
            raise AssertionError(f"saved count shows {d.find_element(By.CSS_SELECTOR, row).text}, API says {after}")
        print(f"saved fr_or_gold: {fmt(saved)} -> {fmt(after)} after an upsert")
        shot("saved-and-updated")
        if args.readme_shot:
            d.save_screenshot(args.readme_shot)

        # 5. Keyboard: Enter on a focused attribute adds its condition.
        d.execute_script("document.getElementById('attr-tier').focus()")
        d.switch_to.active_element.send_keys(Keys.ENTER)
        wait.until(lambda _: len(d.find_elements(By.CSS_SELECTOR, '#tree .cond[data-column="tier"]')) == 2)

        # 6. Text the tree cannot show is kept as written, with a note, and still counted.
        box = d.find_element(By.ID, "where")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        beyond = "in_segment('fr_or_gold') AND age < 30"
        box.send_keys(beyond)
        wait.until(lambda _: d.find_element(By.ID, "where-note").is_displayed())
        assert "in_segment" in d.find_element(By.ID, "where-note").text
        expect_count_of(beyond, "text beyond the tree")
        assert where_text() == beyond

        # 7. An error is shown next to the condition it names.
        box = d.find_element(By.ID, "where")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys("agee > 3 AND age < 30")
        bad = '#tree .cond.invalid[data-column="agee"] .error'
        wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, bad) and "unknown column 'agee'" in d.find_element(By.CSS_SELECTOR, bad).text)
        good = d.find_elements(By.CSS_SELECTOR, '#tree .cond.invalid[data-column="age"]')
        assert not good, "the error must sit on the condition it names only"
        status, err = api.call("POST", "/v1/segments:count", {"where": "agee > 3 AND age < 30"})
        assert status == 400 and err["code"] == "INVALID_ARGUMENT", (status, err)
        print(f"error shown on its condition: {d.find_element(By.CSS_SELECTOR, bad).text}")
        shot("error-on-condition")
        print("browser test passed")
    except Exception:
        shot("failure")
        print("segd's log (tail):\n" + open(os.path.join(tmp, "segd.log")).read()[-3000:], file=sys.stderr)
        raise
    finally:
        d.quit()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
