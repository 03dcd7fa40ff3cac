"""Headless Chromium for the browser tests, reached at 127.0.0.1 only. Selenium's own way (its
Service starting chromedriver, which starts Chromium) connects to both by the name "localhost",
which a minimal system without /etc/hosts cannot resolve ("unable to connect to renderer"). So
Chromium is started here with its DevTools on a free loopback port, and chromedriver, on
another, attaches to it at 127.0.0.1 (debuggerAddress)."""
import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

from selenium import webdriver


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv, what, ready, timeout):
    """Starts argv and waits until ready() returns a true value (returned), or fails."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: proc.poll() is None and proc.kill())
    end = time.time() + timeout
    while True:
        got = ready()
        if got:
            return proc, got
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %d" % (what, proc.returncode))
        if time.time() > end:
            proc.kill()
            raise RuntimeError("%s was not ready within %d s" % (what, timeout))
        time.sleep(0.1)


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _devtools_port(user_dir):
    try:
        with open(os.path.join(user_dir, "DevToolsActivePort")) as f:
            first = f.read().split()
        return int(first[0]) if first and _listening(int(first[0])) else None
    except (OSError, ValueError):
        return None


def chrome(options, driver="/usr/bin/chromedriver", timeout=60):
    """A WebDriver on a Chromium started with ChromeOptions `options` (its arguments, binary and
    capabilities); quit() ends the browser and chromedriver too."""
    args = list(options.arguments)
    user_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--user-data-dir=")), None)
    own_dir = user_dir is None
    if own_dir:
        user_dir = tempfile.mkdtemp(prefix="chrome-")
        args.append("--user-data-dir=" + user_dir)
    try:
        os.remove(os.path.join(user_dir, "DevToolsActivePort"))   # a previous browser's
    except OSError:
        pass
    binary = options.binary_location or "/usr/bin/chromium"
    browser, port = _start([binary] + args + ["--remote-debugging-address=127.0.0.1",
                                              "--remote-debugging-port=0", "about:blank"],
                           binary, lambda: _devtools_port(user_dir), timeout)
    dport = _free_port()
    drv, _ = _start([driver, "--port=%d" % dport], driver, lambda: _listening(dport), timeout)
    attach = webdriver.ChromeOptions()
    attach.debugger_address = "127.0.0.1:%d" % port
    for k, v in options.to_capabilities().items():
        if k.startswith("goog:") and k != "goog:chromeOptions":
            attach.set_capability(k, v)
    d = webdriver.Remote(command_executor="http://127.0.0.1:%d" % dport, options=attach)
    quit_session = d.quit

    def quit_all():
        try:
            quit_session()
        finally:
            for p in (browser, drv):
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            if own_dir:
                shutil.rmtree(user_dir, ignore_errors=True)
    d.quit = quit_all
    return d
