"""``metalcast-trainer``: the trainer's entry point (settings from the environment)."""

from __future__ import annotations

from metalcast_trainer.cli import make_app
from metalcast_trainer.config import TrainerSettings

app = make_app(TrainerSettings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
