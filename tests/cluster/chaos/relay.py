#!/usr/bin/env python3
"""A TCP relay that delays traffic on command: the fault campaign's delay.

nftables can drop packets but not hold them, and this kernel has no netem, so
workers that are to suffer delay reach the coordinator through this relay,
which runs in the hub namespace:

  relay.py --to HOST:PORT --listen NAME=HOST:PORT [--listen ...]

Each --listen accepts connections for one worker and forwards them, both
ways, to --to. Commands on standard input, one per line:
  delay NAME MS   every chunk read from now on, either way, for NAME's
                  connections is held MS milliseconds (0 lifts it); order
                  is kept, so a chunk never overtakes an earlier one
Prints 'ready' once listening; exits when standard input closes, or with
--no-commands runs (without delay) until it is killed: a plain TCP proxy, as
a load balancer in front of a coordinator would be (tests/cluster)."""
import argparse, asyncio, sys, time


class Relay:
    def __init__(self, to):
        self.to_host, self.to_port = to
        self.delay = {}  # name -> seconds

    async def pump(self, name, reader, writer):
        """copies reader to writer, each chunk held for the delay in force when it was read"""
        queue = asyncio.Queue()

        async def read_side():
            try:
                while True:
                    data = await reader.read(65536)
                    await queue.put((time.monotonic() + self.delay.get(name, 0.0), data))
                    if not data:
                        return
            except (ConnectionError, OSError):
                await queue.put((0.0, b""))

        async def write_side():
            last = 0.0
            try:
                while True:
                    due, data = await queue.get()
                    due = max(due, last)  # in order: never before an earlier chunk
                    last = due
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(read_side(), write_side())

    def handler(self, name):
        async def serve(reader, writer):
            try:
                up_reader, up_writer = await asyncio.open_connection(self.to_host, self.to_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(self.pump(name, reader, up_writer), self.pump(name, up_reader, writer))
        return serve

    async def commands(self):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            parts = line.split()
            if len(parts) == 3 and parts[0] == "delay":
                self.delay[parts[1]] = int(parts[2]) / 1000.0
            else:
                print("relay: unknown command: %r" % line, file=sys.stderr, flush=True)


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--to", required=True, type=host_port)
    ap.add_argument("--listen", action="append", default=[], help="NAME=HOST:PORT")
    ap.add_argument("--no-commands", action="store_true", help="read no standard input; run until killed")
    a = ap.parse_args()
    relay = Relay(a.to)
    for spec in a.listen:
        name, _, addr = spec.partition("=")
        host, port = host_port(addr)
        await asyncio.start_server(relay.handler(name), host, port)
    print("ready", flush=True)
    if a.no_commands:
        await asyncio.Event().wait()
    await relay.commands()


if __name__ == "__main__":
    asyncio.run(main())
