"""A controllable long-lived TCP session, run inside a lab node.

    python -m tests.integration.session_client HOST PORT WANT

connects until the server named WANT answers (the fabric's hash decides), prints
``connected WANT``, then obeys stdin: ``ping`` sends a line and prints the answer (or
``broken: <error>``), ``close`` closes the session and exits.
"""

from __future__ import annotations

import socket
import sys


def main() -> int:
    host, port, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(2)
        sock.connect((host, port))
        stream = sock.makefile("rwb", buffering=0)
        if stream.readline().decode().strip() == want:
            break
        stream.close()
        sock.close()
    else:
        print(f"never reached {want}", flush=True)
        return 1
    print(f"connected {want}", flush=True)
    for command in sys.stdin:
        if command.strip() == "close":
            # The file object holds the descriptor too: close both or nothing closes.
            stream.close()
            sock.close()
            print("closed", flush=True)
            return 0
        try:
            stream.write(b"ping\n")
            answer = stream.readline().decode().strip()
            print(answer if answer else "broken: closed", flush=True)
        except OSError as error:
            print(f"broken: {error}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
