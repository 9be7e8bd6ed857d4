"""moto server (AWS stand-in) in a process of its own, quiet: no access-log line per AWS call."""

from __future__ import annotations

import argparse
import logging
import time

from moto.server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
