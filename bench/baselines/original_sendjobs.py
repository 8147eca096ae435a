#!/usr/bin/env python3
"""BASELINE ONLY — a faithful boto3 port of the original (2013, boto2) SendJobs.py loop.

Not part of filejobs and not for use: it exists so the benchmarks can compare sendjobs with what
the original tool did, request by request (see shared/seed/ORIGINAL.md):

* the same invocation: ``<local directory> <S3 bucket> <S3 input prefix> <S3 output prefix>
  <SQS queue name> <AWS region>``;
* the same lookups at start: the bucket (boto2 ``get_bucket`` validated it with a request; here
  ``HeadBucket``) and the queue (boto2 ``get_queue`` = ``GetQueueUrl``);
* a plain, non-recursive ``os.listdir`` (a subdirectory makes it crash, as it did);
* for each file, one at a time: one ``PutObject`` of the whole file, then one ``SendMessage`` whose
  body is the JSON list ``["process", bucket, input prefix, output prefix, file name]``;
* no batching, no concurrency, no error handling, no resume.

Differences forced by the port: boto3 instead of boto2, and the body is sent as raw JSON (boto2's
default ``Message`` class base64-encoded it; the worker port reads it back the same way). The
endpoint comes from ``AWS_ENDPOINT_URL`` as boto3 reads it.
"""

import json
import os
import sys
import time

import boto3


def main(argv):
    if len(argv) != 7:
        print("usage: original_sendjobs.py <local directory> <S3 bucket> <S3 input prefix> "
              "<S3 output prefix> <SQS queue name> <AWS region>", file=sys.stderr)
        return 2
    _, directory, bucket_name, input_prefix, output_prefix, queue_name, region = argv
    started = time.monotonic()
    s3 = boto3.client("s3", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    s3.head_bucket(Bucket=bucket_name)  # boto2: s3.get_bucket(bucket_name)
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]  # boto2: sqs.get_queue(name)
    count = 0
    for file_name in os.listdir(directory):
        path = os.path.join(directory, file_name)
        with open(path, "rb") as body:  # boto2: key.set_contents_from_filename(path)
            s3.put_object(Bucket=bucket_name, Key=input_prefix + file_name, Body=body)
        body = json.dumps(["process", bucket_name, input_prefix, output_prefix, file_name])
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)  # boto2: queue.write(Message(body))
        count += 1
    print(json.dumps({"files": count, "seconds": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
