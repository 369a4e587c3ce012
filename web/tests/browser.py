#!/usr/bin/env python3
"""Drives Coffer's web page in a real Chromium (Debian's, through
Playwright) for cli/tests/web.rs, which starts the controllers, prepares
the inputs and checks every result against the clusters.

    browser.py CONFIG.json

CONFIG names the page's URL, the Secrets to seal, the files to add and
where to write. The script does what a user does (types, clicks, uploads)
and writes RESULTS.json: each output the page gave, every request the page
made (URL, method, headers, body), the policy header, whether an injected
inline script ran, and timings. It judges nothing about the clusters; the
Rust test does. It never prints a value.
"""

import json
import sys
import time

from playwright.sync_api import sync_playwright

# What this machine's closed network needs (no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def clear_output(page):
    # The output is read-only to the user.
    page.evaluate("document.getElementById('output').value = ''")


def main():
    cfg = json.load(open(sys.argv[1]))
    results = {"requests": [], "console": [], "outputs": {}, "timings": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=cfg["chromium"], args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 1400})
        page = context.new_page()

        def on_request(r):
            results["requests"].append({
                "url": r.url,
                "method": r.method,
                "headers": r.all_headers(),
                "body": r.post_data,
            })

        page.on("request", on_request)
        page.on("console", lambda m: results["console"].append(f"{m.type}: {m.text}"))

        try:
            drive(cfg, page, results)
        except Exception:
            # What the page showed, for the failure's message: its status
            # lines and console (the page never logs a value).
            page.screenshot(path=f"{cfg['shots']}/failure.png", full_page=True)
            for sel in ["#loading", "#controller-status", "#recipients-error", "#seal-error"]:
                print(f"{sel}: {page.inner_text(sel)!r}", file=sys.stderr)
            print("console:", *results["console"], sep="\n  ", file=sys.stderr)
            raise
        context.close()
        browser.close()
    json.dump(results, open(cfg["results"], "w"), indent=1)


def drive(cfg, page, results):
    """What a user does, step by step; results go into `results`."""
    started = time.perf_counter()
    response = page.goto(cfg["url"] + "/ui/")
    results["page_headers"] = response.all_headers()
    # Functions, not expression strings: Playwright evaluates a string
    # with eval(), which the page's policy refuses ('unsafe-eval').
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("() => document.getElementById('controller-status').textContent.startsWith('Loaded')")
    results["timings"]["load_ms"] = (time.perf_counter() - started) * 1000
    results["controller_status"] = page.inner_text("#controller-status")
    page.screenshot(path=f"{cfg['shots']}/start.png", full_page=True)

    # 1. The form, sealed to this controller's keys, keyboard only.
    page.focus("#secret-name")
    page.keyboard.type(cfg["form"]["name"])
    page.keyboard.press("Tab")
    page.keyboard.type(cfg["form"]["namespace"])
    items = list(cfg["form"]["items"].items())
    for i, (key, value) in enumerate(items):
        if i > 0:
            page.click("#item-add")
        row = page.locator(".item").nth(i)
        row.locator(".item-key").fill(key)
        row.locator(".item-value").fill(value)
    page.click("#seal")
    page.wait_for_function("() => document.getElementById('output').value.length > 0")
    results["outputs"]["form"] = page.input_value("#output")
    results["notes"] = page.inner_text("#seal-notes")
    page.screenshot(path=f"{cfg['shots']}/seal.png", full_page=True)

    # 2. An item added to an existing SealedSecret (made by the CLI).
    page.check("input[name=mode][value=paste]")
    page.fill("#secret-text", cfg["merge"]["secret"])
    page.click("#merge summary")
    page.set_input_files("#merge-file", cfg["merge"]["existing"])
    page.wait_for_function("() => document.getElementById('merge-text').value.length > 0")
    clear_output(page)
    page.click("#seal")
    page.wait_for_function("() => document.getElementById('output').value.length > 0")
    results["outputs"]["merge"] = page.input_value("#output")
    results["merge_error"] = page.inner_text("#seal-error")
    page.screenshot(path=f"{cfg['shots']}/merge.png", full_page=True)
    page.fill("#merge-text", "")

    # 3. Two more clusters: recipients files uploaded beside this
    # controller's keys, as `-r a.txt -r b.txt`.
    page.set_input_files("#recipients-file", cfg["two"]["recipients"])
    page.wait_for_function(f"() => document.querySelectorAll('#recipients-list li').length === {1 + len(cfg['two']['recipients'])}")
    page.fill("#secret-text", cfg["two"]["secret"])
    clear_output(page)
    page.click("#seal")
    page.wait_for_function("() => document.getElementById('output').value.length > 0")
    results["outputs"]["two"] = page.input_value("#output")

    # 4. Inspect what was just sealed.
    page.fill("#inspect-text", results["outputs"]["two"])
    page.click("#inspect")
    page.wait_for_selector("#inspect-result table")
    results["inspect"] = page.inner_text("#inspect-result")
    page.screenshot(path=f"{cfg['shots']}/inspect.png", full_page=True)

    # 5. A refused input: the error is shown, and holds no value.
    page.fill("#secret-text", cfg["bad"]["secret"])
    page.click("#seal")
    page.wait_for_function("() => document.getElementById('seal-error').textContent.length > 0")
    results["bad_error"] = page.inner_text("#seal-error")

    # 6. Time to seal a 10-item Secret, through the same module the page
    # loaded (the same URL is the same module instance).
    results["timings"]["seal_ms"] = page.evaluate(
        """async (req) => {
            const m = await import('./coffer_web.js');
            const times = [];
            for (let i = 0; i < 25; i++) {
                const t = performance.now();
                m.seal(JSON.stringify(req));
                times.push(performance.now() - t);
            }
            times.sort((a, b) => a - b);
            return times;
        }""",
        cfg["timing"],
    )

    # 7. An inline script injected into the page must not run.
    results["inline_script"] = page.evaluate(
        """() => new Promise((resolve) => {
            const seen = [];
            document.addEventListener('securitypolicyviolation',
                (e) => seen.push(e.violatedDirective));
            const s = document.createElement('script');
            s.textContent = 'window.__coffer_injected = true;';
            document.body.append(s);
            setTimeout(() => resolve({ran: window.__coffer_injected === true, violations: seen}), 300);
        })"""
    )


if __name__ == "__main__":
    main()
