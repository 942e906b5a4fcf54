"""moto's server, with DynamoDB requests applied one at a time.

moto applies a TransactWriteItems by copying each table it touches, writing, and putting the
copies back when a condition fails. A write another request made in between is then lost (two
concurrent turns on one conversation lose one count). DynamoDB itself never loses it, so the
emulator serializes its DynamoDB requests, which are quick; the other services (SQS long polls
among them) stay concurrent.

Usage: python moto_server.py -H 127.0.0.1 -p 5055 (the arguments of moto_server).
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_ONE_AT_A_TIME = threading.RLock()
_call_action = DynamoHandler.call_action


def _serialized(self):
    with _ONE_AT_A_TIME:
        return _call_action(self)


DynamoHandler.call_action = _serialized

if __name__ == "__main__":
    sys.exit(main())
