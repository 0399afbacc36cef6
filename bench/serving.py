"""The HTTP service under load, against the in-process reference (bench/probes.py serve).

The reference is the least work a prediction takes: the fitted pipeline's
`predict_proba` on a one-row DataFrame, in process. The service is started as
`make serve` starts it (`python -m src.serving.serve`, SERVING_WORKERS and
PIPELINE_THREADS from the environment) on a loopback port; then:

- 1 client:     single-row requests one after another (keep-alive): p50, p99;
- 8, 50 clients: that many connections sending single-row requests back to
                back for DURATION_S: requests/s, p50, p99 and errors (any
                answer but a 200, or a failed connection).

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (one
prepared request, Content-Length framing), so that the load generator costs
little of the two cores it shares with the service. Every answer's
probability is checked against the in-process prediction of the same row: the
service's bytes under load are the model's.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SINGLE_CALLS = 300
WARMUP = 30
DURATION_S = 10.0
CLIENTS = (8, 50)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_bytes(port: int, row: dict) -> bytes:
    body = json.dumps({"rows": [row]}).encode()
    return (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def client(
    port: int,
    requests: list[bytes],
    expected: list[float],
    until: float,
    latencies: list[float],
    errors: list[str],
    offset: int,
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as error:
        errors.append(f"connect: {error}")
        return
    index = offset
    try:
        while time.perf_counter() < until:
            pick = index % len(requests)
            started = time.perf_counter()
            status, body = await exchange(reader, writer, requests[pick])
            latencies.append(time.perf_counter() - started)
            index += 1
            if status != 200:
                errors.append(f"status {status}")
            elif json.loads(body)["predictions"][0]["probability"] != expected[pick]:
                errors.append(f"row {pick}: a probability other than the in-process one")
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        writer.close()


async def load(port: int, requests: list[bytes], expected: list[float], clients: int, duration: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    until = started + duration
    await asyncio.gather(*(client(port, requests, expected, until, latencies, errors, i * 7) for i in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
    }


def wait_for(port: int, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service did not answer /health within {timeout:.0f} s")


def reference_latencies(deployed, rows) -> list[float]:
    """The reference: predict_proba on one row, in process (the fitted pipeline's own floor)."""
    reference = []
    for index in range(WARMUP + len(rows)):
        one = rows.iloc[[index % len(rows)]]
        started = time.perf_counter()
        deployed.model.predict_proba(one)
        if index >= WARMUP:
            reference.append(time.perf_counter() - started)
    return reference


async def sequential(port: int, requests: list[bytes], expected: list[float]) -> tuple[list[float], int]:
    """One keep-alive client, one request after another: each call's latency, and the wrong or failed answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times, errors = [], 0
    for index in range(WARMUP + SINGLE_CALLS):
        pick = index % len(requests)
        started = time.perf_counter()
        status, body = await exchange(reader, writer, requests[pick])
        if index >= WARMUP:
            times.append(time.perf_counter() - started)
        errors += status != 200 or json.loads(body)["predictions"][0]["probability"] != expected[pick]
    writer.close()
    return times, errors


def serve(duration: float = DURATION_S) -> dict:
    from src.pipeline import config, files
    from src.serving import predict as api
    from src.serving import serve

    deployed = api.load_model()
    features = list(deployed.contract.features)
    frame = files.read_frame(config.TEST_FEATURES)
    picks = np.random.default_rng(0).integers(0, len(frame), size=200)
    rows = frame.iloc[picks][features]
    reference = reference_latencies(deployed, rows)
    result = deployed.predict(rows)
    binary = len(deployed.classes) == 2
    if not binary:
        raise RuntimeError("the serving probe checks the binary 'probability'; this model has more classes")
    expected = result.predictions["probability"].tolist()
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    port = free_port()
    requests = [request_bytes(port, row) for row in records]
    env = {**os.environ, "PYTHONPATH": str(config.ROOT)}
    # The service's log (an access line per request) goes to a file: a pipe nobody
    # reads fills after some thousand requests, and the service then blocks on it.
    log_file = tempfile.NamedTemporaryFile("w+", prefix="bench-serve-", suffix=".log", delete=False)  # noqa: SIM115
    log = Path(log_file.name)
    process = subprocess.Popen(
        [sys.executable, "-m", "src.serving.serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=config.ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(port, process, log)
        single, single_errors = asyncio.run(sequential(port, requests, expected))
        levels = [asyncio.run(load(port, requests, expected, clients, duration)) for clients in CLIENTS]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()
        log.unlink()
    return {
        "reference": "deployed.model.predict_proba(one-row DataFrame), in process",
        "reference_p50_ms": float(np.percentile(reference, 50) * 1000),
        "reference_p99_ms": float(np.percentile(reference, 99) * 1000),
        "single_p50_ms": float(np.percentile(single, 50) * 1000),
        "single_p99_ms": float(np.percentile(single, 99) * 1000),
        "single_calls": len(single),
        "single_errors": int(single_errors),
        "levels": levels,
        "workers": serve.workers(),
        "threads": config.threads(),
        "duration_s": duration,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))
    print(json.dumps(serve(float(sys.argv[1]) if len(sys.argv) > 1 else DURATION_S), indent=1))
