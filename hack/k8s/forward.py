"""Forward TCP connections from the host's loopback into a network namespace.

The real node's cluster runs inside a network namespace that the harness creates (no route
leaves it). Tests, the demo and kubectl on the host reach a port inside it through this
forwarder: it binds its listening socket on the host's 127.0.0.1 first, then enters the
namespace, so every connection it opens from then on starts inside it. Traffic never touches
an interface of the host other than loopback.

    python3 forward.py --netns /run/netns/NAME --to 127.0.0.1:6443 --port-file api.port

Writes the host port it listens on to --port-file once it accepts connections. Needs the
privilege to enter the namespace (root). Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
from pathlib import Path

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def enter_netns(path: str) -> None:
    """Move this (still single-threaded) process into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}): {os.strerror(error)}")
    finally:
        os.close(fd)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listener: socket.socket, host: str, port: int, port_file: Path) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))

    server = await asyncio.start_server(handle, sock=listener)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(f"{listener.getsockname()[1]}\n")
    tmp.rename(port_file)
    async with server:
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--netns", required=True, help="network namespace file, e.g. /run/netns/NAME")
    parser.add_argument("--to", required=True, help="HOST:PORT inside the namespace")
    parser.add_argument(
        "--listen-port", type=int, default=0, help="port on the host's 127.0.0.1 (0: any free)"
    )
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the port listened on")
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.listen_port))  # bound in the host's namespace, before setns
    listener.listen(128)
    enter_netns(args.netns)
    asyncio.run(serve(listener, host, int(port), args.port_file))


if __name__ == "__main__":
    main()
