"""Connect stdin/stdout to a TCP address (qemu `guestfwd=...-cmd:` runs one per connection).

Usage: tcp_bridge.py HOST PORT. Lets one guest reach another guest's forwarded ssh port.
"""

from __future__ import annotations

import os
import select
import socket
import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection((host, port))
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    open_in = True
    while True:
        readable, _, _ = select.select([sock, stdin] if open_in else [sock], [], [])
        if sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            os.write(stdout, data)
        if open_in and stdin in readable:
            data = os.read(stdin, 65536)
            if data:
                sock.sendall(data)
            else:
                open_in = False
                sock.shutdown(socket.SHUT_WR)


if __name__ == "__main__":
    main()
