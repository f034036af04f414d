"""The facade: ``WeComSimulator`` puts the state, endpoints, server, driver and callbacks together."""

from __future__ import annotations

import argparse
import threading
import time
from collections import deque
from typing import Any

import httpx

from local.wecom_sim.driver import CustomerDriver
from local.wecom_sim.management import ManagementEndpoints
from local.wecom_sim.server import HttpFrontEnd, _Handler, _Server
from local.wecom_sim.state import CONFIGURABLE, _Fault, _normalize_path


class WeComSimulator(HttpFrontEnd, ManagementEndpoints, CustomerDriver):
    """The simulated corp: one lock guards all state; HTTP threads and Python callers share it."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Serve in a daemon thread and return the base URL (clients append ``/cgi-bin/...``)."""
        if self._server is not None:
            return self.base_url
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        self._server = server
        self._http = httpx.Client(timeout=self.callback_timeout)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wecom-sim", daemon=True
        )
        self._thread.start()
        self.base_url = f"http://{self.host}:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> WeComSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clock and switches

    def advance(self, seconds: float) -> float:
        """Move the simulator's clock forward (or back) and return the new time."""
        with self._lock:
            self._offset += float(seconds)
            return self.now()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set behaviour switches: page_cap, empty_page_every, tokenless_limit_per_minute,
        ip_blocked, egress_ip, auto_callback, callback_loss (the probability, 0..1, that an
        automatic callback is lost, see lose_callbacks) and seed (reseeds the draws of the random
        knobs, so a chaos run loses the same callbacks each time; None: unpredictable)."""
        unknown = set(settings) - CONFIGURABLE
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        every = settings.get("empty_page_every")
        if every is not None and every < 2:
            raise ValueError("empty_page_every must be at least 2 (or None)")
        if "callback_loss" in settings:
            loss = settings["callback_loss"]
            if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not 0 <= loss <= 1:
                raise ValueError("callback_loss must be a number from 0 to 1")
            settings["callback_loss"] = float(loss)
        if "seed" in settings and settings["seed"] is not None and (
            isinstance(settings["seed"], bool) or not isinstance(settings["seed"], int)
        ):
            raise ValueError("seed must be an integer (or None)")
        with self._lock:
            for name, value in settings.items():
                setattr(self, name, value)
            if "seed" in settings:
                self._rng.seed(settings["seed"])
            return {name: getattr(self, name) for name in sorted(CONFIGURABLE)}

    def expire_all_tokens(self) -> None:
        with self._lock:
            now = self.now()
            for token in self._tokens:
                self._tokens[token] = min(self._tokens[token], now)

    def inject_fault(
        self,
        path: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay: float | None = None,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Make the next ``times`` calls to ``path`` (e.g. "kf/sync_msg") fail or stall, once
        ``after`` calls have gone through untouched."""
        if errcode is None and http_status is None and delay is None:
            raise ValueError("give errcode, http_status or delay")
        if times < 1 or after < 0:
            raise ValueError("times must be at least 1 and after at least 0")
        with self._lock:
            fault = _Fault(errcode, http_status, delay, times, after)
            self._faults.setdefault(_normalize_path(path), deque()).append(fault)

    def clear_faults(self) -> None:
        """Lift every injected fault: the pending API faults and the callbacks lose_callbacks would
        still lose (the ``callback_loss`` probability is a setting: configure it back to 0)."""
        with self._lock:
            self._faults.clear()
            self._callback_losses.clear()

    def pending_faults(self, path: str) -> int:
        """How many calls to ``path`` the injected faults will still answer."""
        with self._lock:
            return sum(f.remaining for f in self._faults.get(_normalize_path(path), ()))

    def set_callback_url(self, url: str | None) -> None:
        with self._lock:
            self.callback_url = url or None


def main(argv: list[str] | None = None) -> None:
    """Run a standalone simulator with one demo account and two servicers until interrupted."""
    parser = argparse.ArgumentParser(description="WeCom kf API simulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--callback-url", default=None)
    args = parser.parse_args(argv)
    sim = WeComSimulator(port=args.port)
    base_url = sim.start()
    open_kfid = sim.add_account(name="Kefu Demo")
    for userid in ("alice", "bob"):
        sim.add_servicer(open_kfid, userid)
    sim.set_callback_url(args.callback_url)
    print(f"wecom simulator ready: {base_url} open_kfid={open_kfid}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
