#!/usr/bin/env python3
"""Opens a `clr report` page in headless Chromium (Debian's chromium) and checks that it
renders: every figure is an SVG with drawn content and a visible size, the accuracy
matrix is there as a heatmap, the page asks for nothing over the network, no console
message or script error appears, and its width fits a laptop screen. Talks to the
browser through the DevTools protocol over a pipe (--remote-debugging-pipe: JSON
messages ending in a NUL byte on file descriptors 3 and 4), so it needs nothing but
Python. Writes a screenshot beside the page (report.png).

  check_report.py REPORT.html [--chromium chromium] [--width 1366 --height 768]
Exit 0 when every check holds, 1 otherwise (each failure printed)."""
import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, width, height):
        self.profile = tempfile.mkdtemp(prefix="clr-chromium-")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # The browser reads commands on fd 3 and writes replies to fd 4: bash moves the
        # pipes there before it becomes chromium.
        # (Moved above 9 first, so that the shell's redirections never close what they set.)
        r, w = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', chromium,
             "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(r, w), stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.profile, "stderr.txt"), "w"))
        os.close(r)
        os.close(w)
        self.next_id = 0
        self.buffer = b""
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        return self.wait_for(lambda m: m.get("id") == self.next_id)

    def read_message(self, timeout):
        deadline = time.time() + timeout
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_for(self, match, timeout=60):
        while True:
            m = self.read_message(timeout)
            if match(m):
                if "error" in m:
                    raise RuntimeError(f"DevTools error: {m['error']}")
                return m
            self.events.append(m)

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if os.environ.get("CLR_KEEP_PROFILE"):
            print("profile:", self.profile)
        else:
            shutil.rmtree(self.profile, ignore_errors=True)


CHECK = """(() => {
  const figures = [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg');
    if (!svg) return {caption: f.innerText.slice(0, 60), svg: false};
    const box = svg.getBoundingClientRect();
    // Text drawn outside its SVG is cut off by it.
    const clipped = [...svg.querySelectorAll('text')].filter(t => {
      const r = t.getBoundingClientRect();
      return r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 ||
                             r.bottom > box.bottom + 1);
    }).map(t => t.textContent.slice(0, 40));
    return {caption: (f.querySelector('figcaption') || f).innerText.slice(0, 60), svg: true, clipped,
            width: box.width, height: box.height, shapes: svg.querySelectorAll('rect,path,line,circle,polyline,text').length,
            rects: svg.querySelectorAll('rect').length};
  });
  return JSON.stringify({figures, scrollWidth: document.documentElement.scrollWidth,
                         innerWidth: window.innerWidth, title: document.title,
                         resources: performance.getEntriesByType('resource').map(r => r.name)});
})()"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page")
    ap.add_argument("--chromium", default=next((c for c in ("/usr/lib/chromium/chromium", shutil.which("chromium"))
                                                if c and os.path.exists(c)), "chromium"))
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--min-figures", type=int, default=1)
    ap.add_argument("--heatmap", default="accuracy matrix",
                    help="words of the caption of the heatmap the page must show (a run: its accuracy matrix)")
    a = ap.parse_args()
    page = os.path.abspath(a.page)
    failures = []
    b = Browser(a.chromium, a.width, a.height)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["result"]["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["result"]["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable", session=session)
        b.send("Emulation.setDeviceMetricsOverride",
               {"width": a.width, "height": a.height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        b.send("Page.navigate", {"url": "file://" + page}, session=session)
        b.wait_for(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)
        time.sleep(0.5)  # late console messages
        result = b.send("Runtime.evaluate", {"expression": CHECK, "returnByValue": True}, session=session)
        info = json.loads(result["result"]["result"]["value"])
        shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        png = os.path.join(os.path.dirname(page), "report.png")
        with open(png, "wb") as f:
            f.write(base64.b64decode(shot["result"]["data"]))
        b.send("Runtime.evaluate", {"expression": "0"}, session=session)  # drain events
    finally:
        b.close()

    for e in b.events:
        method = e.get("method", "")
        if method == "Runtime.exceptionThrown":
            failures.append(f"script error: {e['params']['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled":
            failures.append(f"console {e['params']['type']}: {e['params']['args']}")
        elif method == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"):
            failures.append(f"log {e['params']['entry']['level']}: {e['params']['entry']['text']}")
        elif method == "Network.requestWillBeSent":
            url = e["params"]["request"]["url"]
            if not url.startswith(("file://", "data:", "about:")):
                failures.append(f"the page asks the network for {url}")
    figures = info["figures"]
    if len(figures) < a.min_figures:
        failures.append(f"{len(figures)} figures, expected at least {a.min_figures}")
    for f in figures:
        if not f["svg"]:
            failures.append(f"figure '{f['caption']}' has no SVG")
        elif f["width"] < 100 or f["height"] < 60 or f["shapes"] < 5:
            failures.append(f"figure '{f['caption']}' did not render: {f}")
        elif f["clipped"]:
            failures.append(f"figure '{f['caption']}' cuts off its text: {f['clipped']}")
    if not any(a.heatmap in f["caption"].lower() and f.get("rects", 0) >= 4 for f in figures):
        failures.append(f"no heatmap (a figure captioned '{a.heatmap}' with cells)")
    if info["scrollWidth"] > a.width:
        failures.append(f"the page is {info['scrollWidth']} px wide, more than a {a.width} px screen")
    size = os.path.getsize(png)
    if size < 10000:
        failures.append(f"the screenshot is nearly empty ({size} bytes)")
    print(json.dumps({"page": page, "figures": len(figures), "screenshot": png, "screenshot_bytes": size,
                      "scroll_width": info["scrollWidth"], "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
