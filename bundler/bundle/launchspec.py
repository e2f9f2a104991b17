"""etc/conf.d/NAME.launch.json: the arguments and environment of a service that supervisor's
config syntax cannot carry (render.py writes it beside the service's .ini; bundler.launch reads
it as the service starts).

bundler.launch runs before every such service starts: this module imports record.py and json
only, and LaunchSpec is a plain class (`dataclasses` would double what the launcher imports)."""

from __future__ import annotations

import json

from bundler.bundle.record import Record


def file_name(service: str) -> str:
    """The spec's name in etc/conf.d/, beside the service's .ini."""
    return f"{service}.launch.json"


class LaunchSpec(Record):
    """The arguments the program gets, and the variables added to supervisord's environment."""

    def __init__(self, args: tuple[str, ...], environment: dict[str, str]):
        self.args = args
        self.environment = environment

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LaunchSpec) and \
            (self.args, self.environment) == (other.args, other.environment)

    def __repr__(self) -> str:
        return f"LaunchSpec({self.args!r}, {self.environment!r})"

    @classmethod
    def parse(cls, text: str) -> LaunchSpec:
        raw = json.loads(text)
        args = raw.get("args") if isinstance(raw, dict) else None
        environment = raw.get("environment") if isinstance(raw, dict) else None
        if not (isinstance(args, list) and all(isinstance(a, str) for a in args)
                and isinstance(environment, dict)
                and all(isinstance(v, str) for v in environment.values())):
            raise ValueError('not {"args": [strings], "environment": {name: string}}')
        return cls(tuple(args), environment)

    def text(self) -> str:
        return json.dumps({"args": list(self.args), "environment": self.environment}, indent=2,
                          ensure_ascii=False) + "\n"
