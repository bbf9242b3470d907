"""`python -m training.scan_cli`: max reward among N samples against N, per temperature (Llama 2, Figure 8)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from training.cli import add_config_arguments, add_policy_arguments, config_from_arguments
from training.temperature_scan import DEFAULT_TEMPERATURES, TemperatureScanConfig, run_temperature_scan


def temperatures(value: str) -> list[float]:
    """ "0.6,0.8,1.0" as [0.6, 0.8, 1.0]."""
    try:
        parsed = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from error
    if not parsed or any(t <= 0 for t in parsed):
        raise argparse.ArgumentTypeError("give one or more temperatures above 0")
    return parsed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.scan_cli",
        description="Scan sampling temperatures for rejection sampling: the best R_c among N samples against N.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_policy_arguments(p, policy_help="Policy directory to sample from.")
    p.add_argument(
        "--temperatures",
        type=temperatures,
        default=list(DEFAULT_TEMPERATURES),
        help="Comma-separated temperatures, e.g. 0.6,0.8,1.0,1.2,1.4.",
    )
    add_config_arguments(p, TemperatureScanConfig)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = config_from_arguments(TemperatureScanConfig, parser().parse_args(argv))
    with tqdm(desc="temperature scan", unit="temperature", total=len(config.temperatures)) as bar:

        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        try:
            result = run_temperature_scan(config, progress=progress)
        except ValueError as error:
            raise SystemExit(str(error)) from error
    print(json.dumps({"best_temperature": result["best_temperature"], "mean_reward": result["mean_reward"]}))
    return result


if __name__ == "__main__":
    main()
