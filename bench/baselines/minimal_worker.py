#!/usr/bin/env python3
"""BASELINE ONLY — the smallest hand-written boto3 worker: the practical throughput limit.

``--concurrency`` threads, each looping: ReceiveMessage(10) → for each message GetObject (to a
file) + handler + PutObject → one DeleteMessageBatch. Nothing else: no visibility extension, no
retries, no validation, no duplicate detection, no logging — i.e. the requests a worker cannot
avoid (2.2 per job at full batches) with as little client CPU as boto3 allows. getjobs is
compared with it at the same concurrency and on the same endpoint and files.

Messages are filejobs' v1 JSON (bucket, input_key, input_prefix, output_prefix). An empty receive
(``WaitTimeSeconds=0``) is retried after 50 ms until ``--max-jobs`` jobs are done or
``--deadline`` passes, so the run ends promptly. Prints ``{"jobs": N, "seconds": S}``.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config


def main():
    p = argparse.ArgumentParser(description="minimal boto3 worker (baseline only)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--handler", required=True)
    p.add_argument("--max-jobs", type=int, required=True)
    p.add_argument("--deadline", type=float, default=600)
    p.add_argument("work_dir")
    p.add_argument("extension")
    p.add_argument("queue")
    p.add_argument("region")
    a = p.parse_args()
    module, _, fn = a.handler.partition(":")
    handler = getattr(importlib.import_module(module), fn)
    config = Config(max_pool_connections=a.concurrency + 4, retries={"mode": "standard"})
    s3 = boto3.client("s3", region_name=a.region, config=config)
    sqs = boto3.client("sqs", region_name=a.region, config=config)
    queue_url = sqs.get_queue_url(QueueName=a.queue)["QueueUrl"]
    os.makedirs(a.work_dir, exist_ok=True)
    lock = threading.Lock()
    done = [0]
    started = time.monotonic()
    finished_at = [started]

    def loop(n):
        wdir = tempfile.mkdtemp(prefix=f"t{n}-", dir=a.work_dir)
        while time.monotonic() - started < a.deadline:
            with lock:
                if done[0] >= a.max_jobs:
                    return
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                time.sleep(0.05)
                continue
            receipts = []
            for i, m in enumerate(messages):
                job = json.loads(m["Body"])
                rel = job["input_key"][len(job["input_prefix"]):]
                src, dst = os.path.join(wdir, f"{i}.in"), os.path.join(wdir, f"{i}.out")
                body = s3.get_object(Bucket=job["bucket"], Key=job["input_key"])["Body"]
                with open(src, "wb") as out:
                    for chunk in body.iter_chunks(1024 * 1024):
                        out.write(chunk)
                handler(src, dst)
                with open(dst, "rb") as data:
                    s3.put_object(Bucket=job["bucket"], Key=job["output_prefix"] + rel + a.extension, Body=data)
                receipts.append({"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]})
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=receipts)
            with lock:
                done[0] += len(receipts)
                finished_at[0] = time.monotonic()

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"jobs": done[0], "seconds": round(finished_at[0] - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
