"""An upload process: sendjobs' uploads on another core (see procs.py for the other side).

    python -c 'from filejobs.send.uploader import serve; serve(IN_FD, OUT_FD)'

It reads pickled requests from its parent on ``IN_FD`` and answers on ``OUT_FD`` (a private pipe
pair; never a file or socket anyone else can write to):

* ``("init", Init)`` – where to upload, how many threads, the parent's credentials;
* ``("steps", [(seq, Step), …])`` – upload these (upload.upload_step, ``threads`` at a time);
* ``("credentials", tuple)`` – the parent's refreshed credentials, used from the next request on;
* ``("close",)`` – finish every step, report, say ``("bye",)`` and exit;
* ``("stop",)`` – the run is stopping: finish the uploads in flight, report them, skip the rest.

Answers: ``("done", [(seq, Outcome), …])`` as uploads end, several per message when they end
together. End of input without ``close``/``stop`` (the parent died) skips what is queued and exits
once the uploads in flight end: their files have no journal row, so a rerun uploads them again.
Ctrl-C reaches the whole process group; only the parent acts on it (it sends ``stop``).
"""

from __future__ import annotations

import pickle
import signal
import threading
from dataclasses import dataclass, replace

from .. import aws
from .upload import SKIPPED, Outcome, Target, UploadThreads, upload_step


@dataclass(frozen=True)
class Init:
    aws_target: aws.Target
    region: str
    credentials: tuple | None
    target: Target
    threads: int


def relayed_clients(init: Init) -> tuple[object, object]:
    """An S3 client signing with the parent's credentials (so an MFA prompt, SSO login or role
    session happens once, in the parent) and the profile's other settings; and the credentials
    object to update when the parent refreshes them."""
    import boto3
    import botocore.session
    from botocore.credentials import CredentialProvider, Credentials, ReadOnlyCredentials

    class Relayed(Credentials):
        def __init__(self, frozen: tuple):
            super().__init__(*frozen[:3])
            self.update(frozen)

        def update(self, frozen: tuple) -> None:
            self._frozen = ReadOnlyCredentials(*frozen)  # one reference swap: never a mixed key pair

        def get_frozen_credentials(self):
            return self._frozen

    class Relay(CredentialProvider):
        METHOD = "filejobs-parent"

        def __init__(self, credentials):
            self.credentials = credentials

        def load(self):
            return self.credentials

    core = botocore.session.Session(profile=init.aws_target.profile)
    credentials = Relayed(init.credentials) if init.credentials else None
    if credentials:
        core.get_component("credential_provider").insert_before("env", Relay(credentials))
    session = boto3.Session(botocore_session=core, region_name=init.region)
    clients = aws.Clients(s3=None, sqs=None, session=session, target=init.aws_target)
    return clients.client("s3", max_pool_connections=init.threads + 4), credentials


class Reporter:
    """Sends outcomes to the parent from one thread, as many per message as have piled up."""

    def __init__(self, out):
        self.out = out
        self._done: list = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="report")
        self._thread.start()

    def add(self, seq: int, outcome: Outcome) -> None:
        with self._cv:
            self._done.append((seq, replace(outcome, error=None)))  # exceptions stay here
            if len(self._done) == 1:
                self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._done and not self._closed:
                    self._cv.wait()
                done, self._done = self._done, []
                closed = self._closed
            if done:
                try:
                    send(self.out, ("done", done))
                except OSError:  # the parent is gone: nobody to tell
                    return
            if closed and not done:
                return


def send(out, message) -> None:
    pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


def serve(in_fd: int, out_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(in_fd, "rb") as requests, open(out_fd, "wb") as out:
        kind, init = pickle.load(requests)
        assert kind == "init", kind
        s3, credentials = relayed_clients(init)
        stop = threading.Event()
        reporter = Reporter(out)

        def work(item) -> None:
            seq, step = item
            reporter.add(seq, SKIPPED if stop.is_set() else upload_step(s3, init.target, step))

        threads = UploadThreads(init.threads, work, stopping=stop.is_set)
        orderly = False
        try:
            while True:
                try:
                    request = pickle.load(requests)
                except EOFError:
                    break
                if request[0] == "steps":
                    for item in request[1]:
                        threads.put(item)
                elif request[0] == "credentials" and credentials:
                    credentials.update(request[1])
                elif request[0] in ("close", "stop"):
                    orderly = True
                    if request[0] == "stop":
                        stop.set()
                    break
        finally:
            if not orderly:
                stop.set()
            threads.close()
            if orderly:
                reporter.close()
                send(out, ("bye",))

