#!/usr/bin/env python3
"""The tutorial's Twisted poetry client (get-poetry, Parts 5-6), with the
exercise that makes a lost connection an error: a poem ends well only when
the server closes cleanly (ConnectionDone); any other loss (a reset) goes to
the errback. Prints one JSON line per address, in the order given.

    get_poetry.py [--timeout SECONDS] HOST:PORT...
"""
import argparse
import json

from twisted.internet import defer, error
from twisted.internet.protocol import ClientFactory, Protocol


class PoetryProtocol(Protocol):
    poem = b""

    def dataReceived(self, data):
        self.poem += data

    def connectionLost(self, reason):
        self.factory.poem_finished(self.poem, reason)


class PoetryClientFactory(ClientFactory):
    protocol = PoetryProtocol

    def __init__(self, deferred):
        self.deferred = deferred
        self.timed_out = False

    def time_out(self, connector):
        self.timed_out = True
        connector.disconnect()

    def poem_finished(self, poem, reason):
        if self.deferred is None:
            return
        d, self.deferred = self.deferred, None
        if self.timed_out:
            failure = error.TimeoutError("no end of the poem in time")
            failure.poem = poem
            d.errback(failure)
        elif reason.check(error.ConnectionDone):
            d.callback(poem)
        else:
            # Keep what arrived: a test wants to know how much came first.
            reason.value.poem = poem
            d.errback(reason)

    def clientConnectionFailed(self, connector, reason):
        if self.deferred is not None:
            d, self.deferred = self.deferred, None
            d.errback(reason)


def get_poetry(reactor, host, port, timeout):
    d = defer.Deferred()
    factory = PoetryClientFactory(d)
    connector = reactor.connectTCP(host, port, factory)
    # A server that stalls on purpose would hold the client for ever.
    timer = reactor.callLater(timeout, factory.time_out, connector)
    d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
    return d


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("addresses", nargs="+")
    args = parser.parse_args()

    from twisted.internet import reactor

    results = []

    def got_poem(poem):
        return {"result": "poem", "bytes": len(poem)}

    def poem_failed(failure):
        return {
            "result": "errback",
            "failure": failure.type.__name__,
            "bytes": len(getattr(failure.value, "poem", b"")),
        }

    ds = []
    for address in args.addresses:
        host, port = address.rsplit(":", 1)
        d = get_poetry(reactor, host, int(port), args.timeout)
        d.addCallbacks(got_poem, poem_failed)
        ds.append(d)
    done = defer.gatherResults(ds)
    done.addCallback(results.extend)
    done.addBoth(lambda _: reactor.stop())
    reactor.run()
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
