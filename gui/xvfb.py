"""A private virtual X display (Xvfb) for the GUI tests and the screenshot script.

No Tk here: this only starts and stops the X server the app will connect to.
"""

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

SCREEN = "1366x768x24"  # the smallest common laptop screen: the window must fit it
SOCKET_DIR = Path("/tmp/.X11-unix")


class NoXvfb(RuntimeError):
    """No Xvfb binary on PATH, or none of the display numbers tried would start."""


def start(screen: str = SCREEN, first: int = 90, tries: int = 20, timeout: float = 5.0):
    """Start ``Xvfb :N -screen 0 <screen> -nolisten tcp`` on the first free N >= first.

    Returns (display, process), display like ":90". A number is free when it
    has neither a socket nor a lock file; if Xvfb still exits (a race with
    another server) the next number is tried. Raises NoXvfb."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise NoXvfb("Xvfb is not installed (apt-get install -y xvfb)")
    for n in range(first, first + tries):
        if (SOCKET_DIR / f"X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
            continue
        process = subprocess.Popen([binary, f":{n}", "-screen", "0", screen, "-nolisten", "tcp"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The socket appears once the server accepts connections.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if (SOCKET_DIR / f"X{n}").exists():
                return f":{n}", process
            time.sleep(0.02)
        stop(process)
    raise NoXvfb(f"could not start Xvfb on any display :{first}..:{first + tries - 1}")


def stop(process: subprocess.Popen) -> None:
    """Terminate the server we started (and only it)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def display(screen: str = SCREEN):
    """Within ``with``: DISPLAY points at a fresh Xvfb, restored afterwards."""
    name, process = start(screen)
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = name
    try:
        yield name
    finally:
        stop(process)
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
