#!/usr/bin/python3
"""TCP forwarder between network namespaces, for the sandbox's extra fleet hosts (stdlib only).

Each extra host of `sandbox/ctl up --hosts N` lives in its own network namespace, where its sshd,
backend, proxy... bind 127.0.0.1 exactly as on host 1. This program carries:
  - into the host: 127.0.0.N:2222 (ssh), :8080 (proxy), :8000 (backend) of the machine's own
    namespace to 127.0.0.1 of the host's namespace;
  - out of the host: the shared registry (127.0.0.1:5000), the shared database (host 1's
    PostgreSQL, 127.0.0.1:5433) and the sink, from inside the host's namespace to the machine's.

    nsforward.py --name TAG --map LISTEN=CONNECT [--map ...]
    LISTEN / CONNECT: [NETNS_FILE@]ADDR:PORT, NETNS_FILE e.g. /run/netns/ai-doc-qa-host2; no
    NETNS_FILE = this process's own namespace.

A socket belongs to the namespace it was created in, whatever the thread does later: so each
socket is created after setns(2) into its namespace (per thread; Python 3.11 has no os.setns,
hence ctypes) and the thread switches back at once. Plain threads: a handful of connections.
"""
import argparse
import ctypes
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(netns: str) -> socket.socket:
    """A new TCP socket of the namespace ``netns`` (a file such as /run/netns/NAME; '' = own)."""
    if not netns:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        setns(target)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            setns(own)
    finally:
        os.close(own)
        os.close(target)


def endpoint(text: str) -> tuple[str, str, int]:
    netns, _, hostport = text.rpartition("@")
    host, _, port = hostport.rpartition(":")
    return netns, host, int(port)


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close: the other direction may still be sending (ssh ends this way).
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(client: socket.socket, target: tuple[str, str, int]) -> None:
    netns, host, port = target
    upstream = socket_in(netns)
    try:
        upstream.connect((host, port))
    except OSError:
        # Refused inside, refused outside: the client sees the same as without a forwarder.
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def listen(spec: str) -> tuple[socket.socket, tuple[str, str, int]]:
    left, _, right = spec.partition("=")
    netns, host, port = endpoint(left)
    s = socket_in(netns)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    return s, endpoint(right)


def accept_loop(s: socket.socket, target: tuple[str, str, int]) -> None:
    while True:
        client, _ = s.accept()
        threading.Thread(target=serve, args=(client, target), daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="a tag for ps (the sandbox root and host number)")
    ap.add_argument("--map", action="append", required=True, metavar="LISTEN=CONNECT")
    args = ap.parse_args()
    # Every listener is bound before the first accept: a port in use fails the start, not later.
    listeners = [listen(spec) for spec in args.map]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for s, target in listeners:
        threading.Thread(target=accept_loop, args=(s, target), daemon=True).start()
    print(f"nsforward {args.name}: " + "; ".join(args.map), flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
