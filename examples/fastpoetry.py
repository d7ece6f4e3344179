#!/usr/bin/env python3
"""The Fast Poetry Server of the Twisted tutorial, Part 11, as the tutorial
shows it (PoetryProtocol, PoetryFactory, main with listenTCP), adapted to
Python 3 so it runs with python3-twisted. fastpoetry.ts is its Deno twin.

    python3 examples/fastpoetry.py [--port N] [--iface HOST] POEM

The changes for Python 3: the poem is read as bytes (transport.write takes
bytes, not str); print is a function, flushed (stdout may be a pipe); the
Serving line shows HOST:PORT as the Deno server does, not the address
object's repr; parse_args, which the tutorial does not print, uses argparse.
"""
import argparse
import os

from twisted.internet.protocol import Protocol, ServerFactory


def parse_args():
    parser = argparse.ArgumentParser(description="The Fast Poetry Server, Twisted edition.")
    parser.add_argument("--port", type=int, default=0,
                        help="The port to listen on. Default: any free port.")
    parser.add_argument("--iface", default="localhost",
                        help="The interface to listen on. Default: localhost.")
    parser.add_argument("poetry_file", metavar="POEM")
    options = parser.parse_args()
    if not os.path.exists(options.poetry_file):
        parser.error("No such file: %s" % options.poetry_file)
    return options, options.poetry_file


class PoetryProtocol(Protocol):

    def connectionMade(self):
        self.transport.write(self.factory.poem)
        self.transport.loseConnection()


class PoetryFactory(ServerFactory):

    protocol = PoetryProtocol

    def __init__(self, poem):
        self.poem = poem


def main():
    options, poetry_file = parse_args()

    poem = open(poetry_file, "rb").read()

    factory = PoetryFactory(poem)

    from twisted.internet import reactor

    port = reactor.listenTCP(options.port or 0, factory,
                             interface=options.iface)

    address = port.getHost()
    host = "[%s]" % address.host if ":" in address.host else address.host
    print("Serving %s on %s:%d." % (poetry_file, host, address.port), flush=True)

    reactor.run()


if __name__ == "__main__":
    main()
