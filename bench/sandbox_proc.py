"""The sandbox as a child process on a loopback port, and a small client for its control plane."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Child, Children, base_env, free_port, python_command, wait_http

API_KEY = "sandbox-key"


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    customers: int
    invoices_per_customer: int
    seed: int = 7
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_after_commit_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_rate: float = 0.0
    rate_limit: int = 0
    rate_limit_window: str = "fixed"
    careless: bool = False
    careless_answer_rate: float = 0.0

    def arguments(self) -> list[str]:
        return [
            "--customers",
            str(self.customers),
            "--invoices-per-customer",
            str(self.invoices_per_customer),
            "--seed",
            str(self.seed),
            "--latency-ms",
            str(self.latency_ms),
            "--latency-jitter-ms",
            str(self.latency_jitter_ms),
            "--error-rate",
            str(self.error_rate),
            "--timeout-after-commit-rate",
            str(self.timeout_after_commit_rate),
            "--hang-seconds",
            str(self.hang_seconds),
            "--drop-rate",
            str(self.drop_rate),
            "--rate-limit",
            str(self.rate_limit),
            "--rate-limit-window",
            self.rate_limit_window,
            "--api-key",
            API_KEY,
            *(
                ["--careless", "--careless-answer-rate", str(self.careless_answer_rate)]
                if self.careless
                else []
            ),
        ]


class SandboxControl:
    """`/_sandbox/*` of a running sandbox."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=600.0)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/_sandbox/health")
        return result

    def stats(self) -> dict[str, dict[str, int]]:
        """`{"GET /api/v1/invoices": {"200": n, "429": m}, ...}`"""
        requests: dict[str, dict[str, int]] = self._get("/_sandbox/stats")["requests"]
        return requests

    def reset_stats(self) -> None:
        self._post("/_sandbox/stats/reset")

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/_sandbox/faults", changes)
        return result

    def reset_data(self, **generator: int) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/_sandbox/reset", generator)
        return result

    def invoices(self, *, careless_view: bool = False) -> list[dict[str, Any]]:
        """Every invoice as it is (or, `careless_view`, as a careless Lago shows it)."""
        path = "/_sandbox/invoices" + ("?view=careless" if careless_view else "")
        result: list[dict[str, Any]] = self._get(path)["invoices"]
        return result

    def patch_invoice(self, lago_id: str, **changes: Any) -> None:
        self._post(f"/_sandbox/invoices/{lago_id}", changes)

    def invoice_payments(self) -> dict[str, Any]:
        """`retries` ({lago_id, at}) Lago took and `payment_urls` it made."""
        result: dict[str, Any] = self._get("/_sandbox/invoice_payments")
        return result

    def payment_requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/_sandbox/payment_requests")["payment_requests"]
        return result


def start_sandbox(
    children: Children, spec: SandboxSpec, *, log_dir: Path, name: str = "sandbox"
) -> tuple[Child, SandboxControl]:
    port = free_port()
    child = children.add(
        Child(
            name=name,
            command=python_command("-m", "sandbox", "--port", str(port), *spec.arguments()),
            env=base_env({}),
            log_path=log_dir / f"{name}.log",
        )
    )
    child.start()
    url = f"http://127.0.0.1:{port}"
    # Generating a large dataset takes a while before the port opens.
    wait_http(f"{url}/_sandbox/health", timeout=60 + spec.customers / 500, child=child)
    return child, SandboxControl(url)


def count_calls(stats: dict[str, dict[str, int]], *, status: str | None = None) -> int:
    """API calls in a stats snapshot, all of them or only those answered `status`."""
    return sum(
        count
        for by_status in stats.values()
        for code, count in by_status.items()
        if status is None or code == status
    )
