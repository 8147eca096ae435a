#!/usr/bin/env python3
"""BASELINE ONLY — a faithful boto3 port of the original (2013, boto2) GetJobs.py worker loop.

Not part of filejobs and not for use (it keeps the original's flaws: the file name from the
message is joined to the working directory, local files are never removed, no visibility
extension, no dead-letter handling). It exists so the benchmarks can compare getjobs with what
the original worker did, request by request (see shared/seed/ORIGINAL.md):

* invocation ``<working directory> <output extension> <SQS queue name> <AWS region> <command...>``;
* the queue is looked up once (boto2 ``get_queue`` = ``GetQueueUrl``);
* loop: receive ONE message with a 20 s long poll; for a ``process`` message
  ``["process", bucket, input prefix, output prefix, file name]``: look the bucket up (boto2
  ``get_bucket`` → ``HeadBucket``), look the object up (boto2 ``bucket.get_key`` → ``HeadObject``),
  download it to ``<working directory>/<file name>``, run ``<command> <input> <input><ext>``, and
  if that succeeded upload ``<input><ext>`` to ``<output prefix><file name><ext>`` and delete the
  message: 6 requests per job, strictly one job at a time.

Benchmark-only additions (they do not change the requests): ``--handler MODULE:FUNCTION`` calls
``FUNCTION(input, output)`` in-process instead of a command (the candidate gets the same
handler), ``--max-jobs N`` stops after N messages and ``--deadline S`` after S seconds, so a run is
bounded. It prints ``{"jobs": N, "seconds": S}``.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

import boto3


def main():
    p = argparse.ArgumentParser(description="faithful port of the original GetJobs.py (baseline only)")
    p.add_argument("--handler", default=None)
    p.add_argument("--max-jobs", type=int, default=None)
    p.add_argument("--deadline", type=float, default=None)
    p.add_argument("work_dir")
    p.add_argument("extension")
    p.add_argument("queue")
    p.add_argument("region")
    p.add_argument("command", nargs="*")
    a = p.parse_args()
    handler = None
    if a.handler:
        module, _, fn = a.handler.partition(":")
        handler = getattr(importlib.import_module(module), fn)
    started = time.monotonic()
    s3 = boto3.client("s3", region_name=a.region)
    sqs = boto3.client("sqs", region_name=a.region)
    queue_url = sqs.get_queue_url(QueueName=a.queue)["QueueUrl"]  # boto2: sqs.get_queue(name)
    jobs = 0
    while a.max_jobs is None or jobs < a.max_jobs:
        if a.deadline is not None and time.monotonic() - started > a.deadline:
            break
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1,
                                       WaitTimeSeconds=20).get("Messages", [])
        for m in messages:
            job = json.loads(m["Body"])
            if job[0] != "process":
                continue
            _, bucket, input_prefix, output_prefix, file_name = job
            s3.head_bucket(Bucket=bucket)  # boto2: s3.get_bucket(bucket)
            s3.head_object(Bucket=bucket, Key=input_prefix + file_name)  # boto2: bucket.get_key(key)
            local_input = os.path.join(a.work_dir, file_name)
            local_output = local_input + a.extension
            _get(s3, bucket, input_prefix + file_name, local_input)  # boto2: get_contents_to_filename
            if handler is not None:
                try:
                    handler(local_input, local_output)
                    ok = True
                except Exception:  # noqa: BLE001 - the original left the message for a retry
                    ok = False
            else:
                ok = subprocess.call(list(a.command) + [local_input, local_output]) == 0
            if ok:
                with open(local_output, "rb") as body:  # boto2: key.set_contents_from_filename
                    s3.put_object(Bucket=bucket, Key=output_prefix + file_name + a.extension, Body=body)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            jobs += 1
    print(json.dumps({"jobs": jobs, "seconds": round(time.monotonic() - started, 3)}))
    return 0


def _get(s3, bucket, key, path):
    """boto2's key.get_contents_to_filename: one GET streamed to the file."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(path, "wb") as out:
        for chunk in body.iter_chunks(1024 * 1024):
            out.write(chunk)


if __name__ == "__main__":
    sys.exit(main())
