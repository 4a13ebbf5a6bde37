"""The keyhole client: what a running job calls to get its ports forwarded (DESIGN.md §2 step 4).

Python standard library only, because compute nodes have nothing else: `keyhole_block`
embeds this very file into the batch script. It is also imported, so that keyhole-api
verifies with the same canonical signing function the client signs with.

As a script: `python3 keyhole_client.py --job-id ID --count N --server URL...` with the
job token on stdin (and, on a second line, the session secret if the job has one). It
prints `export KEYHOLE_PORT<I>=...` lines (and `export BWVISU_SESSION_SECRET=...`) for the
script to eval, or a message on stderr and exits non-zero.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shlex
import sys
import time
import urllib.parse

SIGNATURE_HEADER = "X-Bwvisu-Signature"
TIMESTAMP_HEADER = "X-Bwvisu-Timestamp"
PATH_TEMPLATE = "/v1/jobs/{job_id}/ports"
# 4xx answers a retry cannot change; everything else (5xx, 408, 429, no answer) is transient.
PERMANENT = frozenset({400, 401, 403, 404, 405, 409, 413, 422})
CONNECT_TIMEOUT = 5.0  # seconds


SESSION_SECRET_VAR = "BWVISU_SESSION_SECRET"
_PLAIN = re.compile(r"[A-Za-z0-9_.~+/=-]+")

# No cluster has more nodes in one range; a larger one is a mistake or an attack.
MAX_RANGE = 100_000


class KeyholeError(Exception):
    """The request failed for good; the message says why."""


def expand_hostlist(spec: str) -> list[str]:
    """Slurm's hostlist syntax: `cn[0-3,7],gpu[01-02]` -> cn0 cn1 cn2 cn3 cn7 gpu01 gpu02."""
    hosts: list[str] = []
    for item in _split_top_level(spec.strip()):
        hosts.extend(_expand_item(item))
    return hosts


def _split_top_level(spec: str) -> list[str]:
    items, depth, current = [], 0, ""
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in hostlist {spec!r}")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise ValueError(f"unbalanced '[' in hostlist {spec!r}")
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def _expand_item(item: str) -> list[str]:
    match = re.search(r"\[([^\[\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end() :]
    out: list[str] = []
    for value in _expand_range_list(match.group(1), item):
        out.extend(_expand_item(head + value + tail))  # a name may hold several brackets
    return out


def _expand_range_list(ranges: str, item: str) -> list[str]:
    values: list[str] = []
    for part in ranges.split(","):
        part = part.strip()
        if not re.fullmatch(r"\d+(-\d+)?", part):
            raise ValueError(f"bad range {part!r} in hostlist item {item!r}")
        lo, _, hi = part.partition("-")
        hi = hi or lo
        if int(hi) < int(lo):
            raise ValueError(f"descending range {part!r} in hostlist item {item!r}")
        if int(hi) - int(lo) >= MAX_RANGE:
            raise ValueError(f"range {part!r} in hostlist item {item!r} names too many hosts")
        width = len(lo)  # zero padding follows the lower bound, as in Slurm
        values.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return values


def canonical(method: str, path: str, timestamp: str, body: bytes) -> bytes:
    """The exact bytes signed: method, path, timestamp and body, one per line."""
    return b"\n".join([method.upper().encode(), path.encode(), timestamp.encode(), body])


def sign(token: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of the canonical request with the job token, hex."""
    return hmac.new(token, canonical(method, path, timestamp, body), hashlib.sha256).hexdigest()


def job_nodes(nodelist: str, first: str, suffix: str) -> list[str]:
    """The job's nodes with the forwarding suffix, the node running the script first."""
    nodes = expand_hostlist(nodelist)
    if first in nodes:
        nodes.remove(first)
        nodes.insert(0, first)
    return [n + suffix for n in nodes]


def request_body(count: int, nodes: list[str]) -> bytes:
    nonce = os.urandom(16).hex()  # every attempt signs different bytes: replays are detectable
    return json.dumps({"count": count, "nodes": nodes, "nonce": nonce}, sort_keys=True).encode()


def post_once(server: str, job_id: str, token: bytes, count: int, nodes: list[str],
              timeout: float) -> dict[str, object]:
    """One signed POST; returns the answer, raises KeyholeError (permanent) or OSError (transient)."""
    path = PATH_TEMPLATE.format(job_id=job_id)
    body = request_body(count, nodes)
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(token, "POST", path, timestamp, body)}
    try:
        status, data = _post(server.rstrip("/") + path, body, headers, timeout)
    except (http.client.HTTPException, ValueError) as exc:
        # The answer was lost on the way (cut short, garbled): the grant may stand, and
        # keyhole-api answers a retry with the same ports.
        raise OSError(f"{server}: the answer was lost ({type(exc).__name__})") from None
    if status in PERMANENT:
        raise KeyholeError(f"{server} refused the request ({status}): {_detail(data)}")
    if status != 200:
        raise OSError(f"{server} answered {status}: {_detail(data)}")
    try:
        return dict(json.loads(data))
    except (ValueError, TypeError) as exc:
        raise OSError(f"{server}: the answer was lost ({type(exc).__name__})") from None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST and read the answer: the connection gets CONNECT_TIMEOUT (a server whose link is down
    drops the SYN; the next server is asked soon, and a late connection never reaches a server that
    just came back with an old view), the answer up to `timeout`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"{url}: not an http(s) URL")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=min(CONNECT_TIMEOUT, timeout))
    try:
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _detail(data: bytes) -> str:
    try:
        answer = json.loads(data)
        return str(answer.get("detail", answer)) if isinstance(answer, dict) else str(answer)
    except ValueError:
        return "no details"


def request_ports(servers: list[str], job_id: str, token: bytes, count: int, nodes: list[str],
                  deadline: float, log=sys.stderr) -> dict[str, object]:
    """Ask the servers in turn, retrying transient failures with backoff until `deadline`."""
    delay, attempt, last = 0.5, 0, "no server configured"
    while servers:
        server = servers[attempt % len(servers)]
        attempt += 1
        try:
            return post_once(server, job_id, token, count, nodes,
                             timeout=max(1.0, min(60.0, deadline - time.monotonic())))
        except OSError as exc:
            last = f"{server}: {exc}"
        if time.monotonic() + delay > deadline:
            break
        if attempt % len(servers) == 0:  # a full round failed: back off before the next
            print(f"keyhole: {last}; retrying in {delay:.1f} s", file=log)
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 8.0)
    raise KeyholeError(f"no keyhole server granted the ports in time (last: {last})")


def exports(answer: dict[str, object], session_secret: str = "") -> list[str]:
    """`export KEYHOLE_PORT<I>=...` lines for the forwards in keyhole-api's answer.

    The session secret comes last, so that the job only gets it with its ports."""
    lines = []
    forwards = answer.get("forwards")
    if not isinstance(forwards, list):
        raise KeyholeError(f"keyhole answered without forwards: {answer!r}")
    for i, fwd in enumerate(forwards):
        values = {f"KEYHOLE_PORT{i}": int(fwd["internal-port"]),
                  f"KEYHOLE_GATEWAY{i}": str(fwd["external-ip"]),
                  f"KEYHOLE_EXTERNAL_PORT{i}": int(fwd["external-port"])}
        lines.append("export " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in values.items()))
    if session_secret:
        if not _PLAIN.fullmatch(session_secret):
            raise KeyholeError("the session secret on stdin is not plain printable characters")
        lines.append(f"export {SESSION_SECRET_VAR}={shlex.quote(session_secret)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keyhole", description=__doc__.splitlines()[0])
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--server", action="append", default=[], dest="servers")
    parser.add_argument("--hostname-suffix", default="")
    parser.add_argument("--max-wait", type=float, default=180.0)
    args = parser.parse_args(argv)
    token = sys.stdin.readline().strip().encode()
    session_secret = sys.stdin.readline().strip()
    try:
        if not token:
            raise KeyholeError("no job token on stdin")
        nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
        if not nodelist:
            raise KeyholeError("SLURM_JOB_NODELIST is not set: not inside a Slurm job")
        nodes = job_nodes(nodelist, os.environ.get("SLURMD_NODENAME", ""), args.hostname_suffix)
        answer = request_ports(args.servers, args.job_id, token, args.count, nodes,
                               time.monotonic() + args.max_wait)
        lines = exports(answer, session_secret)
    except (KeyholeError, ValueError) as exc:
        print(f"keyhole: could not get {args.count} forwarded port(s): {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
