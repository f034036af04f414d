"""Where the rules come from: an SSM parameter (re-read every few minutes), a file named by
KEFU_ROUTING_CONFIG, or the routing.yaml shipped beside the handler."""

from __future__ import annotations

import time
from pathlib import Path

from kefu.config import ConfigError, RulesSettings
from kefu.routing.rules import Rules, RulesError, load_rules_file, parse_rules

PARAMETER_MAX_AGE = 300


class RulesSource:
    def __init__(self, settings: RulesSettings, bundled: Path) -> None:
        self._settings = settings
        self._bundled = bundled
        self._rules: Rules | None = None
        self._text: str | None = None
        self._read_at = 0.0

    @property
    def base_dir(self) -> Path | None:
        """Where the rules' file assets are read from: beside the rules file (None from SSM)."""
        if self._settings.routing_parameter:
            return None
        return Path(self._settings.routing_config or str(self._bundled)).resolve().parent

    def load(self) -> Rules:
        """Validate at cold start: a bad rules file fails the container, naming the key."""
        try:
            return self()
        except RulesError as exc:
            raise ConfigError(f"routing rules: {exc}") from None

    def __call__(self) -> Rules:
        if self._settings.routing_parameter:
            return self._from_parameter(self._settings.routing_parameter)
        if self._rules is None:
            path = self._settings.routing_config or str(self._bundled)
            if not Path(path).is_file():
                raise ConfigError(f"KEFU_ROUTING_CONFIG: no rules file at {path}")
            self._rules = load_rules_file(path)
        return self._rules

    def _from_parameter(self, name: str) -> Rules:
        if self._rules is not None and time.monotonic() - self._read_at <= PARAMETER_MAX_AGE:
            return self._rules
        from aws_lambda_powertools.utilities.parameters import get_parameter

        text = str(get_parameter(name, max_age=PARAMETER_MAX_AGE))
        if self._rules is None or text != self._text:
            self._rules, self._text = parse_rules(text, source=name), text
        self._read_at = time.monotonic()
        return self._rules
